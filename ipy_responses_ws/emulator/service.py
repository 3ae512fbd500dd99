"""What both transports share: state (store, faults, scripts, settings, logs) and the request logic.

:class:`Service` validates a request, resolves its parent (§1.7), plans the turn and streams it through a
:class:`Sink` (WS frames or SSE/JSON), striking the fault if there is one. The :class:`Emulator` in
``server.py`` is a Service that also serves it over aiohttp. Nothing here knows the wire framing.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from . import model, tools
from .builder import ModelSettings, Turn, build_turn, failure_tail, scripted_turn
from .connection_log import ConnectionLog, mask_key, redact_headers
from .faults import Fault, FaultSet, parse_directives
from .reasoning import Sealer, check_input_items
from .store import LaneCache, Record, ResponseStore
from .wire import RequestError, api_headers, fault_error

__all__ = ["FROM_STORE", "NO_PARENT", "Gone", "Prepared", "Service", "Sink", "duplicated_items"]

_TERMINAL_OK = ("response.completed", "response.incomplete")
#: Fault kinds that strike inside a response stream, and those that end it early.
_STREAM_KINDS = frozenset({"drop", "close", "stall", "think", "malformed", "error", "failed", "incomplete"})
_ENDING_KINDS = frozenset({"error", "failed", "incomplete"})
_ENCRYPTED_REASONING = "reasoning.encrypted_content"

NO_PARENT = object()
FROM_STORE = object()


@dataclass
class Prepared:
    new_items: list[dict[str, Any]]
    fault: Fault | None
    refuse: bool
    settings: ModelSettings


class Sink(Protocol):
    """Where a response's events go; the WS and SSE sinks differ only in framing (STYLE.md habit 3)."""

    transport: str

    async def send(self, event: dict[str, Any]) -> None: ...
    async def drop(self) -> None: ...
    async def close(self, code: int) -> None: ...
    async def malformed(self, variant: str) -> None: ...


class Gone(Exception):
    """The peer went away while we were sending."""


def duplicated_items(new_items: list[dict[str, Any]], parent: Record) -> list[str]:
    """Items of ``parent``'s conversation that ``new_items`` sends again (the livekit/agents bug).

    Named by item id, by ``call_id`` for function calls and their outputs (anywhere in the chain: a rollout
    that resends every earlier step is caught), by the message id for a re-sent assistant text.
    """
    output = [it for it in parent.response.get("output") or () if isinstance(it, dict)]
    ids = {it["id"] for it in output if it.get("id")}
    chain = [it for it in parent.items if isinstance(it, dict)]
    calls = {it["call_id"] for it in chain if it.get("type") == "function_call" and it.get("call_id")}
    answered = {
        it["call_id"] for it in chain if it.get("type") == "function_call_output" and it.get("call_id")
    }
    texts = {
        model.content_text(it.get("content")): it.get("id", "")
        for it in output
        if it.get("type") == "message" and it.get("role", "assistant") == "assistant"
    }
    sealed = {it["encrypted_content"]: it.get("id", "") for it in output if it.get("encrypted_content")}
    found: list[str] = []
    for item in new_items:
        kind = item.get("type")
        if item.get("id") in ids:
            found.append(item["id"])
        elif item.get("call_id") in {"function_call": calls, "function_call_output": answered}.get(kind, ()):
            found.append(item["call_id"])
        elif kind == "message" and item.get("role") == "assistant":
            text = model.content_text(item.get("content"))
            if text and text in texts:
                found.append(texts[text] or "assistant message")
        elif kind == "reasoning" and item.get("encrypted_content") in sealed:
            found.append(sealed[item["encrypted_content"]] or "reasoning item")
    return list(dict.fromkeys(found))


class Service:
    """State and request logic shared by the WebSocket and HTTP transports."""

    def __init__(
        self,
        api_key: str | None,
        *,
        settings: ModelSettings,
        max_connection_age: float,
        strict_lanes: bool,
        max_frame_size: int | None,
        ping_interval: float | None,
        ping_timeout: float | None,
    ) -> None:
        self._api_key = api_key
        self.settings = settings
        self.max_connection_age = max_connection_age
        self.strict_lanes = strict_lanes
        self.max_frame_size = max_frame_size
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.store = ResponseStore()
        self.faults = FaultSet()
        self.connections: list[ConnectionLog] = []
        self.sealer = Sealer(secrets.token_bytes(32))
        self._next_id = 0
        self._scripts: list[tuple[str, list[dict[str, Any]]]] = []
        self._scripts_lock = threading.Lock()

    # -- scripts and logs ---------------------------------------------------------------------------------

    def add_script(self, events: list[dict[str, Any]], *, transport: str = "any") -> None:
        """Queue a scripted response: the next request on ``transport`` ("ws", "sse" or "any") gets exactly
        these events (numbered, and tagged on named lanes) instead of the model's answer. FIFO."""
        if transport not in ("ws", "sse", "any"):
            raise ValueError("transport must be 'ws', 'sse' or 'any'")
        with self._scripts_lock:
            self._scripts.append((transport, [dict(e) for e in events]))

    def _take_script(self, transport: str) -> list[dict[str, Any]] | None:
        with self._scripts_lock:
            for i, (target, events) in enumerate(self._scripts):
                if target in ("any", transport):
                    del self._scripts[i]
                    return events
        return None

    def new_log(self, request: web.Request, transport: str) -> ConnectionLog:
        self._next_id += 1
        entry = ConnectionLog(
            id=self._next_id,
            transport=transport,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=redact_headers(request.headers),
        )
        self.connections.append(entry)
        return entry

    @property
    def ping_timeouts(self) -> int:
        """How many WebSockets the server closed because a keepalive pong did not come in time."""
        return sum(1 for c in list(self.connections) if c.closed_by_ping_timeout)

    @property
    def duplicated_context(self) -> list[dict[str, Any]]:
        """Every logged request whose input repeated output items of its parent (should stay empty)."""
        return [r for c in list(self.connections) for r in list(c.requests) if r["duplicated_context"]]

    # -- auth and HTTP errors -----------------------------------------------------------------------------

    def auth_error(self, request: web.Request) -> RequestError | None:
        if self._api_key is None:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self._api_key.encode()):
            return None
        # Azure OpenAI's style: the key alone in an `api-key` header (openai-python's AzureOpenAI sends it so).
        azure_key = request.headers.get("api-key", "").strip()
        if azure_key and not token:
            if hmac.compare_digest(azure_key.encode(), self._api_key.encode()):
                return None
            token = azure_key
        if not token:
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            # OpenAI masks the key it echoes; never repeat it whole.
            message = (
                f"Incorrect API key provided: {mask_key(token)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
        return RequestError(401, message, code="invalid_api_key")

    @staticmethod
    def http_error(exc: RequestError, started: float) -> web.Response:
        headers = api_headers(started)
        headers.update(exc.headers)
        return web.json_response(exc.body(), status=exc.status, headers=headers)

    # -- one request --------------------------------------------------------------------------------------

    def prepare(self, req: dict[str, Any]) -> Prepared:
        """Validate what both transports share; directives and metadata overrides come from here."""
        try:
            new_items = model.normalize_input(req.get("input"))
        except (TypeError, ValueError) as exc:
            raise RequestError(400, f"Invalid 'input': {exc}.", code="invalid_value", param="input") from exc
        new_items = check_input_items(
            new_items,
            store=req.get("store", True) is not False,
            sealer=self.sealer,
            find_item=self.store.item,
        )
        try:
            # Directives come from the latest user message only: a resent transcript does not re-fire them.
            fault, refuse = parse_directives(model.user_messages(new_items)[-1:])
            settings = self.settings.override(req.get("metadata"))
        except (TypeError, ValueError) as exc:
            raise RequestError(400, f"Emulator directive error: {exc}", code="invalid_value") from exc
        return Prepared(new_items, fault, refuse, settings)

    def resolve_parent(
        self, req: dict[str, Any], cache: LaneCache | None
    ) -> tuple[Record | None, str | None | object, int]:
        """§1.7: the connection cache first, then the persisted store; returns (record, lane, cached)."""
        prev = req.get("previous_response_id")
        if not prev:
            return None, NO_PARENT, 0
        if cache is not None:
            hit = cache.find(prev)
            if hit is not None:
                lane, record = hit
                return record, lane, record.tokens
        record = self.store.get(prev)
        if record is not None:
            return record, FROM_STORE, 0
        raise RequestError(
            400,
            f"Previous response with id '{prev}' not found.",
            code="previous_response_not_found",
            param="previous_response_id",
        )

    def build(
        self,
        req: dict[str, Any],
        prep: Prepared,
        parent: Record | None,
        cached: int,
        transport: str,
        fault: Fault | None,
        entry: ConnectionLog,
    ) -> Turn:
        history = list(parent.items) if parent else []
        missing = tools.unanswered_call(history + prep.new_items)
        if missing is not None:  # the real API's 400, by id and on a full resend alike
            raise RequestError(400, tools.no_output_message(missing), code=None, param="input")
        script = self._take_script(transport)
        if script is not None:
            turn = scripted_turn(script, history + prep.new_items)
        else:
            sealed = _ENCRYPTED_REASONING in (req.get("include") or ())
            turn = build_turn(
                req,
                history=history,
                new_items=prep.new_items,
                settings=prep.settings,
                cached_tokens=cached,
                refuse=prep.refuse,
                think=fault is not None and fault.kind == "think",
                seal=self.sealer.seal if sealed else None,
            )
        dups = duplicated_items(prep.new_items, parent) if parent is not None else []
        entry.requests.append(
            {
                "response_id": turn.response_id,
                "previous_response_id": req.get("previous_response_id"),
                "store": req.get("store", True) is not False,
                "duplicated_context": bool(dups),
                "duplicated_items": dups,
            }
        )
        return turn

    async def stream(
        self,
        sink: Sink,
        turn: Turn,
        fault: Fault | None,
        remember: Callable[[Turn], None],
        entry: ConnectionLog,
        *,
        registered: bool = False,
    ) -> str:
        """Send the turn's events with pacing and the fault, if any. Returns how it ended.

        A ``registered`` (not directive) fault whose ``after`` lies beyond this response is given back.
        """
        loop = asyncio.get_running_loop()
        target = loop.time()
        events = turn.events
        strike = None
        if fault is not None and fault.kind in _STREAM_KINDS:
            strike = fault.after
            if fault.kind in _ENDING_KINDS:
                strike = max(min(strike, len(events) - 1), 0)  # must come before the terminal event
            elif fault.kind == "think":
                strike = _after_thinking_starts(events)
        entry.responses.append(turn.response_id)
        for i in range(len(events) + 1):
            if i == strike:
                assert fault is not None
                if fault.kind == "drop":
                    await sink.drop()
                    return "dropped"
                if fault.kind == "close":
                    await sink.close(int(fault.code or 1011))
                    return "closed"
                if fault.kind in ("stall", "think"):
                    await asyncio.sleep(fault.seconds)
                    target = max(target, loop.time())
                elif fault.kind == "malformed":
                    await sink.malformed(fault.variant)
                else:
                    for ev in self._failure_events(sink, turn, fault):
                        await sink.send(ev)
                        entry.events_sent += 1
                    return "failed" if fault.kind != "incomplete" else "cut"
            if i == len(events):
                break
            delay = turn.delays[i]
            if delay:
                target += delay
                wait = target - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            event = events[i]
            if event["type"] in _TERMINAL_OK:
                remember(turn)  # before the terminal event: a client may continue the moment it sees it
            await sink.send(event)
            entry.events_sent += 1
        if registered and fault is not None and strike is not None and strike > len(events):
            self.faults.give_back(fault)  # docs/emulator.md: it stays armed for the next response
        return str(turn.response.get("status", "completed"))

    def _failure_events(self, sink: Sink, turn: Turn, fault: Fault) -> list[dict[str, Any]]:
        if fault.kind == "incomplete":
            # §2.7: e.g. content_filter; the unfinished output is dropped, the turn is not remembered.
            reason = str(fault.code or "content_filter")
            cut = dict(turn.base, status="incomplete", incomplete_details={"reason": reason})
            return [{"type": "response.incomplete", "response": cut}]
        if fault.kind == "error":
            err = fault_error(fault, turn.base.get("model", "gpt-5-mini"))
            tail = failure_tail(turn, code=err.code or "server_error", message=err.message, nested_error=True)
            tail[0]["error"]["type"] = err.type
            if sink.transport == "ws":
                tail[0]["status"] = err.status  # a WS error carries its HTTP-like status (§1.10)
            return tail
        return failure_tail(
            turn,
            code=str(fault.code or "server_error"),
            message=fault.message or "The server had an error while processing your request.",
            nested_error=sink.transport != "ws",
            error_type="server_error",
        )

    def remember(self, turn: Turn, cache: LaneCache | None, lane: str | None) -> None:
        if "id" not in turn.response:  # a scripted terminal event without a response id
            return
        record = Record.from_turn(turn)
        if cache is not None:
            cache.put(lane, record)
        if turn.response.get("store", True) is not False:
            self.store.put(record)


def _after_thinking_starts(events: list[dict[str, Any]]) -> int:
    """Where a ``think`` fault's silence goes: after the reasoning item's ``added`` event, or else after the
    leading ``created``/``in_progress`` events (a scripted turn without reasoning)."""
    for i, event in enumerate(events):
        item = event.get("item") or {}
        if event["type"] == "response.output_item.added" and item.get("type") == "reasoning":
            return i + 1
    i = 0
    while i < len(events) and events[i]["type"] in ("response.created", "response.in_progress"):
        i += 1
    return i
