"""How tool calls look: one line in the terminal, one collapsible row in the live view, one entry in the frozen
bundle (issue 12).

Two kinds of call are shown. A *function call* is a :class:`~.toolbox.ToolCall`: the model asked for one of the
kernel's Python functions, the tool loop ran it. A *hosted call* is a :class:`HostedCall`: a tool the server ran
itself (web search, file search, code interpreter, MCP, image generation), read from its output item.

Arguments and outputs are untrusted text (the model wrote the arguments; a tool's output can quote anything it
read), so every text goes through :func:`html.escape` and :func:`~.redact.redact` before it becomes HTML, and
through :func:`_plain` (no control characters) before it reaches a terminal. Pure: no Jupyter, no I/O.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .redact import redact
from .status_text import format_seconds
from .toolbox import ToolCall

__all__ = [
    "ARGS_WIDTH",
    "FINAL_STATUSES",
    "LINE_PREVIEW",
    "OUTPUT_PREVIEW",
    "HostedCall",
    "call_label",
    "calls_markdown",
    "hosted_call",
    "is_final",
    "parse_arguments",
    "row_html",
    "short_arguments",
    "tool_line",
]

#: Characters of arguments shown on a call's one line (the full JSON is in the collapsed part).
ARGS_WIDTH = 60
#: Characters of the output (or error) shown on a call's one line.
LINE_PREVIEW = 80
#: Characters of the output (or error) in the collapsed part of a row and of the frozen bundle.
OUTPUT_PREVIEW = 2000
#: Statuses after which a call never changes again: its row is drawn one last time, then left alone.
FINAL_STATUSES = frozenset({"ok", "error", "denied", "cancelled"})
#: Statuses drawn as a failure (red border, a word that says so).
_FAILED = frozenset({"error", "denied", "cancelled"})
# What the row says for each status (a ToolCall's, plus the view's own "awaiting approval").
_WORDS = {
    "pending": "requested",
    "awaiting approval": "awaiting approval",
    "running": "running…",
    "ok": "ok",
    "error": "failed",
    "denied": "denied",
    "cancelled": "cancelled",
}
_COLOURS = {"error": "#b91c1c", "denied": "#b45309", "cancelled": "#b45309", "awaiting approval": "#b45309"}
# Control characters (but tab and newline): a terminal's escape sequences start with one of them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")


# -- text --------------------------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """Untrusted text made safe to print: key-redacted, no control characters (no ANSI escapes)."""
    return _CONTROL.sub("\ufffd", redact(text))


def _one_line(text: str, width: int) -> str:
    line = _SPACE.sub(" ", _plain(text)).strip()
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


def _preview(text: str, limit: int = OUTPUT_PREVIEW) -> str:
    text = _plain(text.replace("\r\n", "\n").replace("\r", "\n"))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters)"


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def parse_arguments(text: str) -> dict[str, Any]:
    """Arguments text as the model sent it, parsed ({} when it is not a JSON object)."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def short_arguments(call: ToolCall, width: int = ARGS_WIDTH) -> str:
    """The arguments on one line: ``city="Paris", days=3`` (the raw text when it was not valid JSON)."""
    if call.arguments:
        text = ", ".join(f"{key}={_value(value)}" for key, value in call.arguments.items())
    else:
        text = call.arguments_text if call.arguments_text.strip() not in ("", "{}") else ""
    return _one_line(text, width)


def call_label(call: ToolCall) -> str:
    """``get_weather(city="Paris")``: the name and the short arguments."""
    return f"{_one_line(call.name, 60)}({short_arguments(call)})"


def _full_arguments(call: ToolCall) -> str:
    if call.arguments_text:
        return call.arguments_text  # as the model sent them
    return json.dumps(call.arguments, ensure_ascii=False, indent=2, default=str) if call.arguments else ""


def _result_text(call: ToolCall) -> str:
    """What came back: the error for a failed call, else the output."""
    if call.status in _FAILED and call.error:
        return call.error
    return call.output


def tool_line(call: ToolCall, *, preview: bool = True) -> str:
    """One plain line for a finished call (the terminal printer prints one per call).

    ``→ get_weather(city="Paris") 10 ms: sunny, 21 °C`` · ``→ lookup(id=3) failed: KeyError: 3`` ·
    ``→ rm(path="/") denied by the user``. ``preview=False`` gives only what is called,
    ``get_weather(city="Paris")`` (an approval question). Safe to print: no control characters, keys redacted.
    """
    if not preview:
        return call_label(call)
    label = f"→ {call_label(call)}"
    if call.status == "ok":
        out = _one_line(call.output, LINE_PREVIEW)
        return f"{label} {format_seconds(call.seconds)}" + (f": {out}" if out else "")
    word = _WORDS.get(call.status, call.status)
    detail = _one_line(call.error or "", LINE_PREVIEW)
    if detail.startswith(f"{word} "):
        return f"{label} {detail}"  # "denied by the user", not "denied: denied by the user"
    return f"{label} {word}" + (f": {detail}" if detail else "")


# -- hosted (server-side) calls -----------------------------------------------------------------------------


@dataclass
class HostedCall:
    """A tool call the server ran itself, reduced to what a row shows (never an image's bytes).

    ``status`` uses the :class:`~.toolbox.ToolCall` words: ``running``, ``ok`` or ``error``.
    """

    kind: str  # the item type: web_search_call, file_search_call, code_interpreter_call, mcp_call, ...
    id: str
    label: str  # "web search: “query”", "ran code (12 lines)", "MCP server.tool(args)"
    detail: str = ""  # the collapsed part (plain text): code and logs, sources, arguments and output
    status: str = "running"


_ICONS = {"web_search_call": "🌐", "file_search_call": "🔎", "code_interpreter_call": "🐍", "mcp_call": "🔌"}


def _quoted(values: Iterable[Any]) -> str:
    return ", ".join(f"“{_one_line(str(v), ARGS_WIDTH)}”" for v in values if v)


def hosted_call(item: Mapping[str, Any], *, done: bool) -> HostedCall:
    """A row for a server-side tool call item (``response.output_item.added``/``.done``)."""
    kind = str(item.get("type") or "tool_call")
    raw = str(item.get("status") or "")
    if raw in ("failed", "incomplete") or item.get("error"):
        status = "error"
    else:
        status = "ok" if done or raw == "completed" else "running"
    label, detail = kind.removesuffix("_call").replace("_", " "), ""
    if kind == "web_search_call":
        action = item.get("action") if isinstance(item.get("action"), Mapping) else {}
        atype = action.get("type")
        if atype == "open_page":
            label = f"opened {_one_line(str(action.get('url') or ''), ARGS_WIDTH)}"
        elif atype == "find":
            where = _one_line(str(action.get("url") or ""), 40)
            label = f"found {_quoted([action.get('pattern')])} in {where}"
        else:
            queries = action.get("queries") or [action.get("query")]
            label = f"web search: {_quoted(queries)}" if any(queries) else "web search"
        detail = "\n".join(str(s.get("url")) for s in action.get("sources") or () if isinstance(s, Mapping))
    elif kind == "file_search_call":
        queries = item.get("queries") or ()
        label = f"file search: {_quoted(queries)}" if queries else "file search"
        detail = "\n".join(
            f"{r.get('filename') or r.get('file_id') or '?'}: {_one_line(str(r.get('text') or ''), 200)}"
            for r in item.get("results") or ()
            if isinstance(r, Mapping)
        )
    elif kind == "code_interpreter_call":
        code = str(item.get("code") or "")
        lines = len(code.strip().splitlines())
        label = (
            "running code" if status == "running" else f"ran code ({lines} line{'' if lines == 1 else 's'})"
        )
        logs = [str(o.get("logs") or "") for o in item.get("outputs") or () if isinstance(o, Mapping)]
        detail = code + ("\n\n" + "\n".join(logs) if any(logs) else "")
    elif kind == "mcp_call":
        server, name = str(item.get("server_label") or "mcp"), str(item.get("name") or "?")
        shown = ToolCall(name=f"{server}.{name}", call_id="", arguments_text=str(item.get("arguments") or ""))
        shown.arguments = parse_arguments(shown.arguments_text)
        label = f"MCP {call_label(shown)}"
        result = str(item.get("error") or item.get("output") or "")
        detail = shown.arguments_text + (f"\n\n{result}" if result else "")
    elif kind == "image_generation_call":
        label = "generated an image" if status == "ok" else "generating an image"  # never its base64 bytes
    return HostedCall(kind=kind, id=str(item.get("id") or ""), label=label, detail=detail, status=status)


# -- rows -------------------------------------------------------------------------------------------------


def is_final(call: ToolCall | HostedCall) -> bool:
    """True once a call cannot change any more (its row is then never redrawn)."""
    return call.status in FINAL_STATUSES


def _pre(text: str, styled: bool) -> str:
    # Newlines as &#10;: the whole row stays one line, so in the frozen Markdown it is a single HTML block that
    # no blank line in a tool's output can end (what follows a blank line would be parsed as Markdown).
    style = ' style="margin:2px 0;white-space:pre-wrap"' if styled else ""
    return f"<pre{style}>{html.escape(text).replace(chr(10), '&#10;')}</pre>"


def _summary(call: ToolCall | HostedCall) -> str:
    """The row's one line (plain text): what was called, how it went, how long it took, what came back."""
    word = _WORDS.get(call.status, call.status)
    if isinstance(call, HostedCall):
        return f"{_ICONS.get(call.kind, '🛠')} {call.label} · {'done' if call.status == 'ok' else word}"
    parts = [f"🔧 {call_label(call)}", word]
    if call.status in FINAL_STATUSES and call.seconds:
        parts.append(format_seconds(call.seconds))
    line = " · ".join(parts)
    result = _one_line(_result_text(call), LINE_PREVIEW) if call.status in FINAL_STATUSES else ""
    return f"{line}: {result}" if result else line


def _details(call: ToolCall | HostedCall, styled: bool) -> str:
    if isinstance(call, HostedCall):
        return _pre(_preview(call.detail), styled) if call.detail.strip() else ""
    parts = []
    args = _full_arguments(call)
    if args:
        parts.append(f"<b>arguments</b>{_pre(_preview(args), styled)}")
    result = _result_text(call)
    if result and call.status in FINAL_STATUSES:
        title = "error" if call.status in _FAILED and call.error else "output"
        parts.append(f"<b>{title}</b>{_pre(_preview(result), styled)}")
    return "".join(parts)


def row_html(call: ToolCall | HostedCall, *, styled: bool = True) -> str:
    """One call as a collapsed ``<details>`` row: the summary line, the full arguments and output inside.

    Every text in it is escaped (the tags are ours and carry no handler), and it is one line. A failed, denied
    or cancelled call has the class ``irw-tool-error`` and a red (amber) border. ``styled=False`` leaves out
    the inline styles (the frozen bundle, where renderers may drop them anyway).
    """
    state = "error" if call.status in _FAILED else call.status.replace(" ", "-")
    summary = html.escape(_summary(call))
    if styled:
        colour = _COLOURS.get(call.status, "#15803d" if call.status == "ok" else "#9ca3af")
        style = f' style="margin:2px 0;padding-left:6px;border-left:3px solid {colour};font-size:90%"'
        return (
            f'<details class="irw-tool irw-tool-{state}"{style}><summary style="cursor:pointer">{summary}'
            f"</summary>{_details(call, styled)}</details>"
        )
    return f"<details><summary>{summary}</summary>{_details(call, styled)}</details>"


def calls_markdown(calls: Iterable[ToolCall | HostedCall]) -> str:
    """The calls for the frozen bundle's ``text/markdown``, one ``<details>`` line each ("" when none).

    Why raw HTML here when the reasoning summary avoids it (bundle.py): the danger is *model* text becoming
    markup. Here no untrusted text is markup: the only tags are ours, without attributes (so no ``ontoggle``),
    every text inside is escaped, and each call is one line (see :func:`_pre`), so CommonMark and marked read
    the list as one HTML block that no output can end early. It is the only way to keep the details collapsed
    in a saved notebook; a renderer that shows no HTML at all shows escaped text, never a live tag.
    """
    return "\n".join(row_html(call, styled=False) for call in calls)
