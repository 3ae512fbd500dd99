"""What the emulator records about each WS connection and each HTTP request (``emu.connections``).

Secrets never reach the log: ``Authorization``, ``api-key`` and ``x-api-key`` headers are masked the way OpenAI's 401
message masks a key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConnectionLog", "mask_key", "redact_headers"]

_REDACTED_HEADERS = ("authorization", "api-key", "openai-api-key", "x-api-key")


def mask_key(key: str) -> str:
    """Mask a key the way OpenAI's 401 message does: a few leading and trailing characters only."""
    key = key.strip()
    if len(key) < 12:
        return "***"
    return f"{key[:6]}***...{key[-4:]}"


def redact_headers(headers: Any) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        if name.lower() in _REDACTED_HEADERS:
            scheme, _, token = value.partition(" ")
            value = f"{scheme} {mask_key(token)}" if token else mask_key(value)
        out[name] = value
    return out


@dataclass
class ConnectionLog:
    """What one WS connection or one HTTP request looked like from the server side.

    ``requests`` has one entry per ``response.create`` / POST that got past parsing:
    ``{"response_id", "previous_response_id", "store", "duplicated_context", "duplicated_items"}``;
    ``duplicated_context`` is true when the new input repeats output items of its parent response
    (``duplicated_items`` names them by item id or ``call_id``).
    """

    id: int
    transport: str  # "ws" | "http"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # Authorization masked
    status: int | None = None  # 101 for an accepted upgrade, else the HTTP status answered
    frames: list[Any] = field(default_factory=list)  # client frames / POST bodies (parsed JSON when valid)
    close_code: int | None = None  # the close code the *client* sent, if it closed first
    server_close_code: int | None = None  # the code the server closed with (1006 = dropped)
    responses: list[str] = field(default_factory=list)  # response ids served
    events_sent: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    pings_sent: int = 0  # server keepalive pings (``ping_interval``)
    pongs_received: int = 0  # answers to those pings
    closed_by_ping_timeout: bool = False  # closed 1011 because no pong came within ``ping_timeout``
    opened_at: float = field(default_factory=time.time)
    closed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}
