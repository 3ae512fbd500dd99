"""How a ``%%respond`` cell runs its turn: in the foreground, in the background, or as plain text.

How a foreground cell waits (DESIGN.md §2): the session streams on its own I/O loop thread; this cell's main
thread polls ``handle.get(timeout=0.05)`` and applies coalesced widget updates. It never runs or nests the
kernel's event loop, so a cell queued behind it ("Run All"), a completion request or a widget click is
handled normally afterwards (DESIGN.md §1: nest-asyncio lost those messages). The notebook's Interrupt raises
``KeyboardInterrupt`` in that poll; the cell then cancels the turn, waits briefly for the loop side to
confirm, marks the view interrupted and re-raises so "Run All" stops there.

``--background`` cells return at once; the I/O loop thread feeds the view through ``on_event`` (the one
writer of that view) and freezes it in a done callback. They stop with their Stop button or
``%responses stop``.

Terminal IPython (no widget front end) gets the answer as plain text on stdout.

Every runner hands the turn's result, however it ended, to ``store(result)`` (``-o NAME`` and the holder's
``last_result``).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from IPython.core.error import UsageError

from ..errors import ConfigError, MissingAPIKeyError, ResponsesError
from ..pricing import BudgetExceededError
from ..render import TurnState, footer_text

__all__ = [
    "NO_KEY_MESSAGE",
    "TurnInterrupted",
    "check_api_key",
    "no_key_message",
    "run_background",
    "run_foreground",
    "run_terminal",
    "start_turn",
]

log = logging.getLogger(__name__)

Store = Callable[[Any], None]

#: Shown when no key is set. It names the variable, never a value, and suggests nothing that would save a
#: key into the notebook file.
NO_KEY_MESSAGE = (
    "No OpenAI API key: the OPENAI_API_KEY environment variable is not set in this kernel.\n"
    "  • Set it in the shell before starting Jupyter:  export OPENAI_API_KEY=...  (then restart the kernel),\n"
    "    or in the notebook without saving it:  import os, getpass; "
    "os.environ['OPENAI_API_KEY'] = getpass.getpass('key: ')\n"
    "  • Or try everything offline with the local emulator:  python -m ipy_responses_ws.emulator\n"
    "    then set OPENAI_BASE_URL to the URL it prints and OPENAI_API_KEY to any placeholder,\n"
    "    or simply run:  python -m ipy_responses_ws.cli lab"
)


def no_key_message(variable: str = "OPENAI_API_KEY", profile: str | None = None) -> str:
    """:data:`NO_KEY_MESSAGE`, or the same for an endpoint profile's key variable (named, never a value)."""
    if variable == "OPENAI_API_KEY" and profile in (None, "openai"):
        return NO_KEY_MESSAGE
    who = f"the {profile!r} endpoint profile" if profile else "this endpoint"
    return (
        f"No API key for {who}: the {variable} environment variable is not set in this kernel.\n"
        f"  • Set it in the shell before starting Jupyter:  export {variable}=...  (then restart the kernel),\n"
        f"    or in the notebook without saving it:  import os, getpass; "
        f"os.environ['{variable}'] = getpass.getpass('key: ')"
    )


def check_api_key(session: Any, profile: str | None = None) -> None:
    """Refuse a turn without a key (or with an unknown profile) before anything is displayed (a plain
    ``UsageError``). A ``token_provider`` is not called here: the turn calls it when it connects."""
    try:
        session.settings_for(profile).require_credentials()
    except MissingAPIKeyError as exc:
        raise UsageError(no_key_message(exc.variable, exc.profile)) from None
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def start_turn(
    session: Any, prompt: str, request: dict[str, Any], on_event: Callable[[Any], None] | None = None
) -> Any:
    """Start the turn; a refused request (no key, a bad value) is a plain ``UsageError``."""
    try:
        return session.start(prompt, on_event=on_event, **request)
    except MissingAPIKeyError as exc:
        raise UsageError(no_key_message(exc.variable, exc.profile)) from None
    except (ConfigError, BudgetExceededError) as exc:
        raise UsageError(str(exc)) from None


def run_foreground(
    session: Any,
    prompt: str,
    request: dict[str, Any],
    store: Store,
    notes: Sequence[str] = (),
    buttons: bool = False,
) -> None:
    """Stream into a live view while the cell waits; freeze it to a plain bundle at the end."""
    from IPython.display import display

    view = new_view(session, request, notes)
    try:
        handle = start_turn(session, prompt, request)  # a refused request shows no view, only its error
    except BaseException:
        view.close()
        raise
    interrupted = False
    display_handle = None
    try:
        display_handle = display(view.widget, display_id=True)
        _pump(handle, view)
        result = handle.result(timeout=5.0)
    except KeyboardInterrupt:
        # DESIGN.md §2: a KeyboardInterrupt cancels nothing by itself; cancel explicitly, wait for the
        # loop side to confirm (the socket is discarded, the chain does not advance), then re-raise.
        interrupted = True
        result = _cancel_and_collect(handle, prompt, request)
    except BaseException:
        result = _cancel_and_collect(handle, prompt, request)
        _freeze(view, display_handle, result, notes)
        store(result)  # -o always gets a result, however the turn ended
        raise
    _freeze(view, display_handle, result, notes)
    store(result)
    if buttons:
        offer_actions(session, prompt, request, store, result)
    if interrupted:
        raise TurnInterrupted() from None


def run_background(
    session: Any,
    prompt: str,
    request: dict[str, Any],
    store: Store,
    notes: Sequence[str] = (),
    buttons: bool = False,
) -> None:
    """Return at once; the I/O loop thread feeds the view and freezes it when the turn ends."""
    from IPython.display import display

    box: dict[str, Any] = {}

    def stop() -> None:
        handle = box.get("handle")
        if handle is not None:
            handle.cancel(wait=0.0)

    view = new_view(session, request, notes, on_stop=stop)
    flusher = _LoopFlusher(view)

    on_event = flusher.on_event  # on the I/O loop thread: this view's only writer while the turn runs

    def done(result: Any) -> None:
        try:
            _freeze(view, box.get("display"), result, notes)
        except Exception:
            log.exception("freezing the background view failed")
        store(result)
        if buttons:
            offer_actions(session, prompt, request, store, result)

    try:
        handle = start_turn(session, prompt, request, on_event=on_event)
    except BaseException:
        view.close()
        raise
    box["handle"] = handle
    # Displayed after the start, so a refused request leaves no view behind; the done callback is added
    # after the display, so it always has a display to freeze (if the turn already ended, the session
    # runs the callback on the loop thread right away).
    box["display"] = display(view.widget, display_id=True)
    handle.add_done_callback(done)


def run_terminal(
    session: Any,
    prompt: str,
    request: dict[str, Any],
    store: Store,
    notes: Sequence[str] = (),
    buttons: bool = False,  # no widgets in a terminal: nothing to click
) -> None:
    """Print the answer as it streams (terminal IPython, ``view = 'text'``), then a footer line."""
    handle = start_turn(session, prompt, request)
    state = TurnState(transport=request["transport"] or session.transport)
    state.profile = _settings(session, request).profile
    if notes:
        print(f"[{'; '.join(notes)}]", flush=True)
    try:
        print_events(handle, state)
        result = handle.result(timeout=5.0)
    except KeyboardInterrupt:
        result = _cancel_and_collect(handle, prompt, request)
        store(result)
        print(f"\n[{footer_text(result)}]", flush=True)
        raise TurnInterrupted() from None
    except BaseException:
        store(_cancel_and_collect(handle, prompt, request))
        raise
    if result.error is not None:
        print(f"\nError: {result.error}", file=sys.stderr, flush=True)
    print(f"\n[{footer_text(result)}]", flush=True)
    store(result)


def run_into(
    session: Any,
    prompt: str,
    request: dict[str, Any],
    on_view: Callable[[Any], None],
    on_done: Callable[[Any, dict[str, Any], dict[str, Any]], None],
) -> Any:
    """A background turn for a Retry/Continue click: ``on_view(widget)`` once it started, then
    ``on_done(result, data, metadata)`` on the loop thread with the frozen bundle. Returns the handle."""
    box: dict[str, Any] = {}
    view = new_view(
        session, request, on_stop=lambda: box["handle"].cancel(wait=0.0) if "handle" in box else None
    )
    flusher = _LoopFlusher(view)
    try:
        handle = box["handle"] = start_turn(session, prompt, request, on_event=flusher.on_event)
    except BaseException:
        view.close()
        raise
    on_view(view.widget)

    def done(result: Any) -> None:
        view.finish(result, draw=False)
        data, metadata = view.final_bundle(result)
        view.close()
        on_done(result, data, metadata)

    handle.add_done_callback(done)
    return handle


def offer_actions(session: Any, prompt: str, request: dict[str, Any], store: Store, result: Any) -> None:
    """Show Retry (and Continue under a cut-off answer) under a finished answer (magics/actions.py).

    Only with ``retry_buttons`` on: the bar is a widget, and a widget view saved in a notebook shows "Error
    displaying widget: model not found" when it is reopened (DESIGN.md §5), so it is the user's choice.
    """
    if getattr(result, "status", None) not in ("completed", "incomplete", "failed") or not request.get(
        "cell"
    ):
        return
    from IPython.display import display

    from .actions import ActionsBar

    try:
        bar = ActionsBar(session, prompt, request, store, result, run=run_into)
        display(bar.bundle(), raw=True)
    except Exception:  # the answer is already shown; a missing bar must not fail the cell
        log.exception("showing the Retry bar failed")


# -- helpers ------------------------------------------------------------------------------------------------


def new_view(
    session: Any,
    request: dict[str, Any],
    notes: Sequence[str] = (),
    *,
    on_stop: Callable[[], Any] | None = None,
) -> Any:
    """The live view of one turn: its transport, model and profile, and what the cell attached, in the status
    line. With *on_stop* it is a background view (its Stop button calls it)."""
    from ..widgets import ResponseView

    settings = _settings(session, request)
    view = ResponseView(
        transport=request["transport"] or session.transport,
        model=request["model"] or settings.model,
        background=on_stop is not None,
        on_stop=on_stop,
    )
    view.state.profile = settings.profile  # shown in the status line
    view.state.notes.extend(notes)  # attachments, the last error, a continued answer
    return view


def print_events(handle: Any, state: Any) -> None:
    """Print the answer text of one handle's events as they come (terminal IPython, ``view = 'text'``)."""
    write = sys.stdout.write
    while True:
        item = handle.get(timeout=0.05)
        if item is None:
            if handle.done():
                return
            continue
        added = state.apply(item)
        if added:
            write(added)
            sys.stdout.flush()


def _settings(session: Any, request: dict[str, Any]) -> Any:
    """The settings of the cell's profile (``-p``), else the session's (checked valid by ``check_api_key``)."""
    profile = request.get("profile")
    return session.settings_for(profile) if profile else session.settings


class TurnInterrupted(KeyboardInterrupt):
    """Re-raised after an interrupted turn was cancelled and frozen, so "Run All" stops at this cell.

    Still a ``KeyboardInterrupt`` (and named so in the error reply). It renders as one line through
    IPython's ``_render_traceback_`` hook: the first full traceback in a fresh kernel takes IPython
    about 2 s to format (it parses the source of every frame), which would make Interrupt feel slow
    although the turn stopped within milliseconds.
    """

    def __init__(self) -> None:
        super().__init__(
            "the response was interrupted; the partial answer stays above and is not part of the conversation"
        )

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31mKeyboardInterrupt\x1b[0m: {self.args[0]}"]


TurnInterrupted.__name__ = TurnInterrupted.__qualname__ = "KeyboardInterrupt"


def _pump(handle: Any, view: Any) -> None:
    """Move events from the handle into the view until the turn ends (main thread, foreground)."""
    get, done, handle_item, flush, due = handle.get, handle.done, view.handle, view.flush, view.due
    while True:
        item = get(timeout=0.05)
        if item is None:
            if done():
                break
        else:
            handle_item(item)
            # Drain what is queued before drawing (one update per tick however fast events come), but
            # stop to draw when an update is due, so a flood of events still redraws 10+ times a second.
            drained = 0
            while (item := get(timeout=0)) is not None:
                handle_item(item)
                drained += 1
                if not drained & 127 and due():
                    break
        flush()


def _cancel_and_collect(handle: Any, prompt: str, request: dict[str, Any]) -> Any:
    """Cancel a turn (if it started) and return its ``TurnResult`` (status ``cancelled``)."""
    if handle is None:
        return _NotSent(prompt=prompt, chain=request.get("chain"), profile=request.get("profile"))
    try:
        handle.cancel(wait=1.0)
        return handle.result(timeout=2.0)
    except BaseException as exc:  # the loop did not confirm in time; say so instead of hanging the cell
        log.debug("cancel did not confirm: %r", exc)
        return _NotSent(
            prompt=prompt, chain=request.get("chain"), profile=request.get("profile"), status="cancelled"
        )


@dataclasses.dataclass
class _NotSent:
    """A stand-in result when the session never produced one (interrupted before the turn started)."""

    prompt: str = ""
    chain: str | None = None
    status: str = "cancelled"
    text: str = ""
    response_id: str | None = None
    transport: str | None = None
    fallback_reason: str | None = None
    reconnected: bool = False
    resent_transcript: bool = False
    usage: dict[str, Any] | None = None
    ttft: float | None = None
    elapsed: float | None = None
    error: ResponsesError | None = None
    model: str | None = None
    reasoning_summary: str = ""
    function_calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    incomplete_reason: str | None = None
    turn: int | None = None
    profile: str | None = None


def _freeze(view: Any, display_handle: Any, result: Any, notes: Sequence[str] = ()) -> None:
    """Replace the live view by the plain bundle (DESIGN.md §5), then close its widgets. *notes* (what the cell
    attached) go into the result, so the saved footer says what the prompt carried."""
    if notes and hasattr(result, "notes"):
        result.notes = list(notes)
    view.finish(result, draw=False)
    data, metadata = view.final_bundle(result)  # with the server-side tool calls the view saw
    if display_handle is not None:
        display_handle.update(data, metadata=metadata, raw=True)
    view.close()


class _LoopFlusher:
    """Background views, on the I/O loop thread (still the view's only writer): after each event, draw now
    or schedule the coalesced update for when it is due; and a heartbeat that keeps the status line's
    clock moving while the server is silent (a long time to first token, a stall)."""

    HEARTBEAT = 0.5

    def __init__(self, view: Any) -> None:
        self.view = view
        self.scheduled = False
        self.beating = False

    def on_event(self, item: Any) -> None:
        view = self.view
        view.handle(item)
        loop = _running_loop()
        if loop is None:  # not on a loop (a test calling directly): draw when due, nothing scheduled
            view.flush()
            return
        if not self.beating:
            self.beating = True
            loop.call_later(self.HEARTBEAT, self._beat, loop)
        if not view.flush() and not self.scheduled:
            self.scheduled = True
            loop.call_later(view._clock.remaining() + 0.001, self._run)

    def _run(self) -> None:
        self.scheduled = False
        if not self.view.finished and not self.view.closed:
            self.view.flush()

    def _beat(self, loop: Any) -> None:
        if self.view.finished or self.view.closed:
            return
        self.view.flush()
        loop.call_later(self.HEARTBEAT, self._beat, loop)


def _running_loop() -> Any:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
