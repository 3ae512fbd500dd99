"""The public Python API: :class:`ResponsesSession` (with :class:`TurnHandle` and :class:`TurnResult`).

Works without IPython; the ``%%respond`` magic is one client of it.

Ownership (docs/design.md has the picture):

* the process-wide :class:`~.runtime.Runtime` owns the loop thread and the aiohttp ClientSession;
* a session owns its WebSocket pool (plain requests and ``stream_id`` lanes), its SSE transport, its chains,
  its in-flight turns and its 426 memory. ``close()`` closes this session's pool; the runtime's atexit hook
  closes every session's pool;
* a turn runs as one task on the loop (:func:`.turn.run_turn`, under the chain's lock, so two cells never
  fork a chain). Events reach the caller through a ``queue.SimpleQueue`` (foreground: ``handle.get()``),
  and/or ``on_event`` callbacks that run **on the loop thread** (background mode).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .chain import Chain, user_message
from .config import Settings
from .errors import ConfigError, PoolClosedError, ResponsesError, strip_tracebacks
from .ledger import Ledger
from .profiles import Profile, apply_profile, name_key_variable, profile_table
from .results import Recorder, TurnHandle, TurnResult, safe_call
from .runtime import Runtime, get_runtime
from .turn import WS_426_MEMORY, TurnSpec, WSRefusalMemory, run_turn

__all__ = ["ResponsesSession", "TurnHandle", "TurnResult", "WS_426_MEMORY"]

log = logging.getLogger(__name__)


class ResponsesSession:
    """Settings, chains and transports for streaming Responses API turns (see module docstring)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        profiles: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        """``ResponsesSession(profile="xai")`` sends every turn through that endpoint profile (profiles.py);
        ``profiles={"gw": {"base_url": ..., "key_env": "GW_KEY"}}`` adds or changes profiles;
        ``token_provider=fn`` (with ``profile="azure"``) authenticates with Entra ID bearer tokens."""
        base = settings if settings is not None else Settings.from_env()
        token_provider = overrides.pop("token_provider", None)
        self._settings = base.with_changes(**overrides) if overrides else base
        self._profiles: dict[str, Profile] = profile_table(profiles)
        if token_provider is not None and self._settings.profile is None:
            self._settings = self._settings.with_changes(token_provider=token_provider)
        elif token_provider is not None:
            # A callable given to the session is for its own profile (Azure's Entra ID), not for every profile.
            name = self._settings.profile
            self._profiles[name] = dataclasses.replace(
                self._profiles_get(name), token_provider=token_provider
            )
        # an unknown default profile fails here, not at the first turn
        self._profiles_get(self._settings.profile)
        self._transport = self._settings.transport
        self._runtime: Runtime = get_runtime()
        from .transports.pool import WSPool
        from .transports.sse import SSETransport

        self.ws = WSPool(self._runtime.http_session)
        self.sse = SSETransport(self._runtime.http_session)
        self._runtime.register_pool(self.ws)
        self._chains: dict[str, Chain] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._inflight: set[TurnHandle] = set()
        self._inflight_lock = threading.Lock()
        self._transport_callbacks: list[Callable[[str], Any]] = []
        self.refusals = WSRefusalMemory()  # a remembered 426 (turn.WS_426_MEMORY)
        self.ledger = Ledger()  # estimated costs (per chain, in all) and the budget check
        # (base URL, issuing transport, using transport) -> False once a gateway refused an id issued the other way
        self.ids_cross_transports: dict[tuple[str, str, str], bool] = {}
        self._warming: dict[str, asyncio.Task[Any]] = {}  # chain -> its warm-up in flight (loop thread only)
        self._closed = False
        if self._settings.warmup and self._transport == "ws":
            self.warmup(wait=False)

    # --- settings and transport ------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings a turn uses when it names no profile (the default profile's fields applied)."""
        return self.settings_for(None)

    @property
    def profiles(self) -> dict[str, Profile]:
        """The endpoint profiles by name (built-in ones and the user's)."""
        return dict(self._profiles)

    @profiles.setter
    def profiles(self, user: Mapping[str, Any] | None) -> None:
        table = profile_table(user)  # validated before anything changes
        if self._settings.profile and self._settings.profile not in table:
            raise ConfigError(f"The default profile {self._settings.profile!r} would no longer exist.")
        self._profiles = table

    def _profiles_get(self, name: str | None) -> Profile:
        try:
            return self._profiles[name or "openai"]
        except KeyError:
            raise ConfigError(
                f"Unknown endpoint profile {name!r}.",
                hint=f"Profiles: {', '.join(sorted(self._profiles))}. Define one with "
                f"`%responses config profile.{name}.base_url=https://...` or ResponsesSession(profiles=...).",
            ) from None

    def settings_for(self, profile: str | None = None) -> Settings:
        """The settings for a turn through *profile* (None: the session's default profile, if any)."""
        name = profile or self._settings.profile
        if name is None:
            return self._settings
        return apply_profile(self._settings, self._profiles_get(name))

    def configure(self, **changes: Any) -> Settings:
        """Replace the settings with a validated copy (applies from the next turn)."""
        if changes.get("profile"):
            self._profiles_get(changes["profile"])
        self._settings = self._settings.with_changes(**changes)
        if "transport" in changes:
            self.transport = self._settings.transport
        return self._settings

    @property
    def transport(self) -> str:
        return self._transport

    def warming(self, chain: str) -> asyncio.Task[Any] | None:
        """The chain's warm-up in flight, if any (loop thread only)."""
        return self._warming.get(chain)

    @transport.setter
    def transport(self, value: str) -> None:
        if value not in ("ws", "sse"):
            raise ConfigError(f"transport must be 'ws' or 'sse', not {value!r}.")
        changed = value != self._transport
        self._transport = value
        if value == "ws":
            self.refusals.clear()  # an explicit choice of WS retries it now
        if self._settings.transport != value:
            self._settings = self._settings.with_changes(transport=value)
        if changed:
            for cb in list(self._transport_callbacks):
                safe_call(cb, value)
            if value == "ws" and self._settings.warmup and not self._closed:
                self.warmup(wait=False)  # the toggle flipped to WS: have a socket ready for the next cell

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

    def owe(self, chain: str, outputs: list[dict[str, Any]]) -> None:
        """Owe ``function_call_output`` *outputs* to the chain's last calls: its next turn sends them first."""
        target = self.chain(chain)
        if self._runtime.in_loop_thread() or self._runtime.closed:
            target.owe(outputs)
        else:
            self._runtime.call_soon(target.owe, outputs)

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
        profile: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        tool_outputs: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        on_event: Callable[[Any], Any] | None = None,
        cell: str | None = None,
        tail: bool = False,
        attachments: Sequence[dict[str, Any]] = (),
        _queue_events: bool | None = None,
    ) -> TurnHandle:
        """Start a turn and return at once; read it with the handle (or ``on_event`` on the loop thread).

        ``profile`` sends this turn through that endpoint profile (the other arguments still win).
        ``tool_outputs`` (``{call_id: output}``) answers the function calls of the chain's last turn: they go
        first, as ``function_call_output`` items, followed by the prompt if it is not empty. ``cell``: the notebook
        cell asking (a re-run forks from that cell's previous turn, unless ``tail``). ``attachments``: content parts
        (``input_image``, ``input_file``; attachments.py) sent after the prompt's text.

        With ``on_event`` the events go to the callback only: the handle's ``get()``/``events()`` see just
        the end. Queueing them as well, for nobody, held every event of a background turn for as long as its
        view lived (+60 MB for three 200 KB answers, tests/test_reliability_memory.py).
        """
        if self._closed:
            raise PoolClosedError()
        if transport not in (None, "ws", "sse"):
            raise ConfigError(f"transport must be 'ws' or 'sse', not {transport!r}.")
        if tools and not all(isinstance(t, dict) for t in tools):
            raise ConfigError("Python functions as tools run in this thread: use respond(), not start().")
        pairs = list(tool_outputs.items() if isinstance(tool_outputs, Mapping) else tool_outputs or ())
        if not prompt and not pairs and not attachments:
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
        settings = self.settings_for(profile)  # an unknown profile, a missing endpoint: refused now
        settings = settings.with_changes(**overrides) if overrides else settings  # validates now
        self.ledger.check(settings.budget)  # BudgetExceededError: refused before anything is sent
        self.chain(chain)
        items = [
            {"type": "function_call_output", "call_id": str(call_id), "output": str(output)}
            for call_id, output in pairs
        ]
        if prompt or attachments:
            items.append(user_message(prompt, attachments))
        spec = TurnSpec(prompt, chain, new, transport, overrides, tools, on_event, items, cell, tail)
        queue_events = on_event is None if _queue_events is None else _queue_events
        handle = TurnHandle(self._runtime, chain, prompt, queue_events=queue_events)
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
        if kw.get("tools") and not all(isinstance(t, dict) for t in kw["tools"]):
            from .tool_loop import run_tool_turn  # max_steps=, parallel=, approve= go there

            return run_tool_turn(self, prompt, **kw)
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
        settings = self.settings
        request: dict[str, Any] = {"model": settings.model, "store": settings.store, "input": []}
        if settings.instructions:
            request["instructions"] = settings.instructions

        async def _go() -> str | None:
            task = asyncio.current_task()
            if task is not None:
                self._warming[chain] = task
            try:
                out = await self.ws.warmup(settings, request, affinity=chain)
                return (out.terminal.response or {}).get("id") if out is not None else None
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

        async def _conns() -> list[dict[str, Any]]:
            return self.ws.connections()

        if self._runtime.closed:
            conns: list[dict[str, Any]] = []
        elif self._runtime.in_loop_thread():
            conns = self.ws.connections()
        else:
            conns = self._runtime.run(_conns(), timeout=5)
        return {
            "transport": self._transport,
            "ws_blocked_for": (
                self.refusals.remaining() or None if self.refusals.blocks(self._settings) else None
            ),
            "connections": conns,
            "handshakes": self.ws.handshakes,
            "in_flight": len(self._inflight),
            "chains": {
                name: {**c.snapshot(), "cost": self.ledger.chain_cost(name)}
                for name, c in self._chains.items()
            },
            "cost": self.ledger.summary(self._settings.budget),
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
            self._runtime.loop.create_task(self.ws.aclose())
        else:
            with contextlib.suppress(Exception):
                self._runtime.run(self.ws.aclose(), timeout=5)
        self._runtime.unregister_pool(self.ws)

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
        await asyncio.wrap_future(self._runtime.submit(self.ws.aclose()))
        self._runtime.unregister_pool(self.ws)

    def __enter__(self) -> ResponsesSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponsesSession(transport={self._transport!r}, model={self._settings.model!r}, chains={list(self._chains)})"

    # --- the loop side of a turn -------------------------------------------------------------------------

    def _cancelled_before_start(
        self, fut: concurrent.futures.Future[Any], handle: TurnHandle, spec: TurnSpec
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

    async def _turn(self, handle: TurnHandle, spec: TurnSpec, settings: Settings) -> TurnResult:
        handle._started = True
        rec = Recorder(handle, spec.on_event)
        result = TurnResult(chain=spec.chain, prompt=spec.prompt, model=settings.model)
        result.profile = settings.profile
        try:
            async with self._lock(spec.chain):
                await run_turn(spec, settings, self.chain(spec.chain), rec, result, self)
        except asyncio.CancelledError:
            result.status = "cancelled"
            rec.fill(result)
            raise
        except ResponsesError as exc:
            result.status = "failed"
            name_key_variable(exc, settings)  # "Check XAI_API_KEY", not OPENAI_API_KEY, for a profile's turn
            result.error = strip_tracebacks(exc)  # its frames hold request headers, hence the key
            rec.fill(result)
        except Exception as exc:  # a bug must still end the turn visibly, never hang the cell
            log.exception("unexpected error in a turn")
            result.status = "failed"
            result.error = strip_tracebacks(ResponsesError(f"Internal error: {type(exc).__name__}: {exc}"))
            rec.fill(result)
        finally:
            result.elapsed = time.perf_counter() - handle.started_at
            result.ttft = rec.ttft
            result.turn = self.chain(spec.chain).turns
            self.ledger.record(spec.chain, result)
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
