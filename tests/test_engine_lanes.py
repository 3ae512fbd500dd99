"""Opt-in stream_id lanes: several chains share one socket; abandoned lanes never leak stale frames."""

from __future__ import annotations

import time

import pytest
from engine_helpers import new_session

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import ConnectionClosedError
from ipy_responses_ws.events import ServerEvent
from ipy_responses_ws.session import ResponsesSession
from ipy_responses_ws.transports.pool import lane_id

KEY = "sk-test-FAKE-engine-lanes-0123456789"
WORDS = 60


def slow(msgs):
    return reply_for(msgs, words=WORDS)


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY, token_rate=400.0, answer_words=WORDS).run_in_thread() as e:
        yield e


@pytest.fixture
def session(emu):
    emu.clear_faults()
    s = ResponsesSession(base_url=emu.base_url, api_key=KEY, use_stream_lanes=True, store=False)
    yield s
    s.close()


def overlap_recorder():
    """on_event factory recording, per chain, when its first delta and its terminal event arrived."""
    marks: dict[str, dict[str, float]] = {}

    def for_chain(chain):
        def on_event(ev):
            m = marks.setdefault(chain, {})
            if ev.type == "response.output_text.delta":
                m.setdefault("first", time.perf_counter())
            elif ev.type == "response.completed":
                m["done"] = time.perf_counter()

        return on_event

    def overlapped():
        # every turn was already streaming before any of them finished
        return max(m["first"] for m in marks.values()) < min(m["done"] for m in marks.values())

    return for_chain, overlapped


def ws_logs(emu, since):
    return [c for c in emu.connections[since:] if c.transport == "ws"]


def test_lane_ids_are_valid_and_distinct():
    import re

    names = ["default", "a b", "ünïcode", "x" * 500, "a_b", "a b "]
    ids = [lane_id(n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]{1,256}", i) for i in ids)


def test_parallel_chains_share_one_socket(session, emu):
    since = len(emu.connections)
    first = {c: session.respond(f"hi {c}", chain=c) for c in "abc"}
    assert all(r.ok for r in first.values())
    for_chain, overlapped = overlap_recorder()
    handles = {c: session.start(f"again {c}", chain=c, on_event=for_chain(c)) for c in "abc"}
    results = {c: h.result(timeout=20) for c, h in handles.items()}
    for c, r in results.items():
        assert r.text == slow([f"hi {c}", f"again {c}"]), c
        assert not r.resent_transcript  # store=false, yet by id: each lane caches its own latest response
    assert overlapped()  # interleaved on one socket
    (log,) = ws_logs(emu, since)
    assert {f["stream_id"] for f in log.frames} == {lane_id(c) for c in "abc"}
    assert all("previous_response_id" in f for f in log.frames[3:])


def test_cancelled_lane_drops_stale_frames(session, emu):
    session.respond("base", chain="k")
    h = session.start("abandon me", chain="k")
    while True:
        item = h.get(timeout=5)
        assert item is not None
        if isinstance(item, ServerEvent) and item.type == "response.output_text.delta":
            break
    assert h.cancel(wait=1.0) and h.result().status == "cancelled"
    # the server keeps streaming the abandoned response into the shared socket; the next turn on the same
    # lane queues behind it and must see only its own events
    r = session.respond("next", chain="k")
    assert r.text == slow(["base", "next"])
    assert r.resent_transcript  # the lane cache is unknown after an abandon: full transcript


def test_connection_close_fails_every_lane_then_recovers(session, emu):
    session.respond("one", chain="p")
    emu.add_fault(Fault("close", after=4, code=1011))
    r = session.respond("two", chain="p")
    assert isinstance(r.error, ConnectionClosedError) and r.error.code == 1011
    r = session.respond("three", chain="p")
    assert r.ok and r.text == slow(["one", "three"]) and r.resent_transcript


def test_cap_reconnects_lanes(session, emu):
    session.respond("one", chain="q")
    emu.add_fault(Fault("cap", responses=1))
    r = session.respond("two", chain="q")
    assert r.ok and r.reconnected and r.text == slow(["one", "two"])


def test_lane_names_of_interrupted_turns_count_toward_the_servers_limit() -> None:
    """Every interrupt moves the chain to a new lane name; the server counts all 32 a connection ever saw.

    0.1 forgot a drained abandoned name locally, so the 33rd name went to the same connection and the server
    answered ``websocket_stream_limit_reached``: the chain stayed broken until rotation. Now the pool rotates
    to a new connection before the limit.
    """
    with (
        Emulator(api_key=KEY).run_in_thread() as e,
        ResponsesSession(base_url=e.base_url, api_key=KEY, use_stream_lanes=True, pool_size=1) as s,
    ):
        assert s.respond("first").ok
        for i in range(33):
            h = s.start(f"abandon {i}\n!fault think seconds=0.15")
            while not isinstance(h.get(1.0), ServerEvent):  # response.created: the lane name was sent
                assert not h.done()
            assert h.cancel(wait=1.0)
            time.sleep(0.2)  # the abandoned response ends on the server: its lane drains
        r = s.respond("after many interrupts")
        handshakes = s.status()["handshakes"]
    assert r.ok, r.error
    assert r.text == reply_for(["first", "after many interrupts"])
    assert handshakes == 2  # rotated once, before the 33rd name


# --- an abandoned lane does not delay the chain's next turn: it moves on to a fresh lane -----------------


def test_lanes_move_on_after_an_abandon_and_forget_the_drained_lane() -> None:
    with (
        Emulator(api_key=KEY).run_in_thread() as e,
        new_session(e, KEY, use_stream_lanes=True) as s,
    ):
        assert s.respond("first").ok
        e.add_fault(Fault(kind="stall", after=6, seconds=2.0))  # the first delta comes before the stall
        h = s.start("abandoned")
        while not getattr(h.get(0.05), "delta", None):
            assert not h.done()
        assert h.cancel(wait=1.0)
        t0 = time.monotonic()
        r = s.respond("next")
        took = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while len(s.status()["connections"][0]["lanes"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        lanes = s.status()["connections"][0]["lanes"]
        streams = [f.get("stream_id") for c in e.connections for f in c.frames if isinstance(f, dict)]
    assert r.ok and r.text == reply_for(["first", "next"]) and took < 0.8
    assert streams[0] == streams[1] and streams[2] == f"{streams[0]}.1"
    # The abandoned lane is not reused, but its name still counts toward the server's 32 per connection.
    assert lanes == sorted({streams[0], streams[2]})
