"""The recovery policy, without I/O: every row of the table in ``ipy_responses_ws.recovery`` and its
"at most once per turn" rule (PROTOCOL.md §1.9, §1.10, §1.11, §7.1, §7.8).

Errors are built the way the transports build them: an upgrade refused with 401/403/429 arrives as the API error
of that status (``transports.ws``), any other refusal as a ``HandshakeError``; a connect timeout is a
``StreamTimeoutError(phase="connect")``; a closed or unwritable socket is a ``ConnectionClosedError``; an ``error``
event is the ``APIError`` that :class:`~ipy_responses_ws.stream.ResponseStream` made of it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import pytest

from ipy_responses_ws.errors import (
    APIError,
    AuthenticationError,
    ConfigError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    PoolClosedError,
    ProtocolError,
    RateLimitError,
    ResponseFailedError,
    ResponsesError,
    StreamTimeoutError,
    api_error_from_status,
)
from ipy_responses_ws.recovery import Action, Decision, Failure, classify, decide
from ipy_responses_ws.stream import CONNECTION_LIMIT_CODE, ResponseStream, Step

URL = "wss://gateway.example/v1/responses"


def connection_cap() -> APIError:
    return api_error_from_status(
        400, message="Responses websocket connection limit reached (60 minutes).", code=CONNECTION_LIMIT_CODE
    )


def parent_not_found() -> APIError:
    return api_error_from_status(
        400,
        message="Previous response with id 'resp_stale123' not found.",
        code="previous_response_not_found",
        param="previous_response_id",
    )


def closed(code: int | None = 1006) -> ConnectionClosedError:
    return ConnectionClosedError(code=code, reason="abnormal closure")


def on_upgrade(err: ResponsesError) -> ResponsesError:
    """As the WS transport raises them: marked as refusals of the upgrade, not of a request."""
    err.phase = "handshake"  # type: ignore[attr-defined]
    return err


def refused(status: int) -> HandshakeError:
    return HandshakeError(status=status, url=URL, body="nope")


def connect_failed() -> ConnectError:
    return ConnectError("Could not connect to wss://gateway.example: ClientConnectorError.", url=URL)


# One of each kind of failure a turn can meet, by name.
ERRORS: dict[str, Any] = {
    "connection_cap": connection_cap,
    "parent_not_found": parent_not_found,
    "closed_1006": closed,
    "closed_1000": lambda: closed(1000),
    "send_failed": lambda: ConnectionClosedError("Could not send the request: RuntimeError.", code=None),
    "connect_error": connect_failed,
    "handshake_404": lambda: refused(404),
    "handshake_426": lambda: refused(426),
    "handshake_500": lambda: refused(500),
    "handshake_502": lambda: refused(502),
    "handshake_503": lambda: refused(503),
    "upgrade_401": lambda: on_upgrade(AuthenticationError("rejected on the handshake", status=401)),
    "upgrade_403": lambda: on_upgrade(AuthenticationError("rejected on the handshake", status=403)),
    "upgrade_429": lambda: on_upgrade(RateLimitError("rate limited on the handshake", status=429)),
    "handshake_401": lambda: refused(401),
    "handshake_403": lambda: refused(403),
    "handshake_429": lambda: refused(429),
    "connect_timeout": lambda: StreamTimeoutError(phase="connect", seconds=10),
    "first_event_timeout": lambda: StreamTimeoutError(phase="first_event", seconds=300),
    "idle_timeout": lambda: StreamTimeoutError(phase="idle", seconds=120),
    "protocol_error": lambda: ProtocolError("The server sent a payload that is not valid JSON: 'x'"),
    "api_400": lambda: api_error_from_status(400, message="bad", code="invalid_value"),
    "api_401": lambda: api_error_from_status(401, code="invalid_api_key"),
    "api_429": lambda: api_error_from_status(429, code="rate_limit_exceeded"),
    "api_500": lambda: api_error_from_status(500, code="server_error"),
    "response_failed": lambda: ResponseFailedError("failed", code="server_error", response_id="resp_1"),
    "pool_closed": PoolClosedError,
    "config": ConfigError,
}


def ws(exc: ResponsesError, **kw: Any) -> Decision:
    """A first failure over WebSocket, before any event, fallback allowed, nothing tried yet."""
    args: dict[str, Any] = {
        "transport": "ws",
        "received": False,
        "reused": False,
        "by_id": False,
        "fallback_allowed": True,
    }
    args.update(kw)
    return decide(exc, **args)


def sse(exc: ResponsesError, **kw: Any) -> Decision:
    return ws(exc, transport="sse", **kw)


def assert_fail(decision: Decision) -> None:
    assert decision.action is Action.FAIL
    assert decision.notice is None
    assert decision.remember_ws_refusal is False


# --- classify --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "failure"),
    [
        ("connection_cap", Failure.CONNECTION_LIMIT),
        ("parent_not_found", Failure.PARENT_NOT_FOUND),
        ("closed_1006", Failure.CLOSED),
        ("closed_1000", Failure.CLOSED),
        ("send_failed", Failure.CLOSED),
        ("connect_error", Failure.CONNECT),
        ("handshake_404", Failure.HANDSHAKE),
        ("handshake_426", Failure.HANDSHAKE),
        ("handshake_500", Failure.HANDSHAKE),
        ("handshake_503", Failure.HANDSHAKE),
        ("upgrade_401", Failure.AUTH),
        ("upgrade_403", Failure.AUTH),
        ("upgrade_429", Failure.RATE_LIMITED),
        ("handshake_401", Failure.AUTH),
        ("handshake_403", Failure.AUTH),
        ("handshake_429", Failure.RATE_LIMITED),
        ("api_401", Failure.AUTH),
        ("api_429", Failure.RATE_LIMITED),
        ("connect_timeout", Failure.OTHER),
        ("first_event_timeout", Failure.OTHER),
        ("idle_timeout", Failure.OTHER),
        ("protocol_error", Failure.OTHER),
        ("api_400", Failure.OTHER),
        ("api_500", Failure.OTHER),
        ("response_failed", Failure.OTHER),
        ("pool_closed", Failure.OTHER),
        ("config", Failure.OTHER),
    ],
)
def test_classify(name: str, failure: Failure) -> None:
    assert classify(ERRORS[name]()) is failure


def test_classify_covers_every_failure_kind() -> None:
    seen = {classify(make()) for make in ERRORS.values()}
    assert seen == set(Failure)


def test_classify_reads_the_code_before_the_class() -> None:
    # A connection cap or a cache miss reported with a status that picks another subclass is still that kind.
    assert classify(api_error_from_status(429, code=CONNECTION_LIMIT_CODE)) is Failure.CONNECTION_LIMIT
    assert (
        classify(api_error_from_status(403, code="previous_response_not_found")) is Failure.PARENT_NOT_FOUND
    )
    assert classify(APIError("no code")) is Failure.OTHER


@pytest.mark.parametrize(
    ("frame", "failure"),
    [
        (
            {
                "type": "error",
                "status": 400,
                "error": {"code": CONNECTION_LIMIT_CODE, "message": "60 minutes"},
            },
            Failure.CONNECTION_LIMIT,
        ),
        (
            {
                "type": "error",
                "status": 400,
                "stream_id": "main",
                "error": {"code": "previous_response_not_found", "param": "previous_response_id"},
            },
            Failure.PARENT_NOT_FOUND,
        ),
        ({"type": "error", "status": 401, "error": {"code": "invalid_api_key"}}, Failure.AUTH),
        ({"type": "error", "status": 429, "error": {"code": "rate_limit_exceeded"}}, Failure.RATE_LIMITED),
        ({"type": "error", "status": 400, "error": {"code": "invalid_value"}}, Failure.OTHER),
        ({"type": "error", "code": "invalid_prompt", "message": "flat"}, Failure.OTHER),
    ],
    ids=["cap", "parent", "auth", "rate", "other", "flat"],
)
def test_classify_the_errors_a_response_stream_reports(frame: dict[str, Any], failure: Failure) -> None:
    stream = ResponseStream(first_output_timeout=300, idle_timeout=120)
    stream.sent(0.0)
    step = stream.feed_payload(json.dumps(frame).encode(), 1.0)
    assert step in (Step.FAIL, Step.RECONNECT)
    assert stream.error is not None
    assert classify(stream.error) is failure


# --- anything after an event was delivered: never regenerate ---------------------------------------------


@pytest.mark.parametrize("name", sorted(ERRORS))
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_after_an_event_was_delivered_every_failure_fails(name: str, transport: str) -> None:
    # Text may be on screen: a retry, a resend or a fallback would generate a second, different answer.
    for reused, by_id, allowed in itertools.product([False, True], repeat=3):
        decision = decide(
            ERRORS[name](),
            transport=transport,
            received=True,
            reused=reused,
            by_id=by_id,
            fallback_allowed=allowed,
        )
        assert_fail(decision)


# --- connection cap (§1.9): reconnect once ---------------------------------------------------------------


def test_the_connection_cap_retries_on_a_fresh_connection() -> None:
    decision = ws(connection_cap())
    assert decision.action is Action.RETRY
    assert decision.notice == "reconnect"
    assert "connection age limit" in decision.reason
    assert decision.remember_ws_refusal is False


@pytest.mark.parametrize(("reused", "by_id"), list(itertools.product([False, True], repeat=2)))
def test_the_connection_cap_retries_whatever_the_connection_and_chain(reused: bool, by_id: bool) -> None:
    assert ws(connection_cap(), reused=reused, by_id=by_id, fallback_allowed=False).action is Action.RETRY


def test_the_connection_cap_reconnects_only_once_per_turn() -> None:
    assert_fail(ws(connection_cap(), reconnected=True, tried={Action.RETRY}))


def test_the_connection_cap_after_a_plain_retry_still_reconnects() -> None:
    # The two kinds of RETRY are told apart: a retry after a closed reused socket does not use up the reconnect.
    decision = ws(connection_cap(), tried={Action.RETRY}, retried_fresh=True)
    assert decision.action is Action.RETRY and decision.notice == "reconnect"


def test_the_connection_cap_over_sse_fails() -> None:
    assert_fail(sse(connection_cap()))


# --- socket closed / send failed: retry a reused socket once ---------------------------------------------


@pytest.mark.parametrize("name", ["closed_1006", "closed_1000", "send_failed"])
def test_a_reused_socket_that_closed_is_retried_on_a_fresh_one(name: str) -> None:
    exc = ERRORS[name]()
    decision = ws(exc, reused=True)
    assert decision.action is Action.RETRY
    assert decision.notice == "retry"
    assert str(exc.code) in decision.reason
    assert decision.remember_ws_refusal is False


def test_a_fresh_socket_that_closed_fails() -> None:
    # Nothing suggests a second fresh socket would do better (the server or a proxy closed a new one).
    assert_fail(ws(closed(), reused=False))


def test_a_closed_socket_is_retried_only_once_per_turn() -> None:
    assert_fail(ws(closed(), reused=True, retried_fresh=True, tried={Action.RETRY}))


def test_a_closed_reused_socket_after_a_reconnect_is_still_retried() -> None:
    decision = ws(closed(), reused=True, reconnected=True, tried={Action.RETRY})
    assert decision.action is Action.RETRY and decision.notice == "retry"


def test_a_closed_socket_does_not_fall_back() -> None:
    assert_fail(ws(closed(), reused=False, fallback_allowed=True))


def test_a_broken_sse_stream_fails() -> None:
    assert_fail(sse(closed(None), reused=True))


# --- previous_response_not_found (§7.1): resend the transcript once --------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_cache_miss_on_a_chained_request_resends_the_transcript(transport: str) -> None:
    decision = ws(parent_not_found(), transport=transport, by_id=True)
    assert decision.action is Action.RESEND
    assert decision.notice == "resend"
    assert "previous response" in decision.reason
    assert decision.remember_ws_refusal is False


def test_a_cache_miss_without_previous_response_id_fails() -> None:
    # Nothing to resend: the request already carried the whole transcript.
    assert_fail(ws(parent_not_found(), by_id=False))


def test_a_cache_miss_is_resent_only_once_per_turn() -> None:
    assert_fail(ws(parent_not_found(), by_id=True, tried={Action.RESEND}))


def test_a_cache_miss_after_a_retry_or_fallback_still_resends() -> None:
    decision = ws(parent_not_found(), by_id=True, tried={Action.RETRY, Action.FALLBACK}, retried_fresh=True)
    assert decision.action is Action.RESEND


# --- WS connect error, upgrade refused: fall back to SSE ------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 426, 500, 502, 503])
def test_a_refused_upgrade_falls_back_to_sse(status: int) -> None:
    decision = ws(refused(status))
    assert decision.action is Action.FALLBACK
    assert decision.notice == "fallback"
    assert f"HTTP {status}" in decision.reason
    assert decision.remember_ws_refusal is (status == 426)


def test_only_426_is_remembered() -> None:
    remembered = {s for s in (400, 403, 404, 426, 429, 500, 502, 503) if ws(refused(s)).remember_ws_refusal}
    assert remembered == {426}


def test_a_connect_error_falls_back_to_sse() -> None:
    exc = connect_failed()
    decision = ws(exc)
    assert decision.action is Action.FALLBACK
    assert decision.notice == "fallback"
    assert exc.message in decision.reason
    assert decision.remember_ws_refusal is False


@pytest.mark.parametrize("name", ["connect_error", "handshake_404", "handshake_426", "handshake_503"])
def test_no_fallback_when_it_is_not_allowed(name: str) -> None:
    assert_fail(ws(ERRORS[name](), fallback_allowed=False))


@pytest.mark.parametrize("name", ["connect_error", "handshake_404", "handshake_426", "handshake_503"])
def test_fallback_happens_at_most_once_per_turn(name: str) -> None:
    assert_fail(ws(ERRORS[name](), tried={Action.FALLBACK}))


@pytest.mark.parametrize("name", ["connect_error", "handshake_404", "handshake_426", "handshake_503"])
def test_fallback_only_leaves_websocket(name: str) -> None:
    # Already on SSE: there is nowhere to fall back to.
    assert_fail(sse(ERRORS[name]()))


@pytest.mark.parametrize(("reused", "by_id"), list(itertools.product([False, True], repeat=2)))
def test_fallback_does_not_depend_on_the_connection_or_chain(reused: bool, by_id: bool) -> None:
    assert ws(refused(503), reused=reused, by_id=by_id).action is Action.FALLBACK


@pytest.mark.parametrize("name", ["upgrade_429", "handshake_401", "handshake_403", "handshake_429"])
def test_a_rate_limit_or_a_raw_auth_refusal_never_falls_back(name: str) -> None:
    # SSE would meet the same limit: the user must wait (or, with retries, the turn waits), not see a second try.
    for reused, by_id in itertools.product([False, True], repeat=2):
        assert_fail(ws(ERRORS[name](), reused=reused, by_id=by_id, fallback_allowed=True))


@pytest.mark.parametrize("name", ["upgrade_401", "upgrade_403"])
def test_an_upgrade_refused_as_unauthorized_is_tried_once_over_sse(name: str) -> None:
    # A gateway may refuse the upgrade (LiteLLM without ?model=) while the same key works over HTTP.
    for reused, by_id in itertools.product([False, True], repeat=2):
        d = ws(ERRORS[name](), reused=reused, by_id=by_id, fallback_allowed=True)
        assert d.action is Action.FALLBACK and d.notice == "fallback" and "trying SSE" in d.reason
        assert_fail(ws(ERRORS[name](), reused=reused, by_id=by_id, fallback_allowed=False))
        assert_fail(ws(ERRORS[name](), by_id=by_id, tried={Action.FALLBACK}))


def test_a_connect_timeout_fails() -> None:
    assert_fail(ws(StreamTimeoutError(phase="connect", seconds=10), fallback_allowed=True))
    assert_fail(ws(StreamTimeoutError(phase="connect", seconds=10), reused=True))


# --- everything else fails ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "first_event_timeout",
        "idle_timeout",
        "protocol_error",
        "api_400",
        "api_401",
        "api_429",
        "api_500",
        "response_failed",
        "pool_closed",
        "config",
    ],
)
def test_other_failures_fail(name: str) -> None:
    for reused, by_id, allowed in itertools.product([False, True], repeat=3):
        assert_fail(ws(ERRORS[name](), reused=reused, by_id=by_id, fallback_allowed=allowed))


@pytest.mark.parametrize("name", sorted(set(ERRORS) - {"parent_not_found"}))
def test_every_failure_on_sse_fails(name: str) -> None:
    # Only a cache miss is resent over SSE (the chain's fault, not the transport's).
    for reused, by_id, allowed in itertools.product([False, True], repeat=3):
        assert_fail(sse(ERRORS[name](), reused=reused, by_id=by_id, fallback_allowed=allowed))


# --- a turn: each action at most once ------------------------------------------------------------------


class Turn:
    """Applies decisions the way ``turn.run_turn`` does, keeping the per-turn bookkeeping."""

    def __init__(self, *, by_id: bool = True, fallback_allowed: bool = True) -> None:
        self.transport = "ws"
        self.by_id = by_id
        self.fallback_allowed = fallback_allowed
        self.tried: set[Action] = set()
        self.retried = False
        self.reconnected = False
        self.notices: list[str] = []

    def fail_with(self, exc: ResponsesError, *, reused: bool = False) -> Action:
        decision = decide(
            exc,
            transport=self.transport,
            received=False,
            reused=reused,
            by_id=self.by_id,
            fallback_allowed=self.fallback_allowed,
            tried=self.tried,
            retried_fresh=self.retried,
            reconnected=self.reconnected,
        )
        if decision.action is Action.FAIL:
            return Action.FAIL
        self.tried.add(decision.action)
        assert decision.notice is not None
        self.notices.append(decision.notice)
        if decision.action is Action.RETRY:
            if decision.notice == "reconnect":
                self.reconnected = True
            else:
                self.retried = True
        elif decision.action is Action.RESEND:
            self.by_id = False  # the resend carries the transcript
        elif decision.action is Action.FALLBACK:
            self.transport = "sse"
        return decision.action


@pytest.mark.parametrize(
    ("name", "reused", "first"),
    [
        ("connection_cap", False, Action.RETRY),
        ("closed_1006", True, Action.RETRY),
        ("parent_not_found", False, Action.RESEND),
        ("handshake_503", False, Action.FALLBACK),
        ("connect_error", False, Action.FALLBACK),
    ],
)
def test_the_same_failure_twice_fails_the_turn(name: str, reused: bool, first: Action) -> None:
    turn = Turn()
    assert turn.fail_with(ERRORS[name](), reused=reused) is first
    assert turn.fail_with(ERRORS[name](), reused=reused) is Action.FAIL


def test_the_same_cache_miss_twice_fails_even_if_still_chained_by_id() -> None:
    turn = Turn()
    assert turn.fail_with(parent_not_found()) is Action.RESEND
    turn.by_id = True  # a store=false chain on a new connection: still nothing new to try
    assert turn.fail_with(parent_not_found()) is Action.FAIL


def test_one_of_each_recovery_in_a_turn_then_fail() -> None:
    turn = Turn()
    assert turn.fail_with(closed(), reused=True) is Action.RETRY
    assert turn.fail_with(connection_cap()) is Action.RETRY
    assert turn.fail_with(parent_not_found()) is Action.RESEND
    assert turn.fail_with(refused(502)) is Action.FALLBACK
    assert turn.transport == "sse"
    assert turn.notices == ["retry", "reconnect", "resend", "fallback"]
    # everything is used up
    for name in ("closed_1006", "connection_cap", "parent_not_found", "handshake_502", "connect_error"):
        assert turn.fail_with(ERRORS[name](), reused=True) is Action.FAIL, name


def test_decisions_are_immutable_values() -> None:
    decision = ws(refused(426))
    assert decision == Decision(Action.FALLBACK, decision.reason, "fallback", remember_ws_refusal=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.action = Action.FAIL  # type: ignore[misc]
    assert Decision(Action.FAIL) == Decision(Action.FAIL, "", None, False)


# --- retries with backoff (max_retries) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: api_error_from_status(429, code="rate_limit_exceeded"),
        lambda: api_error_from_status(500, code="server_error"),
        lambda: api_error_from_status(503),
        lambda: api_error_from_status(408),
        lambda: api_error_from_status(409),
        lambda: ConnectionClosedError(code=1006, reason="dropped"),
        connect_failed,
        lambda: refused(502),
    ],
    ids=["429", "500", "503", "408", "409", "dropped", "connect", "upgrade_502"],
)
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_transient_failures_back_off_while_retries_are_left(make: Any, transport: str) -> None:
    kw: dict[str, Any] = {"fallback_allowed": False, "max_retries": 2, "rand": 0.0}
    first = ws(make(), transport=transport, retries=0, **kw)
    second = ws(make(), transport=transport, retries=1, **kw)
    assert first.action is second.action is Action.BACKOFF and first.notice == "retry" and first.reason
    assert (first.delay, second.delay) == (0.5, 1.0)  # 0.5 s doubling, no jitter at rand=0
    assert_fail(ws(make(), transport=transport, retries=2, **kw))  # used up
    assert_fail(ws(make(), transport=transport, received=True, **kw))  # never after an event


def test_the_backoff_has_jitter_and_a_ceiling() -> None:
    err = api_error_from_status(500)
    delays = [decide(err, transport="sse", received=False, reused=False, by_id=False, fallback_allowed=False,
                     retries=n, max_retries=10, rand=1.0).delay for n in range(8)]  # fmt: skip
    assert delays[0] == 0.375 and delays[-1] == 6.0  # 25 % jitter off 0.5 s and off the 8 s ceiling


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}, 1.5),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}, 60.0 * 6),
        ({"retry-after": "120"}, None),  # past MAX_RETRY_AFTER: our own backoff instead
    ],
)
def test_the_server_says_how_long_to_wait(headers: dict[str, str], delay: float | None) -> None:
    err = APIError("busy", status=503, headers=headers)
    d = sse(err, max_retries=2, rand=0.0)
    assert d.action is Action.BACKOFF
    expected = delay if delay is not None and delay <= 60 else 0.5
    assert d.delay == expected


def test_an_http_date_retry_after_is_read() -> None:
    import email.utils
    import time

    from ipy_responses_ws.recovery import parse_retry_after

    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= (parse_retry_after({"Retry-After": when}) or 0) <= 5.0


@pytest.mark.parametrize("code", [1003, 1007, 1008, 1009, 1010])
def test_a_close_that_refuses_the_request_is_not_retried(code: int) -> None:
    assert_fail(ws(ConnectionClosedError(code=code, reason="no"), max_retries=2))


def test_no_quota_is_never_retried() -> None:
    assert_fail(sse(api_error_from_status(429, code="insufficient_quota"), max_retries=2))


@pytest.mark.parametrize("status", [404, 426])
def test_an_upgrade_refusal_that_will_not_change_is_not_retried(status: int) -> None:
    assert_fail(ws(refused(status), fallback_allowed=False, max_retries=2))


# --- gateways that refuse a foreign previous_response_id ------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: api_error_from_status(403, message="response id was not issued by this proxy"),
        lambda: api_error_from_status(404, message="Response not found"),
        lambda: api_error_from_status(400, message="bad", code="invalid_value", param="previous_response_id"),
        lambda: api_error_from_status(400, message="Invalid previous_response_id 'x'"),
    ],
    ids=["403", "404", "400_param", "400_message"],
)
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_refused_parent_id_resends_once_and_is_not_a_key_error(make: Any, transport: str) -> None:
    d = ws(make(), transport=transport, by_id=True)
    assert (
        d.action is Action.RESEND and d.notice == "resend" and "refused the previous response id" in d.reason
    )
    assert_fail(ws(make(), transport=transport, by_id=True, tried={Action.RESEND}))
    assert ws(make(), transport=transport, by_id=False).action is not Action.RESEND


def test_a_400_about_something_else_is_not_a_refused_parent() -> None:
    assert_fail(
        sse(api_error_from_status(400, message="bad", code="invalid_value", param="input"), by_id=True)
    )


def test_an_untrusted_certificate_is_neither_retried_nor_sent_over_sse() -> None:
    from ipy_responses_ws.errors import CertificateError

    err = CertificateError("The TLS certificate of api.example is not trusted.", url=URL)
    assert_fail(ws(err, fallback_allowed=True, max_retries=2))
    assert_fail(sse(err, max_retries=2))


def test_a_proxy_refusing_the_tunnel_is_named_in_the_fallback_reason() -> None:
    from ipy_responses_ws.errors import ProxyError

    err = ProxyError(status=407, proxy="http://u:secret@proxy:3128", variable="HTTPS_PROXY", url=URL)
    d = ws(err, fallback_allowed=True)
    assert d.action is Action.FALLBACK and "proxy from HTTPS_PROXY" in d.reason and "407" in d.reason
    assert "secret" not in d.reason
    assert_fail(sse(err, max_retries=2))  # a 407 will not change on a retry


def test_litellm_renamed_retry_after_is_honoured() -> None:
    from ipy_responses_ws.events import error_from_http

    err = error_from_http(
        429, b'{"error":{"message":"busy","code":"429"}}', {"llm_provider-retry-after": "2"}
    )
    d = sse(err, max_retries=2, rand=0.0)
    assert d.action is Action.BACKOFF and d.delay == 2.0
