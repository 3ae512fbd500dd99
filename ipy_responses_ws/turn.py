"""The loop side of one turn: pick the transport, send, apply the recovery policy, end the turn.

Everything here runs on the I/O loop, under the chain's lock (``session.py`` takes it). One attempt is one
transport ``run``; when it raises, :func:`~.recovery.decide` says what happens next (retry on a fresh
connection, resend the transcript, fall back to SSE, or fail) and this module does it. It is the only place
where a turn recovers: the transports never retry on their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .chain import Chain, TurnPlan, output_text
from .config import Settings
from .errors import APIError, ConnectionClosedError, ResponseFailedError, ResponsesError
from .events import Notice, ServerEvent, error_from_event
from .recovery import Action, Failure, classify, decide
from .results import Recorder, TurnResult
from .transports import ConnectionInfo, Outcome, Transport

__all__ = ["TurnSpec", "WSRefusalMemory", "WS_426_MEMORY", "run_turn", "build_body"]

#: After a WebSocket upgrade answered 426 Upgrade Required (a proxy that cannot do WebSockets), turns go
#: straight to SSE for this many seconds instead of paying a failed handshake every cell (like Codex's
#: session-wide switch, PROTOCOL.md §6). Setting ``session.transport = "ws"`` again clears it.
WS_426_MEMORY = 600.0


@dataclass
class TurnSpec:
    """What the caller asked for (``ResponsesSession.start``'s arguments, resolved)."""

    prompt: str
    chain: str
    new: bool
    transport: str | None
    overrides: dict[str, Any]
    tools: list[dict[str, Any]] | None
    on_event: Callable[[Any], Any] | None
    items: list[dict[str, Any]]
    cell: str | None = None  # the notebook cell that asked (metadata.cellId): a re-run forks its turn
    tail: bool = False  # --continue: from the tail even when the cell already has a turn


class WSRefusalMemory:
    """Remembers a 426 from one WS URL for :data:`WS_426_MEMORY` seconds (another base URL is tried afresh)."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.until = 0.0
        self.reason: str | None = None

    def remember(self, settings: Settings, reason: str) -> None:
        self.until = time.monotonic() + WS_426_MEMORY
        self.url = settings.ws_url()
        self.reason = f"{reason} (remembered for {WS_426_MEMORY:g} s)"

    def clear(self) -> None:
        self.until = 0.0

    def blocks(self, settings: Settings) -> bool:
        if time.monotonic() >= self.until:
            return False
        try:
            return settings.ws_url() == self.url
        except ResponsesError:
            return False

    def remaining(self) -> float:
        return max(0.0, round(self.until - time.monotonic(), 1))


class Transports(Protocol):
    """What a turn needs from its session: the two transports, its choice between them, the 426 memory, and what
    it learnt about each server (``ids_cross_transports[(base URL, issuing transport, using transport)] = False``
    once a gateway refused an id that the other transport issued)."""

    ws: Transport
    sse: Transport
    transport: str  # the session's choice, for a turn whose call names none
    refusals: WSRefusalMemory
    ids_cross_transports: dict[tuple[str, str, str], bool]

    def warming(self, chain: str) -> asyncio.Task[Any] | None: ...


async def run_turn(
    spec: TurnSpec, settings: Settings, chain: Chain, rec: Recorder, result: TurnResult, env: Transports
) -> None:
    """Run one turn to its end, filling *result*; raises the turn's error (a :class:`ResponsesError`)."""
    if spec.new:
        chain.reset()
    epoch = chain.epoch
    live = chain  # the chain as it is; `chain` below is the one this turn plans and commits on
    fork = live.branch_from(spec.cell) if spec.cell and not spec.tail and not spec.new else None
    if fork is not None:
        # A re-run cell: its turn continues from where the cell's previous turn started (a fork), and only a
        # completed turn makes that branch the conversation.
        chain = fork
        result.forked_from = live.cell_turn(spec.cell)  # type: ignore[arg-type]
        rec(Notice("fork", {"turn": result.forked_from}))
    before = chain.save() if spec.cell else None
    # Outputs owed to the parent's function calls (an interrupted tool turn) go first, so the server never
    # meets a call without its output (400 "No tool output found").
    items = [*chain.owed(spec.items), *spec.items]
    transport = spec.transport or env.transport
    if transport == "ws" and spec.transport is None and env.refusals.blocks(settings):
        transport = "sse"
        result.fallback_reason = env.refusals.reason
        rec(Notice("fallback", {"reason": env.refusals.reason}))
    warming = env.warming(spec.chain) if transport == "ws" else None
    if warming is not None and not warming.done():
        # A cell run right after the warm-up started: wait for its socket instead of opening a second one.
        await asyncio.wait({warming}, timeout=settings.connect_timeout)
    force_full = False
    plans: list[TurnPlan] = []
    infos: list[ConnectionInfo] = []

    def make_request(info: ConnectionInfo) -> dict[str, Any]:
        same = info.cached_response_id is not None and info.cached_response_id == chain.previous_response_id
        # A gateway whose ids do not cross transports (learnt from a refusal): resend rather than send a doomed id.
        issuer = chain.last_transport
        foreign = (
            issuer not in (None, info.transport)
            and env.ids_cross_transports.get((_server(settings), issuer, info.transport), True) is False
        )
        plan = chain.plan(
            items,
            transport=info.transport,
            store=settings.store,
            same_connection=same,
            force_full=force_full,
            foreign_id=foreign and not force_full,
            max_turns=settings.max_turns,
        )
        plans.append(plan)
        infos.append(info)
        # the request goes out now: even if the turn fails later, this transport carried it
        result.transport = info.transport
        result.connection_id = info.connection_id
        if plan.full_resend:
            result.resent_transcript = True
            if not force_full:
                rec(Notice("resend", {"reason": plan.reason}))
        if plan.trimmed:
            result.trimmed_turns = plan.trimmed
            rec(Notice("trim", {"turns": plan.trimmed, "kept": settings.max_turns}))
        return build_body(settings, plan, spec.tools)

    tried: set[Action] = set()
    fresh = False
    refused_upgrade: ResponsesError | None = None  # a 401/403 on the upgrade, while its SSE try runs
    while True:
        carrier = env.ws if transport == "ws" else env.sse
        try:
            outcome: Outcome = await carrier.run(
                make_request,
                rec,
                settings=settings,
                affinity=spec.chain,
                want_cached=chain.previous_response_id,
                fresh=fresh,
            )
            break
        except ResponsesError as exc:
            info = infos[-1] if infos else None
            plan = plans[-1] if plans else None
            by_id = plan is not None and plan.previous_response_id is not None
            decision = decide(
                exc,
                transport=transport,
                received=rec.received,
                reused=info is not None and info.reused,
                by_id=by_id,
                fallback_allowed=settings.fallback_to_sse,
                tried=tried,
                retried_fresh=result.retried,
                reconnected=result.reconnected,
                retries=result.retries,
                max_retries=settings.max_retries,
            )
            action = decision.action
            if action is Action.FAIL:
                if refused_upgrade is not None and _unhelpful_after_refused_upgrade(exc):
                    # The upgrade refused the key and the SSE try answered with something else (LiteLLM without a
                    # database: 400 "No connected db."): the key is the problem the user must fix.
                    raise refused_upgrade from None
                raise
            tried.add(action)
            if action is Action.FALLBACK and classify(exc) is Failure.AUTH:
                refused_upgrade = exc
            if action is Action.BACKOFF:
                result.retries += 1
                rec(
                    Notice(
                        "retry",
                        {
                            "reason": decision.reason,
                            "delay": round(decision.delay, 2),
                            "attempt": result.retries,
                            "of": settings.max_retries,
                        },
                    )
                )
                await asyncio.sleep(decision.delay)  # an interrupt cancels the wait like any other
                fresh = fresh or isinstance(exc, ConnectionClosedError)
                continue
            if decision.notice:
                rec(Notice(decision.notice, {"reason": decision.reason}))
            if action is Action.RESEND and by_id and chain.last_transport not in (None, transport):
                # A by-id request across transports was refused: this server's ids issued over the other transport
                # are not valid over this one (LiteLLM: HTTP resolves WS ids, WS does not resolve HTTP ids).
                env.ids_cross_transports[(_server(settings), chain.last_transport, transport)] = False
            if action is Action.RETRY:
                fresh = True
                if decision.notice == "reconnect":
                    result.reconnected = True
                else:
                    result.retried = True
            elif action is Action.RESEND:
                force_full = True
                result.resent_transcript = True
            elif action is Action.FALLBACK:
                transport = "sse"
                result.fallback_reason = decision.reason
                if decision.remember_ws_refusal:
                    env.refusals.remember(settings, decision.reason)

    terminal = outcome.terminal
    result.transport = outcome.transport
    result.connection_id = outcome.connection_id
    resp = terminal.response or {}
    result.response_id = resp.get("id") or rec.response_id
    result.model = resp.get("model") or settings.model
    result.usage = resp.get("usage")
    result.status = terminal.type.rsplit(".", 1)[-1]  # completed | incomplete | failed
    result.reasoning_summary = "".join(rec.summary)
    result.function_calls = list(rec.calls)
    if terminal.type == "response.completed":
        result.text = output_text(resp) or "".join(rec.parts)
        if live.epoch == epoch:  # a reset() while this turn ran starts a new conversation: keep it clean
            chain.commit(plans[-1], items, resp, connection_id=outcome.connection_id)
            if spec.cell and before is not None:
                chain.mark(spec.cell, before)
            if chain is not live:
                live.adopt(chain)
    else:
        result.text = "".join(rec.parts)
        if terminal.type == "response.incomplete":
            details = resp.get("incomplete_details") or {}
            result.incomplete_reason = details.get("reason") if isinstance(details, dict) else None
        else:
            result.error = failed_error(terminal, outcome.error_event, outcome.request_id)


def _unhelpful_after_refused_upgrade(exc: ResponsesError) -> bool:
    """An SSE answer that says nothing better than the upgrade's 401/403 did (a 4xx that is not a rate limit)."""
    status = getattr(exc, "status", None)
    return isinstance(exc, APIError) and status is not None and 400 <= status < 500 and status != 429


def _server(settings: Settings) -> str:
    try:
        return settings.resolved_base_url()
    except ResponsesError:
        return ""


def failed_error(
    terminal: ServerEvent, error_event: ServerEvent | None, request_id: str | None
) -> ResponseFailedError:
    base = error_from_event(terminal, request_id=request_id)
    assert isinstance(base, ResponseFailedError)
    if error_event is None:
        return base
    detail = error_from_event(error_event, request_id=request_id)
    return ResponseFailedError(
        detail.message or base.message,
        code=detail.code or base.code,
        param=detail.param,
        status=detail.status,
        response_id=base.response_id,
        request_id=request_id,
    )


def build_body(settings: Settings, plan: TurnPlan, tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The ``response.create`` / POST body: only fields that are set (explicit nulls get 400s, PRIOR-ART §2.7)."""
    body: dict[str, Any] = {"model": settings.model, "input": plan.input, "store": settings.store}
    if plan.previous_response_id:
        body["previous_response_id"] = plan.previous_response_id
    # instructions are not inherited through previous_response_id: send them every turn
    if settings.instructions:
        body["instructions"] = settings.instructions
    if settings.max_output_tokens is not None:
        body["max_output_tokens"] = settings.max_output_tokens
    if settings.temperature is not None:
        body["temperature"] = settings.temperature
    if settings.reasoning_effort or settings.reasoning_summary:
        reasoning: dict[str, Any] = {}
        if settings.reasoning_effort:
            reasoning["effort"] = settings.reasoning_effort
        if settings.reasoning_summary:
            reasoning["summary"] = settings.reasoning_summary
        body["reasoning"] = reasoning
    if tools:
        body["tools"] = tools
    return body
