"""The public Python API: :class:`ResponsesSession`, :class:`TurnHandle`, :class:`TurnResult`.

Works without IPython; the ``%%respond`` magic is one client of it.

Ownership (docs/design.md has the picture):

* the process-wide :class:`~.runtime.Runtime` owns the loop thread and the aiohttp ClientSession;
* a session owns its WebSocket pool, its SSE transport, its chains and its in-flight turns. ``close()``
  closes this session's pool; the runtime's atexit hook closes every session's pool;
* a turn runs as one task on the loop. Events reach the caller through a ``queue.SimpleQueue`` (foreground:
  ``handle.get()``), and/or ``on_event`` callbacks that run **on the loop thread** (background mode).

Per turn (under the chain's lock, so two cells never fork a chain):

1. pick the transport: the call's, else the session's; a remembered 426 sends it to SSE for a while;
2. the transport leases a connection, then asks the chain what to send (by id vs full transcript, knowing
   whether that connection still caches the parent: :mod:`.chain`);
3. WS handshake failure (connect error, 426/404/5xx) → this turn over SSE (Notice ``fallback``;
   ``TurnResult.transport="sse"``, ``fallback_reason``). 401/403 → :class:`AuthenticationError`, no fallback;
4. ``previous_response_not_found`` before any event → resend the full transcript once (Notice ``resend``);
5. only ``response.completed`` advances the chain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .chain import Chain, TurnPlan, output_text, paragraph_break, user_message
from .config import Settings
from .errors import (
    APIError,
    ConfigError,
    ConnectError,
    HandshakeError,
    PoolClosedError,
    ResponseFailedError,
    ResponsesError,
    strip_tracebacks,
)
from .events import Notice, ServerEvent, error_from_event
from .runtime import Runtime, get_runtime

__all__ = ["ResponsesSession", "TurnHandle", "TurnResult", "WS_426_MEMORY"]

log = logging.getLogger(__name__)

#: After a WebSocket upgrade answered 426 Upgrade Required (a proxy that cannot do WebSockets), turns go
#: straight to SSE for this many seconds instead of paying a failed handshake every cell (like Codex's
#: session-wide switch, PROTOCOL.md §6). Setting ``session.transport = "ws"`` again clears it.
WS_426_MEMORY = 600.0

_END = object()
_DELTA = "response.output_text.delta"
_SUMMARY_DELTA = "response.reasoning_summary_text.delta"
_REFUSAL_DELTA = "response.refusal.delta"
_ITEM_DONE = "response.output_item.done"
_ITEM_ADDED = "response.output_item.added"
_CREATED = "response.created"


@dataclass
class TurnResult:
    """How one turn ended. Filled for every outcome; ``error`` is set when it failed."""

    text: str = ""
    response_id: str | None = None
    status: str = "cancelled"  # completed | incomplete | failed | cancelled
    transport: str | None = None  # the transport that served it; None if nothing was sent
    fallback_reason: str | None = None
    reconnected: bool = False
    resent_transcript: bool = False
    usage: dict[str, Any] | None = None
    ttft: float | None = None
    elapsed: float = 0.0
    error: ResponsesError | None = None
    model: str | None = None
    reasoning_summary: str = ""
    function_calls: list[dict[str, Any]] = field(default_factory=list)
    incomplete_reason: str | None = None
    chain: str = "default"
    turn: int = 0
    prompt: str = ""
    retried: bool = False
    connection_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        err = f", error={type(self.error).__name__}" if self.error else ""
        return (
            f"TurnResult(status={self.status!r}, transport={self.transport!r}, chain={self.chain!r}, "
            f"turn={self.turn}, text={text!r}{err})"
        )


class TurnHandle:
    """A running turn, seen from the caller's thread."""

    def __init__(
        self, session: ResponsesSession, chain: str, prompt: str, *, queue_events: bool = True
    ) -> None:
        self._session = session
        self.chain = chain
        self.prompt = prompt
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queue_events = queue_events
        self._done = threading.Event()
        self._ended = False
        self._result: TurnResult | None = None
        self._future: concurrent.futures.Future[Any] | None = None
        self._callbacks: list[Callable[[TurnResult], Any]] = []
        self._cb_lock = threading.Lock()
        self._started = False  # set on the loop thread when the turn's task begins
        self.started_at = time.perf_counter()

    # --- reading events ----------------------------------------------------------------------------

    def get(self, timeout: float | None = 0.1) -> ServerEvent | Notice | None:
        """The next event or notice, or None on timeout; None for ever after the turn ended and drained."""
        if self._ended:
            return None
        try:
            item = (
                self._queue.get(timeout=timeout)
                if timeout is None or timeout > 0
                else self._queue.get_nowait()
            )
        except queue.Empty:
            return None
        if item is _END:
            self._ended = True
            return None
        return item

    def events(self) -> Iterator[ServerEvent | Notice]:
        """Iterate over events and notices until the turn ends."""
        while not self._ended:
            item = self._queue.get()
            if item is _END:
                self._ended = True
                return
            yield item

    # --- state ---------------------------------------------------------------------------------------

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> TurnResult:
        """Wait for the end of the turn (``TimeoutError`` if *timeout* passes first)."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the turn did not finish within {timeout} s")
        assert self._result is not None
        return self._result

    def cancel(self, wait: float = 1.0) -> bool:
        """Cancel the turn; True once the loop side confirmed it ended (within *wait* seconds)."""
        if self._done.is_set():
            return True
        fut = self._future
        if fut is not None:
            fut.cancel()  # cancels the loop-side task (thread-safe)
        if self._session._runtime.in_loop_thread():
            return self._done.is_set()  # the turn ends on this loop: waiting here would block it
        return self._done.wait(wait)

    def add_done_callback(self, fn: Callable[[TurnResult], Any]) -> None:
        """Call ``fn(result)`` when the turn ends, on the loop thread (at once there if already done)."""
        with self._cb_lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        rt = self._session._runtime
        if rt.in_loop_thread() or rt.closed:
            _safe_call(fn, self._result)
        else:
            rt.call_soon(_safe_call, fn, self._result)

    # --- loop side -----------------------------------------------------------------------------------

    def _finish(self, result: TurnResult) -> None:
        with self._cb_lock:
            if self._done.is_set():
                return  # idempotent: the task's own finally and the cancelled-before-start path may both call
            self._result = result
            callbacks, self._callbacks = self._callbacks, []
            self._done.set()
        self._queue.put(_END)
        for fn in callbacks:
            _safe_call(fn, result)

    def __repr__(self) -> str:
        state = self._result.status if self._result else "running"
        return f"TurnHandle(chain={self.chain!r}, {state})"


def _safe_call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a broken callback must not break the turn or the loop
        log.exception("callback %r failed", fn)


class _Recorder:
    """Per-turn accumulator and the ``emit`` callback the transports call for every event (hot path)."""

    __slots__ = (
        "handle",
        "put",
        "on_event",
        "parts",
        "summary",
        "calls",
        "received",
        "ttft",
        "response_id",
        "t0",
        "notices",
        "messages",
    )

    def __init__(self, handle: TurnHandle, on_event: Callable[[Any], Any] | None) -> None:
        self.handle = handle
        self.put = handle._queue.put if handle._queue_events else None
        self.on_event = on_event
        self.parts: list[str] = []
        self.summary: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.received = False
        self.ttft: float | None = None
        self.response_id: str | None = None
        self.t0 = handle.started_at
        self.notices: list[Notice] = []
        self.messages = 0  # message items seen: a further one starts a new paragraph (as the live view)

    def __call__(self, item: ServerEvent | Notice) -> None:
        if item.__class__ is ServerEvent:
            self.received = True
            etype = item.type
            if etype == _DELTA:
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.t0
                self.parts.append(item.data.get("delta") or "")
            elif etype == _REFUSAL_DELTA:
                self.parts.append(item.data.get("delta") or "")  # a refusal is the visible answer too
            elif etype == _SUMMARY_DELTA:
                self.summary.append(item.data.get("delta") or "")
            elif etype == _ITEM_DONE:
                it = item.data.get("item")
                if isinstance(it, dict) and it.get("type") == "function_call":
                    self.calls.append(it)
            elif etype == _ITEM_ADDED:
                it = item.data.get("item")
                if isinstance(it, dict) and it.get("type") == "message":
                    if self.messages and self.parts:
                        self.parts.append(paragraph_break("".join(self.parts)))
                    self.messages += 1
            elif etype == _CREATED:
                resp = item.data.get("response")
                if isinstance(resp, dict):
                    self.response_id = resp.get("id")
        else:
            self.notices.append(item)  # type: ignore[arg-type]
        if self.put is not None:
            self.put(item)
        if self.on_event is not None:
            try:
                self.on_event(item)
            except Exception:
                log.exception("on_event callback failed; the turn goes on")


@dataclass
class _TurnSpec:
    prompt: str
    chain: str
    new: bool
    transport: str | None
    overrides: dict[str, Any]
    tools: list[dict[str, Any]] | None
    on_event: Callable[[Any], Any] | None
    items: list[dict[str, Any]]


_OVERRIDE_NAMES = (
    "model",
    "store",
    "instructions",
    "max_output_tokens",
    "temperature",
    "reasoning_effort",
    "reasoning_summary",
)


class ResponsesSession:
    """Settings, chains and transports for streaming Responses API turns (see module docstring)."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        base = settings if settings is not None else Settings.from_env()
        self._settings = base.with_changes(**overrides) if overrides else base
        self._transport = self._settings.transport
        self._runtime: Runtime = get_runtime()
        from .transports.sse import SSETransport
        from .transports.ws import WSPool

        self._pool = WSPool(self._runtime.http_session)
        self._lanes: Any = None  # LanePool, created on the first turn with use_stream_lanes
        self._sse = SSETransport(self._runtime.http_session)
        self._runtime.register_pool(self._pool)
        self._chains: dict[str, Chain] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight: set[TurnHandle] = set()
        self._inflight_lock = threading.Lock()
        self._transport_callbacks: list[Callable[[str], Any]] = []
        # A remembered 426 belongs to the WS URL that answered it: another base_url is tried afresh.
        self._ws_blocked_url: str | None = None
        self._ws_blocked_until = 0.0
        self._ws_blocked_reason: str | None = None
        self._warming: dict[str, asyncio.Task[Any]] = {}  # chain -> its warm-up in flight (loop thread only)
        self._closed = False
        if self._settings.warmup and self._transport == "ws":
            self.warmup(wait=False)

    # --- settings and transport ------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    def configure(self, **changes: Any) -> Settings:
        """Replace the settings with a validated copy (applies from the next turn)."""
        self._settings = self._settings.with_changes(**changes)
        if "transport" in changes:
            self.transport = self._settings.transport
        return self._settings

    @property
    def transport(self) -> str:
        return self._transport

    @transport.setter
    def transport(self, value: str) -> None:
        if value not in ("ws", "sse"):
            raise ConfigError(f"transport must be 'ws' or 'sse', not {value!r}.")
        changed = value != self._transport
        self._transport = value
        if value == "ws":
            self._ws_blocked_until = 0.0  # an explicit choice of WS retries it now
        if self._settings.transport != value:
            self._settings = self._settings.with_changes(transport=value)
        if changed:
            for cb in list(self._transport_callbacks):
                _safe_call(cb, value)
            if value == "ws" and self._settings.warmup and not self._closed:
                self.warmup(wait=False)  # the toggle flipped to WS: have a socket ready for the next cell

    def _ws_blocked(self, settings: Settings) -> bool:
        """True while a 426 from this very WS URL is remembered (WS_426_MEMORY)."""
        if time.monotonic() >= self._ws_blocked_until:
            return False
        try:
            return settings.ws_url() == self._ws_blocked_url
        except ResponsesError:
            return False

    def on_transport_change(self, callback: Callable[[str], Any]) -> None:
        """``callback(new_transport)`` after each change, on the thread that made it."""
        self._transport_callbacks.append(callback)

    # --- chains ----------------------------------------------------------------------------------------

    def chain(self, name: str = "default") -> Chain:
        if name not in self._chains:
            self._chains[name] = Chain(name)
        return self._chains[name]

    @property
    def chains(self) -> dict[str, Chain]:
        return dict(self._chains)

    def reset(self, chain: str = "default") -> None:
        """Forget a chain's history (the next turn starts a new conversation)."""
        self.chain(chain).reset()

    # --- turns -----------------------------------------------------------------------------------------

    def start(
        self,
        prompt: str,
        *,
        chain: str = "default",
        new: bool = False,
        transport: str | None = None,
        model: str | None = None,
        store: bool | None = None,
        instructions: str | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        reasoning_effort: str | None = None,
        reasoning_summary: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_outputs: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        on_event: Callable[[Any], Any] | None = None,
        _queue_events: bool | None = None,
    ) -> TurnHandle:
        """Start a turn and return at once; read it with the handle (or ``on_event`` on the loop thread).

        ``tool_outputs`` (``{call_id: output}``) answers the function calls of the chain's last turn: they go
        first, as ``function_call_output`` items, followed by the prompt if it is not empty.

        With ``on_event`` the events go to the callback only: the handle's ``get()``/``events()`` see just
        the end. Queueing them as well, for nobody, held every event of a background turn for as long as its
        view lived (+60 MB for three 200 KB answers, tests/test_reliability_memory.py).
        """
        if self._closed:
            raise PoolClosedError()
        if transport not in (None, "ws", "sse"):
            raise ConfigError(f"transport must be 'ws' or 'sse', not {transport!r}.")
        pairs = list(tool_outputs.items() if isinstance(tool_outputs, Mapping) else tool_outputs or ())
        if not prompt and not pairs:
            raise ConfigError("Nothing to send: the prompt is empty and there are no tool outputs.")
        local = dict(
            model=model,
            store=store,
            instructions=instructions,
            max_output_tokens=max_output_tokens,
            temperature=temperature,
            reasoning_effort=reasoning_effort,
            reasoning_summary=reasoning_summary,
        )
        overrides = {k: v for k, v in local.items() if v is not None}
        settings = self._settings.with_changes(**overrides) if overrides else self._settings  # validates now
        self.chain(chain)
        items = [
            {"type": "function_call_output", "call_id": str(call_id), "output": str(output)}
            for call_id, output in pairs
        ]
        if prompt:
            items.append(user_message(prompt))
        spec = _TurnSpec(prompt, chain, new, transport, overrides, tools, on_event, items)
        queue_events = on_event is None if _queue_events is None else _queue_events
        handle = TurnHandle(self, chain, prompt, queue_events=queue_events)
        with self._inflight_lock:
            self._inflight.add(handle)
        try:
            fut = self._runtime.submit(self._turn(handle, spec, settings))
        except BaseException:
            with self._inflight_lock:
                self._inflight.discard(handle)
            raise
        handle._future = fut

        def _on_done(f: concurrent.futures.Future[Any]) -> None:
            self._cancelled_before_start(f, handle, spec)

        fut.add_done_callback(_on_done)
        return handle

    def respond(self, prompt: str, **kw: Any) -> TurnResult:
        """Run a turn and wait for its result. Ctrl-C cancels the turn (waits ~1 s) and re-raises."""
        if self._runtime.in_loop_thread():
            raise RuntimeError(
                "respond() would block the I/O loop it waits for; from an on_event or done callback use "
                "start() (or await arespond())."
            )
        queue_events = kw.pop("_queue_events", False)
        handle = self.start(prompt, _queue_events=queue_events, **kw)
        try:
            while not handle._done.wait(0.25):
                pass
        except KeyboardInterrupt:
            handle.cancel(wait=1.0)
            raise
        return handle.result()

    async def arespond(self, prompt: str, **kw: Any) -> TurnResult:
        """Await a turn from async code that is not on the I/O loop (e.g. the kernel's loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[TurnResult] = loop.create_future()
        handle = self.start(prompt, _queue_events=False, **kw)

        def _deliver(result: TurnResult) -> None:
            def _set() -> None:
                if not fut.done():
                    fut.set_result(result)

            loop.call_soon_threadsafe(_set)

        handle.add_done_callback(_deliver)
        try:
            return await fut
        except asyncio.CancelledError:
            handle.cancel(wait=0)
            raise

    def warmup(
        self, chain: str = "default", *, wait: bool = True, timeout: float | None = 30.0
    ) -> str | None:
        """Open a WS connection and prepare it with a ``generate: false`` create (PROTOCOL.md §1.4).

        Returns the warm-up response id (or None when not waiting). Failures are logged, never raised:
        the next real turn connects (and falls back) on its own.
        """
        settings = self._settings
        request: dict[str, Any] = {"model": settings.model, "store": settings.store, "input": []}
        if settings.instructions:
            request["instructions"] = settings.instructions

        async def _go() -> str | None:
            task = asyncio.current_task()
            if task is not None:
                self._warming[chain] = task
            try:
                out = await self._pool.warmup(settings, request, affinity=chain)
                return (out.terminal.response or {}).get("id")
            except ResponsesError as exc:
                log.info("warm-up failed: %s", exc)
                return None
            finally:
                if self._warming.get(chain) is task:
                    del self._warming[chain]

        fut = self._runtime.submit(_go())
        return fut.result(timeout) if wait and not self._runtime.in_loop_thread() else None

    def stop_all(self) -> int:
        """Cancel every in-flight turn of this session; returns how many were running."""
        with self._inflight_lock:
            handles = list(self._inflight)
        for h in handles:
            h.cancel(wait=0)
        if self._runtime.in_loop_thread():
            # Called from an on_event or done callback: the turns can only end on this very loop, so
            # waiting here would freeze every stream of the process for a second per turn.
            return len(handles)
        for h in handles:
            h._done.wait(1.0)
        return len(handles)

    def status(self) -> dict[str, Any]:
        """Transport, open connections and chains (a snapshot)."""

        def _snapshot() -> list[dict[str, Any]]:
            return [c for p in self._pools() for c in p.connections()]

        async def _conns() -> list[dict[str, Any]]:
            return _snapshot()

        if self._runtime.closed:
            conns: list[dict[str, Any]] = []
        elif self._runtime.in_loop_thread():
            conns = _snapshot()
        else:
            conns = self._runtime.run(_conns(), timeout=5)
        return {
            "transport": self._transport,
            "ws_blocked_for": (
                max(0.0, round(self._ws_blocked_until - time.monotonic(), 1)) or None
                if self._ws_blocked(self._settings)
                else None
            ),
            "connections": conns,
            "handshakes": sum(p.handshakes for p in self._pools()),
            "in_flight": len(self._inflight),
            "chains": {name: c.snapshot() for name, c in self._chains.items()},
            "closed": self._closed,
        }

    def close(self) -> None:
        """Cancel in-flight turns and close this session's connections with 1000. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop_all()
        if self._runtime.closed:
            return
        if self._runtime.in_loop_thread():
            self._runtime.loop.create_task(self._aclose_pools())
        else:
            with contextlib.suppress(Exception):
                self._runtime.run(self._aclose_pools(), timeout=5)
        for p in self._pools():
            self._runtime.unregister_pool(p)

    async def aclose(self) -> None:
        """``close()`` for async code not on the I/O loop: does not block the caller's loop."""
        if self._closed:
            return
        self._closed = True
        with self._inflight_lock:
            handles = list(self._inflight)
        for h in handles:
            h.cancel(wait=0)
        if self._runtime.closed:
            return
        await asyncio.wrap_future(self._runtime.submit(self._aclose_pools()))
        for p in self._pools():
            self._runtime.unregister_pool(p)

    def __enter__(self) -> ResponsesSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponsesSession(transport={self._transport!r}, model={self._settings.model!r}, chains={list(self._chains)})"

    # --- the loop side of a turn -------------------------------------------------------------------------

    def _lane_pool(self) -> Any:
        if self._lanes is None:
            from .transports.lanes import LanePool

            self._lanes = LanePool(self._runtime.http_session)
            self._runtime.register_pool(self._lanes)
        return self._lanes

    def _pools(self) -> list[Any]:
        return [p for p in (self._pool, self._lanes) if p is not None]

    async def _aclose_pools(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self._pools()), return_exceptions=True)

    def _cancelled_before_start(
        self, fut: concurrent.futures.Future[Any], handle: TurnHandle, spec: _TurnSpec
    ) -> None:
        """A turn cancelled before its task ran never reaches ``_turn``'s ``finally``: end it here.

        Runs on the loop thread, after the task's own cancellation was scheduled (the future's callbacks
        run in registration order and the loop is FIFO). If the task has not started by then, its first
        step will only raise CancelledError, so nobody else will finish the handle.
        """
        if not fut.cancelled():
            return
        if not self._runtime.in_loop_thread():
            if not self._runtime.closed:
                self._runtime.call_soon(self._cancelled_before_start, fut, handle, spec)
                return
        elif handle._started:
            return
        if not handle.done():
            result = TurnResult(chain=spec.chain, prompt=spec.prompt, model=self._settings.model)
            result.turn = self.chain(spec.chain).turns
            result.elapsed = time.perf_counter() - handle.started_at
            with self._inflight_lock:
                self._inflight.discard(handle)
            handle._finish(result)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _turn(self, handle: TurnHandle, spec: _TurnSpec, settings: Settings) -> TurnResult:
        handle._started = True
        rec = _Recorder(handle, spec.on_event)
        result = TurnResult(chain=spec.chain, prompt=spec.prompt, model=settings.model)
        try:
            async with self._lock(spec.chain):
                await self._run_turn(spec, settings, rec, result)
        except asyncio.CancelledError:
            result.status = "cancelled"
            self._fill_partial(result, rec)
            raise
        except ResponsesError as exc:
            result.status = "failed"
            result.error = strip_tracebacks(exc)  # its frames hold request headers, hence the key
            self._fill_partial(result, rec)
        except Exception as exc:  # a bug must still end the turn visibly, never hang the cell
            log.exception("unexpected error in a turn")
            result.status = "failed"
            result.error = strip_tracebacks(ResponsesError(f"Internal error: {type(exc).__name__}: {exc}"))
            self._fill_partial(result, rec)
        finally:
            result.elapsed = time.perf_counter() - handle.started_at
            result.ttft = rec.ttft
            result.turn = self.chain(spec.chain).turns
            with self._inflight_lock:
                self._inflight.discard(handle)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "turn %s#%d %s via %s in %.3f s (ttft %s, fallback %s, resent %s, error %s)",
                    spec.chain,
                    result.turn,
                    result.status,
                    result.transport,
                    result.elapsed,
                    f"{result.ttft:.3f}" if result.ttft is not None else "-",
                    result.fallback_reason,
                    result.resent_transcript,
                    type(result.error).__name__ if result.error else None,
                )
            handle._finish(result)
        return result

    @staticmethod
    def _fill_partial(result: TurnResult, rec: _Recorder) -> None:
        if not result.text:
            result.text = "".join(rec.parts)
        result.reasoning_summary = result.reasoning_summary or "".join(rec.summary)
        result.function_calls = result.function_calls or list(rec.calls)
        result.response_id = result.response_id or rec.response_id

    async def _run_turn(
        self, spec: _TurnSpec, settings: Settings, rec: _Recorder, result: TurnResult
    ) -> None:
        chain = self.chain(spec.chain)
        if spec.new:
            chain.reset()
        epoch = chain.epoch
        items = spec.items
        transport = spec.transport or self._transport
        if transport == "ws" and spec.transport is None and self._ws_blocked(settings):
            transport = "sse"
            result.fallback_reason = self._ws_blocked_reason
            rec(Notice("fallback", {"reason": self._ws_blocked_reason}))
        warming = self._warming.get(spec.chain) if transport == "ws" else None
        if warming is not None and not warming.done():
            # A cell run right after the warm-up started: wait for its socket instead of opening a second one.
            await asyncio.wait({warming}, timeout=settings.connect_timeout)
        force_full = False
        plans: list[TurnPlan] = []

        def make_request(info: Any) -> dict[str, Any]:
            same = (
                info.cached_response_id is not None and info.cached_response_id == chain.previous_response_id
            )
            plan = chain.plan(
                items,
                transport=info.transport,
                store=settings.store,
                same_connection=same,
                force_full=force_full,
            )
            plans.append(plan)
            # the request goes out now: even if the turn fails later, this transport carried it
            result.transport = info.transport
            result.connection_id = info.connection_id
            if plan.full_resend:
                result.resent_transcript = True
                if not force_full:
                    rec(Notice("resend", {"reason": plan.reason}))
            return _build_body(settings, plan, spec.tools)

        while True:
            try:
                outcome = await self._run_transport(
                    transport, make_request, rec, settings, spec.chain, result
                )
                break
            except APIError as exc:
                last = plans[-1] if plans else None
                if (
                    exc.code == "previous_response_not_found"
                    and not force_full
                    and not rec.received
                    and last is not None
                    and last.previous_response_id is not None
                ):
                    force_full = True
                    result.resent_transcript = True
                    rec(Notice("resend", {"reason": "the server no longer has the previous response"}))
                    continue
                raise

        terminal = outcome.terminal
        result.transport = outcome.transport
        result.connection_id = outcome.connection_id
        result.reconnected = result.reconnected or outcome.reconnected
        result.retried = outcome.retried
        resp = terminal.response or {}
        result.response_id = resp.get("id") or rec.response_id
        result.model = resp.get("model") or settings.model
        result.usage = resp.get("usage")
        result.status = terminal.type.rsplit(".", 1)[-1]  # completed | incomplete | failed
        result.reasoning_summary = "".join(rec.summary)
        result.function_calls = list(rec.calls)
        if terminal.type == "response.completed":
            result.text = output_text(resp) or "".join(rec.parts)
            if chain.epoch == epoch:  # a reset() while this turn ran starts a new conversation: keep it clean
                chain.commit(plans[-1], items, resp, connection_id=outcome.connection_id)
        else:
            result.text = "".join(rec.parts)
            if terminal.type == "response.incomplete":
                details = resp.get("incomplete_details") or {}
                result.incomplete_reason = details.get("reason") if isinstance(details, dict) else None
            else:
                result.error = _failed_error(terminal, outcome.error_event, outcome.request_id)

    async def _run_transport(
        self,
        transport: str,
        make_request: Any,
        rec: _Recorder,
        settings: Settings,
        chain: str,
        result: TurnResult,
    ) -> Any:
        if transport == "sse":
            return await self._sse.run(make_request, rec, settings=settings, affinity=chain)
        pool = self._lane_pool() if settings.use_stream_lanes else self._pool
        try:
            return await pool.run(make_request, rec, settings=settings, affinity=chain)
        except (HandshakeError, ConnectError) as exc:
            if not settings.fallback_to_sse or rec.received:
                raise
            reason = _fallback_reason(exc)
            if isinstance(exc, HandshakeError) and exc.status == 426:
                self._ws_blocked_until = time.monotonic() + WS_426_MEMORY
                self._ws_blocked_url = settings.ws_url()
                self._ws_blocked_reason = f"{reason} (remembered for {WS_426_MEMORY:g} s)"
            result.fallback_reason = reason
            rec(Notice("fallback", {"reason": reason}))
            return await self._sse.run(make_request, rec, settings=settings, affinity=chain)


def _fallback_reason(exc: ResponsesError) -> str:
    if isinstance(exc, HandshakeError):
        return f"WebSocket upgrade refused (HTTP {exc.status})"
    return f"WebSocket connection failed ({exc.message})"


def _failed_error(
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


def _build_body(settings: Settings, plan: TurnPlan, tools: list[dict[str, Any]] | None) -> dict[str, Any]:
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
