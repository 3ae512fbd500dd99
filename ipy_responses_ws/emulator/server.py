"""The emulator's aiohttp server: WebSocket mode and HTTP (SSE / JSON) on one port.

Routes (``prefix`` defaults to ``/v1``):

* ``GET  {prefix}/responses`` with ``Upgrade: websocket``: WebSocket mode (PROTOCOL.md §1).
* ``POST {prefix}/responses``: SSE when ``stream: true`` (§3), a JSON Response otherwise.
* ``GET  {prefix}/responses/{id}``: a stored response.
* ``GET|POST|DELETE /_emulator/faults`` and ``GET /_emulator/log``: the loopback-only control plane.

Only aiohttp and the standard library are imported, so the emulator runs without Jupyter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from . import model
from .builder import ModelSettings, Turn, build_turn, error_body, failure_tail, scripted_turn, ws_error
from .faults import Fault, FaultSet, parse_directives
from .sse import encode_sse
from .store import LaneCache, Record, ResponseStore

__all__ = ["ConnectionLog", "Emulator", "mask_key"]

log = logging.getLogger(__name__)

# §1.5: lane names, at most 16 active responses and 32 named lanes per connection.
_STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
MAX_ACTIVE = 16
MAX_LANES = 32
#: Request fields that exist only in WebSocket mode (§1.3, §1.4): HTTP answers 400 for them.
_WS_ONLY_FIELDS = ("generate", "stream_id")
_TERMINAL_OK = ("response.completed", "response.incomplete")
#: Fault kinds that strike inside a response stream, and those that end it early.
_STREAM_KINDS = frozenset({"drop", "close", "stall", "malformed", "error", "failed", "incomplete"})
_ENDING_KINDS = frozenset({"error", "failed", "incomplete"})
_LOOPBACK = ("127.0.0.1", "::1")
_REDACTED_HEADERS = ("authorization", "api-key", "openai-api-key")
_OPENAI_VERSION = "2020-10-01"


def mask_key(key: str) -> str:
    """Mask a key the way OpenAI's 401 message does: a few leading and trailing characters only."""
    key = key.strip()
    if len(key) < 12:
        return "***"
    return f"{key[:6]}***...{key[-4:]}"


def _redact_headers(headers: Any) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        if name.lower() in _REDACTED_HEADERS:
            scheme, _, token = value.partition(" ")
            value = f"{scheme} {mask_key(token)}" if token else mask_key(value)
        out[name] = value
    return out


@dataclass
class ConnectionLog:
    """What one WS connection or one HTTP request looked like from the server side."""

    id: int
    transport: str  # "ws" | "http"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # Authorization masked
    status: int | None = None  # 101 for an accepted upgrade, else the HTTP status answered
    frames: list[Any] = field(default_factory=list)  # client frames / POST bodies (parsed JSON when valid)
    close_code: int | None = None  # the close code the *client* sent, if it closed first
    server_close_code: int | None = None  # the code the server closed with (1006 = dropped)
    responses: list[str] = field(default_factory=list)  # response ids served
    events_sent: int = 0
    opened_at: float = field(default_factory=time.time)
    closed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _RequestError(Exception):
    """A request-level error before any event: a wrapped WS ``error`` or an HTTP error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None,
        type_: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.param = status, message, code, type_, param
        self.headers = headers or {}

    def ws_event(self) -> dict[str, Any]:
        return ws_error(
            self.status,
            self.message,
            code=self.code,
            type_=self.type,
            param=self.param,
            headers=self.headers or None,
        )

    def body(self) -> dict[str, Any]:
        return {"error": error_body(self.message, type_=self.type, code=self.code, param=self.param)}


def _fault_error(fault: Fault, model_name: str) -> _RequestError:
    """The error a ``kind="error"`` fault stands for, with realistic text and headers."""
    status = fault.status or 500
    headers = _ratelimit_headers()
    if status == 429:
        code, type_ = "rate_limit_exceeded", "requests"
        message = (
            f"Rate limit reached for {model_name} in organization org-emulator on requests per min (RPM): "
            "Limit 500, Used 500, Requested 1. Please try again in 1s."
        )
        headers.update({"retry-after": "1", "retry-after-ms": "1000", "x-ratelimit-remaining-requests": "0"})
    elif status >= 500:
        code, type_ = "server_error", "server_error"
        message = "The server had an error while processing your request. Sorry about that!"
    else:
        code, type_ = "invalid_request_error", "invalid_request_error"
        message = "The emulator was asked to reject this request."
    if status == 429 or status >= 500:
        headers["x-should-retry"] = "true"
    headers.update(fault.headers)
    return _RequestError(
        status,
        fault.message or message,
        code=str(fault.code) if fault.code is not None else code,
        type_=type_,
        headers=headers,
    )


def _ratelimit_headers() -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-remaining-tokens": "199000",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-reset-tokens": "300ms",
    }


def _request_id() -> str:
    return "req_" + secrets.token_hex(16)


@dataclass
class _Prepared:
    new_items: list[dict[str, Any]]
    fault: Fault | None
    refuse: bool
    settings: ModelSettings


class _Sink(Protocol):
    """Where a response's events go; the WS and SSE sinks differ only in framing (STYLE.md habit 3)."""

    transport: str

    async def send(self, event: dict[str, Any]) -> None: ...
    async def drop(self) -> None: ...
    async def close(self, code: int) -> None: ...
    async def malformed(self, variant: str) -> None: ...


class _Gone(Exception):
    """The peer went away while we were sending."""


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


class Emulator:
    """A faithful local stand-in for the OpenAI Responses API (WebSocket mode and HTTP SSE).

    >>> with Emulator(api_key="sk-test-FAKE-123456").run_in_thread() as emu:
    ...     emu.base_url  # doctest: +SKIP
    'http://127.0.0.1:40123/v1'
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        ttft: float = 0.0,
        token_rate: float = 0.0,
        answer_words: int | None = None,
        max_connection_age: float = 3600.0,
        strict_lanes: bool = False,
        max_frame_size: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "/v1",
    ) -> None:
        self._api_key = api_key
        self.settings = ModelSettings(ttft=ttft, token_rate=token_rate, words=answer_words)
        self.max_connection_age = max_connection_age
        self.strict_lanes = strict_lanes
        self.max_frame_size = max_frame_size
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.store = ResponseStore()
        self.faults = FaultSet()
        self.connections: list[ConnectionLog] = []
        self._base_url: str | None = None
        self._ws_conns: set[_WsConnection] = set()
        self._next_id = 0
        self._scripts: list[tuple[str, list[dict[str, Any]]]] = []
        self._scripts_lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"Emulator(base_url={self._base_url!r}, auth={'on' if self._api_key else 'off'})"

    # -- public API -------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` once serving (the SDK's ``base_url``)."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not serving; use run_in_thread() or serve()")
        return self._base_url

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[4:] + "/responses"

    def add_fault(self, fault: Fault) -> None:
        self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

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

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[Emulator]:
        """Serve on the running loop until the block exits."""
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{host}:{port}{self.prefix}"
        try:
            yield self
        finally:
            for conn in list(self._ws_conns):
                await conn.shutdown()
            await runner.cleanup()
            self._base_url = None

    @contextlib.contextmanager
    def run_in_thread(self) -> Iterator[Emulator]:
        """Serve from a daemon thread with its own loop (for sync tests and notebooks)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        stop: list[asyncio.Event] = []

        async def main() -> None:
            stop.append(asyncio.Event())
            try:
                async with self.serve():
                    ready.set()
                    await stop[0].wait()
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(main())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        thread = threading.Thread(target=run, name="responses-emulator", daemon=True)
        thread.start()
        if not ready.wait(30):
            raise RuntimeError("the emulator did not start within 30 s")
        if failure:
            thread.join(5)
            raise failure[0]
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(stop[0].set)
            thread.join(10)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        p = self.prefix
        app.router.add_get(p + "/responses", self._handle_ws)
        app.router.add_post(p + "/responses", self._handle_post)
        app.router.add_get(p + "/responses/{id}", self._handle_retrieve)
        app.router.add_route("*", "/_emulator/faults", self._handle_faults)
        app.router.add_get("/_emulator/log", self._handle_log)
        return app

    # -- shared request logic -----------------------------------------------------------------------------

    def _new_log(self, request: web.Request, transport: str) -> ConnectionLog:
        self._next_id += 1
        entry = ConnectionLog(
            id=self._next_id,
            transport=transport,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=_redact_headers(request.headers),
        )
        self.connections.append(entry)
        return entry

    def _auth_error(self, request: web.Request) -> _RequestError | None:
        if self._api_key is None:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), self._api_key.encode()):
            return None
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
        return _RequestError(401, message, code="invalid_api_key")

    def _http_error(self, exc: _RequestError, started: float) -> web.Response:
        headers = self._api_headers(started)
        headers.update(exc.headers)
        return web.json_response(exc.body(), status=exc.status, headers=headers)

    @staticmethod
    def _api_headers(started: float) -> dict[str, str]:
        headers = {
            "x-request-id": _request_id(),
            "openai-version": _OPENAI_VERSION,
            "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
            "openai-organization": "org-emulator",
        }
        headers.update(_ratelimit_headers())
        return headers

    def _prepare(self, req: dict[str, Any]) -> _Prepared:
        """Validate what both transports share; directives and metadata overrides come from here."""
        try:
            new_items = model.normalize_input(req.get("input"))
        except (TypeError, ValueError) as exc:
            raise _RequestError(400, f"Invalid 'input': {exc}.", code="invalid_value", param="input") from exc
        try:
            fault, refuse = parse_directives(model.user_messages(new_items))
            settings = self.settings.override(req.get("metadata"))
        except (TypeError, ValueError) as exc:
            raise _RequestError(400, f"Emulator directive error: {exc}", code="invalid_value") from exc
        return _Prepared(new_items, fault, refuse, settings)

    def _resolve_parent(
        self, req: dict[str, Any], cache: LaneCache | None
    ) -> tuple[Record | None, str | None | object, int]:
        """§1.7: the connection cache first, then the persisted store; returns (record, lane, cached)."""
        prev = req.get("previous_response_id")
        if not prev:
            return None, _NO_PARENT, 0
        if cache is not None:
            hit = cache.find(prev)
            if hit is not None:
                lane, record = hit
                return record, lane, record.tokens
        record = self.store.get(prev)
        if record is not None:
            return record, _FROM_STORE, 0
        raise _RequestError(
            400,
            f"Previous response with id '{prev}' not found.",
            code="previous_response_not_found",
            param="previous_response_id",
        )

    def _build(
        self, req: dict[str, Any], prep: _Prepared, parent: Record | None, cached: int, transport: str
    ) -> Turn:
        history = list(parent.items) if parent else []
        script = self._take_script(transport)
        if script is not None:
            return scripted_turn(script, history + prep.new_items)
        return build_turn(
            req,
            history=history,
            new_items=prep.new_items,
            settings=prep.settings,
            cached_tokens=cached,
            refuse=prep.refuse,
        )

    async def _stream(
        self,
        sink: _Sink,
        turn: Turn,
        fault: Fault | None,
        remember: Callable[[Turn], None],
        entry: ConnectionLog,
    ) -> str:
        """Send the turn's events with pacing and the fault, if any. Returns how it ended."""
        loop = asyncio.get_running_loop()
        target = loop.time()
        events = turn.events
        strike = None
        if fault is not None and fault.kind in _STREAM_KINDS:
            strike = fault.after
            if fault.kind in _ENDING_KINDS:
                strike = max(min(strike, len(events) - 1), 0)  # must come before the terminal event
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
                if fault.kind == "stall":
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
        return str(turn.response.get("status", "completed"))

    def _failure_events(self, sink: _Sink, turn: Turn, fault: Fault) -> list[dict[str, Any]]:
        if fault.kind == "incomplete":
            # §2.7: e.g. content_filter; the unfinished output is dropped, the turn is not remembered.
            reason = str(fault.code or "content_filter")
            cut = dict(turn.base, status="incomplete", incomplete_details={"reason": reason})
            return [{"type": "response.incomplete", "response": cut}]
        if fault.kind == "error":
            err = _fault_error(fault, turn.base.get("model", "gpt-5-mini"))
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

    def _remember(self, turn: Turn, cache: LaneCache | None, lane: str | None) -> None:
        if "id" not in turn.response:  # a scripted terminal event without a response id
            return
        record = Record.from_turn(turn)
        if cache is not None:
            cache.put(lane, record)
        if turn.response.get("store", True) is not False:
            self.store.put(record)

    # -- HTTP -------------------------------------------------------------------------------------------

    async def _handle_post(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        entry = self._new_log(request, "http")
        try:
            raw = await request.read()
            try:
                req = json.loads(raw)
            except ValueError:
                entry.frames.append(raw.decode("utf-8", "replace"))
                raise _RequestError(
                    400, "We could not parse the JSON body of your request.", code=None
                ) from None
            entry.frames.append(req)
            if not isinstance(req, dict):
                raise _RequestError(400, "The request body must be a JSON object.", code=None)
            auth = self._auth_error(request)
            if auth is not None:
                raise auth
            for name in _WS_ONLY_FIELDS:
                if name in req:
                    # §1.4/§1.5: WS-only fields leak into HTTP as "Unknown parameter" (wording unverified).
                    raise _RequestError(
                        400, f"Unknown parameter: '{name}'.", code="unknown_parameter", param=name
                    )
            prep = self._prepare(req)
            fault = prep.fault or self.faults.take("sse", "request")
            if fault is not None and fault.kind == "unauthorized":
                raise _RequestError(
                    401, "Incorrect API key provided: sk-***. (emulator fault)", code="invalid_api_key"
                )
            parent, _lane, _cached = self._resolve_parent(req, None)
            if fault is not None and fault.kind == "error" and fault.after == 0:
                raise _fault_error(fault, req.get("model") or "gpt-5-mini")
            turn = self._build(req, prep, parent, 0, "sse")
        except _RequestError as exc:
            entry.status = exc.status
            return self._http_error(exc, started)

        def remember(t: Turn) -> None:
            self._remember(t, None, None)

        headers = self._api_headers(started)
        if req.get("stream"):
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_type = "text/event-stream"
            resp.charset = "utf-8"
            resp.headers["Cache-Control"] = "no-cache"
            await resp.prepare(request)
            entry.status = 200
            sink = _SseSink(request, resp, entry)
            try:
                await self._stream(sink, turn, fault, remember, entry)
                if not sink.aborted:
                    await resp.write_eof()  # §3: close after the terminal event, no [DONE]
            except (ConnectionError, _Gone):
                pass
            return resp
        collect = _CollectSink(request)
        outcome = await self._stream(collect, turn, fault, remember, entry)
        if outcome == "dropped":
            return web.Response(status=500)  # never reaches the peer: the transport is aborted
        if collect.malformed_body is not None:
            entry.status = 200
            return web.Response(body=collect.malformed_body, content_type="application/json", headers=headers)
        terminal = next(
            (e for e in reversed(collect.events) if e["type"].startswith("response.") and "response" in e),
            None,
        )
        if terminal is None:
            entry.status = 500
            return self._http_error(
                _RequestError(500, "The stream was cut.", code="server_error", type_="server_error"), started
            )
        entry.status = 200
        return web.json_response(terminal["response"], headers=headers, dumps=_dumps)

    async def _handle_retrieve(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        entry = self._new_log(request, "http")
        auth = self._auth_error(request)
        record = self.store.get(request.match_info["id"])
        if auth is None and record is None:
            auth = _RequestError(
                404,
                f"Response with id '{request.match_info['id']}' not found.",
                code=None,
                param="response_id",
            )
        if auth is not None:
            entry.status = auth.status
            return self._http_error(auth, started)
        entry.status = 200
        return web.json_response(record.response, headers=self._api_headers(started), dumps=_dumps)

    # -- control plane ----------------------------------------------------------------------------------

    @staticmethod
    def _loopback_only(request: web.Request) -> None:
        if request.remote not in _LOOPBACK:
            raise web.HTTPForbidden(text="the emulator control plane is loopback-only")

    async def _handle_faults(self, request: web.Request) -> web.Response:
        self._loopback_only(request)
        if request.method == "DELETE":
            self.clear_faults()
        elif request.method == "POST":
            try:
                data = await request.json()
                for spec in data if isinstance(data, list) else [data]:
                    self.add_fault(Fault.from_dict(spec))
            except (ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        elif request.method != "GET":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST", "DELETE"])
        return web.json_response({"faults": [f.to_dict() for f in self.faults.snapshot()]})

    async def _handle_log(self, request: web.Request) -> web.Response:
        self._loopback_only(request)
        return web.json_response({"connections": [c.to_dict() for c in self.connections]}, dumps=_dumps)

    # -- WebSocket --------------------------------------------------------------------------------------

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        entry = self._new_log(request, "ws")
        ws = web.WebSocketResponse(
            compress=True,  # permessage-deflate when the client offers it (Codex does, §1.1)
            max_msg_size=self.max_frame_size or 0,  # 0 = unlimited; a set limit closes with 1009
            autoping=True,
            timeout=2.0,
        )
        if not ws.can_prepare(request).ok:
            entry.status = 400
            return self._http_error(
                _RequestError(400, "Expected a WebSocket upgrade or a POST.", code=None), started
            )
        refusal = self._auth_error(request)
        fault = self.faults.take("ws", "upgrade")
        if refusal is None and fault is not None:
            if fault.kind == "unauthorized":
                refusal = _RequestError(
                    401, "Incorrect API key provided. (emulator fault)", code="invalid_api_key"
                )
            else:
                refusal = _RequestError(
                    fault.status or 426,
                    fault.message or f"WebSocket upgrade refused by the emulator (HTTP {fault.status}).",
                    code=str(fault.code) if fault.code else None,
                    headers=fault.headers,
                )
        if refusal is not None:
            # §1.1: a plain HTTP error on the upgrade, no 101.
            entry.status = refusal.status
            return self._http_error(refusal, started)
        ws.headers.update({"x-request-id": _request_id(), "openai-version": _OPENAI_VERSION})
        await ws.prepare(request)
        entry.status = 101
        conn = _WsConnection(self, request, ws, entry)
        self._ws_conns.add(conn)
        try:
            await conn.run()
        finally:
            self._ws_conns.discard(conn)
            entry.closed_at = time.time()
        return ws


_NO_PARENT = object()
_FROM_STORE = object()


class _WsConnection:
    """One WebSocket: a reader, one FIFO worker per lane, a lane cache, and the age cap."""

    def __init__(self, emu: Emulator, request: web.Request, ws: web.WebSocketResponse, entry: ConnectionLog):
        self.emu, self.request, self.ws, self.entry = emu, request, ws, entry
        self.cache = LaneCache()
        self.queues: dict[str | None, asyncio.Queue[dict[str, Any]]] = {}
        self.workers: dict[str | None, asyncio.Task[None]] = {}
        self.busy: dict[str | None, int] = {}
        self.named: set[str] = set()
        self.active = asyncio.Semaphore(MAX_ACTIVE)
        self.send_lock = asyncio.Lock()
        self.opened = time.monotonic()
        self.finished = 0
        self.closed = False

    async def run(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.entry.frames.append(f"<binary frame, {len(msg.data)} bytes>")
                    await self.send_error(
                        _RequestError(400, "Binary frames are not supported; send JSON text.", code=None),
                        None,
                    )
                elif msg.type == WSMsgType.CLOSE:
                    if not self.closed:
                        self.entry.close_code = self.ws.close_code  # the code the client sent
                    break
                else:  # CLOSING, CLOSED, ERROR (e.g. 1009 on an oversized frame)
                    if msg.type == WSMsgType.ERROR and self.entry.server_close_code is None:
                        # The code we closed with (1009 for an oversized frame) is on the error itself;
                        # ws.close_code may already read 1006 when the peer dropped during the close.
                        code = getattr(msg.data, "code", None)
                        self.entry.server_close_code = code if isinstance(code, int) else self.ws.close_code
                    break
        finally:
            for task in self.workers.values():
                task.cancel()
            await asyncio.gather(*self.workers.values(), return_exceptions=True)
            self.cache.clear()  # §1.7: closing clears every lane's cache
            if not self.ws.closed:
                await self.ws.close()

    async def shutdown(self) -> None:
        """Server is stopping: close with 1001 (going away)."""
        self.closed = True
        self.entry.server_close_code = 1001
        with contextlib.suppress(Exception):
            await self.ws.close(code=1001, message=b"emulator stopping")

    async def on_text(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            self.entry.frames.append(data)
            await self.send_error(
                _RequestError(400, "Invalid JSON in WebSocket message.", code="invalid_json"), None
            )
            return
        self.entry.frames.append(payload)
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "response.create":
            await self.on_create(payload)
        elif kind == "response.steer":
            await self.send_steer_failed(payload)
        else:
            # Unknown client event: an error event, and the socket stays open (§ checklist, emulator choice).
            await self.send_error(
                _RequestError(
                    400,
                    f"Invalid value: {kind!r}. Supported values are: 'response.create' and 'response.steer'.",
                    code="invalid_value",
                    param="type",
                ),
                None,
            )

    async def on_create(self, req: dict[str, Any]) -> None:
        if time.monotonic() - self.opened >= self.emu.max_connection_age:
            await self.hit_cap()
            return
        lane: str | None = None
        if "stream_id" in req:
            lane = req["stream_id"]
            if not isinstance(lane, str) or not _STREAM_ID_RE.match(lane):
                await self.send_error(
                    _RequestError(
                        400,
                        "Invalid 'stream_id': expected 1-256 characters matching ^[A-Za-z0-9_.-]+$.",
                        code="invalid_stream_id",
                        param="stream_id",
                    ),
                    None,  # §1.5: no stream_id on this event
                )
                return
            if lane not in self.named:
                if len(self.named) >= MAX_LANES:
                    await self.send_error(
                        _RequestError(
                            400,
                            f"Too many stream_ids on this connection: the limit is {MAX_LANES}.",
                            code="websocket_stream_limit_reached",
                            param="stream_id",
                        ),
                        lane,
                    )
                    return
                self.named.add(lane)
        if req.get("background"):
            await self.send_error(
                _RequestError(
                    400,
                    "background is not supported over WebSocket.",
                    code="unsupported_parameter",
                    param="background",
                ),
                lane,
            )
            return
        if self.emu.strict_lanes and self.busy.get(lane):
            # Optional "gateway" behaviour (§1.8): reject instead of queueing.
            await self.send_error(
                _RequestError(
                    409,
                    "A response is already in flight on this stream.",
                    code="response_already_in_flight",
                ),
                lane,
            )
            return
        self.busy[lane] = self.busy.get(lane, 0) + 1
        queue = self.queues.get(lane)
        if queue is None:
            queue = self.queues[lane] = asyncio.Queue()
            self.workers[lane] = asyncio.create_task(self.lane_worker(lane, queue))
        queue.put_nowait(req)

    async def lane_worker(self, lane: str | None, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Per-lane FIFO (§1.5, §1.8): a queued create waits for the one before it, even if abandoned."""
        while True:
            req = await queue.get()
            try:
                async with self.active:
                    await self.serve_one(lane, req)
            except _Gone:
                return
            finally:
                self.busy[lane] -= 1

    async def serve_one(self, lane: str | None, req: dict[str, Any]) -> None:
        parent_lane: object = _NO_PARENT
        emu = self.emu
        try:
            prep = emu._prepare(req)
            parent, parent_lane, cached = emu._resolve_parent(req, self.cache)
            fault = prep.fault or emu.faults.take("ws", "request", finished_responses=self.finished)
            if fault is not None and fault.kind == "cap":
                await self.hit_cap()
                raise _Gone
            if fault is not None and fault.kind == "error" and fault.after == 0:
                raise _fault_error(fault, req.get("model") or "gpt-5-mini")
            turn = emu._build(req, prep, parent, cached, "ws")
        except _RequestError as exc:
            await self.send_error(exc, lane)
            if parent_lane == lane:
                self.cache.evict(req["previous_response_id"])  # §1.7: failed same-lane continuation
            return
        outcome = await emu._stream(
            _WsSink(self, lane), turn, fault, lambda t: emu._remember(t, self.cache, lane), self.entry
        )
        self.finished += 1
        if outcome in ("dropped", "closed"):
            raise _Gone
        if outcome == "failed" and parent_lane == lane:
            self.cache.evict(req["previous_response_id"])

    async def hit_cap(self) -> None:
        """§1.9: the exact limit error (no stream_id), then a normal close (1000; emulator choice)."""
        age = self.emu.max_connection_age
        span = f"{age / 60:g} minutes" if age % 60 == 0 else f"{age:g} seconds"
        await self.send_error(
            _RequestError(
                400,
                f"Responses websocket connection limit reached ({span}). "
                "Create a new websocket connection to continue.",
                code="websocket_connection_limit_reached",
            ),
            None,
        )
        self.closed = True
        self.entry.server_close_code = 1000
        await self.ws.close(code=1000)

    async def send_error(self, exc: _RequestError, lane: str | None) -> None:
        event = exc.ws_event()
        if lane is not None:
            event["stream_id"] = lane
        await self.send_text(_dumps(event))

    async def send_steer_failed(self, req: dict[str, Any]) -> None:
        """``response.steer`` is not implemented: say so with the documented failure event (§1.6)."""
        event = {
            "type": "response.steer.failed",
            "sequence_number": 0,
            "error": {
                "code": "steering_not_supported",
                "message": "The emulator does not support response.steer.",
                "type": "invalid_request_error",
            },
            "steer": {"input": req.get("input"), "previous_response_id": req.get("previous_response_id")},
        }
        await self.send_text(_dumps(event))

    async def send_text(self, text: str) -> None:
        async with self.send_lock:  # one frame at a time: compression may yield mid-frame
            try:
                await self.ws.send_str(text)
            except ConnectionError as exc:
                raise _Gone from exc


class _WsSink:
    transport = "ws"

    def __init__(self, conn: _WsConnection, lane: str | None) -> None:
        self.conn, self.lane, self.seq = conn, lane, 0

    async def send(self, event: dict[str, Any]) -> None:
        event = dict(event, sequence_number=self.seq)
        self.seq += 1
        if self.lane is not None:
            event["stream_id"] = self.lane  # §1.5: every event of a named-lane response is tagged
        await self.conn.send_text(_dumps(event))

    async def drop(self) -> None:
        self.conn.closed = True
        self.conn.entry.server_close_code = 1006
        transport = self.conn.request.transport
        if transport is not None:
            transport.abort()  # no close frame: the client sees 1006

    async def close(self, code: int) -> None:
        self.conn.closed = True
        self.conn.entry.server_close_code = code
        await self.conn.ws.close(code=code, message=b"emulator fault")

    async def malformed(self, variant: str) -> None:
        ws = self.conn.ws
        async with self.conn.send_lock:
            if variant == "binary":
                await ws.send_bytes(b"\x00\x01 not a text frame")
            elif variant == "utf8":
                # aiohttp cannot send invalid UTF-8 as text through its public API; use the frame writer.
                await ws._writer.send_frame(b'{"type":"\xff\xfe"}', WSMsgType.TEXT)  # type: ignore[union-attr]
            else:
                await ws.send_str('{"type": "response.output_text.delta", "delta": ')


class _SseSink:
    transport = "sse"

    def __init__(self, request: web.Request, resp: web.StreamResponse, entry: ConnectionLog) -> None:
        self.request, self.resp, self.entry, self.seq = request, resp, entry, 0
        self.aborted = False

    async def send(self, event: dict[str, Any]) -> None:
        event = dict(event, sequence_number=self.seq)
        self.seq += 1
        try:
            await self.resp.write(encode_sse(event["type"], _dumps(event)))  # one write per event
        except ConnectionError as exc:
            raise _Gone from exc

    async def drop(self) -> None:
        self.aborted = True
        self.entry.server_close_code = 1006
        if self.request.transport is not None:
            self.request.transport.abort()

    async def close(self, code: int) -> None:
        """SSE has no close codes: end the body early, without a terminal event."""

    async def malformed(self, variant: str) -> None:
        if variant == "json":
            await self.resp.write(b'event: response.output_text.delta\ndata: {"type": "response.output\n\n')
        else:
            await self.resp.write(b"event: response.output_text.delta\ndata: \xff\xfe\n\n")


class _CollectSink:
    """For non-streaming POSTs: collect the events and answer with the final Response."""

    transport = "sse"

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.events: list[dict[str, Any]] = []
        self.malformed_body: bytes | None = None

    async def send(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def drop(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()

    async def close(self, code: int) -> None:
        pass

    async def malformed(self, variant: str) -> None:
        self.malformed_body = b'{"id": "resp_' if variant == "json" else b"\xff\xfe"
