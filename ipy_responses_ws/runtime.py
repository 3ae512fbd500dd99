"""The process-wide I/O loop thread (DESIGN.md §1).

One daemon thread runs one asyncio loop for the life of the process. It owns the single
``aiohttp.ClientSession`` and every socket; nothing of aiohttp touches the caller's (the kernel's) loop, and
nest-asyncio is never used. Synchronous callers hand it coroutines with :meth:`Runtime.submit` and read
results through ``concurrent.futures.Future`` / ``queue.Queue``.

Lifetime:

* :func:`get_runtime` creates the runtime lazily and returns the same one afterwards. The live runtime is
  found through its thread (``threading.enumerate()``), not only a module global, so re-importing or
  reloading this module (``%reload_ext``) never starts a second loop or pool.
* Pools register with :meth:`Runtime.register_pool`; at exit an ``atexit`` hook (idempotent, holding only a
  weak reference) closes every pool (sockets closed with 1000), then the ClientSession, then stops the loop.
  The thread is a daemon: non-daemon threads are joined *before* atexit runs, which would hang kernel exit.
* ``%unload_ext`` does not close the runtime: it closes the extension's own session only. Sessions the user
  built with the public API share this loop and must keep working after an unload or a reload; an idle loop
  thread costs nothing, and the atexit hook still closes everything at exit. :meth:`Runtime.close` is for exit
  and for tests.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from .errors import PoolClosedError

__all__ = ["Runtime", "get_runtime", "THREAD_NAME"]

log = logging.getLogger(__name__)

THREAD_NAME = "ipy_responses_ws-io"
T = TypeVar("T")


class _Closable(Protocol):
    async def aclose(self) -> None: ...


class _LoopThread(threading.Thread):
    """The daemon thread; carries a reference to its Runtime so a reloaded module can find it."""

    runtime: Runtime


class Runtime:
    """One asyncio loop in one daemon thread, plus the shared aiohttp ClientSession."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._closed = False
        self._close_lock = threading.Lock()
        self._http: Any = None  # aiohttp.ClientSession, created on the loop on first use
        self._pools: weakref.WeakSet[_Closable] = weakref.WeakSet()
        started = threading.Event()
        self._thread = _LoopThread(target=self._run, args=(started,), name=THREAD_NAME, daemon=True)
        self._thread.runtime = self
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    # --- submitting work ----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule *coro* on the I/O loop; returns at once. ``future.cancel()`` cancels the task."""
        if self._closed:
            coro.close()
            raise PoolClosedError("The I/O loop has been shut down.")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run *coro* on the loop and wait for its result (never call this from the loop thread)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("Runtime.run() called from the I/O loop thread; await the coroutine instead.")
        return self.submit(coro).result(timeout)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a plain callable on the loop thread (thread-safe)."""
        if not self._closed:
            self.loop.call_soon_threadsafe(fn, *args)

    # --- shared resources -----------------------------------------------------------------------------

    def http_session(self) -> Any:
        """The one ``aiohttp.ClientSession`` (create it lazily; call only on the loop thread)."""
        if self._closed:
            raise PoolClosedError("The I/O loop has been shut down.")
        if self._http is None or self._http.closed:
            import aiohttp  # imported here so the pure modules never pull aiohttp in

            # limit=0: the pool bounds WebSocket connections itself; SSE requests are few.
            # trust_env stays off: each transport asks transports.network.env_proxy for the proxy at connect time
            # (HTTPS_PROXY for wss:// too, which aiohttp's trust_env misses; no ~/.netrc for the API host).
            connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=False)
            self._http = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._http

    def register_pool(self, pool: _Closable) -> None:
        """Close *pool* at exit (weakly held: a garbage-collected pool is simply forgotten)."""
        self._pools.add(pool)

    def unregister_pool(self, pool: _Closable) -> None:
        self._pools.discard(pool)

    # --- shutdown -------------------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Close every registered pool (1000), the ClientSession, then stop the loop. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self.in_loop_thread():  # cannot block on ourselves; best effort
            self.loop.call_soon(self.loop.stop)
            return
        if self._thread.is_alive() and not self.loop.is_closed():
            try:
                fut = asyncio.run_coroutine_threadsafe(self._aclose_all(), self.loop)
                fut.result(timeout)
            except Exception as exc:  # shutdown must never raise at exit
                log.debug("runtime close: %s", type(exc).__name__)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        global _RUNTIME
        if _RUNTIME is self:
            _RUNTIME = None

    async def _aclose_all(self) -> None:
        pools = list(self._pools)
        if pools:
            await asyncio.gather(*(p.aclose() for p in pools), return_exceptions=True)
        if self._http is not None and not self._http.closed:
            await self._http.close()
        # Cancel anything still running (turns of sessions nobody closed) so the loop stops cleanly.
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for t in rest:
            t.cancel()
        if rest:
            await asyncio.wait(rest, timeout=1.0)


_RUNTIME: Runtime | None = None
_RUNTIME_LOCK = threading.Lock()


def _find_live_runtime() -> Runtime | None:
    for thread in threading.enumerate():
        if thread.name == THREAD_NAME and thread.is_alive():
            rt = getattr(thread, "runtime", None)
            if rt is not None and not rt.closed:
                return rt
    return None


def get_runtime() -> Runtime:
    """The process-wide runtime, created on first use (and again only after an explicit close)."""
    global _RUNTIME
    rt = _RUNTIME
    if rt is not None and not rt.closed:
        return rt
    with _RUNTIME_LOCK:
        rt = _RUNTIME if _RUNTIME is not None and not _RUNTIME.closed else _find_live_runtime()
        if rt is None:
            rt = Runtime()
            _register_atexit(rt)
        _RUNTIME = rt
        return rt


def _register_atexit(rt: Runtime) -> None:
    ref = weakref.ref(rt)

    def _close_at_exit() -> None:
        live = ref()
        if live is not None:
            live.close(timeout=3.0)

    atexit.register(_close_at_exit)
