"""Shared helpers for the emulator tests: strict event validation against openai-python's own classes.

The SDK's parsers do not validate (PROTOCOL.md §4 "Validation caveat"), so we pick each event's class by
its ``type`` from the SDK unions and call ``model_validate``. The type→class maps are built by introspecting
the union members' ``type`` Literal, not written by hand.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from typing import Any

import pydantic
from openai.types.responses import ResponseStreamEvent
from openai.types.responses.responses_server_event import ResponsesServerEvent

FAKE_KEY = "sk-test-FAKE-0123456789abcdef"


def _members(union: Any) -> list[type[pydantic.BaseModel]]:
    args = typing.get_args(union)
    if args and typing.get_origin(union) is typing.Annotated:
        return _members(args[0])
    return [a for a in args if isinstance(a, type) and issubclass(a, pydantic.BaseModel)]


def _type_map(union: Any) -> dict[str, type[pydantic.BaseModel]]:
    out: dict[str, type[pydantic.BaseModel]] = {}
    for cls in _members(union):
        (literal,) = typing.get_args(cls.model_fields["type"].annotation)
        out[literal] = cls
    return out


SSE_CLASSES = _type_map(ResponseStreamEvent)
WS_CLASSES = _type_map(ResponsesServerEvent)


def validate_event(payload: dict[str, Any], *, transport: str) -> pydantic.BaseModel:
    """Validate one event strictly against the SDK class for its ``type``; raise on any mismatch.

    The nested SSE ``error`` event is the documented exception (PROTOCOL.md §2.7): it is checked by hand
    against the real wire shape instead of the SDK's flat ``ResponseErrorEvent``.
    """
    classes = WS_CLASSES if transport == "ws" else SSE_CLASSES
    kind = payload["type"]
    if transport == "sse" and kind == "error":
        err = payload["error"]
        assert isinstance(err["message"], str) and err["message"]
        assert set(err) >= {"type", "code", "message", "param"}
        assert isinstance(payload["sequence_number"], int)
        return classes["response.created"].model_construct()
    assert kind in classes, f"event type {kind!r} is not in the SDK's {transport} union"
    return classes[kind].model_validate(payload)


def validate_all(payloads: Iterable[dict[str, Any]], *, transport: str) -> int:
    n = 0
    for payload in payloads:
        validate_event(payload, transport=transport)
        n += 1
    return n


def parse_sse(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Split an SSE body into (event name, JSON payload); asserts the framing PROTOCOL.md §3 requires."""
    out = []
    text = body.decode()
    assert "[DONE]" not in text
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ") and len(lines) == 2, block
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name
        out.append((name, data))
    return out
