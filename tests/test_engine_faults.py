"""Every emulator fault, on both transports, with its expected recovery or error.

After each failure the next turn on the same chain must give exactly the expected answer: the failed turn
never became the base of the chain, and no stale frame of the failed response leaked into the next one.
Wire conditions the emulator cannot produce (an upgrade never answered, blank keep-alive frames) come from a
tiny server on 127.0.0.1:0 inside the test.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from engine_helpers import collect, notice_kinds, scripted_no_delta_answer, session_fixture, wait_for
from engine_helpers import new_session as _new_session

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import (
    APIError,
    AuthenticationError,
    ConnectionClosedError,
    HandshakeError,
    ProtocolError,
    RateLimitError,
    ResponseFailedError,
    StreamTimeoutError,
)
from ipy_responses_ws.events import Notice, ServerEvent
from ipy_responses_ws.render import footer_text
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-engine-faults-0123456789"


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


new_session = functools.partial(_new_session, key=KEY)
session = session_fixture(KEY)


def logs_since(emu, since, transport=None):
    return [c for c in emu.connections[since:] if transport is None or c.transport == transport]


def frames_since(emu: Emulator, since: int) -> list[dict[str, Any]]:
    """Every client frame / POST body the server received since log entry *since*, in log order."""
    return [f for c in emu.connections[since:] for f in c.frames if isinstance(f, dict)]


def all_frames(emu: Emulator) -> list[dict[str, Any]]:
    return frames_since(emu, 0)


def assert_chain_intact(session, done_prompts, transport):
    """The next turn answers from the completed turns only (exact text)."""
    r = session.respond("after the fault", transport=transport)
    assert r.error is None, r.error
    assert r.text == reply_for([*done_prompts, "after the fault"])


# --- handshake faults (WS only) ------------------------------------------------------------------------


def test_426_falls_back_to_sse_and_is_remembered(session, emu):
    since = len(emu.connections)
    emu.add_fault(Fault("refuse_upgrade", status=426, count=None))
    h = session.start("first")
    r, items = collect(h)
    assert r.ok and r.text == reply_for(["first"])
    assert r.transport == "sse" and "426" in r.fallback_reason
    assert [i.kind for i in items if isinstance(i, Notice)] == [
        "connecting",
        "fallback",
        "connecting",
        "connected",
    ]
    # remembered: the next turn does not knock on the WebSocket door again
    r2 = session.respond("second")
    assert r2.transport == "sse" and "remembered" in r2.fallback_reason
    assert r2.text == reply_for(["first", "second"])
    assert len(logs_since(emu, since, "ws")) == 1
    assert session.status()["ws_blocked_for"] > 0
    # an explicit switch back to WS retries it at once
    emu.clear_faults()
    session.transport = "ws"
    r3 = session.respond("third")
    assert r3.transport == "ws" and r3.fallback_reason is None
    assert r3.text == reply_for(["first", "second", "third"])


@pytest.mark.parametrize("status", [404, 503])
def test_other_refusals_fall_back_for_one_turn(session, emu, status):
    since = len(emu.connections)
    emu.add_fault(Fault("refuse_upgrade", status=status))
    r = session.respond("hi")
    assert r.ok and r.transport == "sse" and str(status) in r.fallback_reason
    r2 = session.respond("again")
    assert r2.transport == "ws" and r2.text == reply_for(["hi", "again"])
    assert [c.status for c in logs_since(emu, since, "ws")] == [status, 101]


def test_fallback_can_be_disabled(emu):
    emu.add_fault(Fault("refuse_upgrade", status=426))
    s = ResponsesSession(base_url=emu.base_url, api_key=KEY, fallback_to_sse=False)
    try:
        r = s.respond("hi")
        assert r.status == "failed" and r.error.status == 426 and r.transport is None
        assert "SSE" in str(r.error)
    finally:
        s.close()
        emu.clear_faults()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_unauthorized_everywhere_names_the_key_variable_never_the_key(session, emu, transport):
    """A WS upgrade refused with 401 is tried once over SSE (a gateway may refuse only the upgrade); refused there
    too, the turn fails with an authentication error that names OPENAI_API_KEY. Nothing else is retried."""
    since = len(emu.connections)
    emu.add_fault(Fault("unauthorized", count=2 if transport == "ws" else 1))
    r = session.respond("hi", transport=transport)
    assert r.status == "failed" and isinstance(r.error, AuthenticationError)
    expected = [("ws", 401), ("http", 401)] if transport == "ws" else [("http", 401)]
    assert [(c.transport, c.status) for c in logs_since(emu, since)] == expected
    assert (r.fallback_reason is not None) == (transport == "ws") and r.retries == 0
    text = f"{r.error} {r.error!r} {r.error.args} {r!r}"
    assert "OPENAI_API_KEY" in text and KEY not in text


def test_wrong_key_message(emu):
    wrong = "sk-test-FAKE-wrong-key-999999999"
    s = ResponsesSession(base_url=emu.base_url, api_key=wrong)
    try:
        for transport in ("ws", "sse"):
            r = s.respond("hi", transport=transport)
            assert isinstance(r.error, AuthenticationError)
            assert wrong not in str(r.error) and "OPENAI_API_KEY" in str(r.error)
    finally:
        s.close()


def test_connect_error_falls_back_then_fails_clearly():
    # nothing listens on this port: WS fails to connect, SSE too; the error says where it tried
    s = ResponsesSession(base_url="http://127.0.0.1:9/v1", api_key=KEY, connect_timeout=2.0)
    try:
        r = s.respond("hi")
        assert r.status == "failed" and "127.0.0.1:9" in str(r.error)
        assert r.fallback_reason and "WebSocket connection failed" in r.fallback_reason
    finally:
        s.close()


# --- §3.8 / rows 46, 4, 47: handshake statuses are kept; auth and rate limits never fall back -----------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(401, AuthenticationError), (403, AuthenticationError), (429, RateLimitError)],
)
def test_handshake_refusal_keeps_status_when_nothing_else_may_be_tried(emu, status, error_type):
    s = new_session(emu, fallback_to_sse=False, max_retries=0)
    try:
        since = len(emu.connections)
        emu.add_fault(Fault("refuse_upgrade", status=status))
        h = s.start("hello")
        r, items = collect(h)
        assert r.status == "failed" and isinstance(r.error, error_type) and r.error.status == status
        assert r.transport is None and r.fallback_reason is None and not r.retried
        assert "fallback" not in notice_kinds(items)
        assert [(c.transport, c.status) for c in emu.connections[since:]] == [("ws", status)]  # no 2nd try
        assert KEY not in f"{r.error} {r.error!r} {r!r}"
    finally:
        s.close()
        emu.clear_faults()


@pytest.mark.parametrize("status", [401, 403])
def test_an_upgrade_refused_as_unauthorized_is_served_over_sse_when_the_key_works_there(session, emu, status):
    """LiteLLM's proxy refuses the upgrade (403) without ?model= in some versions while the key works over HTTP:
    the user gets the answer over SSE, with the reason, not an authentication error."""
    since = len(emu.connections)
    emu.add_fault(Fault("refuse_upgrade", status=status))
    h = session.start("hello")
    r, items = collect(h)
    assert r.ok and r.transport == "sse" and r.text == reply_for(["hello"])
    assert f"HTTP {status}" in r.fallback_reason and "fallback" in notice_kinds(items)
    assert [(c.transport, c.status) for c in emu.connections[since:]] == [("ws", status), ("http", 200)]


def test_a_rate_limited_upgrade_is_retried_after_a_backoff(session, emu):
    since = len(emu.connections)
    emu.add_fault(Fault("refuse_upgrade", status=429))
    t0 = time.monotonic()
    h = session.start("hello")
    r, items = collect(h)
    retry = [i for i in items if isinstance(i, Notice) and i.kind == "retry"]
    assert r.ok and r.transport == "ws" and r.retries == 1 and r.text == reply_for(["hello"])
    assert len(retry) == 1 and retry[0].data["attempt"] == 1 and retry[0].data["of"] == 2
    assert 0.3 <= retry[0].data["delay"] <= 0.5 and time.monotonic() - t0 >= retry[0].data["delay"] - 0.01
    assert "429" in retry[0].data["reason"]
    assert [(c.transport, c.status) for c in emu.connections[since:]][:1] == [("ws", 429)]


def test_handshake_status_kept_without_fallback_and_named_with_fallback(emu):
    since = len(emu.connections)
    s = new_session(emu, fallback_to_sse=False, max_retries=0)
    try:
        emu.add_fault(Fault("refuse_upgrade", status=503))
        r = s.respond("no fallback")
        assert isinstance(r.error, HandshakeError) and r.error.status == 503
        assert r.error.url and urlsplit(r.error.url).path.endswith("/v1/responses") and "503" in str(r.error)
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


# --- row 5: the remembered 426 belongs to the server that answered it ------------------------------------
# Once a bug (fixed in 503d516): session._ws_blocked_until (the remembered 426) survived
# configure(base_url=...), so a new server was not tried over WebSocket for up to 600 s; the memory is now
# keyed by the WS URL.


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


def test_a_426_is_still_remembered_for_the_same_server(emu):
    with new_session(emu) as s:
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


# --- mid-stream faults, both transports -------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_drop_mid_stream(session, emu, transport):
    session.respond("base", transport=transport)
    emu.add_fault(Fault("drop", after=6, transport=transport))
    r = session.respond("dropped", transport=transport)
    assert r.status == "failed" and isinstance(r.error, ConnectionClosedError)
    assert r.transport == transport  # it was sent, so the result names the transport that carried it
    assert r.error.received_any and r.text  # partial text kept for display
    assert reply_for(["base", "dropped"]).startswith(r.text)
    assert session.chain().turns == 1
    assert_chain_intact(session, ["base"], transport)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_close_mid_stream(session, emu, transport):
    session.respond("base", transport=transport)
    emu.add_fault(Fault("close", after=5, code=1011, transport=transport))
    r = session.respond("closed", transport=transport)
    assert r.status == "failed"
    if transport == "ws":
        assert isinstance(r.error, ConnectionClosedError) and r.error.code == 1011
    else:  # SSE has no close code: the body just ends without a terminal event
        assert isinstance(r.error, ProtocolError) and "without a terminal event" in str(r.error)
    assert_chain_intact(session, ["base"], transport)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_request_error_before_stream(emu, transport):
    session = new_session(emu, max_retries=0)
    emu.add_fault(Fault("error", status=500, transport=transport, count=None))
    r = session.respond("boom", transport=transport)
    emu.clear_faults()
    assert r.status == "failed" and type(r.error) is APIError
    assert (r.error.status, r.error.code) == (500, "server_error")
    assert r.text == "" and session.chain().turns == 0
    if transport == "sse":  # HTTP errors carry the request id for support tickets
        assert r.error.request_id and r.error.request_id.startswith("req_")
        assert r.error.request_id in str(r.error)
    assert_chain_intact(session, [], transport)
    session.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_rate_limit_error_when_retries_run_out(emu, transport):
    session = new_session(emu, max_retries=1)
    try:
        emu.add_fault(Fault("error", status=429, transport=transport, count=2))
        r = session.respond("busy", transport=transport)
        assert isinstance(r.error, RateLimitError) and r.error.retry_after == 1.0
        assert "Wait 1 s" in str(r.error) and r.retries == 1
    finally:
        session.close()
        emu.clear_faults()


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_request_refused_before_any_event_is_retried_honouring_retry_after(session, emu, transport, status):
    """429 and 5xx before anything streamed are retried (Settings.max_retries, default 2), waiting what the
    server asks (the emulator's 429 says retry-after 1 s) or an exponential backoff; the user sees the wait."""
    emu.add_fault(Fault("error", status=status, transport=transport))
    t0 = time.monotonic()
    h = session.start("busy", transport=transport)
    r, items = collect(h)
    took = time.monotonic() - t0
    retry = [i for i in items if isinstance(i, Notice) and i.kind == "retry"]
    assert r.ok and r.text == reply_for(["busy"]) and r.retries == 1 and r.transport == transport
    assert len(retry) == 1 and str(status) in retry[0].data["reason"]
    if status == 429:
        assert retry[0].data["delay"] == 1.0 and took >= 1.0
    else:
        assert 0.3 <= retry[0].data["delay"] <= 0.5 and took >= retry[0].data["delay"] - 0.01
    assert session.chain().turns == 1


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("kind", ["error", "failed"])
def test_failure_after_stream_started(session, emu, transport, kind):
    session.respond("base", transport=transport)
    emu.add_fault(Fault(kind, after=6, transport=transport))
    r = session.respond("fails", transport=transport)
    assert r.status == "failed" and isinstance(r.error, ResponseFailedError)
    assert r.error.response_id and r.error.response_id == r.response_id
    assert r.error.code == "server_error" and r.text
    assert session.chain().turns == 1
    assert_chain_intact(session, ["base"], transport)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_stall_before_first_event_times_out(emu, transport):
    s = ResponsesSession(base_url=emu.base_url, api_key=KEY, first_event_timeout=0.4, idle_timeout=5)
    try:
        since = len(emu.connections)
        emu.add_fault(Fault("stall", after=0, seconds=3.0, transport=transport))
        t0 = time.perf_counter()
        r = s.respond("slow", transport=transport)
        assert isinstance(r.error, StreamTimeoutError) and r.error.phase == "first_event"
        assert 0.35 < time.perf_counter() - t0 < 2.5  # gave up long before the 3 s stall ended
        assert "first_event_timeout" in str(r.error)
        if transport == "ws":  # the connection was discarded (closed by us), not reused
            assert wait_for(lambda: logs_since(emu, since, "ws")[0].close_code == 1000)
        r2 = s.respond("fast", transport=transport)
        assert r2.text == reply_for(["fast"])
    finally:
        s.close()
        emu.clear_faults()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_stall_between_events_is_idle_timeout(emu, transport):
    s = ResponsesSession(base_url=emu.base_url, api_key=KEY, first_event_timeout=5, idle_timeout=0.4)
    try:
        emu.add_fault(Fault("stall", after=5, seconds=1.5, transport=transport))
        r = s.respond("slow", transport=transport)
        assert isinstance(r.error, StreamTimeoutError) and r.error.phase == "idle"
        assert r.error.seconds == 0.4
        r2 = s.respond("fast", transport=transport)
        assert r2.text == reply_for(["fast"])  # no stale frames of the stalled response
    finally:
        s.close()
        emu.clear_faults()


def test_short_stall_within_idle_timeout_is_fine(session, emu):
    emu.add_fault(Fault("stall", after=5, seconds=0.3))
    r = session.respond("patience")
    assert r.ok and r.text == reply_for(["patience"])


@pytest.mark.parametrize(
    ("transport", "variant"),
    [("ws", "json"), ("ws", "binary"), ("ws", "utf8"), ("sse", "json"), ("sse", "utf8")],
)
def test_malformed_payload_is_protocol_error(session, emu, transport, variant):
    since = len(emu.connections)
    session.respond("base", transport=transport)
    emu.add_fault(Fault("malformed", after=5, variant=variant, transport=transport))
    r = session.respond("garbled", transport=transport)
    assert r.status == "failed" and isinstance(r.error, ProtocolError), r.error
    if transport == "ws":
        assert wait_for(lambda: logs_since(emu, since, "ws")[0].closed_at is not None)
    assert_chain_intact(session, ["base"], transport)
    if transport == "ws":
        assert len(logs_since(emu, since, "ws")) == 2  # the garbled connection was not reused


def test_connection_cap_reconnects_transparently(session, emu):
    since = len(emu.connections)
    session.respond("one")
    emu.add_fault(Fault("cap", responses=1))
    h = session.start("two")
    r, items = collect(h)
    assert r.ok and r.reconnected and r.text == reply_for(["one", "two"])
    assert "reconnect" in [i.kind for i in items if isinstance(i, Notice)]
    logs = logs_since(emu, since, "ws")
    assert len(logs) == 2 and logs[0].server_close_code == 1000


def test_emulator_age_cap_with_store_false():
    # The server's own 60-minute cap, shrunk: the cache dies with the connection, so under store=false the
    # chain must go on over a new connection with the full transcript.
    with Emulator(api_key=KEY, max_connection_age=0.5).run_in_thread() as emu:
        s = ResponsesSession(base_url=emu.base_url, api_key=KEY, store=False)
        try:
            assert s.respond("one").ok
            time.sleep(0.6)
            r = s.respond("two")
            assert r.ok and r.reconnected and r.resent_transcript
            assert r.text == reply_for(["one", "two"])
            frame = emu.connections[-1].frames[-1]
            assert "previous_response_id" not in frame and len(frame["input"]) == 3
        finally:
            s.close()


def test_client_rotates_before_max_connection_age(emu):
    since = len(emu.connections)
    s = ResponsesSession(base_url=emu.base_url, api_key=KEY, max_connection_age=0.3)
    try:
        s.respond("one")
        time.sleep(0.4)
        r = s.respond("two")
        assert r.ok and not r.reconnected and r.text == reply_for(["one", "two"])
        logs = logs_since(emu, since, "ws")
        assert len(logs) == 2
        assert wait_for(lambda: logs[0].close_code == 1000)  # the old one closed by us, normally
    finally:
        s.close()


def test_dead_reused_socket_retried_once_on_fresh_connection(session, emu):
    since = len(emu.connections)
    session.respond("one")
    emu.add_fault(Fault("drop", after=0))  # the idle socket "dies" as soon as it is used
    h = session.start("two")
    r, items = collect(h)
    assert r.ok and r.retried and r.text == reply_for(["one", "two"])
    assert "retry" in [i.kind for i in items if isinstance(i, Notice)]
    assert len(logs_since(emu, since, "ws")) == 2


def test_fresh_socket_dying_before_any_event_is_retried_after_a_backoff(emu):
    with new_session(emu, max_retries=0) as s:
        emu.add_fault(Fault("drop", after=0))
        r = s.respond("one")
        assert isinstance(r.error, ConnectionClosedError) and not r.error.received_any and not r.retried
    with new_session(emu) as s:
        emu.add_fault(Fault("drop", after=0))
        r = s.respond("one")
        assert r.ok and r.retries == 1 and not r.retried and r.text == reply_for(["one"])
    emu.clear_faults()


def test_no_silent_retry_after_text_was_shown(session, emu):
    session.respond("one")
    emu.add_fault(Fault("drop", after=6))
    r = session.respond("two")
    assert r.status == "failed" and not r.retried and r.text


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


# --- §3.4 / row 14: a request-level error frame leaves nothing in flight, so its socket may be kept --------------


def test_socket_kept_after_a_request_level_error_carries_no_stale_frames(emu):
    session = new_session(emu, max_retries=0)
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
    session.close()


def test_the_resend_after_not_found_reuses_the_clean_socket(emu):
    with new_session(emu) as s:
        assert s.respond("remember me").ok
        with Emulator(api_key=KEY).run_in_thread() as forgetful:
            s.configure(base_url=forgetful.base_url)
            r = s.respond("do you?")
            ws_logs = [c for c in forgetful.connections if c.transport == "ws"]
    assert r.ok and r.resent_transcript and r.text == reply_for(["remember me", "do you?"])
    assert len(ws_logs) == 1  # the not-found error and the resend share one handshake
    assert [("previous_response_id" in f) for f in ws_logs[0].frames] == [True, False]


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


# --- row 41: the obsolete v1 terminal ``response.done`` ends the turn promptly --------------------------------
# (Once a bug, fixed in 51a9362: over WS the turn waited out idle_timeout; now mapped by status.)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_v1_response_done_ends_the_turn_promptly(emu, transport):
    s = new_session(emu, idle_timeout=60.0)  # waiting for more frames would show as > 8 s
    try:
        rid = f"resp_v1done{transport}0123456789abcdef"
        events = scripted_no_delta_answer(rid, "Answer ended by the v1 terminal.")
        events[-1] = dict(events[-1], type="response.done")
        emu.add_script(events, transport="ws" if transport == "ws" else "sse")
        r = s.start("v1 server", transport=transport).result(timeout=8)
        assert r.ok and r.text == "Answer ended by the v1 terminal." and r.response_id == rid
        assert s.chain().previous_response_id == rid  # a completed v1 answer is a chain base
    finally:
        s.close()


# --- row 24: empty / keep-alive text frames are skipped (docker #2300, OVH endpoints) --------------------
# (Once a bug, fixed in 1d26839.)


def _inline_events(text: str) -> list[dict[str, Any]]:
    return [
        {**e, "sequence_number": i}
        for i, e in enumerate(scripted_no_delta_answer("resp_inline0123456789", text))
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


# --- a 1009 close tells the user what to do (docs/reliability.md §6 weak spot) ---------------------------


def test_an_oversized_request_says_it_is_too_big_not_check_the_network() -> None:
    with Emulator(KEY, max_frame_size=100_000).run_in_thread() as small, new_session(small) as s:
        r = s.respond("y" * 200_000)
    assert getattr(r.error, "code", None) == 1009
    assert "too big" in str(r.error) and "Check the network" not in str(r.error)


def test_a_refused_upgrade_then_an_unhelpful_sse_answer_is_reported_as_the_key_problem(session, emu):
    """LiteLLM without a database refuses an unknown key with 403 on the upgrade and 400 "No connected db." over
    HTTP: the user is told about the key (the real cause), not asked to fix the request."""
    emu.add_fault(Fault("refuse_upgrade", status=403))
    emu.add_fault(Fault("error", status=400, transport="sse", message="No connected db."))
    r = session.respond("who am I")
    assert isinstance(r.error, AuthenticationError) and r.error.status == 403
    assert "OPENAI_API_KEY" in str(r.error) and r.fallback_reason and r.retries == 0
