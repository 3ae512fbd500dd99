"""Markdown to safe HTML, incremental block freezing, and the coalescing clock.

Pure: imports markdown-it-py and the standard library only (no IPython, no ipywidgets), so everything here
is unit-tested without a kernel.

Why this module exists (/work/shared/DESIGN.md §5):

* Model output is untrusted and an ipywidgets ``HTML`` widget assigns ``innerHTML``. :func:`render_markdown`
  therefore runs markdown-it-py with ``html=False`` (raw HTML is escaped, so ``<img onerror=...>`` arrives
  as inert text), ``linkify`` off, and a link validator that only lets ``http``, ``https``, ``mailto`` and
  scheme-less (relative / ``#``) targets become links: ``javascript:``, ``vbscript:``, ``data:`` and
  ``file:`` stay literal text.
* Setting a widget value re-sends the whole value (ipywidgets has no append), so re-rendering the whole answer
  on every update is quadratic in its length. :class:`BlockFreezer` splits the growing answer into finished
  Markdown blocks, which the view freezes into child widgets that are never updated again, and a short live
  tail, the only part re-rendered on each update.
* :class:`CoalescingClock` limits updates to one per ~60 ms (DESIGN.md §5: one update per 50 ms cut comm
  traffic about 20x and kept the browser responsive) while still updating well over 10 times a second.

The formatting helpers at the end (durations, token counts, the status footer, the final display bundle) are
here too, because they are pure presentation shared by the widget view and the terminal printer.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = [
    "BlockFreezer",
    "CoalescingClock",
    "TurnState",
    "final_bundle",
    "footer_text",
    "format_seconds",
    "format_usage",
    "render_markdown",
    "safe_link",
    "safe_markdown",
]

# Schemes a rendered link may use. Anything else (javascript:, vbscript:, data:, file:, ...) is left as text.
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME_RE = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*):")
# Control characters and whitespace that browsers strip inside a scheme ("java\tscript:" is javascript:).
_URL_JUNK_RE = re.compile(r"[\x00-\x20\x7f]+")


def safe_link(url: str) -> bool:
    """Return True when ``url`` may become a clickable link or image source.

    Relative URLs and fragments are allowed; absolute URLs only with an ``http``, ``https`` or ``mailto``
    scheme. Browsers ignore tabs, newlines and other control characters inside a scheme, so those are removed
    before the check.
    """
    compact = _URL_JUNK_RE.sub("", url)
    match = _SCHEME_RE.match(compact)
    if match is None:
        # No scheme before the first ":"? A colon later in a relative path ("a/b:c") is harmless only if a
        # "/", "?" or "#" comes first; otherwise the browser would read it as a scheme.
        colon = compact.find(":")
        if colon == -1:
            return True
        return any(sep in compact[:colon] for sep in "/?#")
    return match.group(1).lower() in _SAFE_SCHEMES


def _new_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    builtin_validate = md.validateLink

    def validate(url: str) -> bool:
        return builtin_validate(url) and safe_link(url)

    md.validateLink = validate  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        # Links open in a new tab and give the target no handle on the notebook page.
        tokens[idx].attrSet("target", "_blank")
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


_MD = _new_markdown()


def render_markdown(text: str) -> str:
    """Render untrusted Markdown to HTML that is safe to assign to ``innerHTML``.

    >>> render_markdown("**hi** <b>there</b>")
    '<p><strong>hi</strong> &lt;b&gt;there&lt;/b&gt;</p>\\n'
    """
    return _MD.render(text)


def _normalize_newlines(text: str) -> str:
    # markdown-it normalizes CR and CRLF to LF before it numbers lines; do the same so token line maps
    # index into our buffer.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")


def _line_offsets(text: str) -> list[int]:
    """Start offset of every line of ``text`` (line 0 starts at 0)."""
    offsets = [0]
    pos = text.find("\n")
    while pos != -1:
        offsets.append(pos + 1)
        pos = text.find("\n", pos + 1)
    return offsets


#: A paragraph's unfinished run longer than this without a sentence end may be split at a space.
LONG_SENTENCE = 400
_SENTENCE_END_RE = re.compile(r"[.!?;:][)\]\"'*_]*\s+(?=\S)")


class BlockFreezer:
    """Split a streaming Markdown answer into frozen HTML chunks and a short live tail.

    Feed text deltas with :meth:`feed`; at each coalesced update call :meth:`freeze`, which returns the HTML
    of the blocks that just became final (or ``None``), then show :meth:`tail_html` in the live widget.
    Frozen chunks are never rendered again, so the bytes sent stay linear in the answer's length
    (DESIGN.md §5).

    A block is final once a later top-level block has started on a complete line (markdown-it's token line
    maps tell where each top-level block starts). Finished blocks are batched until they reach
    ``min_chunk`` characters, because every frozen chunk costs a widget (its ``comm_open``, its place in
    the parent's children list, its ``comm_close``), about 1.5 KB of overhead. A last block that grows past
    ``max_tail`` characters (a long list, code fence, table or paragraph) is split inside itself so the
    live tail stays short: lists at an item start, fences and tables at a line start with the fence
    opener / table header carried into the tail, paragraphs at a line or sentence boundary. Those splits
    may show a paragraph break that is not in the answer while it streams; the final display bundle renders
    the whole answer at once, so the saved notebook is exact.
    """

    def __init__(
        self,
        *,
        min_chunk: int = 2048,
        max_tail: int = 2048,
        renderer: Callable[[str], str] = render_markdown,
    ) -> None:
        self.min_chunk = min_chunk
        self.max_tail = max_tail
        self._render = renderer
        self._parts: list[str] = []  # the whole answer, as fed (normalized newlines)
        self._pending_cr = False
        # The not yet frozen source: a carried prefix (a fence opener or table header) + unfrozen answer text.
        self._src_base = ""
        self._src_more: list[str] = []  # deltas since the last join (feed() stays O(1) per delta)
        self._tail_cache: tuple[str, str] | None = None
        self.frozen_chunks = 0
        # Characters of finished blocks still in the tail after the last freeze() (not frozen yet).
        self.pending = 0

    @property
    def text(self) -> str:
        """The whole answer so far (newlines normalized to LF)."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def tail(self) -> str:
        """The Markdown source the live widget shows (carried prefix included)."""
        return self._src

    @property
    def _src(self) -> str:
        if self._src_more:
            self._src_base += "".join(self._src_more)
            self._src_more.clear()
        return self._src_base

    @_src.setter
    def _src(self, value: str) -> None:
        self._src_base = value
        self._src_more.clear()

    def feed(self, delta: str) -> None:
        """Append a text delta."""
        if not delta:
            return
        if self._pending_cr:
            delta = "\r" + delta
            self._pending_cr = False
        if delta.endswith("\r"):
            # A CR at the end might be the first half of a CRLF split across deltas.
            self._pending_cr = True
            delta = delta[:-1]
        if "\r" in delta or "\x00" in delta:
            delta = _normalize_newlines(delta)
        self._parts.append(delta)
        self._src_more.append(delta)

    def freeze(self, *, final: bool = False, split: bool = False) -> str | None:
        """Cut off the finished blocks; return their HTML (one chunk) or ``None`` if nothing is final yet.

        With ``split=True`` the last, unfinished block is also cut at a boundary that does not change how
        it reads (a sentence end in a paragraph, a list item, a code or table line); a view asks for it
        when re-sending the tail has become expensive. With ``final=True`` everything left is frozen.
        """
        if final:
            if self._pending_cr:
                self._pending_cr = False
                self._parts.append("\n")
                self._src += "\n"
            return self._cut(len(self._src), "")
        src = self._src
        complete_end = src.rfind("\n") + 1
        over = len(src) > self.max_tail
        if complete_end == 0:  # the first line is still being written: a paragraph
            if over or split:
                return self._cut(*self._split_paragraph(src, 0, hard=over))
            self.pending = 0
            return None
        complete = src[:complete_end]
        tokens = _MD.parse(complete)
        tops = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map is not None]
        offsets = _line_offsets(complete)
        cut = 0
        if len(tops) >= 2:
            cut = offsets[tops[-1].map[0]]  # type: ignore[index]
        over = len(src) - cut > self.max_tail
        if over or split:
            pos, carry = self._split_last(
                src, cut, tops[-1] if tops else None, tokens, offsets, complete_end, over
            )
            if pos > cut or over:
                return self._cut(pos, carry)
        if cut >= self.min_chunk and cut > 0:
            return self._cut(cut, "")
        self.pending = cut
        return None

    def tail_html(self) -> str:
        """HTML of the live tail (cached until the tail changes)."""
        if self._tail_cache is None or self._tail_cache[0] != self._src:
            self._tail_cache = (self._src, self._render(self._src) if self._src.strip() else "")
        return self._tail_cache[1]

    # -- internals -------------------------------------------------------------------------------------

    def _cut(self, pos: int, carry: str) -> str | None:
        self.pending = 0
        frozen, rest = self._src[:pos], self._src[pos:]
        self._src = carry + rest
        if not frozen.strip():
            return None
        self.frozen_chunks += 1
        return self._render(frozen)

    def _split_last(
        self,
        src: str,
        block_start: int,
        last: Token | None,
        tokens: list[Token],
        offsets: list[int],
        complete_end: int,
        hard: bool,
    ) -> tuple[int, str]:
        """Where to cut inside the last block: ``(position, carry)``; ``position <= block_start`` if nowhere.

        ``hard`` (the tail is over ``max_tail``) also allows a cut at any line end or, in one long line,
        at a space.
        """
        if last is not None and last.map is not None:
            first_line, end_line = last.map
            if last.type == "fence":
                body_line = first_line + 1
                if _fence_closed(last, src, offsets):
                    return offsets[end_line], ""
                if hard and body_line < len(offsets) and complete_end > offsets[body_line]:
                    # Cut at the last complete line and reopen the fence in the tail: an unclosed fence
                    # renders as code up to the end of its chunk. Only when the tail is too long: the
                    # cut shows as a gap in the code while it streams.
                    return complete_end, src[offsets[first_line] : offsets[body_line]]
            elif last.type in ("bullet_list_open", "ordered_list_open"):
                items = [
                    t.map[0]
                    for t in tokens
                    if t.type == "list_item_open" and t.level == 1 and t.map is not None
                ]
                if items and items[-1] > first_line:
                    return offsets[items[-1]], ""
            elif last.type == "table_open":
                header_end = first_line + 2
                if end_line < len(offsets) - 1 or src[:complete_end].endswith("\n\n"):
                    return offsets[end_line], ""  # the table is finished: nothing to carry
                if hard and header_end < len(offsets) and complete_end > offsets[header_end]:
                    return complete_end, src[offsets[first_line] : offsets[header_end]]
            elif last.type == "paragraph_open":
                pos, carry = self._split_paragraph(src, block_start, hard=False)
                if pos > block_start:
                    return pos, carry
                if hard and complete_end > block_start:
                    return complete_end, ""
        if hard:
            return self._split_paragraph(src, block_start, hard=True)
        return block_start, ""

    @staticmethod
    def _split_paragraph(src: str, block_start: int, *, hard: bool) -> tuple[int, str]:
        """Cut a paragraph after its last sentence end; failing that, after its last space when ``hard``
        or when the run without a sentence end is longer than :data:`LONG_SENTENCE` characters (text that
        has no sentences would otherwise be re-sent whole on every update)."""
        region = src[block_start:]
        best = 0
        for match in _SENTENCE_END_RE.finditer(region):
            best = match.end()
        if (hard and best == 0) or len(region) - best > LONG_SENTENCE:
            best = max(best, region.rfind(" ") + 1)
        return block_start + best, ""


def _fence_closed(token: Token, src: str, offsets: list[int]) -> bool:
    """True when a fence token ends with its closing marker line (markdown-it gives an unclosed fence the
    rest of the document)."""
    assert token.map is not None
    first_line, end_line = token.map
    if end_line - first_line < 2 or end_line >= len(offsets):
        return False
    closing = src[offsets[end_line - 1] : offsets[end_line]].strip()
    marker = token.markup[0]
    return len(closing) >= len(token.markup) and set(closing) == {marker}


class CoalescingClock:
    """Decide when a coalesced view update is due: at most one per ``interval`` seconds.

    ``due()`` is true when an update may be sent now; call ``mark()`` after sending it.
    """

    def __init__(self, interval: float = 0.06, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last = float("-inf")

    def due(self) -> bool:
        return self._clock() - self._last >= self.interval

    def mark(self) -> None:
        self._last = self._clock()

    def remaining(self) -> float:
        """Seconds until the next update is due (0 when due now)."""
        return max(0.0, self.interval - (self._clock() - self._last))


# -- formatting helpers ------------------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    """``0.213`` → ``"213 ms"``, ``2.5`` → ``"2.5 s"``, ``None`` → ``"–"``."""
    if seconds is None:
        return "–"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.0f} s"


def _get(mapping: Mapping[str, Any] | None, *keys: str) -> Any:
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def format_usage(usage: Mapping[str, Any] | None) -> str:
    """Usage as one line: input (cached), output (reasoning), total (PROTOCOL.md §2.8)."""
    if not usage:
        return ""
    parts = []
    inp = usage.get("input_tokens")
    if inp is not None:
        cached = _get(usage, "input_tokens_details", "cached_tokens")
        parts.append(f"in {inp:,}" + (f" ({cached:,} cached)" if cached else ""))
    out = usage.get("output_tokens")
    if out is not None:
        reasoning = _get(usage, "output_tokens_details", "reasoning_tokens")
        parts.append(f"out {out:,}" + (f" ({reasoning:,} reasoning)" if reasoning else ""))
    total = usage.get("total_tokens")
    if total is not None:
        parts.append(f"total {total:,}")
    return " · ".join(parts)


_STATUS_WORDS = {
    "completed": "done",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "interrupted",
}


def tokens_per_second(output_tokens: int | None, ttft: float | None, elapsed: float | None) -> float | None:
    """Output tokens per second of streaming (after the first token)."""
    if not output_tokens or elapsed is None:
        return None
    span = elapsed - (ttft or 0.0)
    if span <= 0.005:
        return None
    return output_tokens / span


def footer_text(result: Any) -> str:
    """One plain line summarising how a turn ended; ``result`` is a ``TurnResult`` (duck-typed).

    Example: ``done · WS · ttft 213 ms · 2.3 s · 48 tok/s · in 12 · out 110 · resp_0a1b…``.
    """
    status = getattr(result, "status", None) or "failed"
    word = _STATUS_WORDS.get(status, status)
    if status == "incomplete" and getattr(result, "incomplete_reason", None):
        word = f"incomplete ({result.incomplete_reason})"
    parts = [word]
    transport = getattr(result, "transport", None)
    if transport:
        badge = transport.upper()
        if getattr(result, "fallback_reason", None):
            badge += " (fell back from WS)"
        elif getattr(result, "reconnected", False):
            badge += " (reconnected)"
        parts.append(badge)
    ttft = getattr(result, "ttft", None)
    if ttft is not None:
        parts.append(f"ttft {format_seconds(ttft)}")
    elapsed = getattr(result, "elapsed", None)
    if elapsed is not None:
        parts.append(format_seconds(elapsed))
    usage = getattr(result, "usage", None) or {}
    rate = tokens_per_second(usage.get("output_tokens"), ttft, elapsed)
    if rate is not None:
        parts.append(f"{rate:,.0f} tok/s")
    usage_line = format_usage(usage)
    if usage_line:
        parts.append(usage_line)
    if getattr(result, "resent_transcript", False):
        parts.append("transcript resent")
    rid = getattr(result, "response_id", None)
    if rid:
        parts.append(rid)
    if status != "completed":
        # DESIGN.md §4: the chain advances only on response.completed.
        parts.append("not added to the conversation")
    return " · ".join(parts)


def error_text(result: Any) -> str:
    """The turn's error in plain words ("" when there is none)."""
    error = getattr(result, "error", None)
    if error is None:
        return ""
    return str(error)


def final_bundle(result: Any, *, model: str | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """The plain display bundle that replaces the live view when a turn ends (DESIGN.md §5).

    ``text/markdown`` is the reasoning summary (if any, as a block quote), the answer made safe
    by :func:`safe_markdown`, and a short italic status footer (and the error, if any); ``text/plain`` is the answer alone (or the error when there is no answer). The metadata records the
    response id, model, transport and status so tools can find them without widgets. No secrets: only
    fields of the result, whose error texts are key-redacted by the engine.
    """
    text = getattr(result, "text", "") or ""
    footer = footer_text(result)
    err = error_text(result)
    md_parts = []
    summary = (getattr(result, "reasoning_summary", "") or "").strip()
    if summary:
        # The live view showed it in an accordion; keep it once the widgets are gone, as a quote above the
        # answer. No <details>: raw HTML is exactly what the frozen bundle must not need (it can carry
        # handlers such as ontoggle, and renderers that strip HTML would show bare tags).
        quoted = "\n".join(
            f"> {line}" if line else ">" for line in safe_markdown(summary).rstrip("\n").split("\n")
        )
        md_parts.append("> *Reasoning summary*\n>\n" + quoted)
    if text:
        md_parts.append(safe_markdown(text).rstrip("\n"))
    if err:
        md_parts.append("**Error:** " + _escape_md_inline(err))
    md_parts.append("*" + _escape_md_inline(footer) + "*")
    data = {
        "text/markdown": "\n\n".join(md_parts) + "\n",
        "text/plain": text if text else (err or footer),
    }
    metadata = {
        "ipy_responses_ws": {
            "response_id": getattr(result, "response_id", None),
            "model": getattr(result, "model", None) or model,
            "transport": getattr(result, "transport", None),
            "status": getattr(result, "status", None),
            "fallback_reason": getattr(result, "fallback_reason", None),
        }
    }
    return data, metadata


_MD_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def _escape_md_inline(text: str) -> str:
    """Escape Markdown punctuation so plain text (a footer, an error message) renders literally."""
    return _MD_INLINE_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


# -- the state of one streaming turn -----------------------------------------------------------------------

# What the status line calls each phase of a turn.
STATES = ("connecting", "waiting", "streaming", "done", "incomplete", "interrupted", "failed")
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
        self.calls: dict[str, dict[str, str]] = {}  # item_id -> {"name", "arguments", "call_id"}
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
            call = self.calls.get(data.get("item_id") or "")
            if call is not None:
                call["arguments"] += data.get("delta") or ""
        elif etype in ("response.function_call_arguments.done", "response.output_item.done"):
            self._call_done(data)
        elif etype in ("response.created", "response.in_progress", "response.queued"):
            resp = data.get("response") or {}
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
                self.error = str(err["message"])
            self.ended_at = self._clock()
        elif etype == "error":
            inner = data.get("error")
            src = inner if isinstance(inner, dict) else data
            self.error = str(src.get("message") or src.get("code") or "The server sent an error.")
        else:
            return ""
        self.version += 1
        return added

    def finish(self, result: Any) -> None:
        """Take the final word from the session's ``TurnResult`` (duck-typed)."""
        status = getattr(result, "status", None) or "failed"
        self.state = _FINAL_STATE.get(status, status)
        self.transport = getattr(result, "transport", None) or self.transport
        self.fallback_reason = getattr(result, "fallback_reason", None) or self.fallback_reason
        self.response_id = getattr(result, "response_id", None) or self.response_id
        self.model = getattr(result, "model", None) or self.model
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
        elif kind == "retry":
            self.notes.append(f"retried on a fresh connection ({data.get('reason') or 'connection lost'})")
        elif kind == "resend":
            self.notes.append(f"resent the conversation ({data.get('reason') or 'chain recovered'})")
        elif kind == "reconnect":
            self.notes.append(f"reconnected ({data.get('reason') or 'connection rotated'})")

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
            self.calls[item_id] = {
                "name": str(item.get("name") or "?"),
                "arguments": str(item.get("arguments") or ""),
                "call_id": str(item.get("call_id") or ""),
            }
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
        if isinstance(item, Mapping):
            if item.get("type") != "function_call":
                return
            call = self.calls.setdefault(
                str(item.get("id") or ""), {"name": "?", "arguments": "", "call_id": ""}
            )
            call["name"] = str(item.get("name") or call["name"])
            call["call_id"] = str(item.get("call_id") or call["call_id"])
            if item.get("arguments") is not None:
                call["arguments"] = str(item["arguments"])
        elif data.get("item_id") in self.calls and data.get("arguments") is not None:
            self.calls[data["item_id"]]["arguments"] = str(data["arguments"])

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

    def tokens_per_second(self) -> float | None:
        """Output tokens per second after the first token (usage when known, else one per text delta)."""
        if self.first_token_at is None:
            return None
        tokens = (self.usage or {}).get("output_tokens") or self.deltas
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
        parts = [self.state]
        if self.ttft is not None:
            parts.append(f"ttft {format_seconds(self.ttft)}")
        parts.append(format_seconds(self.elapsed))
        rate = self.tokens_per_second()
        if rate is not None:
            parts.append(f"{rate:,.0f} tok/s")
        usage = format_usage(self.usage)
        if usage:
            parts.append(usage)
        if self.response_id:
            parts.append(self.response_id)
        return parts

    def status_line(self) -> str:
        """The whole status as plain text (the terminal printer uses this)."""
        line = " · ".join([self.transport_badge(), *self.status_parts()])
        if self.notes:
            line += " · " + "; ".join(self.notes)
        return line


TERMINAL_EVENT_TYPES = frozenset({"response.completed", "response.incomplete", "response.failed"})


# -- Markdown that stays inert in any renderer ---------------------------------------------------------------
#
# JupyterLab renders the Markdown outputs of the running session as *trusted*, and trusted Markdown keeps raw
# HTML (only untrusted outputs are sanitized): an ``<img onerror=...>`` in the answer would run once the live
# view is replaced by the final bundle. So the bundle's text/markdown is the answer with every ``<`` outside
# code escaped (no renderer can see a tag or an HTML block) and links with unsafe schemes defused, while code
# blocks and code spans stay byte-for-byte (their ``<`` is shown, never parsed).

_AUTOLINK_RE = re.compile(r"<(?:https?|mailto):[^\s<>`]*>", re.IGNORECASE)
_REF_DEF_RE = re.compile(r"^( {0,3})\[([^\]]*)\]:\s*(\S+)")
_INLINE_DEST_RE = re.compile(r"\(\s*<?([^)\s>]*)")


def _code_lines(text: str) -> tuple[set[int], bool]:
    """Line numbers inside fenced or indented code blocks (per markdown-it), and whether a fence is open
    at the end of the text."""
    lines: set[int] = set()
    open_fence = False
    tokens = _MD.parse(text)
    src_lines = text.split("\n")
    for tok in tokens:
        if tok.type in ("fence", "code_block") and tok.map is not None:
            start, end = tok.map
            lines.update(range(start, end))
            if tok.type == "fence":
                closing = src_lines[end - 1].strip() if end - 1 < len(src_lines) else ""
                marker = tok.markup[:1]
                closed = end - start >= 2 and len(closing) >= len(tok.markup) and set(closing) == {marker}
                if not closed and end >= len(src_lines) - (1 if text.endswith("\n") else 0):
                    open_fence = True
    return lines, open_fence


def _unsafe_destination(dest: str) -> bool:
    return not safe_link(html.unescape(dest))


def _escape_inline(line: str) -> str:
    """Escape ``<`` and defuse unsafe links in one line of prose; leave code spans as they are."""
    out: list[str] = []
    i, n = 0, len(line)
    ref = _REF_DEF_RE.match(line)
    if ref and _unsafe_destination(ref.group(3)):
        # A reference definition with an unsafe target: escape its bracket so it is plain text.
        out.append(ref.group(1) + "\\")
        i = len(ref.group(1))
    while i < n:
        ch = line[i]
        if ch == "\\" and i + 1 < n:
            out.append(line[i : i + 2])
            i += 2
        elif ch == "`":
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            close = re.compile(f"(?<!`)`{{{run}}}(?!`)").search(line, i + run)
            if close is None:  # no closing run on this line: literal backticks
                out.append("`" * run)
                i += run
            else:
                out.append(line[i : close.end()])
                i = close.end()
        elif ch == "<":
            auto = _AUTOLINK_RE.match(line, i)
            if auto:
                out.append(auto.group(0))
                i = auto.end()
            else:
                out.append("&lt;")
                i += 1
        elif ch == "]" and line[i + 1 : i + 2] == "(":
            dest = _INLINE_DEST_RE.match(line, i + 1)
            if dest and _unsafe_destination(dest.group(1)):
                out.append("]\\(")  # "\(" is a literal parenthesis: no link
                i += 2
            else:
                out.append(ch)
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def safe_markdown(text: str) -> str:
    """The answer as Markdown that renders the same text but can carry no live HTML or ``javascript:`` link.

    Outside code: ``<`` becomes ``&lt;`` (safe ``http``/``mailto`` autolinks are kept) and links or reference
    definitions whose target is not :func:`safe_link` become plain text. Fenced and indented code blocks
    and code spans are unchanged. A fence left open (an interrupted answer) is closed, so what follows
    (the status footer) is not swallowed by the code block.

    >>> safe_markdown('hi <img src=x onerror=alert(1)> `a<b`')
    'hi &lt;img src=x onerror=alert(1)> `a<b`'
    """
    text = _normalize_newlines(text)
    code, open_fence = _code_lines(text)
    lines = text.split("\n")
    out = [line if number in code else _escape_inline(line) for number, line in enumerate(lines)]
    result = "\n".join(out)
    if open_fence:
        fence_tokens = [t for t in _MD.parse(text) if t.type == "fence"]
        marker = fence_tokens[-1].markup if fence_tokens else "```"
        result = result.rstrip("\n") + "\n" + marker + "\n"
    return result
