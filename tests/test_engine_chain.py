"""Chains across transports, reconnects, interrupts and cache misses (against the emulator)."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.events import Notice, ServerEvent
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-engine-chain-0123456789"
WORDS = 80


def slow(msgs):
    return reply_for(msgs, words=WORDS)


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


@pytest.fixture(scope="module")
def slow_emu():
    with Emulator(api_key=KEY, token_rate=300.0, answer_words=WORDS).run_in_thread() as e:
        yield e


def new_session(emu, **kw):
    return ResponsesSession(base_url=emu.base_url, api_key=KEY, model="gpt-test", **kw)


def wait_for(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


@pytest.mark.parametrize("store", [True, False])
def test_transport_switch_mid_chain(emu, store):
    s = new_session(emu, store=store)
    try:
        seen = []
        s.on_transport_change(seen.append)
        prompts = []
        plan = ["ws", "sse", "sse", "ws", "ws"]
        for i, transport in enumerate(plan):
            s.transport = transport
            prompts.append(f"step {i} over {transport}")
            since = len(emu.connections)
            r = s.respond(prompts[-1])
            assert r.transport == transport and r.text == reply_for(prompts)
            frame = emu.connections[since].frames[-1] if len(emu.connections) > since else None
            if frame is None:  # reused WS connection: its log is an older entry
                frame = next(c for c in reversed(emu.connections) if c.transport == "ws").frames[-1]
            by_id = "previous_response_id" in frame
            if i == 0:
                assert not by_id
            elif store:
                assert by_id and len(frame["input"]) == 1  # one shared store: by id on any transport
            else:
                # store=false: SSE has no cache; WS right after SSE neither; WS after WS on the same socket does
                expect_by_id = transport == "ws" and plan[i - 1] == "ws"
                assert by_id == expect_by_id, (i, frame)
                assert r.resent_transcript == (not expect_by_id)
                if not by_id:
                    assert len(frame["input"]) == 2 * i + 1
        assert seen == ["sse", "ws"]
    finally:
        s.close()


def test_store_false_recovery_after_socket_closed(emu):
    s = new_session(emu, store=False)
    try:
        s.respond("one")
        s.respond("two")
        emu.add_fault(Fault("close", after=4, code=1001))  # the socket (and its cache) goes away mid-turn
        assert s.respond("lost").status == "failed"
        since = len(emu.connections)
        h = s.start("three")
        items = list(h.events())
        r = h.result(timeout=5)
        assert r.text == reply_for(["one", "two", "three"])
        assert r.resent_transcript
        assert [i.data["reason"] for i in items if isinstance(i, Notice) and i.kind == "resend"]
        frame = emu.connections[since].frames[0]
        assert "previous_response_id" not in frame and len(frame["input"]) == 5
        # and on the new socket the chain goes back to by-id continuation
        assert s.respond("four").text == reply_for(["one", "two", "three", "four"])
        assert emu.connections[since].frames[-1]["previous_response_id"] == r.response_id
    finally:
        s.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_previous_response_not_found_resends_once(emu, transport):
    # The server forgot the chain (here: a different server with an empty store). The engine resends
    # the full transcript once, visibly, and the answer still proves the history.
    s = new_session(emu, transport=transport)
    try:
        s.respond("remember me")
        with Emulator(api_key=KEY).run_in_thread() as other:
            s.configure(base_url=other.base_url)
            h = s.start("do you?")
            items = list(h.events())
            r = h.result(timeout=5)
            assert r.ok and r.resent_transcript and r.text == reply_for(["remember me", "do you?"])
            kinds = [i.kind for i in items if isinstance(i, Notice)]
            assert kinds.count("resend") == 1
            frames = [f for c in other.connections for f in c.frames]
            assert [("previous_response_id" in f) for f in frames] == [True, False]
            assert len(frames[1]["input"]) == 3
            assert s.respond("and now?").text == reply_for(["remember me", "do you?", "and now?"])
    finally:
        s.close()


def test_affinity_steal_under_store_false(emu):
    # One connection, two chains: the second chain takes the socket over, so the first chain's parent
    # is no longer that connection's cached response -> full transcript, not a doomed by-id request.
    s = new_session(emu, store=False, pool_size=1)
    try:
        since = len(emu.connections)
        s.respond("a1", chain="A")
        s.respond("b1", chain="B")
        r = s.respond("a2", chain="A")
        assert r.text == reply_for(["a1", "a2"]) and r.resent_transcript
        r = s.respond("a3", chain="A")  # now A owns the socket again: by id
        assert r.text == reply_for(["a1", "a2", "a3"]) and not r.resent_transcript
        logs = [c for c in emu.connections[since:] if c.transport == "ws"]
        assert len(logs) == 1
        assert ["previous_response_id" in f for f in logs[0].frames] == [False, False, False, True]
    finally:
        s.close()


def test_cancel_mid_stream_then_exact_next_turn(slow_emu):
    s = new_session(slow_emu)
    try:
        s.respond("before")
        since = len(slow_emu.connections)
        h = s.start("interrupted")
        deltas = 0
        while deltas < 5:
            item = h.get(timeout=5)
            assert item is not None
            deltas += isinstance(item, ServerEvent) and item.type == "response.output_text.delta"
        assert h.cancel(wait=1.0) is True  # the loop side confirmed within a second
        r = h.result(timeout=1)
        assert r.status == "cancelled" and r.text and slow(["before", "interrupted"]).startswith(r.text)
        assert r.error is None
        assert s.chain().turns == 1  # the cancelled turn is not the base of the next one
        r2 = s.respond("after")
        assert r2.text == slow(["before", "after"])  # exact: no stale frames from the cancelled response
        # the interrupted socket was closed (normally), not reused; the next turn used a new one
        ws = [c for c in slow_emu.connections if c.transport == "ws"]
        # aiohttp's close handshake may take seconds on a loaded machine (its own close timeout is 10 s)
        assert wait_for(lambda: ws[-2].close_code == 1000, timeout=10.0), ws[-2].close_code
        assert len([c for c in slow_emu.connections[since:] if c.transport == "ws"]) == 1
    finally:
        s.close()


def test_keyboard_interrupt_in_respond_cancels_and_reraises(slow_emu):
    s = new_session(slow_emu)
    try:
        timer = threading.Timer(0.15, _thread.interrupt_main)
        timer.start()
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            s.respond("long answer")
        assert time.perf_counter() - t0 < 1.5
        assert s.status()["in_flight"] == 0 and s.chain().turns == 0
        assert s.respond("next").text == slow(["next"])
    finally:
        s.close()


def test_stop_all_cancels_every_turn(slow_emu):
    s = new_session(slow_emu)
    try:
        handles = [s.start(f"bg {i}", chain=f"bg{i}") for i in range(3)]
        assert handles[0].get(timeout=5) is not None
        assert s.stop_all() == 3
        assert all(h.done() and h.result().status in ("cancelled", "completed") for h in handles)
        assert any(h.result().status == "cancelled" for h in handles)
    finally:
        s.close()


def test_incomplete_turn_does_not_advance_chain(emu):
    s = new_session(emu)
    try:
        s.respond("first")
        r = s.respond("cut short", max_output_tokens=5)
        assert r.status == "incomplete" and r.incomplete_reason == "max_output_tokens" and r.error is None
        assert s.chain().turns == 1
        assert s.respond("second").text == reply_for(["first", "second"])
    finally:
        s.close()


def test_warmup_generate_false_then_turn_reuses_socket(emu):
    s = new_session(emu)
    try:
        since = len(emu.connections)
        rid = s.warmup()
        assert rid and rid.startswith("resp_")
        r = s.respond("warm")
        assert r.text == reply_for(["warm"])
        logs = [c for c in emu.connections[since:] if c.transport == "ws"]
        assert len(logs) == 1
        assert logs[0].frames[0]["generate"] is False and "generate" not in logs[0].frames[1]
    finally:
        s.close()


def test_sse_never_sends_ws_only_fields(emu):
    s = new_session(emu, transport="sse")
    try:
        since = len(emu.connections)
        s.respond("plain http")
        (body,) = emu.connections[since].frames
        assert (
            body["stream"] is True
            and "generate" not in body
            and "stream_id" not in body
            and "type" not in body
        )
    finally:
        s.close()


def test_cancel_right_after_start_and_while_queued(slow_emu):
    s = new_session(slow_emu)
    try:
        for _ in range(5):  # cancelled before its task ever ran: still ends, as "cancelled"
            h = s.start("never mind")
            assert h.cancel(wait=1.0)
            assert h.result(timeout=1).status in ("cancelled", "completed")
        running = s.start("first")
        queued = s.start("second")  # waits for the chain lock behind "first"
        assert queued.cancel(wait=1.0) and queued.result().status == "cancelled"
        assert running.result(timeout=10).text == slow(["first"])
        assert s.status()["in_flight"] == 0
        assert s.respond("third").text == slow(["first", "third"])
    finally:
        s.close()


def test_warmup_setting_connects_at_construction(emu):
    since = len(emu.connections)
    s = new_session(emu, warmup=True)
    try:
        assert wait_for(lambda: any(c.transport == "ws" and c.frames for c in emu.connections[since:]))
        r = s.respond("after warm-up")
        assert r.text == reply_for(["after warm-up"])
        assert len([c for c in emu.connections[since:] if c.transport == "ws"]) == 1
    finally:
        s.close()


def test_reset_during_a_running_turn_keeps_the_new_conversation_clean(slow_emu):
    s = new_session(slow_emu)
    try:
        s.respond("old conversation")
        h = s.start("still running")
        assert h.get(timeout=5) is not None
        s.reset()
        assert h.result(timeout=10).ok  # the running turn finishes and shows its answer...
        assert s.chain().turns == 0  # ...but does not leak into the conversation started by reset()
        assert s.respond("fresh").text == slow(["fresh"])
    finally:
        s.close()


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.mark.parametrize(("transport", "store"), [("ws", True), ("ws", False), ("sse", False)])
def test_function_call_round_trip(emu, transport, store):
    s = new_session(emu, transport=transport, store=store)
    try:
        seen = []
        r = s.respond(
            "please use get_weather for Paris", tools=[WEATHER], on_event=lambda e: seen.append(e.type)
        )
        assert r.ok and r.text == "" and len(r.function_calls) == 1
        call = r.function_calls[0]
        assert call["name"] == "get_weather" and "response.function_call_arguments.delta" in seen
        r2 = s.respond("", tool_outputs={call["call_id"]: "sunny, 21 C"}, tools=[WEATHER])
        assert r2.ok and r2.text == reply_for(
            ["please use get_weather for Paris"], tool_results=[(call["call_id"], "sunny, 21 C")]
        )
        r3 = s.respond("thanks")
        # a full resend carries the tool output as "new" input again, and the emulator's model quotes it
        again = [(call["call_id"], "sunny, 21 C")] if r3.resent_transcript else []
        assert r3.resent_transcript == (transport == "sse")
        assert r3.text == reply_for(["please use get_weather for Paris", "thanks"], tool_results=again)
    finally:
        s.close()


def test_empty_turn_is_refused(emu):
    s = new_session(emu)
    try:
        with pytest.raises(Exception, match="Nothing to send"):
            s.start("")
        assert s.status()["in_flight"] == 0
    finally:
        s.close()


@pytest.mark.parametrize(("transport", "store"), [("ws", False), ("sse", False), ("sse", True)])
def test_reasoning_summary_and_chain_with_reasoning_items(emu, transport, store):
    from ipy_responses_ws.emulator.model import reasoning_summary_for

    s = new_session(emu, transport=transport, store=store, reasoning_summary="auto", reasoning_effort="low")
    try:
        r = s.respond("think first")
        assert r.ok and r.reasoning_summary == reasoning_summary_for(["think first"])
        assert r.text == reply_for(["think first"])
        # the reasoning item has no encrypted content: dropped under store=false, a reference otherwise
        kinds = [i["type"] for i in s.chain().transcript]
        assert kinds == (["message", "item_reference", "message"] if store else ["message", "message"])
        r2 = s.respond("then answer")
        assert r2.ok and r2.text == reply_for(["think first", "then answer"])
        assert r2.usage["output_tokens_details"]["reasoning_tokens"] > 0
    finally:
        s.close()


@pytest.mark.parametrize("store", [True, False])
def test_cancel_mid_stream_over_sse(slow_emu, store):
    s = new_session(slow_emu, transport="sse", store=store)
    try:
        s.respond("before")
        h = s.start("interrupted")
        while True:
            item = h.get(timeout=5)
            assert item is not None
            if isinstance(item, ServerEvent) and item.type == "response.output_text.delta":
                break
        assert h.cancel(wait=1.0) and h.result().status == "cancelled"
        r = s.respond("after")
        assert r.text == slow(["before", "after"])
        assert r.resent_transcript == (not store)
    finally:
        s.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_refusal_is_the_visible_answer(emu, transport):
    from ipy_responses_ws.emulator.model import refusal_for

    s = new_session(emu, transport=transport)
    try:
        r = s.respond("!refuse\nsomething dubious")
        assert r.ok and r.text == refusal_for(["!refuse\nsomething dubious"]) and r.text
        # the refusal is history too: the next answer counts it as turn 1
        assert s.respond("ok then").text == reply_for(["something dubious", "ok then"])
    finally:
        s.close()
