"""Chains across transports, reconnects, interrupts and cache misses (against the emulator).

What the server is sent is part of the check: never history together with ``previous_response_id``, never the
assistant's own output again when chaining by id, a full transcript (once, with no id) when the cache that
holds the parent is gone, and no tool call chained without its output.
"""

from __future__ import annotations

import _thread
import functools
import threading
import time
from typing import Any

import pytest
from engine_helpers import collect, notice_kinds, session_fixture, wait_for
from engine_helpers import new_session as _new_session

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.events import Notice, ServerEvent

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


new_session = functools.partial(_new_session, key=KEY)
session = session_fixture(KEY)


def frames_since(emu: Emulator, since: int) -> list[dict[str, Any]]:
    """Every client frame / POST body the server received since log entry *since*, in log order."""
    return [f for c in emu.connections[since:] for f in c.frames if isinstance(f, dict)]


def all_frames(emu: Emulator) -> list[dict[str, Any]]:
    return frames_since(emu, 0)


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or () if isinstance(p, dict) and "text" in p)


def messages(items: list[dict[str, Any]], role: str) -> list[str]:
    """The texts of the *role* messages in a list of conversation items, in order."""
    return [
        text_of(it.get("content"))
        for it in items
        if it.get("type", "message") == "message" and it.get("role") == role
    ]


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


# --- §3.1 / rows 29, 30, 25: no duplicated context when chaining ------------------------------------------


def test_server_reconstructs_each_message_once_across_transport_switches(emu):
    """store=true, WS → SSE → WS → WS: the server-side conversation has every user message and every
    assistant answer exactly once, and no request carries history together with previous_response_id."""
    s = new_session(emu, store=True)
    since = len(emu.connections)
    try:
        prompts: list[str] = []
        answers: list[str] = []
        for i, transport in enumerate(["ws", "sse", "ws", "ws", "sse"]):
            prompts.append(f"question {i} over {transport}")
            r = s.respond(prompts[-1], transport=transport)
            assert r.ok and r.transport == transport, r.error
            assert r.text == reply_for(prompts)  # the answer quotes the conversation the server rebuilt
            answers.append(r.text)
        record = emu.store.get(r.response_id)
        assert record is not None
        assert messages(record.items, "user") == prompts
        assert messages(record.items, "assistant") == answers
        for frame in frames_since(emu, since):
            assert all(v is not None for v in frame.values()), frame  # no explicit nulls (row 25)
            if "previous_response_id" in frame:
                assert messages(frame["input"], "user") == [frame["input"][0]["content"][0]["text"]]
                assert messages(frame["input"], "assistant") == []  # never our own output again (§3.1)
    finally:
        s.close()


def test_store_false_resend_never_mixes_history_and_id(emu):
    """store=false, the socket lost between turns: the full transcript goes out once, without an id;
    every user message reaches the server exactly once per request."""
    s = new_session(emu, store=False)
    since = len(emu.connections)
    try:
        prompts = ["alpha", "beta"]
        for n in (1, 2):
            assert s.respond(prompts[n - 1]).text == reply_for(prompts[:n])
        emu.add_fault(Fault("drop", after=3))  # the chain's socket (and its cache) dies mid-turn
        assert s.respond("lost").status == "failed"
        prompts.append("gamma")
        r = s.respond("gamma")
        assert r.ok and r.resent_transcript and r.text == reply_for(prompts)
        prompts.append("delta")
        assert s.respond("delta").text == reply_for(prompts)  # back to by-id on the new socket
        frames = frames_since(emu, since)
        for frame in frames:
            users = messages(frame["input"], "user")
            assert len(users) == len(set(users)), frame  # no message twice in one request
            if "previous_response_id" in frame:
                assert len(frame["input"]) == 1
        resend = next(f for f in frames if messages(f["input"], "user")[-1:] == ["gamma"])
        assert "previous_response_id" not in resend
        assert messages(resend["input"], "user") == ["alpha", "beta", "gamma"]
        assert messages(resend["input"], "assistant") == [reply_for(["alpha"]), reply_for(["alpha", "beta"])]
    finally:
        s.close()
        emu.clear_faults()


# --- §3.2 + §3.7: under store=false an incomplete turn took the socket's cache slot -------------------------


def test_store_false_after_incomplete_resends_instead_of_a_doomed_by_id_request(emu):
    # The connection-local cache holds only the latest response (§1.7): after an incomplete turn on the
    # same socket, the chain's completed parent is no longer there, so a by-id request would get a 400.
    s = new_session(emu, store=False)
    try:
        assert s.respond("kept").ok
        cut = s.respond("cut", max_output_tokens=5)
        assert cut.status == "incomplete" and cut.connection_id
        h = s.start("continued")
        r, items = collect(h)
        assert r.ok and r.text == reply_for(["kept", "continued"])
        assert r.resent_transcript and notice_kinds(items).count("resend") == 1
        assert r.connection_id == cut.connection_id  # same socket, no reconnect needed
        log = next(c for c in emu.connections if c.transport == "ws" and cut.response_id in c.responses)
        last = log.frames[-1]
        assert "previous_response_id" not in last
        assert messages(last["input"], "user") == ["kept", "continued"]
        assert len(log.frames) == 3  # no 400 round trip before the resend
    finally:
        s.close()


# --- row 11 + §3.7: the one retry on a fresh socket also knows the old socket's cache is gone -------------


def test_store_false_retry_on_fresh_socket_resends_the_transcript(emu):
    s = new_session(emu, store=False)
    try:
        assert s.respond("one").ok
        emu.add_fault(Fault("drop", after=0))  # the idle socket dies when it is used
        h = s.start("two")
        r, items = collect(h)
        assert r.ok and r.retried and r.resent_transcript and r.text == reply_for(["one", "two"])
        assert notice_kinds(items).count("retry") == 1
        frame = emu.connections[-1].frames[-1]  # on the fresh socket: no by-id request that would 400
        assert "previous_response_id" not in frame and messages(frame["input"], "user") == ["one", "two"]
    finally:
        s.close()
        emu.clear_faults()


# --- §3.7: the resend after previous_response_not_found must not point at items of the forgotten response ----
# Once a bug (fixed in 4084bb5): with store=true, chain.output_to_input keeps reasoning items as item_reference
# ids; when the server answered previous_response_not_found it has lost those items too, yet the one-time full
# resend still carried the references, which the real API cannot resolve.


def test_resend_after_not_found_carries_no_references_to_forgotten_items(emu):
    s = new_session(emu, reasoning_effort="low")  # reasoning models emit a reasoning item every turn
    try:
        assert s.respond("one").ok
        with Emulator(api_key=KEY).run_in_thread() as forgetful:  # an empty store: the parent is gone
            s.configure(base_url=forgetful.base_url)
            r = s.respond("two")
            assert r.ok and r.resent_transcript and r.text == reply_for(["one", "two"])
            resend = forgetful.connections[-1].frames[-1]
            assert "previous_response_id" not in resend
            assert [it for it in resend["input"] if it.get("type") == "item_reference"] == []
    finally:
        s.close()


# --- row 33: chain only when every pending tool call has its output ---------------------------------------
# Once a bug (fixed in 4084bb5): a plain prompt after a turn that ended in a function_call was chained by
# previous_response_id without a function_call_output for the pending call (the real API answers 400 'No tool
# output found for function call'); Chain.plan did not track pending calls (livekit #5094).


def test_pending_tool_call_is_not_chained_without_its_output(session, emu):
    r = session.respond("please use get_weather for Paris", tools=[WEATHER])
    assert r.ok and [c["name"] for c in r.function_calls] == ["get_weather"]
    call_ids = {c["call_id"] for c in r.function_calls}
    since = len(emu.connections)
    session.respond("thanks, and tomorrow?")
    frame = (frames_since(emu, since) or [all_frames(emu)[-1]])[-1]
    outputs = {it.get("call_id") for it in frame["input"] if it.get("type") == "function_call_output"}
    assert frame.get("previous_response_id") != r.response_id or call_ids <= outputs


def test_a_prompt_after_an_unanswered_tool_call_resends_without_it(emu):
    with new_session(emu) as s:
        r = s.respond("please use get_weather for Paris", tools=[WEATHER])
        assert r.ok and [c["name"] for c in r.function_calls] == ["get_weather"]
        h = s.start("thanks, and tomorrow?")
        items = list(h.events())
        r2 = h.result(timeout=10)
        sent = all_frames(emu)[-1]
        r3 = s.respond("and the day after?")
        third = all_frames(emu)[-1]
    assert r2.ok and r2.resent_transcript
    assert "previous_response_id" not in sent
    assert [it for it in sent["input"] if it.get("type") == "function_call"] == []
    resend = [i for i in items if isinstance(i, Notice) and i.kind == "resend"]
    assert resend and "got no output" in resend[0].data["reason"]
    assert r3.ok and third.get("previous_response_id") == r2.response_id  # chaining by id resumes


# --- §3.1 (livekit #5136): a tool round trip never resends the assistant's own function_call -----------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_tool_round_trip_keeps_each_call_and_output_once_on_the_server(session, emu, transport):
    r1 = session.respond("please use get_weather for Rome", transport=transport, tools=[WEATHER])
    (call,) = r1.function_calls
    r2 = session.respond(
        "", transport=transport, tools=[WEATHER], tool_outputs={call["call_id"]: "rainy, 14 C"}
    )
    assert r2.ok and r2.text == reply_for(
        ["please use get_weather for Rome"], tool_results=[(call["call_id"], "rainy, 14 C")]
    )
    r3 = session.respond("and tomorrow?", transport=transport)
    assert r3.text == reply_for(["please use get_weather for Rome", "and tomorrow?"])
    items = emu.store.get(r3.response_id).items  # the conversation the server rebuilt (store=true)
    calls = [it for it in items if it.get("type") == "function_call"]
    outputs = [it for it in items if it.get("type") == "function_call_output"]
    assert [c["call_id"] for c in calls] == [call["call_id"]]
    assert [o["call_id"] for o in outputs] == [call["call_id"]]
    assert messages(items, "user") == ["please use get_weather for Rome", "and tomorrow?"]
    for frame in all_frames(emu)[-2:]:  # the by-id turns carry only new items
        assert frame["previous_response_id"]
        assert not [it for it in frame["input"] if it.get("type") == "function_call"]
