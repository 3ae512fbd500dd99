"""Pooled sockets stay alive between cells: server pings are answered while idle, closes are noticed while idle.

Servers built on uvicorn (LiteLLM's proxy, many gateways) ping every 20 s and close a socket whose pong is
20 s late. aiohttp answers a ping only while someone reads the socket, and 0.1 read nothing between turns: every
pause over ~40 s cost a reconnect, and under ``store=false`` a full transcript resend. The emulator pings like
uvicorn at test speed (every 0.5 s, 0.5 s to answer: a socket nobody reads is gone after ~1 s), on plain and TLS.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from emulator_fixtures import FAST_PINGS, running_emulator
from inline_server import serve

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import Emulator
from ipy_responses_ws.emulator.model import reply_for

KEY = "sk-test-FAKE-idle-0123456789"
PAUSE = 1.6  # longer than ping interval + ping timeout (1.0 s)


@pytest.fixture(params=["plain", "tls"])
def pinging(request: pytest.FixtureRequest):
    with running_emulator(tls=request.param == "tls", **FAST_PINGS) as emu:
        yield emu


def _session(emu: Emulator, **kw) -> ResponsesSession:
    ca = getattr(emu, "ca_path", None)
    return ResponsesSession(base_url=emu.base_url, api_key=KEY, ca_file=ca, **kw)


def test_a_pause_longer_than_the_ping_timeout_costs_no_reconnect(pinging: Emulator) -> None:
    with _session(pinging, store=False) as s:
        first = s.respond("one")
        time.sleep(PAUSE)
        second = s.respond("two")
        handshakes = s.status()["handshakes"]
    assert first.ok and second.ok, (first.error, second.error)
    assert second.text == reply_for(["one", "two"])
    assert handshakes == 1  # the same socket served both turns
    assert not second.resent_transcript  # store=false chained through the socket's cache
    assert pinging.ping_timeouts == 0


def test_soak_with_pauses_past_the_ping_timeout(pinging: Emulator) -> None:
    """Five turns of a store=false chain with pauses between them: 0 reconnects, 0 resends, 0 dropped."""
    prompts = [f"turn {i}" for i in range(5)]
    with _session(pinging, store=False) as s:
        results = []
        for i, p in enumerate(prompts):
            if i:
                time.sleep(1.1)
            results.append(s.respond(p))
        handshakes = s.status()["handshakes"]
    assert all(r.ok for r in results)
    assert results[-1].text == reply_for(prompts)
    assert handshakes == 1
    assert not any(r.resent_transcript or r.reconnected or r.retried for r in results)
    assert pinging.ping_timeouts == 0


def test_a_socket_the_server_closed_while_idle_is_never_leased() -> None:
    """The server closes each socket 0.1 s after a response: the next turn opens a new one, with no retry."""
    closed = 0

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        nonlocal closed
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            rid = f"resp_{time.monotonic_ns()}"
            resp = {"id": rid, "object": "response", "status": "completed", "output": []}
            await ws.send_str(
                json.dumps({"type": "response.created", "response": {**resp, "status": "in_progress"}})
            )
            await ws.send_str(
                json.dumps(
                    {
                        "type": "response.output_text.delta",
                        "delta": json.loads(msg.data)["input"][-1]["content"][0]["text"],
                    }
                )
            )
            await ws.send_str(json.dumps({"type": "response.completed", "response": resp}))
            await asyncio.sleep(0.1)
            closed += 1
            await ws.close(code=1001, message=b"going away")
        return ws

    app = web.Application()
    app.router.add_get("/v1/responses", ws_handler)
    with serve(app) as base_url, ResponsesSession(base_url=base_url, api_key=KEY) as s:
        first = s.respond("a")
        deadline = time.monotonic() + 5
        while (s.status()["connections"] or closed == 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert s.status()["connections"] == []  # noticed while idle, and dropped
        second = s.respond("b")
        handshakes = s.status()["handshakes"]
    assert first.ok and second.ok and second.text == "b"
    assert not second.retried and second.error is None
    assert handshakes == 2
