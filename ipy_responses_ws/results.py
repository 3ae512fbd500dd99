"""What a turn gives back: :class:`TurnResult`, the caller's :class:`TurnHandle`, and the per-turn
:class:`Recorder` that every transport's events pass through.

The recorder is the ``emit`` callback of the transports (the hot path): it accumulates the answer, the
reasoning summary, function calls and time to first token, queues the event for a foreground caller and calls
``on_event`` (on the loop thread) for a background view.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .chain import paragraph_break
from .errors import ResponsesError
from .events import Notice, ServerEvent
from .pricing import Cost
from .toolbox import ToolCall

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["TurnResult", "TurnHandle", "Recorder", "safe_call"]

log = logging.getLogger(__name__)

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
    retries: int = (
        0  # waits-and-retries before anything arrived (429, 5xx, connect errors; Settings.max_retries)
    )
    connection_id: str | None = None
    profile: str | None = None  # the endpoint profile that served it (profiles.py), None without one
    # A turn with Python tools (tool_loop.py) is several responses ("steps"); these are its function calls, in order.
    tool_calls: list[ToolCall] = field(default_factory=list)
    steps: int = 1
    forked_from: int | None = None  # a re-run cell: the turn number its new turn replaced (a fork)
    trimmed_turns: int = 0  # earlier turns left out of a resent transcript (Settings.max_turns)
    notes: list[str] = field(
        default_factory=list
    )  # what the cell added (attachments, the last error): footer
    cost: Cost | None = (
        None  # the estimate from usage and the session's price table (ledger.py); None: unknown
    )

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

    def __init__(self, runtime: Runtime, chain: str, prompt: str, *, queue_events: bool = True) -> None:
        self._runtime = runtime
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
        if self._runtime.in_loop_thread():
            return self._done.is_set()  # the turn ends on this loop: waiting here would block it
        return self._done.wait(wait)

    def add_done_callback(self, fn: Callable[[TurnResult], Any]) -> None:
        """Call ``fn(result)`` when the turn ends, on the loop thread (at once there if already done)."""
        with self._cb_lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        rt = self._runtime
        if rt.in_loop_thread() or rt.closed:
            safe_call(fn, self._result)
        else:
            rt.call_soon(safe_call, fn, self._result)

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
            safe_call(fn, result)

    def __repr__(self) -> str:
        state = self._result.status if self._result else "running"
        return f"TurnHandle(chain={self.chain!r}, {state})"


def safe_call(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # a broken callback must not break the turn or the loop
        log.exception("callback %r failed", fn)


class Recorder:
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

    def fill(self, result: TurnResult) -> None:
        """Fill what a turn that did not complete still has (partial text, summary, calls, id) into *result*."""
        if not result.text:
            result.text = "".join(self.parts)
        result.reasoning_summary = result.reasoning_summary or "".join(self.summary)
        result.function_calls = result.function_calls or list(self.calls)
        result.response_id = result.response_id or self.response_id

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
