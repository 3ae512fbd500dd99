"""Settings: one frozen dataclass, and where each value comes from.

Nothing secret is resolved at construction. ``base_url`` and ``api_key`` default to ``None``, which means
"read ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` from the environment at call time" (DESIGN.md §6), so a
notebook can set a key (``os.environ``/``getpass``) after loading the extension. The key is excluded from ``repr``.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError, InsecureTransportError, MissingAPIKeyError
from .redact import MASK, redact_url, register_secret, secret_query_values

__all__ = ["Settings", "parse_config_value", "DEFAULT_BASE_URL", "expand_env", "is_loopback_host"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_TRANSPORTS = ("ws", "sse")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")
_AUTH_STYLES = ("bearer", "api-key", "none")
# $NAME or ${NAME} in a header value; $$ is a literal dollar.
_ENV_REF_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@functools.lru_cache(maxsize=64)  # checked on every turn; ipaddress parsing showed up in the profile
def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (the only hosts a key may reach in clear text)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a turn needs besides the prompt. Build variants with :meth:`with_changes`."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    organization: str | None = None
    project: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    model: str = "gpt-5-mini"
    transport: str = "ws"
    store: bool = True
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    reasoning_effort: str | None = None
    reasoning_summary: str | None = None
    # Timeouts in seconds. first_event runs from the request to the first *output* event (a text, refusal,
    # tool-argument or reasoning-summary delta, or a non-reasoning output item): it covers a reasoning model
    # thinking silently for minutes. idle is the gap allowed between two events after that (stream.py).
    connect_timeout: float = 15.0
    first_event_timeout: float = 300.0
    idle_timeout: float = 120.0
    # Rotate before OpenAI's 60-minute cap (PROTOCOL.md §1.9; 55 min as in opencode and docker-agent).
    max_connection_age: float = 3300.0
    pool_size: int = 4
    heartbeat: float | None = 20.0
    allow_insecure: bool = False
    # A PEM file of CA certificates to trust (a corporate CA, a self-signed test server); else SSL_CERT_FILE.
    ca_file: str | None = None
    fallback_to_sse: bool = True
    use_stream_lanes: bool = False
    warmup: bool = False
    # Retries of a request that failed before any event (429, 408/409, 5xx, connect errors, a dropped connection),
    # with exponential backoff and jitter, honouring retry-after headers (recovery.py); 0 turns them off.
    max_retries: int = 2
    # Add ?model=<the turn's model> to the WebSocket upgrade URL: gateways (LiteLLM's proxy) route the upgrade on it.
    ws_model_query: bool = True
    # When a transcript must be resent (store=false on SSE or a new socket, a lost parent, a fork), send only the
    # last max_turns earlier turns of it (None: all). Chaining by id is unaffected: the server holds the rest.
    max_turns: int | None = None
    # Refuse a turn once the session's estimated cost (pricing.py) passed this many US dollars (None: no cap).
    budget: float | None = None
    # The endpoint profile (profiles.py): its name (shown in the status line and footer), the variable holding
    # its key, how the key is sent (bearer | api-key | none) and a bearer-token callable (Azure Entra ID),
    # called for every connection and request, never stored, never in a repr. A ResponsesSession applies a
    # profile's fields; here ``profile`` is only a name.
    profile: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    auth: str = "bearer"
    token_provider: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings with *overrides*; env-backed values stay ``None`` and are read at call time."""
        try:
            return cls(**overrides)
        except TypeError as exc:
            raise ConfigError(
                f"Unknown setting: {exc}.", hint=f"Valid settings: {', '.join(cls.names())}."
            ) from exc

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def with_changes(self, **changes: Any) -> Settings:
        """A validated copy with *changes* applied (bad names or values raise :class:`ConfigError`)."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ConfigError(
                f"Unknown setting(s): {', '.join(unknown)}.",
                hint=f"Valid settings: {', '.join(self.names())}.",
            )
        if "extra_headers" in changes:
            changes["extra_headers"] = _as_header_pairs(changes["extra_headers"])
        return dataclasses.replace(self, **changes)

    def _validate(self) -> None:
        for name in (
            "store",
            "allow_insecure",
            "fallback_to_sse",
            "use_stream_lanes",
            "warmup",
            "ws_model_query",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, not {getattr(self, name)!r}.")
        for name in ("base_url", "api_key", "organization", "project", "instructions", "profile"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string or None, not {type(value).__name__}.")
        if self.auth not in _AUTH_STYLES:
            raise ConfigError(f"auth must be one of {', '.join(_AUTH_STYLES)}, not {self.auth!r}.")
        if not isinstance(self.api_key_env, str) or not self.api_key_env.isidentifier():
            raise ConfigError(
                "api_key_env wants the NAME of the environment variable that holds the key (like "
                "OPENAI_API_KEY), never the key itself."
            )
        if self.token_provider is not None and not callable(self.token_provider):
            raise ConfigError("token_provider must be a callable that returns a bearer token.")
        if self.transport not in _TRANSPORTS:
            raise ConfigError(f"transport must be 'ws' or 'sse', not {self.transport!r}.")
        for name in ("connect_timeout", "first_event_timeout", "idle_timeout", "max_connection_age"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}.")
        if self.heartbeat is not None and (
            not isinstance(self.heartbeat, int | float) or self.heartbeat <= 0
        ):
            raise ConfigError(
                f"heartbeat must be a positive number of seconds or None, not {self.heartbeat!r}."
            )
        if (
            not isinstance(self.max_retries, int)
            or isinstance(self.max_retries, bool)
            or self.max_retries < 0
        ):
            raise ConfigError(f"max_retries must be an integer >= 0, not {self.max_retries!r}.")
        if self.max_turns is not None and (
            not isinstance(self.max_turns, int) or isinstance(self.max_turns, bool) or self.max_turns < 1
        ):
            raise ConfigError(f"max_turns must be a whole number >= 1 or None, not {self.max_turns!r}.")
        if self.budget is not None and (
            not isinstance(self.budget, int | float) or isinstance(self.budget, bool) or self.budget <= 0
        ):
            raise ConfigError(f"budget must be a number of US dollars above 0, or None, not {self.budget!r}.")
        if not isinstance(self.pool_size, int) or isinstance(self.pool_size, bool) or self.pool_size < 1:
            raise ConfigError(f"pool_size must be an integer >= 1, not {self.pool_size!r}.")
        if self.max_output_tokens is not None and (
            not isinstance(self.max_output_tokens, int) or self.max_output_tokens < 1
        ):
            raise ConfigError(
                f"max_output_tokens must be a positive integer, not {self.max_output_tokens!r}."
            )
        if self.temperature is not None and (
            not isinstance(self.temperature, int | float) or not 0 <= self.temperature <= 2
        ):
            raise ConfigError(f"temperature must be between 0 and 2, not {self.temperature!r}.")
        if self.reasoning_effort is not None and self.reasoning_effort not in _EFFORTS:
            raise ConfigError(
                f"reasoning_effort must be one of {', '.join(_EFFORTS)}, not {self.reasoning_effort!r}."
            )
        if self.reasoning_summary is not None and self.reasoning_summary not in _SUMMARIES:
            raise ConfigError(
                f"reasoning_summary must be one of {', '.join(_SUMMARIES)}, not {self.reasoning_summary!r}."
            )
        if not self.model or not isinstance(self.model, str):
            raise ConfigError("model must be a non-empty string.")
        if self.base_url is not None:
            _check_base_url(self.base_url)
        if not isinstance(self.extra_headers, tuple) or not all(
            isinstance(p, tuple) and len(p) == 2 for p in self.extra_headers
        ):
            raise ConfigError("extra_headers must be a tuple of (name, value) pairs.")

    # --- call-time resolution ---------------------------------------------------------------------------

    def resolved_base_url(self) -> str:
        """``base_url``, else ``OPENAI_BASE_URL``, else the public API; without a trailing slash."""
        url = self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        _check_base_url(url)
        return url.rstrip("/")

    def resolved_api_key(self) -> str:
        """``api_key``, else the ``api_key_env`` variable (``OPENAI_API_KEY``; read now). Registers it for
        redaction. A missing key raises :class:`MissingAPIKeyError` naming the variable (and the profile)."""
        key = self.api_key or os.environ.get(self.api_key_env) or ""
        key = key.strip()
        if not key:
            raise MissingAPIKeyError(variable=self.api_key_env, profile=self.profile)
        register_secret(key)
        return key

    def require_credentials(self) -> None:
        """Raise :class:`MissingAPIKeyError` now if a turn could not authenticate (a cheap check before a view is
        shown: it reads the key variable but never calls ``token_provider``)."""
        if self.auth != "none" and self.token_provider is None:
            self.resolved_api_key()

    def bearer_token(self) -> str:
        """A fresh token from ``token_provider`` (called now; like openai-python's ``azure_ad_token_provider``).
        Registered for redaction, never stored."""
        assert self.token_provider is not None
        try:
            token = self.token_provider()
        except Exception as exc:
            raise ConfigError(
                f"The token_provider{f' of profile {self.profile!r}' if self.profile else ''} failed: "
                f"{type(exc).__name__}: {exc}",
                hint="Check the credential it uses (for Entra ID: `az login`, or the managed identity).",
            ) from None
        if not isinstance(token, str) or not token.strip():
            raise ConfigError("token_provider must return a non-empty string (a bearer token).")
        token = token.strip()
        register_secret(token)
        return token

    def resolved_ca_file(self) -> str | None:
        """``ca_file``, else ``SSL_CERT_FILE`` (read now), else None (the system's trust store)."""
        return self.ca_file or os.environ.get("SSL_CERT_FILE") or None

    def http_url(self) -> str:
        """``{base}/responses`` for ``POST`` (SSE transport), keeping the base URL's query string.

        ``https://h/v1?api-version=x`` gives ``https://h/v1/responses?api-version=x`` (gateways and Azure put
        the API version, sometimes a key, in the query). Secret query values are registered for redaction.
        """
        return self._endpoint({"ws": "http", "wss": "https"})

    def ws_url(self) -> str:
        """The WebSocket URL derived like openai-python: http→ws, https→wss, plus ``/responses`` (§4); the
        base URL's query string is kept (``wss://h/v1/responses?api-version=x``)."""
        return self._endpoint({"http": "ws", "https": "wss"})

    def _endpoint(self, schemes: dict[str, str]) -> str:
        parts = urlsplit(self.resolved_base_url())
        for secret in secret_query_values(parts.geturl()):
            register_secret(secret)
        scheme = schemes.get(parts.scheme, parts.scheme)
        path = parts.path.rstrip("/") + "/responses"
        return urlunsplit((scheme, parts.netloc, path, parts.query, ""))

    def check_secure(self, url: str) -> None:
        """Refuse clear-text ``ws://`` / ``http://`` to a non-loopback host unless ``allow_insecure``."""
        parts = urlsplit(url)
        if (
            parts.scheme in ("ws", "http")
            and not self.allow_insecure
            and not is_loopback_host(parts.hostname)
        ):
            raise InsecureTransportError(url=f"{parts.scheme}://{parts.netloc}")

    def auth_headers(self) -> dict[str, str]:
        """Headers for both transports: the credential, optional organization/project, extras.

        The credential as openai-python's ``AzureOpenAI`` sends it: a ``token_provider`` token as
        ``Authorization: Bearer`` (it wins); else the key as ``Authorization: Bearer`` (``auth="bearer"``) or as
        ``api-key`` (``auth="api-key"``, Azure); nothing for ``auth="none"``. Extra header values may name
        variables (``$GATEWAY_KEY``), read now (profiles.expand_env).
        """
        headers: dict[str, str] = {}
        if self.token_provider is not None:
            headers["Authorization"] = f"Bearer {self.bearer_token()}"
        elif self.auth == "api-key":
            headers["api-key"] = self.resolved_api_key()
        elif self.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.resolved_api_key()}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        for name, value in self.extra_headers:
            value = expand_env(value, profile=self.profile)
            register_secret(value)  # Azure's `api-key`, a gateway's `x-api-key`: never echoed in an error
            headers[name] = value
        return headers

    def __repr__(self) -> str:
        """Every field but the key; the base URL with key-like query values masked, header values masked."""
        shown = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name == "base_url":
                value = redact_url(value)
            elif f.name == "extra_headers":
                value = tuple((name, MASK) for name, _ in value)
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def expand_env(value: str, *, profile: str | None = None) -> str:
    """A header value with ``$NAME`` / ``${NAME}`` replaced by the variable's value (read now); ``$$`` is ``$``.

    A variable that is not set raises :class:`MissingAPIKeyError` naming it (its value is a credential, or
    the request would go out without one).
    """
    if "$" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        var = m.group(1) or m.group(2)
        got = os.environ.get(var)
        if got is None or not got.strip():
            raise MissingAPIKeyError(
                f"A request header names ${var}, which is not set"
                + (f" (endpoint profile {profile!r})." if profile else "."),
                variable=var,
                profile=profile,
            )
        return got.strip()

    return _ENV_REF_RE.sub(sub, value)


def _check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ConfigError(
            f"base URL must look like https://host/v1, not {url!r}.",
            hint="Fix OPENAI_BASE_URL or the base_url setting.",
        )


def _as_header_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        return tuple((str(k), str(v)) for k, v in value.items())
    try:
        return tuple((str(k), str(v)) for k, v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError("extra_headers must be a dict or (name, value) pairs.") from exc


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def parse_config_value(key: str, text: str) -> Any:
    """Turn the text of ``%responses config key=value`` into the typed value for *key*.

    ``none``/``null`` (case-insensitive) gives ``None`` for optional fields. ``api_key`` is refused: a
    key typed into a cell would end up in the notebook file.
    """
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if key not in fields:
        raise ConfigError(f"Unknown setting {key!r}.", hint=f"Valid settings: {', '.join(fields)}.")
    if key == "api_key":
        raise ConfigError(
            "The API key cannot be set with %responses config (it would be saved in the notebook).",
            hint=(
                "Set OPENAI_API_KEY in the environment before starting Jupyter, or run "
                "`os.environ['OPENAI_API_KEY'] = getpass.getpass('API key: ')`."
            ),
        )
    if key == "token_provider":
        raise ConfigError(
            "token_provider is a Python callable and cannot be typed into %responses config.",
            hint="Pass it in Python: ResponsesSession(profile='azure', token_provider=provider).",
        )
    text = text.strip()
    default = fields[key].default
    if text.lower() in ("none", "null") and (default is None or key == "heartbeat"):
        return None
    if key == "extra_headers":
        pairs = []
        for chunk in filter(None, (c.strip() for c in text.split(","))):
            name, sep, value = chunk.partition(":")
            if not sep:
                raise ConfigError(f"extra_headers wants 'Name: value, Other: value', got {chunk!r}.")
            pairs.append((name.strip(), value.strip()))
        return tuple(pairs)
    if isinstance(default, bool):
        low = text.lower()
        if low in _BOOL_TRUE:
            return True
        if low in _BOOL_FALSE:
            return False
        raise ConfigError(f"{key} wants true or false, not {text!r}.")
    numeric_int = key in ("pool_size", "max_output_tokens", "max_retries", "max_turns")
    numeric_float = isinstance(default, float) or key in ("temperature", "heartbeat", "budget")
    try:
        if numeric_int:
            return int(text)
        if numeric_float:
            return float(text)
    except ValueError as exc:
        raise ConfigError(f"{key} wants a number, not {text!r}.") from exc
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text
