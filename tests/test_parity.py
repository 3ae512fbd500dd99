"""Prior-art parity: the rows and shipped bugs of PRIOR-ART.md that no other test file pins down.

Each test names the PRIOR-ART.md §4 checklist row(s) or §3 weakness it proves; docs/parity.md maps every
row and weakness to its test. Everything runs against the real emulator on loopback through the public
``ResponsesSession`` API, except where the emulator cannot produce the wire condition (an empty text frame,
an upgrade that is never answered), where a tiny inline server on 127.0.0.1:0 stands in. The bugs this audit found were strict xfails until
their fix landed; each test now guards its fix (docs/parity.md lists them with the fixing commits).

What "a user would notice" means here: the exact answer text (the emulator's answer quotes the
conversation it reconstructed, so a duplicated or lost message changes it), the error class and its fields,
what ``TurnResult`` says about transport/fallback/retry, and what the server was sent (its connection log).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import (
    APIError,
    AuthenticationError,
    ConnectionClosedError,
    HandshakeError,
    ProtocolError,
    RateLimitError,
)
from ipy_responses_ws.events import Notice, ServerEvent
from ipy_responses_ws.render import footer_text
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-parity-0123456789abcdef"
WORDS = 80  # filler words on the slow emulator: ~150 deltas, long enough to interrupt mid-stream


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


@pytest.fixture(scope="module")
def slow_emu():
    with Emulator(api_key=KEY, token_rate=300.0, answer_words=WORDS).run_in_thread() as e:
        yield e


def new_session(emu: Emulator, **kw: Any) -> ResponsesSession:
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("first_event_timeout", 5.0)
    kw.setdefault("idle_timeout", 5.0)
    return ResponsesSession(base_url=emu.base_url, api_key=KEY, model="gpt-test", **kw)


@pytest.fixture
def session(emu):
    emu.clear_faults()
    s = new_session(emu)
    yield s
    s.close()
    emu.clear_faults()


def wait_for(pred, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


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


def collect(handle) -> tuple[Any, list[Any]]:
    items = list(handle.events())
    return handle.result(timeout=10), items


def notice_kinds(items: list[Any]) -> list[str]:
    return [i.kind for i in items if isinstance(i, Notice)]


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


# --- §3.2 / row 41: response.incomplete ends the turn and never becomes the chain's base ------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("cause", ["max_output_tokens", "content_filter"])
def test_incomplete_never_hangs_and_is_never_the_base(emu, transport, cause):
    s = new_session(emu, idle_timeout=60.0, first_event_timeout=60.0)  # a hang would show as > 8 s
    try:
        base = s.respond("keep this", transport=transport)
        assert base.ok
        if cause == "content_filter":
            emu.add_fault(Fault("incomplete", after=6, code="content_filter", transport=transport))
            h = s.start("filtered", transport=transport)
        else:
            h = s.start("cut short", transport=transport, max_output_tokens=5)
        r = h.result(timeout=8)  # would raise TimeoutError if response.incomplete were not terminal
        assert r.status == "incomplete" and r.error is None and r.incomplete_reason == cause
        assert "not added to the conversation" in footer_text(r)
        assert s.chain().turns == 1 and s.chain().previous_response_id == base.response_id
        since = len(emu.connections)
        nxt = s.respond("next", transport=transport)
        assert nxt.text == reply_for(["keep this", "next"])
        frame = (frames_since(emu, since) or [all_frames(emu)[-1]])[-1]
        assert frame["previous_response_id"] == base.response_id != r.response_id
        if transport == "ws":  # a terminal event was seen: the socket was clean and is reused (row 14)
            assert nxt.connection_id == base.connection_id
    finally:
        s.close()
        emu.clear_faults()


# --- §3.12 / rows 48, 44: no retry, no silent regeneration once text has streamed -----------------------


@pytest.mark.parametrize(
    ("transport", "kind", "code"),
    [
        ("ws", "drop", None),
        ("ws", "close", 1011),
        ("ws", "close", 1001),
        ("ws", "close", 1000),  # a *normal* close before the terminal event is still not success
        ("sse", "drop", None),
        ("sse", "close", None),
    ],
)
def test_no_retry_after_text_streamed(session, emu, transport, kind, code):
    session.respond("warm the socket", transport=transport)  # so the WS turn runs on a *reused* socket
    prompt = f"this answer breaks ({transport} {kind} {code})"
    after = 8  # created, in_progress, item.added, part.added, then 4 deltas: text is on screen
    emu.add_fault(Fault(kind, after=after, code=code, transport=transport))
    h = session.start(prompt, transport=transport)
    r, items = collect(h)
    deltas = [i for i in items if isinstance(i, ServerEvent) and i.type == "response.output_text.delta"]
    assert len(deltas) == after - 4 and r.text == "".join(d.delta for d in deltas)
    assert reply_for(["warm the socket", prompt]).startswith(r.text)
    assert r.status == "failed" and not r.retried and not r.reconnected
    assert isinstance(r.error, ConnectionClosedError | ProtocolError), r.error
    if transport == "ws":
        assert isinstance(r.error, ConnectionClosedError) and r.error.received_any
        assert r.error.code == (1006 if kind == "drop" else code)
    assert not {"retry", "resend", "reconnect", "fallback"} & set(notice_kinds(items))
    sent = [f for f in all_frames(emu) if prompt in json.dumps(f)]
    assert len(sent) == 1  # the server saw the request once: nothing was regenerated behind the user's back
    assert session.chain().turns == 1


# --- §3.4 / rows 14, 15: a cancelled exchange discards its socket; stale frames are never read -----------


def test_no_stale_frames_after_cancel_even_when_the_pool_is_full(slow_emu):
    s = new_session(slow_emu, pool_size=1)
    try:
        h = s.start("interrupt me", chain="a")
        seen = 0
        while seen < 3:
            item = h.get(timeout=5)
            assert item is not None
            seen += isinstance(item, ServerEvent) and item.type == "response.output_text.delta"
        assert h.cancel(wait=1.0)
        cancelled = h.result(timeout=1)
        assert cancelled.status == "cancelled" and cancelled.error is None and cancelled.text
        # The server keeps streaming the old answer into that socket (there is no cancel event, §1.6).
        # Another chain's turn right away must not read a single frame of it.
        h2 = s.start("fresh question", chain="b")
        r, items = collect(h2)
        events = [i for i in items if isinstance(i, ServerEvent)]
        assert r.ok and r.text == reply_for(["fresh question"], words=WORDS)
        assert [e.sequence_number for e in events] == list(range(len(events)))
        ids = {e.response["id"] for e in events if e.response}
        assert ids == {r.response_id} and cancelled.response_id not in ids
        ws = [c for c in slow_emu.connections if c.transport == "ws"]
        dirty = next(c for c in ws if "interrupt me" in json.dumps(c.frames))
        fresh = next(c for c in ws if "fresh question" in json.dumps(c.frames))
        assert fresh is not dirty and len(dirty.frames) == 1  # the dirty socket carried nothing else
        assert wait_for(lambda: dirty.close_code == 1000)  # and it was closed by us, normally
        assert s.chain("a").turns == 0 and s.chain("b").turns == 1
    finally:
        s.close()


# --- §3.8 / rows 46, 4, 47: handshake statuses are kept; auth and rate limits never fall back -----------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, AuthenticationError), (403, AuthenticationError), (429, RateLimitError)],
)
def test_handshake_refusal_keeps_status_and_does_not_fall_back(session, emu, status, error_type):
    since = len(emu.connections)
    emu.add_fault(Fault("refuse_upgrade", status=status))
    h = session.start("hello")
    r, items = collect(h)
    assert r.status == "failed" and isinstance(r.error, error_type) and r.error.status == status
    assert r.transport is None and r.fallback_reason is None and not r.retried
    assert "fallback" not in notice_kinds(items)
    assert [(c.transport, c.status) for c in emu.connections[since:]] == [("ws", status)]  # no 2nd try
    assert KEY not in f"{r.error} {r.error!r} {r!r}"


def test_handshake_status_kept_without_fallback_and_named_with_fallback(emu):
    since = len(emu.connections)
    s = new_session(emu, fallback_to_sse=False)
    try:
        emu.add_fault(Fault("refuse_upgrade", status=503))
        r = s.respond("no fallback")
        assert isinstance(r.error, HandshakeError) and r.error.status == 503
        assert r.error.url and r.error.url.endswith("/v1/responses") and "503" in str(r.error)
        s.configure(fallback_to_sse=True)
        emu.add_fault(Fault("refuse_upgrade", status=503))
        r2 = s.respond("with fallback")
        assert r2.ok and r2.transport == "sse" and "HTTP 503" in r2.fallback_reason
        assert [(c.transport, c.status) for c in emu.connections[since:]] == [
            ("ws", 503),
            ("ws", 503),
            ("http", 200),
        ]
    finally:
        s.close()
        emu.clear_faults()


# --- row 38: the final text comes from the completed response when no deltas came -----------------------


def _scripted_no_delta_answer(rid: str, text: str) -> list[dict[str, Any]]:
    msg = {
        "id": f"msg_{rid[5:]}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
    }
    base = {
        "id": rid,
        "object": "response",
        "created_at": 1,
        "model": "gpt-test",
        "status": "in_progress",
        "output": [],
        "store": True,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    done = dict(base, status="completed", output=[msg])
    return [
        {"type": "response.created", "response": base},
        {"type": "response.output_item.added", "output_index": 0, "item": dict(msg, content=[])},
        {"type": "response.output_item.done", "output_index": 0, "item": msg},
        {"type": "response.completed", "response": done},
    ]


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_final_text_from_completed_response_without_deltas(session, emu, transport):
    rid = f"resp_nodelta{transport}0123456789"
    text = "The whole answer arrived only in the completed response."
    emu.add_script(_scripted_no_delta_answer(rid, text), transport="ws" if transport == "ws" else "sse")
    h = session.start("scripted question", transport=transport)
    r, items = collect(h)
    assert not [i for i in items if isinstance(i, ServerEvent) and i.delta]
    assert r.ok and r.text == text and r.response_id == rid
    # the scripted response is a real chain base: the next turn continues from it
    assert session.respond("and then?", transport=transport).text == reply_for(
        ["scripted question", "and then?"]
    )


# --- §3.9 / rows 42, 45: error payloads read in both shapes, status kept ----------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("shape", ["flat", "wrapped"])
def test_error_event_shapes_keep_message_code_param_and_status(session, emu, transport, shape):
    if shape == "flat":  # the SDK's ResponseErrorEvent shape (docker read only this one)
        event = {"type": "error", "code": "server_is_busy", "message": "Busy, try later.", "param": None}
    else:  # the real WS wire: status on top, details nested (livekit needed #6385 for this)
        event = {
            "type": "error",
            "status": 400,
            "error": {
                "type": "invalid_request_error",
                "code": "server_is_busy",
                "message": "Busy, try later.",
                "param": "input",
            },
        }
    emu.add_script([event], transport="ws" if transport == "ws" else "sse")
    r = session.respond("will fail", transport=transport)
    assert r.status == "failed" and isinstance(r.error, APIError), r.error
    assert (r.error.code, r.error.message) == ("server_is_busy", "Busy, try later.")
    assert "Busy, try later." in str(r.error)
    if shape == "wrapped":
        assert (r.error.status, r.error.param) == (400, "input")
    assert session.chain().turns == 0
    assert session.respond("recovered", transport=transport).text == reply_for(["recovered"])


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
            ws_logs = [c for c in emu.connections if c.transport == "ws"]
            assert len(ws_logs) == 2 and ws_logs[-1].headers["Authorization"].endswith("wxyz")
            assert wait_for(lambda: ws_logs[0].close_code == 1000)  # the old key's socket was retired
        finally:
            s.close()


# --- row 33: chain only when every pending tool call has its output ---------------------------------------

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


# Bug found by this audit (was a strict xfail): a plain prompt after a turn that ended in a function_call is
# chained by previous_response_id without a function_call_output for the pending call (the real API answers
# 400 'No tool output found for function call'); Chain.plan does not track pending calls (livekit #5094)
# Fixed in 4084bb5; this test now guards the fix.
def test_pending_tool_call_is_not_chained_without_its_output(session, emu):
    r = session.respond("please use get_weather for Paris", tools=[WEATHER_TOOL])
    assert r.ok and [c["name"] for c in r.function_calls] == ["get_weather"]
    call_ids = {c["call_id"] for c in r.function_calls}
    since = len(emu.connections)
    session.respond("thanks, and tomorrow?")
    frame = (frames_since(emu, since) or [all_frames(emu)[-1]])[-1]
    outputs = {it.get("call_id") for it in frame["input"] if it.get("type") == "function_call_output"}
    assert frame.get("previous_response_id") != r.response_id or call_ids <= outputs


# --- row 24: empty / keep-alive text frames are skipped (docker #2300, OVH endpoints) --------------------
# (Found by this audit as a bug; fixed in 1d26839.)


def _inline_events(text: str) -> list[dict[str, Any]]:
    return [
        {**e, "sequence_number": i}
        for i, e in enumerate(_scripted_no_delta_answer("resp_inline0123456789", text))
    ]


async def test_blank_keepalive_frames_are_skipped():
    text = "Answer after two blank frames."

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("")
                await ws.send_str(" \n")
                for ev in _inline_events(text):
                    await ws.send_str(json.dumps(ev))
        return ws

    app = web.Application()
    app.router.add_get("/v1/responses", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    s = ResponsesSession(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, fallback_to_sse=False, idle_timeout=2.0
    )
    try:
        r = await asyncio.wait_for(s.arespond("hi"), timeout=10)
        assert r.error is None, r.error
        assert r.ok and r.text == text
    finally:
        await s.aclose()
        await runner.cleanup()


# --- row 6: lazy connect -----------------------------------------------------------------------------------


def test_no_socket_until_the_first_turn(emu):
    since = len(emu.connections)
    s = new_session(emu)
    try:
        time.sleep(0.2)
        assert emu.connections[since:] == [] and s.status()["connections"] == []
        assert s.status()["handshakes"] == 0
        assert s.respond("first").ok
        assert [c.transport for c in emu.connections[since:]] == ["ws"]
    finally:
        s.close()


# --- row 18 / §3.3: a handshake that never completes times out (and is not "fixed" by a fallback) --------


async def test_silent_handshake_times_out_in_connect_phase():
    accepted: list[asyncio.StreamWriter] = []

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept TCP, never answer the upgrade

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = ResponsesSession(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, connect_timeout=0.5)
    try:
        t0 = time.perf_counter()
        r = await asyncio.wait_for(s.arespond("anyone there?"), timeout=10)
        took = time.perf_counter() - t0
        assert r.status == "failed" and r.error.phase == "connect" and r.error.seconds == 0.5
        assert "connect_timeout" in str(r.error)
        assert 0.45 < took < 5.0 and r.fallback_reason is None and r.transport is None
        assert len(accepted) == 1  # one attempt: no SSE request to the same silent host
    finally:
        await s.aclose()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


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


# --- §3.11: a turn that failed after the server started answering still says who served it ---------------
# (Found by this audit as a bug; fixed in 0be73ee: session.py sets the transport when the request goes out.)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_failed_mid_stream_turn_still_names_its_transport(session, emu, transport):
    emu.add_fault(Fault("drop", after=7, transport=transport))
    r = session.respond("partly answered", transport=transport)
    assert r.status == "failed" and r.text  # the server did answer, partly
    assert r.transport == transport
    assert (r.connection_id is not None) == (transport == "ws")
    assert footer_text(r).split(" · ")[1] == transport.upper()


# --- row 41: the obsolete v1 terminal ``response.done`` ends the turn promptly --------------------------------
# (Found by this audit: over WS the turn used to wait out idle_timeout; fixed in 51a9362, mapped by status.)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_v1_response_done_ends_the_turn_promptly(emu, transport):
    s = new_session(emu, idle_timeout=60.0)  # waiting for more frames would show as > 8 s
    try:
        rid = f"resp_v1done{transport}0123456789abcdef"
        events = _scripted_no_delta_answer(rid, "Answer ended by the v1 terminal.")
        events[-1] = dict(events[-1], type="response.done")
        emu.add_script(events, transport="ws" if transport == "ws" else "sse")
        r = s.start("v1 server", transport=transport).result(timeout=8)
        assert r.ok and r.text == "Answer ended by the v1 terminal." and r.response_id == rid
        assert s.chain().previous_response_id == rid  # a completed v1 answer is a chain base
    finally:
        s.close()


# --- row 34 / PROTOCOL §2.6: a refusal is the answer the user must see, live and in the saved notebook -------
# (Found by this audit: the refusal text was lost from TurnResult.text and the frozen output; fixed in bd9e6c4.)


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


# --- §3.1 (livekit #5136): a tool round trip never resends the assistant's own function_call -----------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_tool_round_trip_keeps_each_call_and_output_once_on_the_server(session, emu, transport):
    r1 = session.respond("please use get_weather for Rome", transport=transport, tools=[WEATHER_TOOL])
    (call,) = r1.function_calls
    r2 = session.respond(
        "", transport=transport, tools=[WEATHER_TOOL], tool_outputs={call["call_id"]: "rainy, 14 C"}
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


# --- row 5: the remembered 426 belongs to the server that answered it ------------------------------------


# Bug found by this audit (was a strict xfail): session._ws_blocked_until (the remembered 426) survives
# configure(base_url=...), so a new server is not tried over WebSocket for up to 600 s; the memory should be
# keyed by the WS URL
# Fixed in 503d516; this test now guards the fix.
def test_remembered_426_does_not_block_websocket_on_a_new_base_url(emu):
    s = new_session(emu)
    try:
        emu.add_fault(Fault("refuse_upgrade", status=426))
        assert s.respond("behind a proxy").transport == "sse"
        with Emulator(api_key=KEY).run_in_thread() as direct:
            s.configure(base_url=direct.base_url)
            r = s.respond("direct now", new=True)
            assert r.ok and r.transport == "ws" and r.fallback_reason is None
    finally:
        s.close()
        emu.clear_faults()


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


# Bug found by this audit (was a strict xfail): chain.output_text joins the output_text of several message items
# with no separator, so TurnResult.text (and the frozen notebook output) reads 'First paragraph.Second
# paragraph.' while the live view (render.TurnState) showed two paragraphs
# Fixed in 4084bb5; this test now guards the fix.
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


# --- §3.4 / §5 Stop: stopping from code that runs on the I/O loop (an on_event or done callback) --------------


# Bug found by this audit (was a strict xfail): ResponsesSession.stop_all() called on the I/O loop thread (from an
# on_event callback) blocks that loop in TurnHandle._done.wait(1.0) for every in-flight turn; the turns can
# only end on that loop, so every stream of the process freezes for 1 s per turn. On the loop thread it should
# not wait
# Fixed in 4084bb5; this test now guards the fix.
def test_stop_all_from_an_event_callback_does_not_freeze_the_loop(slow_emu):
    s = new_session(slow_emu)
    took: list[float] = []

    def on_event(item: Any) -> None:
        if getattr(item, "type", "") == "response.output_text.delta" and not took:
            t0 = time.perf_counter()
            s.stop_all()
            took.append(time.perf_counter() - t0)

    try:
        r = s.start("stop me from the callback", on_event=on_event).result(timeout=10)
        assert r.status == "cancelled" and r.error is None
        assert took[0] < 0.25
    finally:
        s.close()


# --- §3.3 / §3.6: the defaults keep every wait bounded and rotate before the server's 60-minute cap ----------


def test_defaults_bound_every_wait_and_rotate_before_the_cap():
    from ipy_responses_ws.config import Settings

    d = Settings()
    assert d.max_connection_age <= 3600 - 60  # livekit's 3600 s equals the cap; ours leaves a margin
    for name in ("connect_timeout", "first_event_timeout", "idle_timeout"):
        assert 0 < getattr(d, name) <= 600, name  # nothing can hang a cell for ever
    assert d.heartbeat is not None and d.heartbeat < d.idle_timeout  # a dead peer is noticed mid-turn
    assert d.fallback_to_sse and d.transport == "ws" and d.store is True


# --- §3.7: the resend after previous_response_not_found must not point at items of the forgotten response ----


# Bug found by this audit (was a strict xfail): with store=true, chain.output_to_input keeps reasoning items as
# item_reference ids; when the server answered previous_response_not_found it has lost those items too, yet
# the one-time full resend still carries the references, which the real API cannot resolve
# Fixed in 4084bb5; this test now guards the fix.
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


# --- §3.4 / row 14: a request-level error frame leaves nothing in flight, so its socket may be kept --------------


def test_socket_kept_after_a_request_level_error_carries_no_stale_frames(session, emu):
    first = session.respond("before the error")
    emu.add_fault(Fault("error", status=500, transport="ws"))  # an error frame instead of response.created
    failed = session.respond("refused")
    assert failed.status == "failed" and failed.error.status == 500 and failed.text == ""
    h = session.start("after the error")
    r, items = collect(h)
    events = [i for i in items if isinstance(i, ServerEvent)]
    assert r.ok and r.text == reply_for(["before the error", "after the error"])
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert r.connection_id == first.connection_id  # no new handshake was needed
