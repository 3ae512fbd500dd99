"""Which socket a turn gets, and that nobody waits for one forever.

* A turn queued behind a full pool is woken when a connect fails, not only when a slot frees (0.1 left it
  waiting until Interrupt when the upgrade failed slowly).
* A chain's turn is leased the socket whose cache holds the chain's parent; a warm-up never evicts it
  (0.1's toggle flip with ``warmup=True`` under ``store=false`` overwrote it, so the next cell resent the
  transcript).
* A flip to WebSocket warms a socket up when ``warmup`` is on, and a turn started during the warm-up waits for
  that socket instead of dialling a second one.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from inline_server import serve

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import Emulator
from ipy_responses_ws.emulator.model import reply_for
from ipy_responses_ws.errors import HandshakeError
from ipy_responses_ws.events import Notice

KEY = "sk-test-FAKE-lease-0123456789"


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


def test_a_queued_turn_is_woken_when_a_slow_upgrade_fails() -> None:
    async def refuse_slowly(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(status=503, text="upstream unavailable")

    app = web.Application()
    app.router.add_get("/v1/responses", refuse_slowly)
    with (
        serve(app) as base_url,
        ResponsesSession(base_url=base_url, api_key=KEY, pool_size=1, fallback_to_sse=False) as s,
    ):
        t0 = time.monotonic()
        a = s.start("a", chain="a")
        b = s.start("b", chain="b")
        ra, rb = a.result(timeout=10), b.result(timeout=10)
        took = time.monotonic() - t0
    for r in (ra, rb):
        assert isinstance(r.error, HandshakeError) and r.error.status == 503
    assert took < 5  # each turn got its own answer: the second tried its own connect after the first failed


def _creates(emu: Emulator, since: int) -> list[dict]:
    return [f for c in list(emu.connections)[since:] for f in c.frames if f.get("type") == "response.create"]


def test_a_warm_up_never_evicts_the_chain_parent_from_its_socket(emu: Emulator) -> None:
    since = len(emu.connections)
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, store=False, warmup=True) as s:
        # construction started a warm-up; this turn waits for it and takes its socket
        first = s.respond("one")
        s.transport = "sse"  # the toggle flips away and back: the flip to WS warms up again
        s.transport = "ws"
        time.sleep(0.3)  # let the warm-up (if any) run
        second = s.respond("two")
    two = [f for f in _creates(emu, since) if "two" in json.dumps(f.get("input"))]
    assert first.ok and second.ok
    assert second.text == reply_for(["one", "two"])
    assert not second.resent_transcript
    assert [f.get("previous_response_id") for f in two] == [first.response_id]  # chained by id, not resent


def test_a_chain_is_leased_the_socket_that_caches_its_parent(emu: Emulator) -> None:
    """Two chains, two sockets; with store=false each chain keeps chaining by id through its own socket."""
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, store=False, pool_size=2) as s:
        ha, hb = s.start("a1", chain="a"), s.start("b1", chain="b")  # concurrent: two sockets
        ra, rb = ha.result(10), hb.result(10)
        turns = [s.respond(p, chain=c) for c, p in [("b", "b2"), ("a", "a2"), ("b", "b3"), ("a", "a3")]]
        handshakes = s.status()["handshakes"]
    assert ra.ok and rb.ok and all(t.ok for t in turns)
    assert handshakes == 2
    assert not any(t.resent_transcript for t in turns)
    assert turns[-1].text == reply_for(["a1", "a2", "a3"])
    assert turns[-2].text == reply_for(["b1", "b2", "b3"])


# --- flipping the transport to WS warms a socket up when warmup is on (docs/parity.md §3 "partial") -------


def test_switching_to_websocket_warms_up_when_asked(emu: Emulator) -> None:
    since = len(emu.connections)
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, transport="sse", warmup=True) as s:
        assert s.respond("over sse first").transport == "sse"
        assert [c for c in emu.connections[since:] if c.transport == "ws"] == []  # no warm-up for SSE
        s.transport = "ws"
        deadline = time.monotonic() + 5
        while not any(c.transport == "ws" and c.frames for c in emu.connections[since:]):
            assert time.monotonic() < deadline, "no warm-up after switching to WebSocket"
            time.sleep(0.02)
        h = s.start("now over ws")
        items = list(h.events())
        r = h.result(timeout=10)
    connected = [i for i in items if isinstance(i, Notice) and i.kind == "connected"]
    assert r.ok and r.transport == "ws" and connected[0].data["reused"] is True
    assert len([c for c in emu.connections[since:] if c.transport == "ws"]) == 1


# --- a turn right after the warm-up started uses the warmed socket (no second handshake) -----------------


def test_a_turn_started_during_the_warm_up_waits_for_its_socket() -> None:
    with Emulator(api_key=KEY, ttft=0.3).run_in_thread() as e:  # the warm-up takes ~0.3 s to answer
        with ResponsesSession(base_url=e.base_url, api_key=KEY, warmup=True) as s:
            r = s.respond("right away")
        ws_logs = [c for c in e.connections if c.transport == "ws"]
    assert r.ok and r.text == reply_for(["right away"])
    assert len(ws_logs) == 1 and len(ws_logs[0].frames) == 2  # the warm-up create, then this turn
    assert ws_logs[0].frames[0].get("generate") is False


def test_a_warm_up_in_a_full_pool_leaves_other_chains_sockets_alone(emu: Emulator) -> None:
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, store=False, pool_size=1) as s:
        first = s.respond("a1", chain="a")
        assert s.warmup(chain="b") is None  # nothing sent: the only socket caches chain a's parent
        second = s.respond("a2", chain="a")
        handshakes = s.status()["handshakes"]
    assert first.ok and second.ok and not second.resent_transcript
    assert second.text == reply_for(["a1", "a2"])
    assert handshakes == 1


def test_alternating_two_endpoints_keeps_a_socket_for_each(emu: Emulator) -> None:
    """Comparing providers cell by cell (two base URLs, e.g. two profiles) must not reconnect at every switch."""
    with (
        Emulator(api_key=KEY).run_in_thread() as other,
        ResponsesSession(base_url=emu.base_url, api_key=KEY, store=False) as s,
    ):
        turns = []
        for i in range(4):
            base = emu.base_url if i % 2 == 0 else other.base_url
            s.configure(base_url=base)
            turns.append(s.respond(f"q{i}", chain=f"c{i % 2}"))
        handshakes = s.status()["handshakes"]
    assert all(t.ok for t in turns)
    assert handshakes == 2
    assert not any(t.resent_transcript for t in turns)  # each chain kept its socket and its cached parent


def test_a_request_that_cannot_be_built_leaves_its_socket_clean(emu: Emulator) -> None:
    """Nothing reached the server, so nothing streams into the socket: the chain keeps it (and its cached parent)."""
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, store=False) as s:
        first = s.respond("one")

        def cannot_build(info):  # a request builder that fails after the socket was leased
            raise ValueError("cannot build this request")

        async def attempt() -> None:
            with pytest.raises(ValueError):
                await s.ws.run(cannot_build, lambda _item: None, settings=s.settings, affinity="default")

        s._runtime.run(attempt(), timeout=5)
        second = s.respond("two")
        handshakes = s.status()["handshakes"]
    assert first.ok and second.ok and second.text == reply_for(["one", "two"])
    assert handshakes == 1 and not second.resent_transcript
