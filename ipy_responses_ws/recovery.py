"""The recovery policy: one table from "what failed, when, where" to "what the turn does next" (no I/O).

A turn's request can fail in many ways; the answer depends on what the user has already seen, the transport,
whether the chain was by id, and what was already tried in this turn. The whole table lives in :func:`decide`;
the session applies it in one place (``turn.py``) and the transports only report typed errors.

====================================  ================================  ==============================  =========
failure (before any event)            condition                         action                          notice
====================================  ================================  ==============================  =========
anything, after an event was shown    (text may be on screen)           FAIL: never regenerate          –
connection cap (``websocket_          WS, not reconnected yet           RETRY at once, fresh socket     reconnect
connection_limit_reached``, §1.9)
socket closed / send failed           WS, a reused idle socket, once    RETRY at once, fresh socket     retry
                                      otherwise                         BACKOFF                         retry
``previous_response_not_found``       chained by id, not resent yet     RESEND the transcript           resend
403, 404, or a 400 about the         chained by id, not resent yet     RESEND the transcript           resend
previous response id, on a request    (gateways mint their own ids)
WS connect error; upgrade refused     WS, ``fallback_to_sse``, once     FALLBACK to SSE (426: for       fallback
(404, 426, 5xx, ...; 401/403 too)                                       ``WS_426_MEMORY`` seconds)
429 (not ``insufficient_quota``),     retries left (``max_retries``)    BACKOFF: wait ``retry-after``   retry
408, 409, 5xx, connect errors                                           or 0.5·2^n s (≤ 8 s, jitter)
401/403 (after the SSE try), quota,   –                                 FAIL with the typed error       –
untrusted certificates, timeouts,
protocol errors, others
====================================  ================================  ==============================  =========

RETRY, RESEND and FALLBACK are taken at most once per turn; BACKOFF up to ``max_retries`` times (default 2, like
openai-python). With ``store=false``, a RETRY or FALLBACK lands on a connection without the parent in its cache, so
the chain itself resends the transcript there (``chain.Chain.plan``); the policy does not need to say so.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from .errors import (
    APIError,
    AuthenticationError,
    CertificateError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    ProxyError,
    RateLimitError,
    ResponseFailedError,
    ResponsesError,
)
from .retry_after import parse_retry_after
from .stream import CONNECTION_LIMIT_CODE

__all__ = ["Action", "Failure", "Decision", "classify", "decide", "retry_delay", "parse_retry_after"]


class Failure(enum.Enum):
    """What went wrong, as far as recovery cares."""

    CONNECTION_LIMIT = "connection_limit"
    CLOSED = "closed"
    PARENT_NOT_FOUND = "parent_not_found"
    CONNECT = "connect"
    HANDSHAKE = "handshake"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    OTHER = "other"  # timeouts, protocol errors, other API errors, failed responses


class Action(enum.Enum):
    RETRY = "retry"  # the same request on a fresh connection, at once
    BACKOFF = "backoff"  # the same request again after Decision.delay seconds (counted against max_retries)
    RESEND = "resend"  # the full transcript instead of previous_response_id
    FALLBACK = "fallback"  # this turn over SSE
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    notice: str | None = None  # the Notice kind to emit, if any
    remember_ws_refusal: bool = False  # a 426: keep turns on SSE for a while
    delay: float = 0.0  # for BACKOFF: seconds to wait first


def classify(exc: ResponsesError) -> Failure:
    """Map a transport's or server's error to a :class:`Failure`."""
    if isinstance(exc, APIError):
        if exc.code == CONNECTION_LIMIT_CODE:
            return Failure.CONNECTION_LIMIT
        if exc.code == "previous_response_not_found":
            return Failure.PARENT_NOT_FOUND
        if isinstance(exc, AuthenticationError):
            return Failure.AUTH
        if isinstance(exc, RateLimitError):
            return Failure.RATE_LIMITED
        return Failure.OTHER
    if isinstance(exc, ConnectionClosedError):
        return Failure.CLOSED
    if isinstance(exc, HandshakeError):
        # The WS transport raises these statuses as API errors; a raw HandshakeError with one is the same refusal
        # (SSE would send the same key to the same server), never fallback-eligible.
        if exc.status in (401, 403):
            return Failure.AUTH
        if exc.status == 429:
            return Failure.RATE_LIMITED
        return Failure.HANDSHAKE
    if isinstance(exc, ConnectError):
        return Failure.CONNECT
    return Failure.OTHER


def decide(
    exc: ResponsesError,
    *,
    transport: str,
    received: bool,
    reused: bool,
    by_id: bool,
    fallback_allowed: bool,
    tried: frozenset[Action] | set[Action] = frozenset(),
    retried_fresh: bool = False,
    reconnected: bool = False,
    retries: int = 0,
    max_retries: int = 0,
    rand: float | None = None,
) -> Decision:
    """What the turn does after *exc* (see the module table).

    *received*: an event of this request was delivered to the consumer. *reused*: the request went over a
    pooled idle connection. *by_id*: it was chained by ``previous_response_id``. *tried*: actions already taken
    in this turn; *retried_fresh* / *reconnected* tell the two kinds of RETRY apart. *retries* BACKOFFs were
    already taken out of *max_retries*; *rand* (0..1) fixes the jitter for tests.
    """
    if received:
        return Decision(Action.FAIL)
    failure = classify(exc)
    status = getattr(exc, "status", None)
    if failure is Failure.CONNECTION_LIMIT:
        if transport == "ws" and not reconnected:
            return Decision(Action.RETRY, "connection age limit reached on the server", "reconnect")
        return Decision(Action.FAIL)
    if failure is Failure.CLOSED:
        if transport == "ws" and reused and not retried_fresh:
            code = getattr(exc, "code", None)
            return Decision(Action.RETRY, f"reused connection was closed ({code})", "retry")
        if getattr(exc, "code", None) in PERMANENT_CLOSE_CODES:
            return Decision(Action.FAIL)  # the same request would be refused the same way
        return _backoff(exc, "the connection dropped before any event", retries, max_retries, rand)
    if failure is Failure.PARENT_NOT_FOUND:
        if by_id and Action.RESEND not in tried:
            return Decision(Action.RESEND, "the server no longer has the previous response", "resend")
        return Decision(Action.FAIL)
    if by_id and Action.RESEND not in tried and _refuses_the_parent(exc):
        # Gateways mint their own ids (LiteLLM: other ids over HTTP than over WebSocket) and refuse a foreign one
        # with 400/403/404 before anything streams: like previous_response_not_found, resend the conversation.
        return Decision(
            Action.RESEND,
            f"the server refused the previous response id (HTTP {status}): resent the conversation",
            "resend",
        )
    if isinstance(exc, CertificateError):
        return Decision(Action.FAIL)  # SSE or a retry meets the same certificate: the user must add the CA
    if transport == "ws" and fallback_allowed and Action.FALLBACK not in tried:
        if isinstance(exc, ProxyError):
            reason = f"the proxy from {exc.variable} refused the WebSocket tunnel (HTTP {status})"
            return Decision(Action.FALLBACK, reason, "fallback")
        if failure is Failure.HANDSHAKE:
            reason = f"WebSocket upgrade refused (HTTP {status})"
            return Decision(Action.FALLBACK, reason, "fallback", remember_ws_refusal=status == 426)
        if failure is Failure.CONNECT:
            return Decision(Action.FALLBACK, f"WebSocket connection failed ({exc.message})", "fallback")
        if failure is Failure.AUTH and getattr(exc, "phase", None) == "handshake":
            # A gateway may refuse the upgrade (LiteLLM without ?model=) while the same key works over HTTP: try SSE
            # once; if it is refused there too, the turn fails with the authentication error.
            return Decision(
                Action.FALLBACK, f"WebSocket upgrade refused (HTTP {status}); trying SSE", "fallback"
            )
    if failure is Failure.RATE_LIMITED:
        if getattr(exc, "code", None) == "insufficient_quota":
            return Decision(Action.FAIL)  # no retry makes quota appear
        return _backoff(exc, f"{status or 429} rate limited", retries, max_retries, rand)
    if failure is Failure.CONNECT or (failure is Failure.HANDSHAKE and status is not None and status >= 500):
        return _backoff(
            exc, _short(exc), retries, max_retries, rand
        )  # a 404 or 426 will not change on a retry
    retryable = status in RETRY_STATUSES or (status is not None and status >= 500)
    if (
        failure is Failure.OTHER
        and retryable
        and isinstance(exc, APIError)
        and not isinstance(exc, ResponseFailedError)
    ):
        return _backoff(exc, f"HTTP {status}", retries, max_retries, rand)
    return Decision(Action.FAIL)


#: Close codes that say the request itself is unacceptable (RFC 6455 §7.4.1: unsupported data, invalid payload,
#: policy violation, message too big, missing extension): retrying sends the same request to the same refusal.
PERMANENT_CLOSE_CODES = frozenset({1003, 1007, 1008, 1009, 1010})
#: Statuses retried with backoff besides 429 and 5xx (openai-python's set: request timeout, conflict).
RETRY_STATUSES = frozenset({408, 409})
#: The backoff curve of openai-python: 0.5 s doubling to at most 8 s, minus up to 25 % jitter.
INITIAL_DELAY = 0.5
MAX_DELAY = 8.0
#: A server's retry-after is honoured up to this many seconds; a longer wait is not worth blocking a cell for.
MAX_RETRY_AFTER = 60.0


def retry_delay(exc: ResponsesError, attempt: int, rand: float | None = None) -> float:
    """Seconds to wait before retry number *attempt* (0-based): the server's ``retry-after-ms`` /
    ``retry-after`` / exhausted rate-limit reset when it gives one (up to :data:`MAX_RETRY_AFTER`), else
    exponential backoff with jitter."""
    hinted = server_retry_after(exc)
    if hinted is not None and 0 <= hinted <= MAX_RETRY_AFTER:
        return hinted
    jitter = 1 - 0.25 * (random.random() if rand is None else rand)
    return min(INITIAL_DELAY * 2**attempt, MAX_DELAY) * jitter


def server_retry_after(exc: ResponsesError) -> float | None:
    """What the server asked us to wait, if anything (headers kept on the error, PROTOCOL.md §3)."""
    after = getattr(exc, "retry_after", None)
    if isinstance(after, int | float):
        return float(after)
    return parse_retry_after(getattr(exc, "headers", None))


def _backoff(exc: ResponsesError, why: str, retries: int, max_retries: int, rand: float | None) -> Decision:
    if retries >= max_retries:
        return Decision(Action.FAIL)
    delay = retry_delay(exc, retries, rand)
    return Decision(Action.BACKOFF, why, "retry", delay=delay)


def _refuses_the_parent(exc: ResponsesError) -> bool:
    if not isinstance(exc, APIError) or isinstance(exc, ResponseFailedError) or getattr(exc, "phase", None):
        return False
    if exc.status in (403, 404):
        return True
    text = (exc.message or "").lower()
    return exc.status == 400 and (
        exc.param == "previous_response_id" or "previous_response" in text or "response id" in text
    )


def _short(exc: ResponsesError) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status}"
    return exc.message.split(":")[0][:80] or type(exc).__name__
