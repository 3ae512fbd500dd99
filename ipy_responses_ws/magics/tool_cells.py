"""A ``%%respond --tools f,g`` cell: the tool loop (``tool_loop.py``) run in the kernel's main thread.

The cell's main thread does what a foreground cell always does (pump the live view, DESIGN.md §2) for each step,
and between steps runs the model's function calls itself, so tools see the user's variables and may display
things. Interrupt works everywhere: in a step it cancels the request, in a tool it stops the tool; either way
the calls the server saw are answered "cancelled by the user" with the next turn (``Chain.owe``), so the next
cell never meets 400 "No tool output found".

``--approve`` asks on the kernel's stdin before each call (``input()``: JupyterLab, Notebook 7, VS Code and
terminal IPython show a prompt). A foreground cell cannot receive a button click until it ends (DESIGN.md §2), so
there are no Approve/Deny buttons; where no stdin exists (a headless run), the call is denied and the model is
told why.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError

from ..errors import ConfigError, MissingAPIKeyError
from ..pricing import BudgetExceededError
from ..render import TurnState, footer_text
from ..tool_loop import ToolLoop
from ..tool_schema import describe, hosted_tool
from ..tool_view import tool_line
from ..toolbox import ToolBox, ToolCall
from .turns import Store, TurnInterrupted, _freeze, _pump, _settings, new_view, no_key_message, print_events

__all__ = ["ToolRequest", "describe_tools", "run_tool_turn", "tool_request"]

NO_STDIN = "not run: --approve needs a frontend that accepts input (this run has no stdin)"


@dataclass
class ToolRequest:
    """What a cell asked for: its toolbox and how to run it."""

    toolbox: ToolBox
    max_steps: int
    approve: bool = False
    parallel: bool = False
    names: list[str] = field(default_factory=list)


def _split(names: str | None) -> list[str]:
    return [n.strip() for n in (names or "").split(",") if n.strip()]


def tool_request(
    args: Any, default_tools: str, default_max_steps: int, namespace: dict[str, Any]
) -> ToolRequest | None:
    """The cell's tools (``--tools``, else the configured default, and ``--tool`` hosted ones), or None."""
    names = _split(args.tools) if args.tools is not None else _split(default_tools)
    hosted_specs = list(args.hosted or ())
    if not names and not hosted_specs:
        if args.max_steps is not None or args.approve or args.parallel_tools:
            raise UsageError("--max-steps, --approve and --parallel-tools go with --tools NAME[,NAME...].")
        return None
    max_steps = args.max_steps if args.max_steps is not None else default_max_steps
    if max_steps < 1:
        raise UsageError("--max-steps must be at least 1.")
    try:
        hosted = [hosted_tool(spec) for spec in hosted_specs]
        toolbox = ToolBox.from_namespace(names, namespace, hosted=hosted)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return ToolRequest(toolbox, max_steps, bool(args.approve), bool(args.parallel_tools), names)


def describe_tools(names: str, namespace: dict[str, Any]) -> str:
    """``%responses tools``: what the model would see of these functions."""
    wanted = _split(names)
    if not wanted:
        return (
            "No tools configured. Name functions per cell with %%respond --tools f,g, or for every cell with "
            "%responses config tools=f,g"
        )
    try:
        return describe(ToolBox.from_namespace(wanted, namespace).schemas)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def run_tool_turn(
    session: Any,
    prompt: str,
    request: dict[str, Any],
    tools: ToolRequest,
    store: Store,
    *,
    text: bool,
    notes: Sequence[str] = (),
) -> None:
    """Run the tool turn in this (the kernel's main) thread, in a live view or as plain text."""
    if text:
        if notes:
            print(f"[{'; '.join(notes)}]", flush=True)
        _run_text(session, prompt, request, tools, store)
    else:
        _run_view(session, prompt, request, tools, store, notes)


def _ask(call: ToolCall, show: Any = None) -> bool | str:
    """``--approve``: a y/N question on stdin; no stdin means nobody can approve."""
    if show is not None:
        show(call)
    try:
        answer = input(f"Run {tool_line(call, preview=False)} ? [y/N] ")
    except (StdinNotImplementedError, EOFError, RuntimeError):
        return NO_STDIN
    return answer.strip().lower() in ("y", "yes")


def _loop(session: Any, tools: ToolRequest, **hooks: Any) -> ToolLoop:
    approve_hook = hooks.pop("approve_show", None)
    return ToolLoop(
        session,
        tools.toolbox,
        max_steps=tools.max_steps,
        parallel=tools.parallel,
        approve=(lambda call: _ask(call, approve_hook)) if tools.approve else None,
        **hooks,
    )


def _start(loop: ToolLoop, prompt: str, request: dict[str, Any]) -> Any:
    try:
        return loop.run(prompt, **request)
    except MissingAPIKeyError as exc:
        raise UsageError(no_key_message(exc.variable, exc.profile)) from None
    except (ConfigError, BudgetExceededError) as exc:
        raise UsageError(str(exc)) from None


def _run_view(
    session: Any, prompt: str, request: dict[str, Any], tools: ToolRequest, store: Store, notes: Sequence[str]
) -> None:
    from IPython.display import display

    view = new_view(session, request, notes)
    loop = _loop(
        session,
        tools,
        wait=lambda handle: _pump(handle, view),
        on_call=view.tool_call,
        on_step=view.step,
        approve_show=view.awaiting_approval,
    )
    display_handle = display(view.widget, display_id=True)
    try:
        result = _start(loop, prompt, request)
    except KeyboardInterrupt:
        _freeze(view, display_handle, loop.result, notes)
        store(loop.result)
        raise TurnInterrupted() from None
    except UsageError:
        view.close()
        raise
    except BaseException:
        if loop.result is not None:
            _freeze(view, display_handle, loop.result, notes)
            store(loop.result)
        raise
    _freeze(view, display_handle, result, notes)
    store(result)


def _run_text(session: Any, prompt: str, request: dict[str, Any], tools: ToolRequest, store: Store) -> None:
    state = TurnState(transport=request["transport"] or session.transport)
    state.profile = _settings(session, request).profile

    def wait(handle: Any) -> None:
        print_events(handle, state)

    def on_call(call: ToolCall) -> None:
        state.tool_call(call)
        if call.status not in ("pending", "running"):
            print(f"\n{tool_line(call)}", flush=True)

    def on_step(n: int) -> None:
        state.step(n)

    loop = _loop(session, tools, wait=wait, on_call=on_call, on_step=on_step)
    try:
        result = _start(loop, prompt, request)
    except KeyboardInterrupt:
        store(loop.result)
        print(f"\n[{footer_text(loop.result)}]", flush=True)
        raise TurnInterrupted() from None
    except BaseException:
        if loop.result is not None:
            store(loop.result)
        raise
    if result.error is not None:
        print(f"\nError: {result.error}", file=sys.stderr, flush=True)
    print(f"\n[{footer_text(result)}]", flush=True)
    store(result)
