"""One event parser for both transports (no I/O).

A WebSocket text frame and an SSE ``data:`` payload carry the same JSON object; WS adds an optional
``stream_id`` for named lanes (PROTOCOL.md §2, §1.5). So both transports call :func:`parse_event` once per
event: one ``json.loads`` and one small frozen object. Unknown event types pass through untouched
(STYLE.md habit 3); only something that is not a JSON object with a string ``type`` is a
:class:`~ipy_responses_ws.errors.ProtocolError`.

:class:`Notice` objects are client-side happenings (connecting, fallback, retry, ...) delivered in the
same stream as server events, so a view can show them in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import APIError, ProtocolError, ResponseFailedError, api_error_from_status

__all__ = [
    "ServerEvent",
    "Notice",
    "parse_event",
    "error_from_event",
    "TERMINAL_TYPES",
    "NOTICE_KINDS",
    "from_legacy_done",
]

# A stream ends at exactly one of these (PROTOCOL.md §2.7). The obsolete v1 terminal ``response.done``
# (§1.2, §7.10) is not in this set: the response stream maps it with :func:`from_legacy_done`, by its status.
TERMINAL_TYPES = frozenset({"response.completed", "response.incomplete", "response.failed"})

NOTICE_KINDS = frozenset({"connecting", "connected", "fallback", "retry", "resend", "reconnect"})

_json_loads = json.loads
# The C scanner behind json.loads, called directly: json.loads(bytes) spends most of its time in pure-Python
# encoding detection and two whitespace regex matches per call. Same decoder, same results; anything
# unusual (leading whitespace, trailing data, errors) falls back to json.loads for its exact behaviour.
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, not in typeshed


def _loads(payload: str | bytes | bytearray) -> Any:
    text = payload if isinstance(payload, str) else bytes(payload).decode("utf-8")
    try:
        obj, end = _scan_once(text, 0)
    except StopIteration:
        return _json_loads(text)  # raises the standard JSONDecodeError (or copes with leading whitespace)
    if end != len(text) and not text[end:].isspace():
        return _json_loads(text)  # "Extra data"
    return obj


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One server event. ``data`` is the whole decoded payload; the properties read from it lazily."""

    type: str
    data: dict[str, Any]

    @property
    def sequence_number(self) -> int | None:
        return self.data.get("sequence_number")

    @property
    def stream_id(self) -> str | None:
        return self.data.get("stream_id")

    @property
    def delta(self) -> str | None:
        value = self.data.get("delta")
        return value if isinstance(value, str) else None

    @property
    def response(self) -> dict[str, Any] | None:
        value = self.data.get("response")
        return value if isinstance(value, dict) else None

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

    @property
    def is_error(self) -> bool:
        return self.type == "error"

    def __repr__(self) -> str:
        # The full payload can be a large response snapshot; keep the repr short.
        seq = self.data.get("sequence_number")
        extra = f", delta={self.delta!r}" if "delta" in self.data else ""
        return f"ServerEvent(type={self.type!r}, sequence_number={seq!r}{extra})"


@dataclass(frozen=True, slots=True)
class Notice:
    """A client-side happening, e.g. ``Notice("fallback", {"reason": "..."})``."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    # Notices travel in the same queue as ServerEvents; these let a consumer treat both alike.
    type = property(lambda self: f"notice.{self.kind}")
    is_terminal = False
    is_error = False


def parse_event(payload: str | bytes | bytearray | dict[str, Any]) -> ServerEvent:
    """Parse one WS text frame / SSE data payload into a :class:`ServerEvent`.

    Raises :class:`ProtocolError` for invalid JSON, a non-object, or a missing/non-string ``type``.
    """
    if isinstance(payload, dict):
        data = payload
    else:
        try:
            data = _loads(payload)
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ProtocolError(
                f"The server sent a payload that is not valid JSON: {_preview(payload)}"
            ) from exc
    if type(data) is not dict:
        raise ProtocolError(f"The server sent JSON that is not an event object: {_preview(payload)}")
    etype = data.get("type")
    if type(etype) is not str:
        raise ProtocolError(f"The server sent an event without a string 'type': {_preview(payload)}")
    return ServerEvent(etype, data)


_LEGACY_STATUS = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    "cancelled": "response.failed",  # a cancelled background response ends as failed; its status is kept
}


def from_legacy_done(ev: ServerEvent) -> ServerEvent | None:
    """Map the obsolete v1 terminal ``response.done`` (§1.2, §7.10) to the current terminal event.

    Returns ``response.completed`` / ``incomplete`` / ``failed`` chosen by ``response.status``, or None when
    the status says nothing usable (the stream then ends with a clear "no terminal event" error).
    """
    status = (ev.response or {}).get("status")
    mapped = _LEGACY_STATUS.get(status) if status.__class__ is str else None  # an odd status must not raise
    if mapped is None:
        return None
    return ServerEvent(mapped, {**ev.data, "type": mapped})


def _preview(payload: Any, limit: int = 120) -> str:
    if isinstance(payload, bytes | bytearray):
        payload = bytes(payload[:limit]).decode("utf-8", "replace")
    text = payload if isinstance(payload, str) else repr(payload)
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def error_from_event(ev: ServerEvent, *, request_id: str | None = None) -> APIError:
    """The :class:`APIError` an ``error`` or ``response.failed`` event stands for.

    Reads the wrapped WS shape ``{"type":"error","status":400,"error":{code,message,param,headers}}``,
    the nested SSE shape (no status), and the flat SDK shape ``{"type":"error","code","message","param"}``
    (PROTOCOL.md §1.10, §2.7, pitfall §7.2).
    """
    data = ev.data
    if ev.type == "response.failed":
        resp = ev.response or {}
        err = resp.get("error") or {}
        if not isinstance(err, dict):
            err = {"message": str(err)}
        return ResponseFailedError(
            err.get("message") or "The response failed.",
            code=err.get("code"),
            response_id=resp.get("id"),
            request_id=request_id,
        )
    inner = data.get("error")
    src = inner if isinstance(inner, dict) else data
    status = data.get("status")
    if not isinstance(status, int):
        status = src.get("status") if isinstance(src.get("status"), int) else None
    message = src.get("message")
    if inner is not None and not isinstance(inner, dict) and not message:
        message = str(inner)
    headers = src.get("headers") if isinstance(src.get("headers"), dict) else None
    return api_error_from_status(
        status,
        message=message if isinstance(message, str) else None,
        code=_str_or_none(src.get("code")),
        param=_str_or_none(src.get("param")),
        request_id=request_id,
        headers=headers,
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def error_from_http(status: int, body: bytes | str, headers: Any = None) -> APIError:
    """Map a non-2xx HTTP answer with an OpenAI error body (PROTOCOL.md §3) to an :class:`APIError`."""
    request_id = None
    hdrs: dict[str, str] = {}
    if headers is not None:
        hdrs = {str(k).lower(): str(v) for k, v in headers.items()}
        request_id = hdrs.get("x-request-id")
    err: dict[str, Any] = {}
    try:
        parsed = _json_loads(body) if body else None
        if isinstance(parsed, dict):
            inner = parsed.get("error")
            err = inner if isinstance(inner, dict) else parsed
    except (ValueError, TypeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        err = {"message": text.strip()[:300] or None}
    # LiteLLM's proxy renames the upstream's retry-after to llm_provider-retry-after(-ms): keep both spellings.
    keep = {
        k: v
        for k, v in hdrs.items()
        if k.startswith(("retry-after", "x-ratelimit", "llm_provider-retry-after"))
    }
    return api_error_from_status(
        status,
        message=err.get("message") if isinstance(err.get("message"), str) else None,
        code=_str_or_none(err.get("code")),
        param=_str_or_none(err.get("param")),
        request_id=request_id,
        headers=keep or None,
    )
