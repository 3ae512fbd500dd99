"""Fault injection for the emulator: what can go wrong, when, and on which transport.

A `Fault` is matched against each request (a WebSocket upgrade, a WS ``response.create``, an HTTP POST).
The first registered fault whose transport and phase fit fires, and its ``count`` drops by one (``count=None``
keeps it forever). A prompt line such as ``!fault drop after=5`` injects a one-shot fault into that request
only (handy in notebook demos); directives win over registered faults. Only the **latest** user message
of a request's input is read for directives, so a resent transcript does not fire old ones again.

A registered one-shot fault that strikes after ``after`` events of a response that has fewer events is
given back (:meth:`FaultSet.give_back`): it stays armed for the next response.

Kinds (docs/emulator.md has the full table):

=================  ========  ============================================================================
kind               phase     effect
=================  ========  ============================================================================
refuse_upgrade     upgrade   answer the WS upgrade with HTTP ``status`` (426, 404, 503, ...), no 101
unauthorized       both      HTTP 401 ``invalid_api_key`` on the upgrade / on the POST, whatever the key
drop               request   abort the TCP connection after ``after`` events (no close frame: client sees 1006)
close              request   WS: close with ``code`` after ``after`` events; SSE: end the body early
error              request   ``status`` error (429 carries rate-limit headers; 500 ...): before the stream
                             (``after=0``) a wrapped WS ``error`` / an HTTP error; later an ``error``
                             event followed by ``response.failed``
failed             request   ``response.failed`` after ``after`` events (SSE: nested ``error`` first)
incomplete         request   ``response.incomplete`` with reason ``code`` (default ``content_filter``)
stall              request   go silent for ``seconds`` after ``after`` events, then carry on
think              request   a reasoning model thinking: after ``response.created``, ``in_progress`` and a
                             reasoning ``output_item.added``, silence for ``seconds`` before the first
                             output (the response gets a reasoning item if it had none; ``after`` unused)
malformed          request   after ``after`` events send ``variant`` = json (invalid JSON text) | binary
                             (a binary frame) | utf8 (invalid UTF-8), then carry on
cap                request   WS only: once the connection has finished ``responses`` responses, answer the
                             next create with ``websocket_connection_limit_reached`` and close 1000
=================  ========  ============================================================================
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

__all__ = ["KINDS", "Fault", "FaultSet", "parse_directives"]

Transport = Literal["ws", "sse", "any"]

KINDS = frozenset(
    {
        "refuse_upgrade",
        "unauthorized",
        "drop",
        "close",
        "error",
        "failed",
        "incomplete",
        "stall",
        "think",
        "malformed",
        "cap",
    }
)
_UPGRADE_KINDS = frozenset({"refuse_upgrade", "unauthorized"})
_WS_ONLY = frozenset({"refuse_upgrade", "cap"})
_VARIANTS = frozenset({"json", "binary", "utf8"})


@dataclass
class Fault:
    """One injected failure. Fields that a kind does not use are ignored.

    ``after`` counts events of the response already sent when the fault strikes. ``count`` is how many
    requests it affects (None = persistent). ``transport`` limits it to ``"ws"``, ``"sse"`` or ``"any"``.
    """

    kind: str
    after: int = 0
    status: int | None = None
    code: int | str | None = None
    message: str | None = None
    seconds: float = 0.0
    variant: str = "json"
    responses: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    transport: Transport = "any"
    count: int | None = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.transport not in ("ws", "sse", "any"):
            raise ValueError(f"fault transport must be 'ws', 'sse' or 'any', not {self.transport!r}")
        if self.kind in _WS_ONLY and self.transport == "sse":
            raise ValueError(f"fault {self.kind!r} only exists on the WebSocket transport")
        if self.kind == "malformed" and self.variant not in _VARIANTS:
            raise ValueError(f"malformed variant must be one of {sorted(_VARIANTS)}")
        if self.after < 0 or self.seconds < 0 or (self.count is not None and self.count < 1):
            raise ValueError("after and seconds must be >= 0 and count >= 1 (or None)")
        if self.kind == "refuse_upgrade" and self.status is None:
            self.status = 426
        if self.kind == "error" and self.status is None:
            self.status = 500
        if self.kind == "close" and self.code is None:
            self.code = 1011

    @property
    def phase(self) -> str:
        return "upgrade" if self.kind in _UPGRADE_KINDS else "request"

    def fits(self, transport: str, phase: str) -> bool:
        if self.transport not in ("any", transport):
            return False
        if self.kind == "unauthorized":
            # On WS the 401 comes on the upgrade; on SSE the POST is the only request.
            return phase == ("upgrade" if transport == "ws" else "request")
        if self.kind in _WS_ONLY and transport != "ws":
            return False
        return self.phase == phase

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from JSON (the control endpoint); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
        return cls(**data)


class FaultSet:
    """Thread-safe registry of faults (tests add them from another thread than the server loop's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> list[Fault]:
        with self._lock:
            return [replace(f) for f in self._faults]

    def give_back(self, shot: Fault) -> None:
        """Re-arm a shot that :meth:`take` handed out but that never struck (one use goes back)."""
        if shot.count is None:
            return  # persistent: nothing was used up
        key = replace(shot, count=None)
        with self._lock:
            for fault in self._faults:
                if fault.count is not None and replace(fault, count=None) == key:
                    fault.count += 1
                    return
            self._faults.insert(0, replace(shot, count=1))

    def take(self, transport: str, phase: str, *, finished_responses: int = 0) -> Fault | None:
        """Return the first fault that fits and use up one of its shots."""
        with self._lock:
            for fault in self._faults:
                if not fault.fits(transport, phase):
                    continue
                if fault.kind == "cap" and finished_responses < fault.responses:
                    continue
                shot = replace(fault)
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return shot
        return None


def _coerce(key: str, value: str) -> Any:
    if key in ("after", "status", "responses", "count"):
        return int(value)
    if key == "seconds":
        return float(value)
    if key == "code":
        return int(value) if value.lstrip("-").isdigit() else value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_directives(messages: Iterable[str]) -> tuple[Fault | None, bool]:
    """Read ``!fault KIND key=value ...`` and ``!refuse`` lines from user messages (the server passes the
    latest user message only). A bare number stands for ``seconds`` (``!fault think 3``).

    Returns the fault (the last ``!fault`` line wins) and whether a refusal was asked for. A malformed
    directive raises ``ValueError`` (the server answers 400, so a typo in a demo is visible).
    """
    fault: Fault | None = None
    refuse = False
    for text in messages:
        for line in text.splitlines():
            words = line.strip()
            if words == "!refuse":
                refuse = True
            elif words.startswith("!fault"):
                parts = shlex.split(words)[1:]
                if not parts:
                    raise ValueError("'!fault' needs a kind, e.g. '!fault drop after=5'")
                kwargs: dict[str, Any] = {}
                for part in parts[1:]:
                    key, sep, value = part.partition("=")
                    if not sep and _is_number(part):
                        key, sep, value = "seconds", "=", part
                    if not sep:
                        raise ValueError(f"bad fault option {part!r}; expected key=value")
                    kwargs[key] = _coerce(key, value)
                fault = Fault.from_dict({"kind": parts[0], **kwargs})
    return fault, refuse
