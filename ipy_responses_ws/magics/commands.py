"""The ``ResponsesMagics`` class: ``%%respond`` (one turn of a conversation) and ``%responses`` (the control
surface), with the defaults as traitlets.

Thin on purpose (STYLE.md habit 2): parse the arguments, build the request, hand off to the session that the
:class:`~ipy_responses_ws.magics.holder.SessionHolder` owns, and let ``turns`` run and freeze the view.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import logging
import re
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, Unicode, observe, validate

from ..config import Settings
from ..errors import ConfigError
from .actions import anonymous_cell
from .cell_request import build_cell_turn, put_code
from .control import (
    CONFIG_KEYS,
    MAGIC_KEYS,
    MAGIC_TRAITS,
    parse_config_pairs,
    parse_profile_pairs,
    print_history,
    print_status,
    set_magic_keys,
    setting_text,
)
from .holder import SessionHolder
from .notebook_cell import cell_id
from .options import respond_options
from .tool_cells import describe_tools, run_tool_turn, tool_request
from .turns import check_api_key, run_background, run_foreground, run_terminal

__all__ = ["ResponsesMagics"]

log = logging.getLogger(__name__)

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}
_TRANSPORTS = ("ws", "sse")
_ACTIONS = ("reset", "status", "history", "transport", "config", "stop", "close", "tools", "export", "load")


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
        _DEFAULTS["first_event_timeout"],
        help="Seconds from the request to the first output (covers thinking).",
    ).tag(config=True)
    idle_timeout = Float(_DEFAULTS["idle_timeout"], help="Seconds allowed between two events.").tag(
        config=True
    )
    max_connection_age = Float(
        _DEFAULTS["max_connection_age"], help="Rotate WebSocket connections after this many seconds."
    ).tag(config=True)
    max_retries = Int(
        _DEFAULTS["max_retries"],
        help="Retries of a request refused before any event (429, 5xx, connect errors).",
    ).tag(config=True)
    ws_model_query = Bool(
        _DEFAULTS["ws_model_query"],
        help="Add ?model=... to the WebSocket upgrade URL (gateways route on it).",
    ).tag(config=True)
    max_turns = Int(
        None,
        allow_none=True,
        help="When a transcript must be resent, keep only this many earlier turns (None: all).",
    ).tag(config=True)
    budget = Float(
        None,
        allow_none=True,
        help="Refuse turns once the session's estimated cost passes this many US dollars (None: no cap).",
    ).tag(config=True)
    ca_file = Unicode(
        None, allow_none=True, help="A PEM file of CA certificates to trust (default: SSL_CERT_FILE)."
    ).tag(config=True)
    base_url = Unicode(None, allow_none=True, help="API base URL (default: OPENAI_BASE_URL or OpenAI).").tag(
        config=True
    )
    profile = Unicode(
        None,
        allow_none=True,
        help="Endpoint profile for cells without -p (openai, azure, xai or one of `profiles`); "
        "None: base_url / OPENAI_BASE_URL with OPENAI_API_KEY.",
    ).tag(config=True)
    profiles = Dict(
        help="Endpoint profiles by name: {'gw': {'base_url': 'https://gw.example/v1', 'key_env': 'GW_KEY', "
        "'auth': 'bearer', 'headers': {'x-team': '$TEAM_ID'}, 'model': '...'}}. Keys are never values here: "
        "key_env and $VAR header values name environment variables. Built in: openai, azure, xai.",
    ).tag(config=True)
    tools = Unicode(
        "",
        help="Python functions every cell may call as tools, by name, comma-separated (a cell's --tools wins).",
    ).tag(config=True)
    max_steps = Int(10, help="Most responses in one tool turn (--max-steps).").tag(config=True)
    retry_buttons = Bool(
        False,
        help="Show Retry / Continue buttons under each answer. Off by default: they are a widget, and a widget "
        "saved in a notebook shows 'Error displaying widget' when reopened. %respond --retry works always.",
    ).tag(config=True)

    @validate("max_steps")
    def _check_max_steps(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise UsageError("max_steps must be at least 1.")
        return proposal["value"]

    default_chain = Unicode("default", help="Chain used when a cell gives no -c/--chain.").tag(config=True)
    view = CaselessStrEnum(
        ("auto", "widgets", "text"),
        default_value="auto",
        help="How answers are shown: 'auto' (widgets in a notebook, plain text in terminal IPython), "
        "'widgets' or 'text' (print the answer as it streams; what `ipy-responses-ws demo` uses).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, holder: SessionHolder | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._syncing = False
        self._last_chain: str | None = None
        #: The state that outlives a cell (the session, kept conversations, the last result): created at
        #: ``%load_ext`` and passed in; a holder of its own when the class is registered directly.
        self.holder = holder if holder is not None else SessionHolder()
        self.holder.use_settings(self.settings_overrides)
        self.holder.on_transport_change(self._follow_session_transport)

    # -- settings <-> session ------------------------------------------------------------------------------

    def settings_overrides(self) -> dict[str, Any]:
        """The trait values as ``Settings`` keyword arguments (plus ``profiles``, the session's profile table)."""
        overrides = {name: getattr(self, name) for name in CONFIG_KEYS}
        overrides["profiles"] = dict(self.profiles)
        return overrides

    @property
    def session(self) -> Any:
        """The extension's session (created on first use, with these traits as settings)."""
        try:
            return self.holder.session()
        except ConfigError as exc:  # e.g. c.ResponsesMagics.profile names a profile that does not exist
            raise UsageError(str(exc)) from None

    def _follow_session_transport(self, new: str) -> None:
        """Called by the session when its transport changes (the toggle, another magic)."""
        if self.transport != new:
            self._syncing = True
            try:
                self.transport = new
            finally:
                self._syncing = False

    @observe(*CONFIG_KEYS, "profiles")
    def _trait_changed(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        session = self.holder.current
        if session is None:
            return  # picked up when the session is created
        try:
            if change["name"] == "transport":
                session.transport = change["new"]
            elif change["name"] == "profiles":
                session.profiles = change["new"]
            else:
                session.configure(**{change["name"]: change["new"]})
        except ConfigError as exc:
            raise UsageError(str(exc)) from None

    # -- %%respond -------------------------------------------------------------------------------------------

    @respond_options
    @line_cell_magic
    def respond(self, line: str, cell: str | None = None) -> None:
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

            %%respond -p xai
            The same question, answered by xAI (its key from XAI_API_KEY).

            %%respond --tools get_weather,convert_units
            What should I wear in Oslo today?

            %%respond --image fig --code
            Plot this differently.

            %respond --error                (the last error, explained; --continue-answer: go on from a cut-off answer)

        Re-running a cell replaces its own turn: the conversation forks from where that cell's previous turn
        started (``--continue`` appends at the end instead). ``{df}`` of a DataFrame or array sends a compact
        summary; ``--image``/``--file`` attach figures, images and files.

        ``-p NAME`` sends the cell through an endpoint profile (base URL, key variable, auth style, headers,
        model); without ``-c``, each profile other than the default keeps its own conversation (named after
        the profile), so cells comparing providers do not continue each other.
        """
        args = parse_argstring(self.respond, line)
        if args.retry:  # the Retry button's twin: the last turn again, from the same parent (a fork)
            if self.holder.last_turn is None:
                raise UsageError(
                    "Nothing to retry yet: --retry runs the last %%respond again from the same point."
                )
            self.holder.last_turn()
            return
        # As a line magic (``%respond --error``, ``%respond --continue-answer``) there is no cell: IPython refuses
        # an empty cell body, so this is how "an empty cell" is written.
        turn = build_cell_turn(args, cell or "", self.shell, self.holder.last_result)
        prompt = turn.prompt
        if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
            raise UsageError(f"-o/--out wants a Python variable name, not {args.out!r}.")
        if args.max_output_tokens is not None and args.max_output_tokens <= 0:
            raise UsageError("--max-output-tokens must be a positive number of tokens.")
        if args.temperature is not None and not 0.0 <= args.temperature <= 2.0:
            raise UsageError("--temperature must be between 0 and 2.")
        check_api_key(self.session, args.profile)
        chain = args.chain or self._chain_for(args.profile)
        self._last_chain = chain
        request: dict[str, Any] = dict(
            profile=args.profile,
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
            cell=cell_id(self.shell) or anonymous_cell(),  # a key for Retry even without a frontend cell id
            tail=args.tail,
            attachments=turn.attachments,
        )
        text_view = self.view == "text" or (self.view == "auto" and not _has_widget_frontend(self.shell))
        store = functools.partial(self._store, args.out, args.code)
        tools = tool_request(args, self.tools, self.max_steps, self.shell.user_ns if self.shell else {})
        if tools is not None:
            if args.background:
                raise UsageError(
                    "Tools run in the kernel's main thread, which a --background cell leaves at once: "
                    "run this cell without --background."
                )
            self.holder.last_turn = lambda: run_tool_turn(
                self.session, prompt, request, tools, store, text=text_view, notes=turn.notes
            )
        else:
            run = run_terminal if text_view else run_background if args.background else run_foreground
            self.holder.last_turn = lambda: run(
                self.session, prompt, request, store, notes=turn.notes, buttons=self.retry_buttons
            )
        self.holder.last_turn()

    def _chain_for(self, profile: str | None) -> str:
        """The conversation a cell continues without ``-c``: the default one, or the profile's own for a
        profile other than the default (one server's response ids mean nothing to another)."""
        if profile is None or profile == (self.session.settings.profile or "openai"):
            return self.default_chain
        return profile

    def _store(self, name: str | None, code: int | None, result: Any) -> None:
        self.holder.last_result = result
        if name and self.shell is not None:
            self.shell.user_ns[name] = result
        if code is not None and getattr(result, "status", None) == "completed":
            print(put_code(self.shell, result, code))

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
                                                idle_timeout, max_connection_age, base_url, profile)
                                                and endpoint profiles: ``profile.NAME.FIELD=value``
                                                (fields: base_url, resource, key_env, auth, headers,
                                                model), e.g. ``profile.gw.base_url=https://gw/v1
                                                profile.gw.key_env=GW_KEY``; ``profile=gw`` makes it the
                                                default
        ``%responses tools [NAMES]``            what the model would see of your tools (default: config tools=)
        ``%responses export [-c NAME] PATH``    write the conversation (active branch) as .json or .md
        ``%responses load [-c NAME] PATH``      continue a conversation exported as .json (another kernel, tomorrow)
        ``%responses stop``                     stop every response still streaming (background cells)
        ``%responses close``                    close the connections (the conversation is kept)
        """
        # "-c NAME" may come anywhere (argparse would refuse a PATH after it): move it to the end first
        line = re.sub(r"^(.*?)\s(?:-c|--chain)(?:\s+|=)(\S+)(.*)$", r"\1\3 -c \2", f" {line}").strip()
        args = parse_argstring(self.responses, line)
        action = args.action
        values: list[str] = args.values
        if action is None:
            if values:
                raise UsageError("%responses takes an action first, e.g. %responses transport sse")
            return self._panel()
        if action not in ("config", "transport", "tools") and len(values) > 1:
            raise UsageError(f"%responses {action} takes at most one argument.")
        if action in ("export", "load") and len(values) != 1:
            raise UsageError(
                f"%responses {action} takes one PATH (.json, or .md for export), e.g. %responses {action} chat.json"
            )
        chain = args.chain or (values[0] if values and action in ("reset", "history") else None)
        chain = chain or self._last_chain or self.default_chain
        if action == "reset":
            self.session.reset(chain=chain)
            print(f"Conversation {chain!r} reset: the next %%respond starts a new conversation.")
        elif action == "status":
            print_status(self.session.status())
        elif action == "history":
            conversation = self.session.chain(chain)
            print_history(chain, conversation.cell_history(), conversation.forks)
        elif action == "transport":
            self._transport(values)
        elif action == "config":
            self._config(values)
        elif action == "stop":
            self.session.stop_all()
            print("Stopped every response in flight.")
        elif action in ("export", "load"):
            self._export_or_load(action, values, args.chain or self._last_chain or self.default_chain)
        elif action == "tools":
            names = ",".join(values) if values else self.tools
            print(describe_tools(names, self.shell.user_ns if self.shell else {}))
        elif action == "close":
            self.holder.close(keep_conversations=True)
            print("Connections closed; the conversation is kept. The next %%respond reconnects.")
        return None

    def _export_or_load(self, action: str, values: list[str], chain: str) -> None:
        """``%responses export PATH`` (the active branch as JSON or Markdown) / ``%responses load PATH`` (JSON)."""
        from .. import export

        try:
            if action == "export":
                conversation = self.session.chain(chain)
                path = export.write(values[0], conversation, meta={"notebook_chain": chain})
                print(f"Conversation {chain!r} ({conversation.turns} turns) written to {path}.")
                return
            data = export.read(values[0])
            conversation = export.load_into(self.session.chain(chain), data)
        except (ConfigError, OSError) as exc:
            raise UsageError(str(exc)) from None
        how = "by its last response id" if conversation.last_store else "by resending its transcript"
        print(
            f"Conversation {chain!r} loaded ({conversation.turns} turns): the next %%respond continues it {how}."
        )

    def _panel(self) -> None:
        from IPython.display import display

        from ..widgets import ControlPanel

        if not _has_widget_frontend(self.shell):
            print_status(self.session.status())
            return
        panel = ControlPanel(
            self.session,
            chain=self._last_chain or self.default_chain,
            on_close=lambda: self.holder.close(keep_conversations=True),
            provider=self.holder.session,
            subscribe=self.holder.on_transport_change,
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
        session = self.session
        if not values:
            settings = session.settings
            for key in CONFIG_KEYS:
                print(setting_text(key, getattr(settings, key)))
            for key in MAGIC_TRAITS:
                print(setting_text(key, getattr(self, key)))
            for profile in session.profiles.values():
                print(profile.describe())
            return
        magic_values = [v for v in values if v.partition("=")[0].strip().replace("-", "_") in MAGIC_KEYS]
        profile_values = [v for v in values if v.strip().startswith("profile.")]
        others = [v for v in values if v not in profile_values and v not in magic_values]
        # Everything is validated before anything changes: the profile table first, then the settings
        # (which may name a profile defined on the same line).
        profiles = parse_profile_pairs(profile_values, self.profiles) if profile_values else None
        table = None
        if profiles is not None:
            from ..profiles import profile_table

            try:
                table = profile_table(profiles)
            except ConfigError as exc:
                raise UsageError(str(exc)) from None
        changes = parse_config_pairs(others, session.settings)
        if changes.get("profile") and changes["profile"] not in (table or session.profiles):
            names = ", ".join(sorted(table or session.profiles))
            raise UsageError(
                f"Unknown endpoint profile {changes['profile']!r}. Profiles: {names}; define one with "
                f"profile.{changes['profile']}.base_url=https://..."
            )
        if profiles is not None:
            self.profiles = profiles  # the trait observer updates the session's table
            assert table is not None
            for name in dict.fromkeys(v.strip().split(".")[1] for v in profile_values):
                print(table[name].describe())
        set_magic_keys(self, session, magic_values)
        for key, value in changes.items():
            setattr(self, key, value)  # the trait observer configures the session
        if changes:
            print(", ".join(setting_text(k, v) for k, v in changes.items()))
        shadowing = self.session.settings.profile
        if "model" in changes and shadowing and self.session.profiles[shadowing].model:
            print(
                f"Note: the default profile {shadowing!r} sets its own model "
                f"({self.session.profiles[shadowing].model!r}), which wins; change it with "
                f"%responses config profile.{shadowing}.model=..."
            )
