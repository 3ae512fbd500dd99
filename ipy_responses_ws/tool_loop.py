"""One turn with Python tools: responses and function calls in turn, until an answer without calls.

A tool turn is a loop of *steps*. Each step is one ordinary turn of the session (one ``response.create``, so
everything of the turn core applies: the pool, the recovery policy, the chain). When a step's response ends with
``function_call`` items, the caller's thread runs them (in a notebook: the kernel's main thread, so tools see the
user's variables and may display things), and the next step sends only their ``function_call_output`` items by
``previous_response_id``: on the WebSocket the chain's socket serves every step, with its connection cache.

What stays true however the turn ends (issue 12, and livekit #5092 for what goes wrong otherwise):

* the chain advances only on completed steps, so a failed or incomplete step is never its base;
* every call the server saw gets an answer: outputs not yet sent when the turn stops (Interrupt during a tool or
  a step, a failed step, the step limit) are *owed* to the chain (:meth:`.chain.Chain.owe`) and go first in the
  next turn, so the next cell never meets 400 "No tool output found".

The loop is synchronous and runs in the caller's thread; the waiting for each step is the caller's (the
foreground cell pumps its live view, ``ResponsesSession.respond`` just waits).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

from .chain import paragraph_break
from .errors import ConfigError
from .pricing import add_usage
from .results import TurnResult
from .toolbox import ToolBox, ToolCall

__all__ = ["ToolLoop", "DEFAULT_MAX_STEPS", "MAX_STEPS_REASON", "run_tool_turn", "split_tools"]

DEFAULT_MAX_STEPS = 10
MAX_STEPS_REASON = "max_steps"


def split_tools(tools: Sequence[Any] | None) -> tuple[list[Callable[..., Any]], list[dict[str, Any]]]:
    """(Python callables, tool dicts passed through as the API defines them) from a ``tools=`` argument."""
    funcs: list[Callable[..., Any]] = []
    dicts: list[dict[str, Any]] = []
    for tool in tools or ():
        if isinstance(tool, dict):
            dicts.append(tool)
        elif callable(tool):
            funcs.append(tool)
        else:
            raise ConfigError(
                f"tools must be Python functions or tool dicts, not {type(tool).__name__}.",
                hint="e.g. tools=[get_weather] or tools=[{'type': 'web_search'}]",
            )
    return funcs, dicts


def _no_op(*_args: Any) -> None:
    return None


class ToolLoop:
    """Runs one tool turn for *session* (a :class:`~.session.ResponsesSession`) in the caller's thread.

    Hooks (all optional, called in the caller's thread):

    * ``wait(handle)``: wait for one step's handle to end (default: ``handle.result()``); a foreground cell
      pumps its view here. A ``KeyboardInterrupt`` from it (or from a tool) ends the turn safely and is re-raised.
    * ``on_call(call)``: a call was asked for or changed status (pending → running → ok/error/denied/cancelled).
    * ``on_step(n)``: step *n* ≥ 2 is about to start.
    * ``approve(call) -> bool | str``: asked before each call runs (``--approve``); False answers "denied by the
      user", a string is the reason nobody could approve it (sent to the model as the call's output).

    After :meth:`run` returns or raises, :attr:`result` holds the turn's combined :class:`TurnResult`.
    """

    def __init__(
        self,
        session: Any,
        toolbox: ToolBox,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        parallel: bool = False,
        wait: Callable[[Any], Any] | None = None,
        on_call: Callable[[ToolCall], Any] | None = None,
        on_step: Callable[[int], Any] | None = None,
        approve: Callable[[ToolCall], bool | str] | None = None,
    ) -> None:
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be a whole number of at least 1, not {max_steps!r}.")
        self.session = session
        self.toolbox = toolbox
        self.max_steps = max_steps
        self.parallel = parallel
        self.wait = wait or (lambda handle: handle.result())
        self.on_call = on_call or _no_op
        self.on_step = on_step or _no_op
        self.approve = approve
        self.calls: list[ToolCall] = []
        self.steps: list[TurnResult] = []
        self.result: TurnResult | None = None
        self._started = time.perf_counter()
        self._limit_reached = False

    # --- the loop -------------------------------------------------------------------------------------------

    def run(self, prompt: str, **start: Any) -> TurnResult:
        """Run the turn: *prompt* first, then tool outputs, until an answer without calls (or the limit)."""
        chain = start.get("chain", "default")
        start["tools"] = self.toolbox.schemas
        outputs: list[tuple[str, str]] = []
        handle = None
        step = 0
        pending: list[ToolCall] = []
        try:
            while True:
                step += 1
                if step > 1:
                    self.on_step(step)
                kw = dict(start)
                if step > 1:
                    # --new starts the conversation once, and a re-run cell forks once: later steps follow step 1
                    kw.update(new=False, cell=None, attachments=())
                handle = self.session.start(prompt if step == 1 else "", tool_outputs=outputs or None, **kw)
                self.wait(handle)
                res = handle.result()
                handle = None
                self.steps.append(res)
                if res.status != "completed":
                    # The chain did not advance: the outputs just sent are still owed to its last response.
                    self._owe(chain, outputs)
                    break
                asked = [
                    it for it in res.function_calls if it.get("type", "function_call") == "function_call"
                ]
                if not asked:
                    break
                pending = [self.toolbox.prepare(item, step) for item in asked]
                self.calls.extend(pending)
                for call in pending:
                    self.on_call(call)
                if step >= self.max_steps:
                    for call in pending:
                        _end(call, f"not run: the turn reached its step limit (max_steps={self.max_steps})")
                        self.on_call(call)
                    self._owe(chain, [(c.call_id, c.output) for c in pending])
                    self._limit_reached = True
                    break
                self._run_calls(pending)
                outputs = [(c.call_id, c.output) for c in pending]
                pending = []
        except BaseException:
            # Interrupt (or anything else) mid-step or mid-tool: stop the step, answer every call the server saw.
            if handle is not None:
                try:
                    handle.cancel(wait=1.0)
                    self.steps.append(handle.result(timeout=2.0))
                except BaseException:  # the loop side did not confirm in time: the result says cancelled
                    pass
            # Outputs computed but never delivered (the step sending them was stopped, or refused before it
            # started: the budget). Chain.owe keeps only those its last response still waits for.
            self._owe(chain, outputs)
            for call in pending:
                if call.status in ("pending", "running"):
                    _end(call, "cancelled by the user", status="cancelled")
                    self.on_call(call)
            if pending:
                self._owe(chain, [(c.call_id, c.output) for c in pending])
            self.result = self._combine(interrupted=True)
            raise
        self.result = self._combine()
        return self.result

    def _run_calls(self, calls: list[ToolCall]) -> None:
        """Run the prepared calls of one step (in order, or at once with ``parallel``), asking first if told to."""
        runnable: list[ToolCall] = []
        for call in calls:
            if call.status != "pending":  # bad arguments or an unknown tool: already answered with the reason
                continue
            verdict = True if self.approve is None else self.approve(call)
            if verdict is not True:
                # False: the user said no; a string: why nobody could be asked (e.g. no stdin in a headless run)
                _end(call, verdict if isinstance(verdict, str) else "denied by the user", status="denied")
                self.on_call(call)
                continue
            runnable.append(call)
        if self.parallel and len(runnable) > 1:
            for call in runnable:
                call.status = "running"
                self.on_call(call)
            with concurrent.futures.ThreadPoolExecutor(len(runnable)) as pool:
                for call in pool.map(self.toolbox.run, runnable):
                    self.on_call(call)
            return
        for call in runnable:
            call.status = "running"
            self.on_call(call)
            self.toolbox.run(call)
            self.on_call(call)

    def _owe(self, chain: str, outputs: list[tuple[str, str]]) -> None:
        if outputs:
            items = [{"type": "function_call_output", "call_id": cid, "output": out} for cid, out in outputs]
            self.session.owe(chain, items)

    # --- the combined result --------------------------------------------------------------------------------

    def _combine(self, *, interrupted: bool = False) -> TurnResult:
        """One :class:`TurnResult` for the whole turn: the last step's, with every step's text, calls and usage."""
        last = dataclasses.replace(self.steps[-1]) if self.steps else TurnResult(status="cancelled")
        text = ""
        for res in self.steps:
            if res.text:
                text += paragraph_break(text) + res.text
        last.text = text
        last.tool_calls = list(self.calls)
        last.steps = max(1, len(self.steps))
        last.usage = functools.reduce(add_usage, [r.usage for r in self.steps], None)
        costs = [r.cost for r in self.steps if r.cost is not None]
        last.cost = sum(costs[1:], costs[0]) if costs else None
        last.elapsed = time.perf_counter() - self._started
        if self.steps:
            last.ttft = next((r.ttft for r in self.steps if r.ttft is not None), None)
            last.retries = sum(r.retries for r in self.steps)
            last.resent_transcript = any(r.resent_transcript for r in self.steps)
            last.reconnected = any(r.reconnected for r in self.steps)
            last.retried = any(r.retried for r in self.steps)
            last.fallback_reason = next((r.fallback_reason for r in self.steps if r.fallback_reason), None)
            last.reasoning_summary = "".join(r.reasoning_summary for r in self.steps)
            last.prompt = self.steps[0].prompt
        if interrupted and last.status == "completed":
            last.status = "cancelled"  # stopped between steps or in a tool: the turn did not finish
        if self._limit_reached:
            last.status = "incomplete"
            last.incomplete_reason = MAX_STEPS_REASON
        return last


def run_tool_turn(
    session: Any,
    prompt: str,
    *,
    tools: Sequence[Any],
    max_steps: int = DEFAULT_MAX_STEPS,
    parallel: bool = False,
    approve: Callable[[ToolCall], bool | str] | None = None,
    **start: Any,
) -> TurnResult:
    """``ResponsesSession.respond(prompt, tools=[f, g, {...}])``: the whole loop, waiting in this thread."""
    funcs, dicts = split_tools(tools)
    loop = ToolLoop(
        session, ToolBox(funcs, hosted=dicts), max_steps=max_steps, parallel=parallel, approve=approve
    )
    return loop.run(prompt, **start)


def _end(call: ToolCall, reason: str, *, status: str = "error") -> None:
    call.status = status
    call.error = reason
    call.output = reason
