"""What a ``TurnResult`` holds: the answer text, which transport served the turn, and what came with it.

The final text comes from the completed response even without deltas; several message items read as
paragraphs, as in the live view; a refusal is the answer; reasoning summaries and tool-call arguments are
collected; the transport, fallback, reconnect and connection are named, also for a turn that failed
mid-stream. Against the emulator on loopback, through the public ``ResponsesSession`` API.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from engine_helpers import collect, notice_kinds, scripted_no_delta_answer, session_fixture
from engine_helpers import new_session as _new_session

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.events import Notice, ServerEvent
from ipy_responses_ws.render import footer_text

KEY = "sk-test-FAKE-turn-results-0123456789"

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


new_session = functools.partial(_new_session, key=KEY)
session = session_fixture(KEY)


# --- row 38: the final text comes from the completed response when no deltas came -----------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_final_text_from_completed_response_without_deltas(session, emu, transport):
    rid = f"resp_nodelta{transport}0123456789"
    text = "The whole answer arrived only in the completed response."
    emu.add_script(scripted_no_delta_answer(rid, text), transport="ws" if transport == "ws" else "sse")
    h = session.start("scripted question", transport=transport)
    r, items = collect(h)
    assert not [i for i in items if isinstance(i, ServerEvent) and i.delta]
    assert r.ok and r.text == text and r.response_id == rid
    # the scripted response is a real chain base: the next turn continues from it
    assert session.respond("and then?", transport=transport).text == reply_for(
        ["scripted question", "and then?"]
    )


# --- row 39: several assistant message items (e.g. commentary + final_answer phases) ---------------------------


def _two_message_script() -> list[dict[str, Any]]:
    def msg(i: int, text: str) -> dict[str, Any]:
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        return {
            "id": f"msg_two{i}",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }

    base = {"id": "resp_twomessages0123456789", "object": "response", "created_at": 1, "model": "gpt-test",
            "status": "in_progress", "output": [], "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": []}  # fmt: skip
    first, second = msg(1, "First paragraph."), msg(2, "Second paragraph.")
    events: list[dict[str, Any]] = [{"type": "response.created", "response": base}]
    for i, m in enumerate((first, second)):
        added = dict(m, content=[], status="in_progress")
        text = m["content"][0]["text"]
        events += [
            {"type": "response.output_item.added", "output_index": i, "item": added},
            {
                "type": "response.output_text.delta",
                "item_id": m["id"],
                "output_index": i,
                "content_index": 0,
                "delta": text,
            },  # fmt: skip
            {"type": "response.output_item.done", "output_index": i, "item": m},
        ]
    events.append(
        {"type": "response.completed", "response": dict(base, status="completed", output=[first, second])}
    )
    return events


# Once a bug (fixed in 4084bb5): chain.output_text joined the output_text of several message items with no
# separator, so TurnResult.text (and the frozen notebook output) read 'First paragraph.Second paragraph.'
# while the live view (render.TurnState) showed two paragraphs.
def test_several_message_items_stay_separate_paragraphs(session, emu):
    from ipy_responses_ws.render import TurnState

    emu.add_script(_two_message_script(), transport="ws")
    h = session.start("two messages please")
    r, items = collect(h)
    live = TurnState()
    for item in items:
        live.apply(item)
    assert r.ok and "First paragraph." in r.text and "Second paragraph." in r.text
    assert r.text == live.freezer.text  # the saved answer reads like the one the user watched


def test_an_unfinished_turn_keeps_its_message_items_apart(emu):
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
    with new_session(emu) as s:
        r = s.respond("two messages, cut short")
    assert r.status == "incomplete" and r.text == "First.\n\nSecond."


# --- row 34 / PROTOCOL §2.6: a refusal is the answer the user must see, live and in the saved notebook -------
# (Once a bug, fixed in bd9e6c4: the refusal text was lost from TurnResult.text and the frozen output.)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_refusal_text_reaches_the_result_and_the_saved_output(session, transport):
    from ipy_responses_ws.render import final_bundle

    h = session.start("Tell me a secret\n!refuse", transport=transport)
    r, items = collect(h)
    refusal = "".join(
        i.delta for i in items if isinstance(i, ServerEvent) and i.type == "response.refusal.delta"
    )
    assert r.ok and refusal.startswith("I'm sorry")  # the server did refuse, in words
    assert r.text == refusal
    data, _meta = final_bundle(r)
    assert data["text/plain"] == refusal and refusal in data["text/markdown"]


# --- rows 35, 36: tool-call arguments and reasoning summaries reach the TurnResult -------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_reasoning_summary_and_tool_call_arguments_are_collected(session, transport):
    h = session.start("think first", transport=transport, reasoning_summary="auto")
    r, items = collect(h)
    summary = "".join(
        i.delta
        for i in items
        if isinstance(i, ServerEvent) and i.type == "response.reasoning_summary_text.delta"
    )
    assert r.ok and r.reasoning_summary and r.reasoning_summary == summary
    assert r.text == reply_for(["think first"])
    h = session.start("use get_weather for Oslo", transport=transport, tools=[WEATHER_TOOL])
    r, items = collect(h)
    arg_deltas = "".join(
        i.delta
        for i in items
        if isinstance(i, ServerEvent) and i.type == "response.function_call_arguments.delta"
    )
    (call,) = r.function_calls
    assert call["name"] == "get_weather" and call["call_id"].startswith("call_")
    assert arg_deltas and json.loads(arg_deltas) == json.loads(call["arguments"])
    assert json.loads(call["arguments"])["city"]


# --- §3.11 / rows 50, 51: which transport served the turn, and what happened on the way ------------------


def test_turn_result_says_which_transport_served_and_what_happened(session, emu):
    emu.add_fault(Fault("refuse_upgrade", status=502))
    h = session.start("zero")
    r0, items0 = collect(h)
    assert r0.ok and r0.transport == "sse" and "HTTP 502" in r0.fallback_reason
    assert r0.connection_id is None and "fallback" in notice_kinds(items0)
    assert "SSE (fell back from WS)" in footer_text(r0)

    h = session.start("one")
    r1, items1 = collect(h)
    connected = [i for i in items1 if isinstance(i, Notice) and i.kind == "connected"]
    assert r1.transport == "ws" and r1.connection_id and connected[0].data["reused"] is False
    assert not (r1.fallback_reason or r1.retried or r1.reconnected or r1.resent_transcript)
    assert footer_text(r1).split(" · ")[:2] == ["done", "WS"]

    h = session.start("two")
    r2, items2 = collect(h)
    connected = [i for i in items2 if isinstance(i, Notice) and i.kind == "connected"]
    assert r2.connection_id == r1.connection_id and connected[0].data["reused"] is True
    assert connected[0].data["age"] >= 0

    r3 = session.respond("three", transport="sse")
    assert r3.transport == "sse" and r3.connection_id is None and r3.fallback_reason is None

    emu.add_fault(Fault("cap", responses=0))
    r4 = session.respond("four")
    assert r4.transport == "ws" and r4.reconnected and r4.connection_id != r1.connection_id
    assert "WS (reconnected)" in footer_text(r4)
    assert r4.text == reply_for(["zero", "one", "two", "three", "four"])

    status = session.status()
    assert status["transport"] == "ws" and status["handshakes"] == 2  # r1's socket and the reconnect
    conns = {c["id"]: c for c in status["connections"]}
    assert set(conns) == {r4.connection_id}  # the capped socket is gone
    assert conns[r4.connection_id]["turns"] == 1 and not conns[r4.connection_id]["busy"]


# --- §3.11: a turn that failed after the server started answering still says who served it ---------------
# (Once a bug, fixed in 0be73ee: session.py sets the transport when the request goes out.)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_failed_mid_stream_turn_still_names_its_transport(session, emu, transport):
    emu.add_fault(Fault("drop", after=7, transport=transport))
    r = session.respond("partly answered", transport=transport)
    assert r.status == "failed" and r.text  # the server did answer, partly
    assert r.transport == transport
    assert (r.connection_id is not None) == (transport == "ws")
    assert footer_text(r).split(" · ")[1] == transport.upper()
