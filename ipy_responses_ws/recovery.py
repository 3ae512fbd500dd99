"""The recovery policy: one table from "what failed, when, where" to "what the turn does next" (no I/O).

A turn's request can fail in many ways; the answer depends on what the user has already seen, the transport,
whether the chain was by id, and what was already tried in this turn. The whole table lives in :func:`decide`;
the session applies it in one place (``turn.py``) and the transports only report typed errors.

=======================================  ==============================  ===========================  =========
failure (before any event, unless said)  condition                       action                       notice
=======================================  ==============================  ===========================  =========
anything after an event was delivered    (text may be on screen)         FAIL: never regenerate       –
connection cap (``websocket_connection_  not reconnected yet this turn   RETRY on a fresh connection  reconnect
limit_reached``, §1.9)
socket closed / send failed              the socket was a reused idle    RETRY on a fresh connection  retry
                                         one, not retried yet
``previous_response_not_found``          request was chained by id,      RESEND the transcript        resend
                                         not resent yet
WS connect error, upgrade refused        transport ws, fallback allowed  FALLBACK to SSE (426: for    fallback
(404, 426, 5xx, other non-auth status)   (``fallback_to_sse``)           ``WS_426_MEMORY`` seconds)
upgrade 401/403, 429, connect timeout,   –                               FAIL                         –
stream timeout, protocol error, other
API errors, a failure on SSE
=======================================  ==============================  ===========================  =========

Each action is taken at most once per turn; a second failure of the same kind fails the turn. With
``store=false``, a RETRY or FALLBACK lands on a connection without the parent in its cache, so the chain itself
resends the transcript there (``chain.Chain.plan``); the policy does not need to say so.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import (
    APIError,
    AuthenticationError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    RateLimitError,
    ResponsesError,
)
from .stream import CONNECTION_LIMIT_CODE

__all__ = ["Action", "Failure", "Decision", "classify", "decide"]


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
    RETRY = "retry"  # the same request on a fresh connection
    RESEND = "resend"  # the full transcript instead of previous_response_id
    FALLBACK = "fallback"  # this turn over SSE
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    notice: str | None = None  # the Notice kind to emit, if any
    remember_ws_refusal: bool = False  # a 426: keep turns on SSE for a while


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
) -> Decision:
    """What the turn does after *exc* (see the module table).

    *received*: an event of this request was delivered to the consumer. *reused*: the request went over a
    pooled idle connection. *by_id*: it was chained by ``previous_response_id``. *tried*: actions already taken
    in this turn; *retried_fresh* / *reconnected* tell the two kinds of RETRY apart.
    """
    if received:
        return Decision(Action.FAIL)
    failure = classify(exc)
    if failure is Failure.CONNECTION_LIMIT:
        if transport == "ws" and not reconnected:
            return Decision(Action.RETRY, "connection age limit reached on the server", "reconnect")
        return Decision(Action.FAIL)
    if failure is Failure.CLOSED:
        if transport == "ws" and reused and not retried_fresh:
            code = getattr(exc, "code", None)
            return Decision(Action.RETRY, f"reused connection was closed ({code})", "retry")
        return Decision(Action.FAIL)
    if failure is Failure.PARENT_NOT_FOUND:
        if by_id and Action.RESEND not in tried:
            return Decision(Action.RESEND, "the server no longer has the previous response", "resend")
        return Decision(Action.FAIL)
    if failure in (Failure.CONNECT, Failure.HANDSHAKE):
        if transport == "ws" and fallback_allowed and Action.FALLBACK not in tried:
            status = getattr(exc, "status", None)
            if failure is Failure.HANDSHAKE:
                reason = f"WebSocket upgrade refused (HTTP {status})"
            else:
                reason = f"WebSocket connection failed ({exc.message})"
            return Decision(Action.FALLBACK, reason, "fallback", remember_ws_refusal=status == 426)
        return Decision(Action.FAIL)
    return Decision(Action.FAIL)
