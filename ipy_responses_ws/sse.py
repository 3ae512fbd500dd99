"""A Sans-I/O Server-Sent Events decoder (and a tiny encoder).

Follows the WHATWG HTML "event stream interpretation" rules:

* lines end with CRLF, LF or CR, and a chunk may end anywhere: inside a line, inside a UTF-8 character,
  or between the CR and the LF of one CRLF (the next chunk's leading LF is then swallowed);
* a leading UTF-8 BOM is dropped (once, at the very start of the stream);
* ``:`` starts a comment line; ``field:value`` strips one space after the colon; a line without a colon is a
  field with an empty value;
* ``data`` lines accumulate joined by ``\\n``; an empty line dispatches the event if any data was seen;
* ``id`` (ignored if it contains NUL) persists across events; ``retry`` is kept only if all digits.

Deviation, on purpose: :meth:`SSEDecoder.flush` (called at end of stream) also dispatches a final event that
lacks its blank line. OpenAI always ends events with a blank line (PROTOCOL.md §3); if a truncated last
line is incomplete JSON, the event parser reports a clear ProtocolError instead of the turn silently
missing its terminal event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["SSEDecoder", "SSEMessage", "encode_sse"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched event: ``event`` is None when the stream named no type (the "message" default)."""

    event: str | None
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Feed bytes in any chunking; get complete :class:`SSEMessage` objects out."""

    __slots__ = ("_buf", "_skip_lf", "_bom_checked", "_event", "_data", "_last_id", "_retry")

    def __init__(self) -> None:
        self._buf = b""
        self._skip_lf = False
        self._bom_checked = False
        self._event: str | None = None
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        """Decode *chunk*; return the events it completed (often empty, sometimes several)."""
        if not chunk:
            return []
        if self._skip_lf:
            # The previous chunk ended with CR: a LF right here belongs to the same CRLF.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        buf = self._buf + chunk if self._buf else chunk
        if not self._bom_checked:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf  # could still be a BOM split across chunks
                return []
            self._bom_checked = True
            if buf.startswith(_BOM):
                buf = buf[3:]
        if b"\r" not in buf:
            # Common case (OpenAI sends LF only): a plain split; the last piece is the unfinished line.
            lines = buf.split(b"\n")
            self._buf = lines.pop()
        else:
            # bytes.splitlines splits on exactly \r, \n and \r\n (unlike str.splitlines): the SSE line ends.
            lines = buf.splitlines(keepends=True)
            last = lines[-1]
            if last[-1:] not in (b"\n", b"\r"):
                self._buf = last
                lines.pop()
            else:
                self._buf = b""
                if last[-1:] == b"\r":
                    self._skip_lf = True
            lines = [raw.rstrip(b"\r\n") for raw in lines]  # a line holds no CR/LF of its own
        out: list[SSEMessage] = []
        data = self._data
        for raw in lines:
            # Fast paths for the lines OpenAI sends (PROTOCOL.md §3); everything else takes the general path.
            if raw.startswith(b"data: "):
                data.append(raw[6:].decode("utf-8", "replace"))
            elif not raw:
                if data:
                    out.append(SSEMessage(self._event or None, "\n".join(data), self._last_id, self._retry))
                    data = self._data = []
                self._event = None
            elif raw.startswith(b"event: "):
                self._event = raw[7:].decode("utf-8", "replace")
            else:
                self._line(raw, out)
                data = self._data
        return out

    def flush(self) -> list[SSEMessage]:
        """End of stream: process a last unterminated line and dispatch a pending event, if any."""
        out: list[SSEMessage] = []
        if self._buf:
            buf, self._buf = self._buf, b""
            if not self._bom_checked and buf.startswith(_BOM):
                buf = buf[3:]
            self._line(buf, out)
        self._bom_checked = True
        self._dispatch(out)
        return out

    def _line(self, raw: bytes, out: list[SSEMessage]) -> None:
        if not raw:
            self._dispatch(out)
            return
        line = raw.decode("utf-8", "replace")
        if line[0] == ":":
            return  # comment (keep-alive)
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        # other field names are ignored, per the spec

    def _dispatch(self, out: list[SSEMessage]) -> None:
        if self._data:
            out.append(SSEMessage(self._event or None, "\n".join(self._data), self._last_id, self._retry))
        self._data = []
        self._event = None


def encode_sse(event: str | None, data: str | dict[str, Any]) -> bytes:
    """Encode one event as ``event: <type>\\ndata: <json>\\n\\n`` (multi-line data becomes several lines)."""
    if not isinstance(data, str):
        data = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    parts = [f"event: {event}\n"] if event else []
    parts.extend(f"data: {line}\n" for line in data.split("\n"))
    parts.append("\n")
    return "".join(parts).encode("utf-8")
