"""The emulator's own SSE framing (the client-side decoder lives in ``ipy_responses_ws.sse``).

PROTOCOL.md §3: each event is ``event: <type>`` then ``data: <one-line JSON>`` and a blank line; there is
no ``id:`` line and no ``[DONE]`` sentinel.
"""

from __future__ import annotations

__all__ = ["encode_sse"]


def encode_sse(event: str, data: str) -> bytes:
    """Frame one SSE event. ``data`` must be one line (compact JSON is)."""
    if "\n" in data or "\r" in data:
        raise ValueError("SSE data must be a single line")
    return f"event: {event}\ndata: {data}\n\n".encode()
