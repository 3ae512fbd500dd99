"""What ``%responses`` prints and parses: status, history, ``key=value`` settings. No session state here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

from ..config import parse_config_value
from ..errors import ConfigError
from ..redact import redact_url

__all__ = [
    "CONFIG_KEYS",
    "MAGIC_KEYS",
    "MAGIC_TRAITS",
    "set_magic_keys",
    "parse_config_pairs",
    "parse_profile_pairs",
    "print_history",
    "print_status",
    "setting_text",
]

# Settings that `%responses config` and the traitlets expose (the key is never one of them).
CONFIG_KEYS = (
    "model",
    "transport",
    "store",
    "instructions",
    "max_output_tokens",
    "temperature",
    "reasoning_effort",
    "reasoning_summary",
    "connect_timeout",
    "first_event_timeout",
    "idle_timeout",
    "max_connection_age",
    "max_retries",
    "ws_model_query",
    "max_turns",
    "budget",
    "ca_file",
    "base_url",
    "profile",
)


#: Magic-level defaults that `%responses config` sets besides the Settings: traits of ResponsesMagics (listed by a
#: bare `%responses config`), and the session's price table (`prices`, too long to list).
MAGIC_TRAITS = ("tools", "max_steps", "retry_buttons")
MAGIC_KEYS = (*MAGIC_TRAITS, "prices")


def set_magic_keys(magics: Any, session: Any, pairs: list[str]) -> None:
    """Apply ``tools=``, ``max_steps=``, ``retry_buttons=`` and ``prices=`` words (each checked, then printed)."""
    for pair in pairs:
        key, _, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if key == "prices":  # a JSON table over the defaults: {"my-model": {"input": 1, "output": 4}}
            try:
                session.ledger.set_prices(None if text.strip().lower() in ("", "none") else text)
            except ConfigError as exc:
                raise UsageError(str(exc)) from None
            print(f"prices: {len(session.ledger.prices)} models priced")
            continue
        if key == "max_steps":
            if not text.strip().isdigit():
                raise UsageError(f"max_steps wants a whole number, got {text!r}.")
            value: Any = int(text)
        elif key == "retry_buttons":
            try:
                value = parse_config_value("store", text)  # the same true/false words as every switch
            except ConfigError:
                raise UsageError(f"retry_buttons wants true or false, not {text!r}.") from None
        else:
            value = text.strip()
        setattr(magics, key, value)
        print(setting_text(key, getattr(magics, key)))


def parse_config_pairs(values: list[str], settings: Any) -> dict[str, Any]:
    """``key=value`` words as typed settings, all validated against *settings* before anything changes."""
    changes: dict[str, Any] = {}
    for pair in values:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UsageError(f"%responses config wants key=value pairs, got {pair!r}.")
        if key not in CONFIG_KEYS:
            raise UsageError(f"Unknown setting {key!r}. Settings: {', '.join(CONFIG_KEYS)}.")
        try:
            changes[key] = parse_config_value(key, text)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    try:
        settings.with_changes(**changes)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return changes


def parse_profile_pairs(values: list[str], current: Mapping[str, Any]) -> dict[str, Any]:
    """``profile.NAME.FIELD=value`` words applied to a copy of the ``profiles`` trait (user definitions only;
    the caller validates the result with :func:`~ipy_responses_ws.profiles.profile_table`)."""
    from ..profiles import PROFILE_FIELDS, parse_profile_field

    profiles = {name: dict(spec) if isinstance(spec, Mapping) else spec for name, spec in current.items()}
    for pair in values:
        key, sep, text = pair.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 3 or not parts[1] or not parts[2]:
            raise UsageError(
                f"Profiles are set as profile.NAME.FIELD=value (fields: {', '.join(PROFILE_FIELDS[:-1])}), "
                f"got {pair!r}. Example: %responses config profile.gw.base_url=https://gw.example/v1"
            )
        _, name, field = parts
        field = field.replace("-", "_")
        try:
            value = parse_profile_field(name, field, text)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        spec = profiles.setdefault(name, {})
        if not isinstance(spec, dict):
            raise UsageError(f"Profile {name!r} was defined in Python; change it there.")
        spec[field] = value
    return profiles


def setting_text(key: str, value: Any) -> str:
    """``key = value``; a gateway key in the base URL's query shows as ``***`` (outputs are saved)."""
    if key == "base_url":
        value = redact_url(value)
    return f"{key} = {value!r}"


def print_status(status: Mapping[str, Any]) -> None:
    """``%responses status`` (and ``%responses`` without a widget front end)."""
    from ..render import format_seconds

    print(f"transport: {status.get('transport')}")
    chains = status.get("chains") or {}
    if not chains:
        print("chains: none yet")
    for name, info in chains.items():
        info = dict(info or {})
        print(f"chain {name!r}: " + ", ".join(f"{k}={v}" for k, v in info.items() if v is not None))
    if status.get("cost"):
        print(status["cost"])
    conns = status.get("connections") or []
    if not conns:
        print("connections: none open")
    for conn in conns:
        print(
            f"connection {conn.get('id')}: age {format_seconds(conn.get('age'))}, "
            f"{'busy' if conn.get('busy') else 'idle'}, {conn.get('turns', 0)} turns"
        )


def print_history(chain: str, history: list[tuple[str | None, str, str]], forks: int = 0) -> None:
    """``%responses history``: the active branch, one line per message, under the cell each turn came from."""
    if not history:
        print(f"Chain {chain!r} has no completed turns yet.")
        return
    if forks:
        print(f"(re-run cells forked this conversation {forks}×; this is the branch the notebook shows)")
    shown: object = object()
    for cell, role, text in history:
        if cell != shown and (cell is not None or role == "user"):
            print(f"── cell {cell[:8]}" if cell and not cell.startswith("run-") else "── (no cell id)")
            shown = cell
        first = text.strip().splitlines()[0] if text.strip() else ""
        more = " …" if len(text.strip().splitlines()) > 1 else ""
        print(f"{role:>9}: {first[:100]}{more}")
