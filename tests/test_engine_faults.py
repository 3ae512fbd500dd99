"""Every emulator fault, on both transports, with its expected recovery or error.

After each failure the next turn on the same chain must give exactly the expected answer: the failed turn
never became the base of the chain, and no stale frame of the failed response leaked into the next one.
"""

from __future__ import annotations

import time

import pytest

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import (
    APIError,
    AuthenticationError,
    ConnectionClosedError,
    ProtocolError,
    RateLimitError,
    ResponseFailedError,
    StreamTimeoutError,
)
from ipy_responses_ws.events import Notice
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-engine-faults-0123456789"


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


@pytest.fixture
def session(emu):
    emu.clear_faults()
    s = ResponsesSession(
        base_url=emu.base_url,
        api_key=KEY,
        model="gpt-test",
        connect_timeout=5.0,
        first_event_timeout=5.0,
        idle_timeout=5.0,
    )
    yield s
    s.close()
    emu.clear_faults()


def logs_since(emu, since, transport=None):
    return [c for c in emu.connections[since:] if transport is None or c.transport == transport]


def wait_for(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def collect(handle):
    items = list(handle.events())
    return handle.result(timeout=10), items


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
def test_unauthorized_never_falls_back_and_hides_the_key(session, emu, transport):
    since = len(emu.connections)
    emu.add_fault(Fault("unauthorized"))
    r = session.respond("hi", transport=transport)
    assert r.status == "failed" and isinstance(r.error, AuthenticationError)
    assert r.fallback_reason is None
    assert len(logs_since(emu, since)) == 1  # no SSE attempt after a WS 401
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
def test_request_error_before_stream(session, emu, transport):
    emu.add_fault(Fault("error", status=500, transport=transport))
    r = session.respond("boom", transport=transport)
    assert r.status == "failed" and type(r.error) is APIError
    assert (r.error.status, r.error.code) == (500, "server_error")
    assert r.text == "" and session.chain().turns == 0
    if transport == "sse":  # HTTP errors carry the request id for support tickets
        assert r.error.request_id and r.error.request_id.startswith("req_")
        assert r.error.request_id in str(r.error)
    assert_chain_intact(session, [], transport)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_rate_limit_error(session, emu, transport):
    emu.add_fault(Fault("error", status=429, transport=transport))
    r = session.respond("busy", transport=transport)
    assert isinstance(r.error, RateLimitError) and r.error.retry_after == 1.0
    assert "Wait 1 s" in str(r.error)


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


def test_fresh_socket_dying_is_not_retried(session, emu):
    emu.add_fault(Fault("drop", after=0))
    r = session.respond("one")
    assert isinstance(r.error, ConnectionClosedError) and not r.error.received_any and not r.retried


def test_no_silent_retry_after_text_was_shown(session, emu):
    session.respond("one")
    emu.add_fault(Fault("drop", after=6))
    r = session.respond("two")
    assert r.status == "failed" and not r.retried and r.text
