"""The state of one streaming turn as a view shows it, folded from the session's events and notices.

:class:`TurnState` is shared by the widget view and the terminal printer, so both read events the same way
(PROTOCOL.md §2.2-2.8). A turn with Python tools is several responses ("steps", issue 12): the per-response
parts (state, usage, the end time) start over at each step, the answer and the call rows carry on. Pure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from .blocks import BlockFreezer
from .events import TERMINAL_TYPES
from .pricing import add_usage
from .redact import redact
from .status_text import call_counts, format_seconds, format_usage, short_id, tokens_per_second
from .tool_view import HostedCall, hosted_call, is_final, parse_arguments
from .toolbox import ToolCall

__all__ = ["STATES", "TERMINAL_EVENT_TYPES", "TurnState"]

#: The terminal event types (one definition, in :mod:`.events`).
TERMINAL_EVENT_TYPES = TERMINAL_TYPES

# What the status line calls each phase of a turn ("calling tools" and "awaiting approval": between steps).
STATES = (
    "connecting",
    "waiting",
    "streaming",
    "calling tools",
    "awaiting approval",
    "done",
    "incomplete",
    "interrupted",
    "failed",
)
_FINAL_STATE = {
    "completed": "done",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "interrupted",
}


class TurnState:
    """Everything a view shows about one turn, built from the session's event stream.

    ``apply(item)`` takes each :class:`ServerEvent` or :class:`Notice` (duck-typed: ``.type`` / ``.kind`` and
    ``.data``) in order and returns the answer text it added (so a terminal printer can print it). The widget
    view and the terminal printer share this, so both read events the same way (PROTOCOL.md §2.2–2.8).

    Tool calls (issue 12): ``calls`` holds one row per call, in the order they appeared: function calls
    (:class:`~.toolbox.ToolCall`, keyed by ``call_id``; first from the stream as ``pending``, then as the tool
    loop reports them) and server-side calls (:class:`~.tool_view.HostedCall`, keyed by item id).

    * ``tool_call(call)``: the loop reports a call (added the first time its ``call_id`` is seen, else updated).
    * ``awaiting_approval(call)``: the call waits for the user's yes/no (``--approve``).
    * ``step(n)``: response *n* (≥ 2) of the same turn starts. Only :meth:`finish` ends the turn: a
      ``response.completed`` whose output asked for function calls leaves it "calling tools".
    """

    def __init__(
        self,
        *,
        transport: str | None = None,
        model: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        freezer: BlockFreezer | None = None,
    ) -> None:
        self._clock = clock
        self.started = clock()
        self.freezer = freezer or BlockFreezer()
        self.state = "connecting"
        self.transport = transport
        self.model = model
        self.profile: str | None = None  # the endpoint profile's name (``-p``), shown after the state
        self.connection_reused: bool | None = None
        self.notes: list[str] = []  # fallback / retry / resend / reconnect, in plain words
        self.fallback_reason: str | None = None
        self.response_id: str | None = None
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.deltas = 0
        self.reasoning: list[str] = []
        self.calls: dict[str, ToolCall | HostedCall] = {}  # call_id (function) or item id (hosted) -> row
        self._item_keys: dict[str, str] = {}  # a function_call item's id -> its key in calls
        self._reported: set[str] = set()  # call_ids the tool loop reported (what the counts count)
        self.steps = 1  # the response of the turn now running (1 = the first)
        self._earlier_usage: dict[str, Any] | None = None  # usage of the steps before this one, summed
        self._response_calls = 0  # function calls the current response asked for
        self._response_ended = False  # the current response's terminal event arrived
        self._result_ttft: float | None = None
        self._result_elapsed: float | None = None
        self.version = 0  # bumps on every visible change; views compare it to skip no-op updates
        self._message_items: set[str] = set()

    # -- feeding -----------------------------------------------------------------------------------------

    def apply(self, item: Any) -> str:
        """Fold one event or notice into the state; return the answer text it added ("" if none)."""
        kind = getattr(item, "kind", None)
        if kind is not None:
            self._notice(kind, getattr(item, "data", {}) or {})
            self.version += 1
            return ""
        etype: str = getattr(item, "type", "")
        data: dict[str, Any] = getattr(item, "data", {}) or {}
        added = ""
        if etype in ("response.output_text.delta", "response.refusal.delta"):
            added = data.get("delta") or ""
            self._text(added)
        elif etype == "response.reasoning_summary_text.delta":
            self._first_token()
            self.reasoning.append(data.get("delta") or "")
        elif etype == "response.reasoning_summary_part.added":
            if self.reasoning:
                self.reasoning.append("\n\n")
        elif etype == "response.output_item.added":
            added = self._item_added(data.get("item") or {})
        elif etype == "response.function_call_arguments.delta":
            call = self.calls.get(self._item_keys.get(data.get("item_id") or "", ""))
            if isinstance(call, ToolCall) and call.status == "pending":
                call.arguments_text += data.get("delta") or ""
        elif etype in ("response.function_call_arguments.done", "response.output_item.done"):
            self._call_done(data)
        elif etype in ("response.created", "response.in_progress", "response.queued"):
            resp = data.get("response") or {}
            if self._response_ended and resp.get("id") and resp.get("id") != self.response_id:
                self.step(self.steps + 1)  # the next step's response, and the tool loop did not say so first
            self.response_id = resp.get("id") or self.response_id
            self.model = resp.get("model") or self.model
            if self.state == "connecting":
                self.state = "waiting"
        elif etype in TERMINAL_EVENT_TYPES:
            resp = data.get("response") or {}
            self.response_id = resp.get("id") or self.response_id
            self.model = resp.get("model") or self.model
            self.usage = resp.get("usage") or self.usage
            self.state = _FINAL_STATE.get(resp.get("status") or etype.rsplit(".", 1)[1], "done")
            err = resp.get("error")
            if isinstance(err, dict) and err.get("message"):
                self.error = redact(str(err["message"]))  # server text may echo a key or a gateway's secret
            self._response_ended = True
            if self.state == "done" and self._response_calls:
                self.state = "calling tools"  # the turn goes on: the kernel runs them, then the next step
            else:
                self.ended_at = self._clock()
        elif etype == "error":
            inner = data.get("error")
            src = inner if isinstance(inner, dict) else data
            self.error = redact(str(src.get("message") or src.get("code") or "The server sent an error."))
        else:
            return ""
        self.version += 1
        return added

    def tool_call(self, call: ToolCall) -> None:
        """Add the row of a call the tool loop reports (first time its ``call_id`` is seen) or update it.

        The state keeps a copy: what a view draws is what it was told, whatever the loop does with its record.
        """
        key = call.call_id or f"call {len(self.calls) + 1}"
        self.calls[key] = dataclasses.replace(call)
        self._reported.add(key)
        if call.status in ("pending", "running") or self.state == "awaiting approval":
            self.state = "calling tools"
        self.ended_at = None  # the turn goes on while tools run
        self.version += 1

    def awaiting_approval(self, call: ToolCall) -> None:
        """The call waits for the user's yes or no (asked on stdin by the tool loop)."""
        self.tool_call(dataclasses.replace(call, status="awaiting approval"))
        self.state = "awaiting approval"

    def step(self, n: int) -> None:
        """Response ``n`` (≥ 2) of the same turn starts: its per-response parts start over.

        The answer so far, the rows and the time to first token stay; the usage of the steps before is kept
        apart and added to the status line's. Idempotent: a step already started (by a ``response.created``
        after the previous response's end) is not started again.
        """
        if n <= self.steps:
            return
        self.steps = n
        self._earlier_usage = add_usage(self._earlier_usage, self.usage)
        self.usage = None
        self.state = "waiting"
        self.ended_at = None
        self._response_calls = 0
        self._response_ended = False
        self.version += 1

    def finish(self, result: Any) -> None:
        """Take the final word from the session's ``TurnResult`` (duck-typed)."""
        for call in getattr(result, "tool_calls", None) or ():
            row = self.calls.get(call.call_id)
            if row is None or not is_final(row):
                self.tool_call(call)  # the result's record is the truth; a finished row is not redrawn
        self.steps = max(self.steps, getattr(result, "steps", 1) or 1)
        status = getattr(result, "status", None) or "failed"
        self.state = _FINAL_STATE.get(status, status)
        self.transport = getattr(result, "transport", None) or self.transport
        self.fallback_reason = getattr(result, "fallback_reason", None) or self.fallback_reason
        self.response_id = getattr(result, "response_id", None) or self.response_id
        self.model = getattr(result, "model", None) or self.model
        if getattr(result, "usage", None):
            self._earlier_usage = None  # the result's usage is the whole turn's
        self.usage = getattr(result, "usage", None) or self.usage
        error = getattr(result, "error", None)
        if error is not None:
            self.error = str(error)
        # The session measured from the request's start; prefer its numbers over the view's clock.
        self._result_ttft = getattr(result, "ttft", None)
        self._result_elapsed = getattr(result, "elapsed", None)
        if self.ended_at is None:
            self.ended_at = self._clock()
        self.version += 1

    def _notice(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "connecting":
            self.state = "connecting"
        elif kind == "connected":
            self.transport = data.get("transport") or self.transport
            self.connection_reused = data.get("reused")
            if self.state == "connecting":
                self.state = "waiting"
        elif kind == "fallback":
            self.fallback_reason = str(data.get("reason") or "WebSocket unavailable")
            self.transport = "sse"
            self.notes.append(f"fell back to SSE: {self.fallback_reason}")
        elif kind == "retry" and data.get("delay") is not None:
            # A backoff: shown while it waits ("retrying in 1.2 s: 429 rate limited"), then kept as a note.
            self.state = (
                f"retrying in {format_seconds(float(data['delay']))}: {data.get('reason') or 'refused'}"
            )
            attempt = f" {data['attempt']}/{data['of']}" if data.get("attempt") and data.get("of") else ""
            self.notes.append(f"retry{attempt} after {data.get('reason') or 'a refusal'}")
        elif kind == "retry":
            self.notes.append(f"retried on a fresh connection ({data.get('reason') or 'connection lost'})")
        elif kind == "resend":
            self.notes.append(f"resent the conversation ({data.get('reason') or 'chain recovered'})")
        elif kind == "reconnect":
            self.notes.append(f"reconnected ({data.get('reason') or 'connection rotated'})")
        elif kind == "fork":
            self.notes.append(f"re-run: forked, replacing turn {data.get('turn')} and the turns after it")
        elif kind == "trim":
            self.notes.append(f"sent the last {data.get('kept')} turns only ({data.get('turns')} left out)")

    def _first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = self._clock()
        self.state = "streaming"

    def _text(self, delta: str) -> None:
        self._first_token()
        self.deltas += 1
        self.freezer.feed(delta)

    def _item_added(self, item: Mapping[str, Any]) -> str:
        itype = item.get("type")
        item_id = str(item.get("id") or "")
        if itype == "function_call":
            key = str(item.get("call_id") or "") or item_id
            self._item_keys[item_id] = key
            self._response_calls += 1
            if key not in self.calls:  # else the tool loop reported it already
                self.calls[key] = ToolCall(
                    name=str(item.get("name") or "?"),
                    call_id=str(item.get("call_id") or ""),
                    arguments_text=str(item.get("arguments") or ""),
                    step=self.steps,
                )
            self._first_token()
        elif isinstance(itype, str) and itype.endswith("_call"):
            # A tool the server runs itself: web search, file search, code interpreter, MCP, ...
            self.calls[item_id] = hosted_call(item, done=False)
            self._first_token()
        elif itype == "message":
            # A second message item in one response starts a new paragraph.
            first = not self._message_items
            self._message_items.add(item_id)
            text = self.freezer.text
            if not first and text and not text.endswith("\n\n"):
                sep = "\n\n" if not text.endswith("\n") else "\n"
                self.freezer.feed(sep)
                return sep
        return ""

    def _call_done(self, data: Mapping[str, Any]) -> None:
        item = data.get("item")
        if not isinstance(item, Mapping):  # response.function_call_arguments.done
            call = self.calls.get(self._item_keys.get(data.get("item_id") or "", ""))
            if isinstance(call, ToolCall) and call.status == "pending" and data.get("arguments") is not None:
                call.arguments_text = str(data["arguments"])
                call.arguments = parse_arguments(call.arguments_text)
            return
        itype, item_id = item.get("type"), str(item.get("id") or "")
        if itype == "function_call":
            if item_id not in self._item_keys:  # its .added was missed: count it now
                self._item_added({**item, "arguments": ""})
            call = self.calls.get(self._item_keys[item_id])
            if isinstance(call, ToolCall) and call.status == "pending":
                call.name = str(item.get("name") or call.name)
                call.call_id = str(item.get("call_id") or call.call_id)
                if item.get("arguments") is not None:
                    call.arguments_text = str(item["arguments"])
                call.arguments = parse_arguments(call.arguments_text)
        elif isinstance(itype, str) and itype.endswith("_call"):
            self.calls[item_id] = hosted_call(item, done=True)

    # -- reading -----------------------------------------------------------------------------------------

    @property
    def ttft(self) -> float | None:
        if self._result_ttft is not None:
            return self._result_ttft
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def elapsed(self) -> float:
        if self._result_elapsed is not None:
            return self._result_elapsed
        return (self.ended_at if self.ended_at is not None else self._clock()) - self.started

    def total_usage(self) -> dict[str, Any] | None:
        """The usage of every step so far (the current response's alone in a one-step turn)."""
        return add_usage(self._earlier_usage, self.usage) if self._earlier_usage else self.usage

    def tool_calls(self) -> list[ToolCall]:
        """The function calls the tool loop reported, in order (what the counts count)."""
        return [c for k, c in self.calls.items() if k in self._reported and isinstance(c, ToolCall)]

    def hosted_calls(self) -> list[HostedCall]:
        """The server-side tool calls seen (web search, MCP, ...), in order; the frozen bundle lists them too."""
        return [c for c in self.calls.values() if isinstance(c, HostedCall)]

    def tool_parts(self) -> list[str]:
        """The status line's tool pieces: ``["step 2", "3 calls", "1 failed"]`` (``[]`` for a plain turn)."""
        parts = [f"step {self.steps}"] if self.steps > 1 else []
        return parts + call_counts(self.tool_calls())

    def tokens_per_second(self) -> float | None:
        """Output tokens per second after the first token (usage when known, else one per text delta)."""
        if self.first_token_at is None:
            return None
        tokens = (self.total_usage() or {}).get("output_tokens") or self.deltas
        return tokens_per_second(tokens, self.ttft, self.elapsed)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    def transport_badge(self) -> str:
        """``WS``, ``SSE``, ``SSE (fell back)``, ``WS (reconnected)`` or ``…`` before it is known."""
        if not self.transport:
            return "…"
        badge = self.transport.upper()
        if self.fallback_reason:
            badge += " (fell back)"
        elif any(n.startswith(("reconnected", "retried")) for n in self.notes):
            badge += " (reconnected)"
        return badge

    def status_parts(self) -> list[str]:
        """The status line's pieces after the badge, e.g. ``["streaming", "ttft 210 ms", "48 tok/s"]``."""
        parts = [self.state, self.profile] if self.profile else [self.state]
        parts += self.tool_parts()
        if self.ttft is not None:
            parts.append(f"ttft {format_seconds(self.ttft)}")
        parts.append(format_seconds(self.elapsed))
        rate = self.tokens_per_second()
        if rate is not None:
            parts.append(f"{rate:,.0f} tok/s")
        usage = format_usage(self.total_usage())
        if usage:
            parts.append(usage)
        if self.response_id:
            parts.append(short_id(self.response_id))
        return parts

    def status_line(self) -> str:
        """The whole status as plain text (the terminal printer uses this)."""
        line = " · ".join([self.transport_badge(), *self.status_parts()])
        if self.notes:
            line += " · " + "; ".join(self.notes)
        return line
