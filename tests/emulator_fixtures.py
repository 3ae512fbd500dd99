"""Shared helpers for the emulator tests: strict event validation against openai-python's own classes, and
emulators that behave like real servers (TLS, keepalive pings).

The SDK's parsers do not validate (PROTOCOL.md §4 "Validation caveat"), so we pick each event's class by
its ``type`` from the SDK unions and call ``model_validate``. The type→class maps are built by introspecting
the union members' ``type`` Literal, not written by hand.

Fixtures (import them into a test module, as with ``browser_harness``:
``from emulator_fixtures import tls_emulator  # noqa: F401``); each yields a running
:class:`~ipy_responses_ws.emulator.Emulator` (``run_in_thread``, any API key accepted) and stops it after
the test:

* ``tls_emulator``: https/wss. ``emu.base_url`` is ``https://127.0.0.1:PORT/v1``. A client trusts the
  emulator's throw-away CA through ``emu.ca_path`` (a PEM file, removed at stop), e.g.
  ``ssl.create_default_context(cafile=emu.ca_path)``, ``httpx.Client(verify=that_context)``, aiohttp's
  ``ssl=that_context``, or ``SSL_CERT_FILE=emu.ca_path`` for a kernel; ``emu.client_ssl_context()``
  builds the context for you.
* ``pinging_emulator``: server keepalive pings on every WebSocket like uvicorn's, but fast
  (``FAST_PINGS``: every 0.5 s, 0.5 s to answer). A socket whose pong is late is closed with 1011;
  ``emu.ping_timeouts`` counts them (assert it is 0) and ``ConnectionLog.closed_by_ping_timeout`` says which.
* ``tls_pinging_emulator``: both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import typing
from collections.abc import Iterable, Iterator
from typing import Any

import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from openai.types.responses.responses_server_event import ResponsesServerEvent

from ipy_responses_ws.emulator import Emulator

FAKE_KEY = "sk-test-FAKE-0123456789abcdef"
#: Keepalive settings for tests: uvicorn's behaviour (20 s / 20 s) at test speed.
FAST_PINGS: dict[str, float] = {"ping_interval": 0.5, "ping_timeout": 0.5}


@contextlib.contextmanager
def running_emulator(**kwargs: Any) -> Iterator[Emulator]:
    """``Emulator(**kwargs)`` served from its own thread for the block (sync and async tests alike)."""
    with Emulator(**kwargs).run_in_thread() as emu:
        yield emu


async def idle_then_turn(ws: Any, seconds: float, text: str) -> dict[str, Any]:
    """Keep one ``receive()`` pending on an aiohttp client WebSocket for ``seconds`` (as a pool's reader
    does, so Pings are answered), then run one turn on it; returns the ``response.completed`` event."""
    pending = asyncio.ensure_future(ws.receive())
    await asyncio.sleep(seconds)
    assert not pending.done(), f"the idle socket got {pending.result()!r}"
    await ws.send_str(json.dumps({"type": "response.create", "model": "gpt-5-mini", "input": text}))
    msg = await asyncio.wait_for(pending, 10)
    while True:
        event = json.loads(msg.data)
        if event["type"] == "response.completed":
            return event
        msg = await asyncio.wait_for(ws.receive(), 10)


async def tls_settled() -> None:
    """Let closed TLS connections finish their shutdown before the test's loop closes.

    asyncio closes an SSL transport's socket only after the close_notify exchange, a few ms after
    ``close()``; aiohttp's docs ("Graceful Shutdown") advise a short sleep before the loop closes, otherwise
    the socket is reported as an unclosed ResourceWarning (an error in this suite) in some later test.
    """
    await asyncio.sleep(0.25)


@pytest.fixture
def tls_emulator() -> Iterator[Emulator]:
    """An emulator on https/wss; trust ``emu.ca_path`` (or use ``emu.client_ssl_context()``)."""
    with running_emulator(tls=True) as emu:
        yield emu


@pytest.fixture
def pinging_emulator() -> Iterator[Emulator]:
    """An emulator that pings every WebSocket every 0.5 s and closes it (1011) after a 0.5 s late pong."""
    with running_emulator(**FAST_PINGS) as emu:
        yield emu


@pytest.fixture
def tls_pinging_emulator() -> Iterator[Emulator]:
    """Both: https/wss and fast keepalive pings."""
    with running_emulator(tls=True, **FAST_PINGS) as emu:
        yield emu


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
