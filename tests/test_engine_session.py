"""ResponsesSession against the emulator on loopback: order, chains, reuse, parallel turns, cleanup, and what
it does at the edges: no socket before the first turn, the headers of every dial, the DEBUG log.

Expected answers come from ``reply_for`` (the emulator's deterministic model), so a right answer proves
the chain carried the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time

import pytest
from engine_helpers import wait_for

from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.events import Notice, ServerEvent
from ipy_responses_ws.runtime import THREAD_NAME, get_runtime
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-engine-session-0123456789"

TEXT_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
TAIL_ORDER = [
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


SLOW_WORDS = 60


def slow_reply(msgs):
    return reply_for(msgs, words=SLOW_WORDS)


@pytest.fixture(scope="module")
def slow_emu():
    # ~100 deltas at 400/s: a turn takes about 0.3 s, long enough to overlap or interrupt.
    with Emulator(api_key=KEY, token_rate=400.0, answer_words=SLOW_WORDS).run_in_thread() as e:
        yield e


def make_session(emu, **kw):
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("first_event_timeout", 10.0)
    kw.setdefault("idle_timeout", 10.0)
    return ResponsesSession(base_url=emu.base_url, api_key=KEY, model="gpt-test", **kw)


@pytest.fixture
def session(emu):
    emu.clear_faults()
    s = make_session(emu)
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


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_event_order_and_sequence_numbers(session, transport):
    handle = session.start("Say hello", transport=transport)
    items = list(handle.events())
    result = handle.result(timeout=5)
    notices = [i for i in items if isinstance(i, Notice)]
    events = [i for i in items if isinstance(i, ServerEvent)]
    assert [n.kind for n in notices] == ["connecting", "connected"]
    assert notices[1].data["transport"] == transport
    types = [e.type for e in events]
    assert types[:4] == TEXT_ORDER and types[-4:] == TAIL_ORDER
    assert set(types[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.delta) == result.text == reply_for(["Say hello"])
    assert result.status == "completed" and result.transport == transport and result.error is None
    assert result.usage["output_tokens"] > 0 and result.ttft is not None and result.ttft <= result.elapsed
    assert handle.get(timeout=0.01) is None  # drained: None for ever after


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("store", [True, False])
def test_n_turn_chain_answers_prove_history(emu, transport, store):
    s = make_session(emu, transport=transport, store=store)
    try:
        prompts = [
            f"message number {i} about {w}" for i, w in enumerate(["cats", "dogs", "owls", "eels", "bees"])
        ]
        for n in range(1, len(prompts) + 1):
            r = s.respond(prompts[n - 1])
            assert r.error is None, r.error
            assert r.text == reply_for(prompts[:n])
            assert r.turn == n and r.transport == transport
        # over WS the chain stays on its connection and chains by id even with store=false;
        # over SSE with store=false it must resend the transcript every turn
        assert s.chain().turns == 5
        frames = [f for c in emu.connections[-5:] for f in c.frames] if transport == "sse" else None
        if frames is not None:
            sent_ids = [f.get("previous_response_id") for f in frames]
            assert all(sent_ids[1:]) if store else not any(sent_ids)
    finally:
        s.close()


def test_one_socket_reused_across_turns(session, emu):
    since = len(emu.connections)
    texts = [session.respond(f"turn {i}").text for i in range(4)]
    assert texts[-1] == reply_for([f"turn {i}" for i in range(4)])
    logs = ws_logs(emu, since)
    assert len(logs) == 1, "one handshake for four turns"
    frames = logs[0].frames
    assert len(frames) == 4 and frames[0].get("previous_response_id") is None
    # by id after the first turn, never history together with the id
    for f in frames[1:]:
        assert f["previous_response_id"] and len(f["input"]) == 1 and "stream" not in f
    assert session.status()["connections"][0]["turns"] == 4


def test_parallel_turns_on_different_chains(slow_emu):
    since = len(slow_emu.connections)
    s = make_session(slow_emu)
    try:
        first = {c: s.respond(f"hello from {c}", chain=c) for c in "abc"}
        assert all(r.ok for r in first.values())
        for_chain, overlapped = overlap_recorder()
        handles = {c: s.start(f"second for {c}", chain=c, on_event=for_chain(c)) for c in "abc"}
        results = {c: h.result(timeout=20) for c, h in handles.items()}
        assert overlapped()
        for c, r in results.items():
            assert r.text == slow_reply([f"hello from {c}", f"second for {c}"]), c
        # each chain got its own connection back (affinity), so no more handshakes than chains
        assert len(ws_logs(slow_emu, since)) == 3
        conns = {r.connection_id for r in results.values()}
        assert len(conns) == 3
        assert {first[c].connection_id for c in "abc"} == conns
    finally:
        s.close()


def test_pool_is_bounded_and_excess_turns_wait(slow_emu):
    since = len(slow_emu.connections)
    s = make_session(slow_emu, pool_size=2)
    try:
        handles = [s.start(f"p{i}", chain=f"c{i}") for i in range(4)]
        results = [h.result(timeout=30) for h in handles]
        assert [r.text for r in results] == [slow_reply([f"p{i}"]) for i in range(4)]
        assert len(ws_logs(slow_emu, since)) == 2
    finally:
        s.close()


def test_same_chain_turns_are_serialized(slow_emu):
    s = make_session(slow_emu)
    try:
        h1 = s.start("one")
        h2 = s.start("two")  # queued behind "one" by the chain lock: must see "one" as history
        assert h1.result(timeout=20).text == slow_reply(["one"])
        assert h2.result(timeout=20).text == slow_reply(["one", "two"])
    finally:
        s.close()


def test_named_chains_and_reset(session):
    session.respond("alpha 1", chain="alpha")
    session.respond("beta 1", chain="beta")
    assert session.respond("alpha 2", chain="alpha").text == reply_for(["alpha 1", "alpha 2"])
    session.reset("alpha")
    assert session.respond("alpha fresh", chain="alpha").text == reply_for(["alpha fresh"])
    assert session.respond("beta 2", chain="beta").text == reply_for(["beta 1", "beta 2"])
    assert session.respond("new conv", chain="beta", new=True).text == reply_for(["new conv"])
    assert set(session.chains) >= {"alpha", "beta"}
    assert session.chain("alpha").history()[0] == ("user", "alpha fresh")


async def test_arespond_from_another_loop(session):
    r = await session.arespond("async hello")
    assert r.text == reply_for(["async hello"])
    r2 = await asyncio.wait_for(session.arespond("async again"), 10)
    assert r2.text == reply_for(["async hello", "async again"])


def test_on_event_runs_on_loop_thread_and_done_callback(session):
    threads = set()
    seen = []
    done = threading.Event()
    h = session.start(
        "callbacks", on_event=lambda ev: (threads.add(threading.current_thread().name), seen.append(ev.type))
    )
    h.add_done_callback(lambda r: done.set())
    r = h.result(timeout=5)
    assert done.wait(2)
    assert threads == {THREAD_NAME}
    assert seen[-1] == "response.completed" and r.ok


def test_close_leaves_no_sockets_tasks_or_threads(emu, slow_emu):
    rt = get_runtime()
    since = len(emu.connections)
    threads_before = threading.active_count()
    s = make_session(emu)
    handles = [s.start(f"x{i}", chain=f"k{i}") for i in range(3)]
    assert all(h.result(timeout=10).ok for h in handles)
    s.respond("over sse", transport="sse")
    s.close()
    s.close()  # idempotent

    async def pending():
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert rt.run(pending(), timeout=5) == []
    logs = ws_logs(emu, since)
    assert len(logs) == 3
    # the emulator saw every socket closed by the client with code 1000
    for _ in range(50):
        if all(c.close_code == 1000 for c in logs):
            break
        threading.Event().wait(0.05)
    assert [c.close_code for c in logs] == [1000, 1000, 1000]
    assert threading.active_count() == threads_before
    assert [t.name for t in threading.enumerate()].count(THREAD_NAME) == 1
    assert s.status()["connections"] == []
    with pytest.raises(Exception, match="closed"):
        s.start("after close")


def test_client_sockets_released_after_close(emu):
    def sockets():
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        return n

    before = sockets()
    s = make_session(emu)
    for i in range(3):
        s.respond(f"sock {i}", chain=f"s{i}")
    assert sockets() > before
    s.close()
    for _ in range(50):
        if sockets() <= before:
            break
        threading.Event().wait(0.05)
    assert sockets() <= before


def test_respond_from_the_loop_thread_is_refused_not_deadlocked(session):
    errors = []

    def on_event(ev):
        if getattr(ev, "type", "") == "response.completed":
            try:
                session.respond("nested")
            except RuntimeError as exc:
                errors.append(str(exc))

    r = session.start("outer", on_event=on_event).result(timeout=5)
    assert r.ok and errors and "start()" in errors[0]


# --- row 6: lazy connect -----------------------------------------------------------------------------------


def test_no_socket_until_the_first_turn(emu):
    since = len(emu.connections)
    s = make_session(emu)
    try:
        time.sleep(0.2)
        assert emu.connections[since:] == [] and s.status()["connections"] == []
        assert s.status()["handshakes"] == 0
        assert s.respond("first").ok
        assert [c.transport for c in emu.connections[since:]] == ["ws"]
    finally:
        s.close()


# --- rows 19, 21: handshake headers are built per dial, custom and org/project headers included ----------


def test_custom_org_project_headers_reach_both_transports(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with Emulator().run_in_thread() as emu:  # accepts any key: we rotate it below
        s = ResponsesSession(
            base_url=emu.base_url,
            organization="org-parity",
            project="proj-parity",
            extra_headers={"X-Gateway-Route": "notebooks"},
        )
        try:
            assert s.respond("ws turn").ok
            assert s.respond("sse turn", transport="sse").ok
            for log in emu.connections:
                assert log.headers.get("OpenAI-Organization") == "org-parity"
                assert log.headers.get("OpenAI-Project") == "proj-parity"
                assert log.headers.get("X-Gateway-Route") == "notebooks"
                assert log.headers["Authorization"].endswith(KEY[-4:])
            # a key rotated in the environment is used on the next dial (never the pooled socket)
            rotated = "sk-test-FAKE-rotated-key-999999999wxyz"
            monkeypatch.setenv("OPENAI_API_KEY", rotated)
            r = s.respond("after rotation")
            assert r.ok and r.text == reply_for(["ws turn", "sse turn", "after rotation"])
            dials = [c for c in emu.connections if c.transport == "ws"]
            assert len(dials) == 2 and dials[-1].headers["Authorization"].endswith("wxyz")
            assert wait_for(lambda: dials[0].close_code == 1000)  # the old key's socket was retired
        finally:
            s.close()


# --- row 52: debug logging of the handshake, never the key --------------------------------------------------


def test_debug_log_names_the_endpoint_and_never_the_key(session, emu, caplog):
    with caplog.at_level("DEBUG", logger="ipy_responses_ws"):
        assert session.respond("log me").ok
        session.close()
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert emu.ws_url in text  # the handshake target is visible at DEBUG
    assert "turn default#1 completed via ws" in text  # and one summary line per turn
    assert reply_for(["log me"])[:40] not in text  # never the answer itself
    assert KEY not in text and KEY[-12:] not in text
