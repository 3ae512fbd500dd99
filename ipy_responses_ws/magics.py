"""IPython magics: ``%%respond`` (one turn of a conversation) and ``%responses`` (the control surface).

Thin on purpose (STYLE.md habit 2): parse the arguments, build the request and the view, hand off to the
kernel-lifetime :class:`~ipy_responses_ws.session.ResponsesSession`, and freeze the answer when it ends.

How a foreground cell waits (DESIGN.md §2): the session streams on its own I/O loop thread; this cell's main
thread polls ``handle.get(timeout=0.05)`` and applies coalesced widget updates. It never runs or nests the
kernel's event loop, so a cell queued behind it ("Run All"), a completion request or a widget click is
handled normally afterwards (DESIGN.md §1: nest-asyncio lost those messages). The notebook's Interrupt raises
``KeyboardInterrupt`` in that poll; the cell then cancels the turn, waits briefly for the loop side to
confirm, marks the view interrupted and re-raises so "Run All" stops there.

``--background`` cells return at once; the I/O loop thread feeds the view through ``on_event`` (the one
writer of that view) and freezes it in a done callback. They stop with their Stop button or
``%responses stop``.
"""

from __future__ import annotations

import dataclasses
import keyword
import logging
import string
import sys
from collections.abc import Callable, Mapping
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, CaselessStrEnum, Float, Int, Unicode, observe

from . import _extension
from .config import Settings, parse_config_value
from .errors import ConfigError, MissingAPIKeyError, ResponsesError
from .render import TurnState, final_bundle, footer_text

__all__ = ["NO_KEY_MESSAGE", "ResponsesMagics", "TurnInterrupted", "interpolate"]

log = logging.getLogger(__name__)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}

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

# Settings that `%responses config` and the traitlets expose (the key is never one of them).
CONFIG_KEYS = (
    "model",
    "transport",
    "store",
    "instructions",
    "max_output_tokens",
    "temperature",
    "reasoning_effort",
    "reasoning_summary",
    "connect_timeout",
    "first_event_timeout",
    "idle_timeout",
    "max_connection_age",
    "base_url",
)

_TRANSPORTS = ("ws", "sse")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")
_ACTIONS = ("reset", "status", "history", "transport", "config", "stop", "close")


# -- {name} interpolation ----------------------------------------------------------------------------------

_FORMATTER = string.Formatter()


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Fill ``{name}``, ``{obj.attr}``, ``{seq[0]}``, ``{mapping[key]}`` from the user's namespace.

    As in jupyter-ai's prompt templates. Only lookups happen (``str.format`` field rules): no expression
    is evaluated. ``{{`` and ``}}`` give literal braces. A format spec / conversion works as in
    ``str.format`` (``{x:.2f}``, ``{df!r}``). An unknown name raises ``UsageError`` naming it.
    """
    out: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise UsageError(
            f"Cannot read the prompt's {{name}} fields: {exc}. Write {{{{ and }}}} for literal braces, "
            "or use --raw to send the cell as written."
        ) from None
    for literal, field, spec, conversion in parsed:
        out.append(literal)
        if field is None:
            continue
        if field == "" or field[0].isdigit():
            raise UsageError(
                f"The prompt has an empty or numeric field {{{field}}}; name a variable, e.g. {{text}}. "
                "Write {{ and }} for literal braces, or use --raw."
            )
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root not in namespace:
            raise UsageError(
                f"The prompt uses {{{field}}} but no variable {root!r} is defined in the notebook. "
                "Define it first, or write {{ and }} for literal braces (or use --raw)."
            )
        try:
            value, _ = _FORMATTER.get_field(field, (), namespace)
            if conversion:
                value = _FORMATTER.convert_field(value, conversion)
            out.append(_FORMATTER.format_field(value, spec or ""))
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise UsageError(f"Cannot fill {{{field}}} in the prompt: {type(exc).__name__}: {exc}") from None
    return "".join(out)


# -- the magics ---------------------------------------------------------------------------------------------


def _has_widget_frontend(shell: Any) -> bool:
    """False in terminal IPython (or any shell without a kernel): stream plain text there instead."""
    if shell is None or type(shell).__name__ == "TerminalInteractiveShell":
        return False
    return getattr(shell, "kernel", None) is not None


@magics_class
class ResponsesMagics(Magics):
    """``%%respond`` and ``%responses``. Defaults are traitlets: ``%config ResponsesMagics.model = "..."``
    or ``c.ResponsesMagics.model = "..."`` in ``ipython_config.py``. The API key is never a trait: it is
    read from ``OPENAI_API_KEY`` when a request is made."""

    model = Unicode(_DEFAULTS["model"], help="Model for new turns.").tag(config=True)
    transport = CaselessStrEnum(
        _TRANSPORTS, default_value=_DEFAULTS["transport"], help="'ws' (WebSocket pool, default) or 'sse'."
    ).tag(config=True)
    store = Bool(_DEFAULTS["store"], help="Ask the server to store responses (store=false: ZDR).").tag(
        config=True
    )
    instructions = Unicode(None, allow_none=True, help="System instructions for every turn.").tag(config=True)
    max_output_tokens = Int(None, allow_none=True, help="Cap on output tokens per turn.").tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature.").tag(config=True)
    reasoning_effort = Unicode(None, allow_none=True, help="Reasoning effort (minimal|low|medium|high).").tag(
        config=True
    )
    reasoning_summary = Unicode(None, allow_none=True, help="Reasoning summary (auto|concise|detailed).").tag(
        config=True
    )
    connect_timeout = Float(_DEFAULTS["connect_timeout"], help="Seconds to open a connection.").tag(
        config=True
    )
    first_event_timeout = Float(
        _DEFAULTS["first_event_timeout"], help="Seconds to wait for the first event."
    ).tag(config=True)
    idle_timeout = Float(_DEFAULTS["idle_timeout"], help="Seconds allowed between two events.").tag(
        config=True
    )
    max_connection_age = Float(
        _DEFAULTS["max_connection_age"], help="Rotate WebSocket connections after this many seconds."
    ).tag(config=True)
    base_url = Unicode(None, allow_none=True, help="API base URL (default: OPENAI_BASE_URL or OpenAI).").tag(
        config=True
    )
    default_chain = Unicode("default", help="Chain used when a cell gives no -c/--chain.").tag(config=True)
    view = CaselessStrEnum(
        ("auto", "widgets", "text"),
        default_value="auto",
        help="How answers are shown: 'auto' (widgets in a notebook, plain text in terminal IPython), "
        "'widgets' or 'text' (print the answer as it streams; what `ipy-responses-ws demo` uses).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._syncing = False
        self._last_chain: str | None = None

    # -- settings <-> session ------------------------------------------------------------------------------

    def settings_overrides(self) -> dict[str, Any]:
        """The trait values as ``Settings`` keyword arguments."""
        return {name: getattr(self, name) for name in CONFIG_KEYS}

    @property
    def session(self) -> Any:
        """The kernel-lifetime session (created on first use, with these traits as settings)."""
        return _extension.get_session(self)

    def _follow_session_transport(self, new: str) -> None:
        """Called by the session when its transport changes (the toggle, another magic)."""
        if self.transport != new:
            self._syncing = True
            try:
                self.transport = new
            finally:
                self._syncing = False

    @observe(*CONFIG_KEYS)
    def _trait_changed(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        session = _extension.current_session()
        if session is None:
            return  # picked up when the session is created
        try:
            if change["name"] == "transport":
                session.transport = change["new"]
            else:
                session.configure(**{change["name"]: change["new"]})
        except ConfigError as exc:
            raise UsageError(str(exc)) from None

    # -- %%respond -------------------------------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="Model for this cell (default: %%config ResponsesMagics.model).")
    @argument("-t", "--transport", choices=_TRANSPORTS, help="Transport for this cell only: ws or sse.")
    @argument(
        "--store", dest="store", action="store_const", const=True, default=None, help="Store the response."
    )
    @argument("--no-store", dest="store", action="store_const", const=False, help="Do not store it (ZDR).")
    @argument("--new", action="store_true", help="Start a fresh conversation from this cell.")
    @argument("-c", "--chain", metavar="NAME", help="Conversation to continue (default: 'default').")
    @argument("-i", "--instructions", help="System instructions for this cell (quote them).")
    @argument("--max-output-tokens", type=int, metavar="N", help="Cap on output tokens.")
    @argument("--temperature", type=float, metavar="T", help="Sampling temperature (0-2).")
    @argument("--reasoning-effort", choices=_EFFORTS, help="Reasoning effort for reasoning models.")
    @argument("--reasoning-summary", choices=_SUMMARIES, help="Ask for a reasoning summary.")
    @argument("-o", "--out", metavar="NAME", help="Store the TurnResult in this variable, however it ends.")
    @argument("--background", action="store_true", help="Return at once; stream in the background.")
    @argument("--raw", action="store_true", help="Send the cell as written (no {name} interpolation).")
    @cell_magic
    def respond(self, line: str, cell: str) -> None:
        """Send the cell to the model as the next turn of the conversation; stream the answer live.

        The cell body is the prompt. ``{name}``, ``{obj.attr}`` and ``{seq[0]}`` are filled from your
        variables (lookups only, nothing is evaluated); write ``{{`` and ``}}`` for literal braces, or use
        ``--raw``. Turns chain through ``previous_response_id``: each cell continues the conversation until
        ``--new`` or ``%responses reset``. Only completed turns advance the chain.

        The answer streams as Markdown with a status line (transport badge, time to first token,
        tokens/s, usage, response id); when the turn ends it is replaced by plain Markdown that stays in
        the saved notebook. Interrupt (■) stops a cell; ``--background`` cells have a Stop button and
        ``%responses stop``.

        Examples::

            %%respond
            Explain WebSocket close code 1006 in two sentences.

            %%respond -m gpt-5 -t sse --no-store -o answer
            Summarise this table: {df}

            %%respond --new -i "Answer in French" --max-output-tokens 200
            What is a Jupyter kernel?

            %%respond --background -c side
            Write a limerick about sockets.
        """
        args = parse_argstring(self.respond, line)
        prompt = cell if args.raw else interpolate(cell, self.shell.user_ns if self.shell else {})
        if not prompt.strip():
            raise UsageError("The cell is empty: write the prompt on the lines below %%respond.")
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"-o/--out wants a Python variable name, not {args.out!r}.")
        if args.max_output_tokens is not None and args.max_output_tokens <= 0:
            raise UsageError("--max-output-tokens must be a positive number of tokens.")
        if args.temperature is not None and not 0.0 <= args.temperature <= 2.0:
            raise UsageError("--temperature must be between 0 and 2.")
        _check_api_key(self.session)
        chain = args.chain or self.default_chain
        self._last_chain = chain
        request: dict[str, Any] = dict(
            chain=chain,
            new=args.new,
            transport=args.transport,
            model=args.model,
            store=args.store,
            instructions=args.instructions,
            max_output_tokens=args.max_output_tokens,
            temperature=args.temperature,
            reasoning_effort=args.reasoning_effort,
            reasoning_summary=args.reasoning_summary,
        )
        text_view = self.view == "text" or (self.view == "auto" and not _has_widget_frontend(self.shell))
        if text_view:
            self._respond_terminal(prompt, request, args.out)
        elif args.background:
            self._respond_background(prompt, request, args.out)
        else:
            self._respond_foreground(prompt, request, args.out)

    def _start(
        self, prompt: str, request: dict[str, Any], on_event: Callable[[Any], None] | None = None
    ) -> Any:
        try:
            return self.session.start(prompt, on_event=on_event, **request)
        except MissingAPIKeyError:
            raise UsageError(NO_KEY_MESSAGE) from None
        except ConfigError as exc:
            raise UsageError(str(exc)) from None

    def _store(self, name: str | None, result: Any) -> None:
        _extension.set_last_result(result)
        if name and self.shell is not None:
            self.shell.user_ns[name] = result

    def _respond_foreground(self, prompt: str, request: dict[str, Any], out: str | None) -> None:
        from IPython.display import display

        from .widgets import ResponseView

        session = self.session
        view = ResponseView(
            transport=request["transport"] or session.transport,
            model=request["model"] or session.settings.model,
            background=False,
        )
        try:
            handle = self._start(prompt, request)  # a refused request shows no view, only its error
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
            _freeze(view, display_handle, result)
            self._store(out, result)  # -o always gets a result, however the turn ended
            raise
        _freeze(view, display_handle, result)
        self._store(out, result)
        if interrupted:
            raise TurnInterrupted() from None

    def _respond_background(self, prompt: str, request: dict[str, Any], out: str | None) -> None:
        from IPython.display import display

        from .widgets import ResponseView

        session = self.session
        box: dict[str, Any] = {}

        def stop() -> None:
            handle = box.get("handle")
            if handle is not None:
                handle.cancel(wait=0.0)

        view = ResponseView(
            transport=request["transport"] or session.transport,
            model=request["model"] or session.settings.model,
            background=True,
            on_stop=stop,
        )
        flusher = _LoopFlusher(view)

        on_event = flusher.on_event  # on the I/O loop thread: this view's only writer while the turn runs

        def done(result: Any) -> None:
            try:
                _freeze(view, box.get("display"), result)
            except Exception:
                log.exception("freezing the background view failed")
            self._store(out, result)

        try:
            handle = self._start(prompt, request, on_event=on_event)
        except BaseException:
            view.close()
            raise
        box["handle"] = handle
        # Displayed after the start, so a refused request leaves no view behind; the done callback is added
        # after the display, so it always has a display to freeze (if the turn already ended, the session
        # runs the callback on the loop thread right away).
        box["display"] = display(view.widget, display_id=True)
        handle.add_done_callback(done)

    def _respond_terminal(self, prompt: str, request: dict[str, Any], out: str | None) -> None:
        handle = self._start(prompt, request)
        state = TurnState(transport=request["transport"] or self.session.transport)
        write = sys.stdout.write
        try:
            while True:
                item = handle.get(timeout=0.05)
                if item is None:
                    if handle.done():
                        break
                    continue
                added = state.apply(item)
                if added:
                    write(added)
                    sys.stdout.flush()
            result = handle.result(timeout=5.0)
        except KeyboardInterrupt:
            result = _cancel_and_collect(handle, prompt, request)
            self._store(out, result)
            print(f"\n[{footer_text(result)}]", flush=True)
            raise TurnInterrupted() from None
        except BaseException:
            self._store(out, _cancel_and_collect(handle, prompt, request))
            raise
        if result.error is not None:
            print(f"\nError: {result.error}", file=sys.stderr, flush=True)
        print(f"\n[{footer_text(result)}]", flush=True)
        self._store(out, result)

    # -- %responses ------------------------------------------------------------------------------------------

    @magic_arguments()
    @argument("action", nargs="?", choices=_ACTIONS, help="What to do (no action: show the control panel).")
    @argument("values", nargs="*", help="ws|sse for transport; key=value pairs for config; a chain name.")
    @argument("-c", "--chain", metavar="NAME", help="Chain for reset/history (default: the last one used).")
    @line_magic
    def responses(self, line: str) -> Any:
        """Control the Responses session.

        ``%responses``                          the control panel: transport toggle, chain, connections,
                                                Reset and Close buttons
        ``%responses status``                   chains, open connections and their ages
        ``%responses history [-c NAME]``        the conversation so far
        ``%responses reset [-c NAME]``          start a new conversation (the next cell has no history)
        ``%responses transport [ws|sse]``       show or switch the transport (like the toggle)
        ``%responses config [key=value ...]``   show or change defaults, e.g. ``model=gpt-5 store=false``
                                                (keys: model, transport, store, instructions,
                                                max_output_tokens, temperature, reasoning_effort,
                                                reasoning_summary, connect_timeout, first_event_timeout,
                                                idle_timeout, max_connection_age, base_url)
        ``%responses stop``                     stop every response still streaming (background cells)
        ``%responses close``                    close the connections (the conversation is kept)
        """
        args = parse_argstring(self.responses, line)
        action = args.action
        values: list[str] = args.values
        if action is None:
            if values:
                raise UsageError("%responses takes an action first, e.g. %responses transport sse")
            return self._panel()
        if action != "config" and action != "transport" and len(values) > 1:
            raise UsageError(f"%responses {action} takes at most one argument.")
        chain = args.chain or (values[0] if values and action in ("reset", "history") else None)
        chain = chain or self._last_chain or self.default_chain
        if action == "reset":
            self.session.reset(chain=chain)
            print(f"Conversation {chain!r} reset: the next %%respond starts a new conversation.")
        elif action == "status":
            _print_status(self.session.status())
        elif action == "history":
            _print_history(chain, self.session.chain(chain).history())
        elif action == "transport":
            self._transport(values)
        elif action == "config":
            self._config(values)
        elif action == "stop":
            self.session.stop_all()
            print("Stopped every response in flight.")
        elif action == "close":
            _extension.close_session(keep_chains=True)
            print("Connections closed; the conversation is kept. The next %%respond reconnects.")
        return None

    def _panel(self) -> None:
        from IPython.display import display

        from .widgets import ControlPanel

        if not _has_widget_frontend(self.shell):
            _print_status(self.session.status())
            return
        panel = ControlPanel(
            self.session,
            chain=self._last_chain or self.default_chain,
            on_close=lambda: _extension.close_session(keep_chains=True),
            provider=lambda: _extension.get_session(self),
            subscribe=_extension.on_transport_change,
        )
        display(panel.widget)

    def _transport(self, values: list[str]) -> None:
        if not values:
            print(f"transport = {self.session.transport}")
            return
        if len(values) != 1 or values[0].lower() not in _TRANSPORTS:
            raise UsageError("%responses transport takes ws or sse, e.g. %responses transport sse")
        self.session.transport = values[0].lower()  # the session tells every toggle and the trait
        print(f"transport = {self.session.transport} (from the next cell)")

    def _config(self, values: list[str]) -> None:
        if not values:
            settings = self.session.settings
            for key in CONFIG_KEYS:
                print(f"{key} = {getattr(settings, key)!r}")
            return
        changes: dict[str, Any] = {}
        for pair in values:
            key, sep, text = pair.partition("=")
            key = key.strip().replace("-", "_")
            if not sep:
                raise UsageError(f"%responses config wants key=value pairs, got {pair!r}.")
            if key not in CONFIG_KEYS:
                raise UsageError(f"Unknown setting {key!r}. Settings: {', '.join(CONFIG_KEYS)}.")
            try:
                changes[key] = parse_config_value(key, text)
            except ConfigError as exc:
                raise UsageError(str(exc)) from None
        try:
            self.session.settings.with_changes(**changes)  # validate all before changing anything
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        for key, value in changes.items():
            setattr(self, key, value)  # the trait observer configures the session
        print(", ".join(f"{k} = {v!r}" for k, v in changes.items()))


# -- helpers ------------------------------------------------------------------------------------------------


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


def _check_api_key(session: Any) -> None:
    try:
        session.settings.resolved_api_key()
    except MissingAPIKeyError:
        raise UsageError(NO_KEY_MESSAGE) from None


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
        return _NotSent(prompt=prompt, chain=request.get("chain"))
    try:
        handle.cancel(wait=1.0)
        return handle.result(timeout=2.0)
    except BaseException as exc:  # the loop did not confirm in time; say so instead of hanging the cell
        log.debug("cancel did not confirm: %r", exc)
        return _NotSent(prompt=prompt, chain=request.get("chain"), status="cancelled")


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


def _freeze(view: Any, display_handle: Any, result: Any) -> None:
    """Replace the live view by the plain bundle (DESIGN.md §5), then close its widgets."""
    view.finish(result, draw=False)
    data, metadata = final_bundle(result, model=view.state.model)
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


def _print_status(status: Mapping[str, Any]) -> None:
    from .render import format_seconds

    print(f"transport: {status.get('transport')}")
    chains = status.get("chains") or {}
    if not chains:
        print("chains: none yet")
    for name, info in chains.items():
        info = dict(info or {})
        print(f"chain {name!r}: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    conns = status.get("connections") or []
    if not conns:
        print("connections: none open")
    for conn in conns:
        print(
            f"connection {conn.get('id')}: age {format_seconds(conn.get('age'))}, "
            f"{'busy' if conn.get('busy') else 'idle'}, {conn.get('turns', 0)} turns"
        )


def _print_history(chain: str, history: list[tuple[str, str]]) -> None:
    if not history:
        print(f"Chain {chain!r} has no completed turns yet.")
        return
    for role, text in history:
        first = text.strip().splitlines()[0] if text.strip() else ""
        more = " …" if len(text.strip().splitlines()) > 1 else ""
        print(f"{role:>9}: {first[:100]}{more}")
