"""Regression tests for the engine bug fixes (the bug-fixer's own checks, next to the owners' xfail tests).

Each test names the behaviour a user would notice: the key stays out of traceback locals, a background turn
does not hoard its events, a tool call left unanswered does not poison the next turn, two message items read
as two paragraphs, stopping from a callback does not freeze the loop, a 426 belongs to its server, a lane
abandoned by a cancel does not delay the chain's next turn.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from ipy_responses_ws.chain import Chain, output_text, user_message
from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import AuthenticationError, ConnectError, strip_tracebacks
from ipy_responses_ws.events import Notice
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-fixes-0123456789abcdef"
WRONG = "sk-test-FAKE-fixes-WRONG-9876543210"

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


def _session(emu: Emulator, **kw: Any) -> ResponsesSession:
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("first_event_timeout", 5.0)
    kw.setdefault("idle_timeout", 5.0)
    return ResponsesSession(base_url=emu.base_url, api_key=KEY, model="gpt-test", **kw)


def _frames(emu: Emulator) -> list[dict[str, Any]]:
    return [f for c in emu.connections for f in c.frames if isinstance(f, dict)]


# --- 1. no key in the frames of a stored error -----------------------------------------------------------


def test_strip_tracebacks_clears_the_whole_chain() -> None:
    def leaky() -> None:
        headers = {"Authorization": f"Bearer {KEY}"}  # noqa: F841 - the local a verbose traceback would print
        raise ConnectionError("refused")

    try:
        try:
            leaky()
        except ConnectionError as inner:
            raise ConnectError("Could not connect.", url="http://127.0.0.1:9") from inner
    except ConnectError as exc:
        err = exc
    assert err.__cause__ is not None and err.__cause__.__traceback__ is not None  # the leak being guarded
    assert strip_tracebacks(err) is err
    assert err.__traceback__ is None and err.__cause__.__traceback__ is None
    shown = "".join(traceback.TracebackException.from_exception(err, capture_locals=True).format())
    assert "refused" in shown and "Could not connect." in shown  # the story stays readable
    assert KEY not in shown


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_rejected_key_leaves_no_frames_to_inspect(emu: Emulator, transport: str) -> None:
    with ResponsesSession(base_url=emu.base_url, api_key=WRONG, transport=transport) as s:
        r = s.respond("who am I")
    assert isinstance(r.error, AuthenticationError)
    chain: list[BaseException] = []
    exc: BaseException | None = r.error
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert all(e.__traceback__ is None for e in chain)
    shown = "".join(traceback.TracebackException.from_exception(r.error, capture_locals=True).format())
    assert WRONG not in shown and "OPENAI_API_KEY" in shown


# --- 2. a turn with on_event does not queue its events for nobody ---------------------------------------


def test_on_event_turns_feed_the_callback_only_and_polled_turns_still_queue(emu: Emulator) -> None:
    with _session(emu) as s:
        seen: list[Any] = []
        h = s.start("background", on_event=seen.append)
        r = h.result(timeout=10)
        assert r.ok and any(getattr(i, "type", "") == "response.completed" for i in seen)
        assert h.get(timeout=0) is None  # nothing was queued: only the end marker
        assert h._queue.qsize() == 0

        polled = s.start("foreground")
        items = list(polled.events())
        assert polled.result(timeout=10).ok
        assert [i.type for i in items if not isinstance(i, Notice)][-1] == "response.completed"


# --- 3. a function call left unanswered ---------------------------------------------------------------


def _call_response(rid: str, call_id: str) -> dict[str, Any]:
    return {
        "id": rid,
        "status": "completed",
        "store": True,
        "output": [
            {"id": "rs_1", "type": "reasoning", "summary": []},
            {"id": "fc_1", "type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"},
        ],
    }


def test_chain_plan_leaves_unanswered_calls_out_and_chains_answered_ones() -> None:
    c = Chain()
    first = [user_message("use f")]
    c.commit(
        c.plan(first, transport="ws", store=True, same_connection=True), first, _call_response("r1", "c1")
    )
    assert c.pending_calls == ["c1"]

    answered = [{"type": "function_call_output", "call_id": "c1", "output": "42"}]
    by_id = c.plan(answered, transport="ws", store=True, same_connection=True)
    assert by_id.previous_response_id == "r1" and by_id.input == answered and not by_id.full_resend

    moved_on = [user_message("never mind")]
    plan = c.plan(moved_on, transport="ws", store=True, same_connection=True)
    assert plan.previous_response_id is None and plan.full_resend and "c1" in (plan.reason or "")
    types = [it["type"] for it in plan.input]
    assert "function_call" not in types and "item_reference" not in types  # the call and its reasoning
    assert plan.input[0] == first[0] and plan.input[-1] == moved_on[0]

    done = {"id": "r2", "status": "completed", "store": True, "output": [_message("ok")]}
    c.commit(plan, moved_on, done)
    assert c.pending_calls == []
    assert all(it.get("type") != "function_call" for it in c.transcript)  # no orphan left for later resends
    nxt = c.plan([user_message("and now")], transport="ws", store=True, same_connection=True)
    assert nxt.previous_response_id == "r2"


def test_a_prompt_after_an_unanswered_tool_call_resends_without_it(emu: Emulator) -> None:
    with _session(emu) as s:
        r = s.respond("please use get_weather for Paris", tools=[WEATHER])
        assert r.ok and [c["name"] for c in r.function_calls] == ["get_weather"]
        h = s.start("thanks, and tomorrow?")
        items = list(h.events())
        r2 = h.result(timeout=10)
        sent = _frames(emu)[-1]
        r3 = s.respond("and the day after?")
        third = _frames(emu)[-1]
    assert r2.ok and r2.resent_transcript
    assert "previous_response_id" not in sent
    assert [it for it in sent["input"] if it.get("type") == "function_call"] == []
    resend = [i for i in items if isinstance(i, Notice) and i.kind == "resend"]
    assert resend and "got no output" in resend[0].data["reason"]
    assert r3.ok and third.get("previous_response_id") == r2.response_id  # chaining by id resumes


# --- 4. several message items --------------------------------------------------------------------------


def _message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}


def test_output_text_separates_message_items_like_the_live_view() -> None:
    assert output_text({"output": [_message("One."), _message("Two.")]}) == "One.\n\nTwo."
    assert output_text({"output": [_message("One.\n"), _message("Two.")]}) == "One.\n\nTwo."
    assert output_text({"output": [_message("One.\n\n"), _message("Two.")]}) == "One.\n\nTwo."
    assert output_text({"output": [_message(""), _message("Two.")]}) == "Two."


def test_an_unfinished_turn_keeps_its_message_items_apart(emu: Emulator) -> None:
    base = {"id": "resp_fix_two_msgs", "object": "response", "status": "in_progress", "output": []}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": base}]
    for i, text in enumerate(("First.", "Second.")):
        item = {
            "id": f"msg_{i}",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        events += [
            {"type": "response.output_item.added", "output_index": i, "item": item},
            {"type": "response.output_text.delta", "item_id": item["id"], "output_index": i, "delta": text},
        ]
    details = {"reason": "max_output_tokens"}
    events.append(
        {
            "type": "response.incomplete",
            "response": dict(base, status="incomplete", incomplete_details=details),
        }
    )
    events = [dict(e, sequence_number=n) for n, e in enumerate(events)]
    emu.add_script(events, transport="ws")
    with _session(emu) as s:
        r = s.respond("two messages, cut short")
    assert r.status == "incomplete" and r.text == "First.\n\nSecond."


# --- 6. stop from the loop thread -----------------------------------------------------------------------


def test_cancel_from_a_callback_returns_at_once() -> None:
    slow_emu = Emulator(api_key=KEY, token_rate=300.0, answer_words=80)
    with slow_emu.run_in_thread() as slow, _session(slow) as s:
        took: list[float] = []
        box: dict[str, Any] = {}
        ready = threading.Event()

        def on_event(item: Any) -> None:
            ready.wait(5)
            if getattr(item, "delta", None) and not took:
                t0 = time.perf_counter()
                box["confirmed"] = box["h"].cancel(wait=5.0)
                took.append(time.perf_counter() - t0)

        box["h"] = s.start("stop me", on_event=on_event)
        ready.set()
        r = box["h"].result(timeout=10)
    assert r.status == "cancelled" and took[0] < 0.25 and box["confirmed"] is False


# --- 7. the remembered 426 belongs to its WS URL -------------------------------------------------------


def test_a_426_is_still_remembered_for_the_same_server(emu: Emulator) -> None:
    with _session(emu) as s:
        emu.add_fault(Fault("refuse_upgrade", status=426))
        try:
            assert s.respond("behind a proxy").transport == "sse"
            r = s.respond("still behind it")
            blocked = s.status()["ws_blocked_for"]
            with Emulator(api_key=KEY).run_in_thread() as other:
                s.configure(base_url=other.base_url)
                other_blocked = s.status()["ws_blocked_for"]
        finally:
            emu.clear_faults()
    assert r.transport == "sse" and "remembered" in (r.fallback_reason or "")
    assert blocked and blocked > 500 and other_blocked is None


# --- 5. lanes: a fresh lane after an abandon -------------------------------------------------------------


def test_lanes_move_on_after_an_abandon_and_forget_the_drained_lane() -> None:
    with Emulator(api_key=KEY).run_in_thread() as e, _session(e, use_stream_lanes=True) as s:
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
        streams = [f.get("stream_id") for f in _frames(e)]
    assert r.ok and r.text == reply_for(["first", "next"]) and took < 0.8
    assert streams[0] == streams[1] and streams[2] == f"{streams[0]}.1"
    # The abandoned lane is not reused, but its name still counts toward the server's 32 per connection.
    assert lanes == sorted({streams[0], streams[2]})


# --- a 1009 close tells the user what to do (docs/reliability.md §6 weak spot) ---------------------------


def test_an_oversized_request_says_it_is_too_big_not_check_the_network() -> None:
    with Emulator(KEY, max_frame_size=100_000).run_in_thread() as small, _session(small) as s:
        r = s.respond("y" * 200_000)
    assert getattr(r.error, "code", None) == 1009
    assert "too big" in str(r.error) and "Check the network" not in str(r.error)


# --- a request-level error leaves a clean socket (docs/reliability.md §6 weak spot) ----------------------


def test_the_resend_after_not_found_reuses_the_clean_socket(emu: Emulator) -> None:
    with _session(emu) as s:
        assert s.respond("remember me").ok
        with Emulator(api_key=KEY).run_in_thread() as forgetful:
            s.configure(base_url=forgetful.base_url)
            r = s.respond("do you?")
            ws_logs = [c for c in forgetful.connections if c.transport == "ws"]
    assert r.ok and r.resent_transcript and r.text == reply_for(["remember me", "do you?"])
    assert len(ws_logs) == 1  # the not-found error and the resend share one handshake
    assert [("previous_response_id" in f) for f in ws_logs[0].frames] == [True, False]


# --- flipping the transport to WS warms a socket up when warmup is on (docs/parity.md §3 "partial") -------


def test_switching_to_websocket_warms_up_when_asked(emu: Emulator) -> None:
    since = len(emu.connections)
    with _session(emu, transport="sse", warmup=True) as s:
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
        with _session(e, warmup=True) as s:
            r = s.respond("right away")
        ws_logs = [c for c in e.connections if c.transport == "ws"]
    assert r.ok and r.text == reply_for(["right away"])
    assert len(ws_logs) == 1 and len(ws_logs[0].frames) == 2  # the warm-up create, then this turn
    assert ws_logs[0].frames[0].get("generate") is False
