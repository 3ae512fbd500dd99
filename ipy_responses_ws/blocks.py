"""Block freezing: split a streaming Markdown answer into finished HTML chunks and a short live tail.

Setting a widget value re-sends the whole value (ipywidgets has no append), so re-rendering the whole answer
on every update is quadratic in its length (DESIGN.md §5). :class:`BlockFreezer` cuts the growing answer
into finished Markdown blocks, which the live view freezes (they are never sent again), and a short live
tail, the only part re-rendered on each update. Pure: markdown-it-py and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from markdown_it.token import Token

from .markdown import normalize_newlines, parse_markdown, render_markdown

__all__ = ["LONG_SENTENCE", "BlockFreezer"]


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
    (DESIGN.md §5). A view that freezes a widget as it is drawn asks :meth:`plan` where a cut may go (at or
    after what the widget already shows), draws the widget up to there, and calls :meth:`cut` at the next
    update.

    A block is final once a later top-level block has started on a complete line (markdown-it's token line
    maps tell where each top-level block starts). Finished blocks are batched until they reach
    ``min_chunk`` characters, because every frozen chunk costs a widget (its ``comm_open``, its place in
    the parent's children list, its ``comm_close``), about 2 KB of overhead. A last block that grows past
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
            delta = normalize_newlines(delta)
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
        where = self.plan(split=split)
        return None if where is None else self.cut(*where)

    def plan(self, *, split: bool = False, after: int = 0) -> tuple[int, str] | None:
        """Where :meth:`freeze` would cut the tail now, without cutting: ``(position, carry)`` or ``None``.

        ``position`` indexes :attr:`tail`; ``carry`` (a fence opener or table header) starts the next tail.
        ``after`` asks for a cut at or after that position of the tail (a view that has already shown that
        much of the tail in one widget cuts there or later); ``None`` when there is no such cut yet.
        """
        src = self._src
        complete_end = src.rfind("\n") + 1
        over = len(src) > self.max_tail
        where: tuple[int, str] | None = None
        if complete_end == 0:  # the first line is still being written: a paragraph
            if over or split:
                where = self._split_paragraph(src, 0, hard=over, after=after)
            self.pending = 0
        else:
            complete = src[:complete_end]
            tokens = parse_markdown(complete)
            tops = [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map is not None]
            offsets = _line_offsets(complete)
            cut = 0
            if len(tops) >= 2:
                cut = offsets[tops[-1].map[0]]  # type: ignore[index]
            over = len(src) - cut > self.max_tail
            if over or split:
                pos, carry = self._split_last(
                    src, cut, tops[-1] if tops else None, tokens, offsets, complete_end, over, after
                )
                if pos > cut or over:
                    where = (pos, carry)
            if where is None and cut >= self.min_chunk and cut > 0:
                where = (cut, "")
            self.pending = 0 if where is not None else cut
        if after and (where is None or where[0] < after):
            where = self._split_open_paragraph(src, after)
        if where is None or where[0] <= 0 or where[0] < after:
            return None
        return where

    def cut(self, pos: int, carry: str = "") -> str | None:
        """Freeze ``tail[:pos]`` (as :meth:`plan` said); return its HTML, or ``None`` if it is blank."""
        return self._cut(pos, carry)

    def render(self, source: str) -> str:
        """HTML of a piece of Markdown (such as a prefix of :attr:`tail`) with this freezer's renderer."""
        return self._render(source)

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
        after: int = 0,
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
                pos, carry = self._split_paragraph(src, block_start, hard=False, after=after)
                if pos > block_start:
                    return pos, carry
                if hard and complete_end > block_start:
                    return complete_end, ""
        if hard:
            return self._split_paragraph(src, block_start, hard=True, after=after)
        return block_start, ""

    def _split_open_paragraph(self, src: str, after: int) -> tuple[int, str] | None:
        """A cut at or after ``after`` inside the paragraph being written (the one the unfinished last line
        belongs to): its last sentence end, or its last space after a run of :data:`LONG_SENTENCE`
        characters without one. ``None`` if there is none or the last block is no paragraph."""
        tops = [t for t in parse_markdown(src) if t.level == 0 and t.nesting >= 0 and t.map is not None]
        if not tops or tops[-1].type != "paragraph_open":
            return None
        start = _line_offsets(src)[tops[-1].map[0]]  # type: ignore[index]
        pos, carry = self._split_paragraph(src, start, hard=False, after=after)
        return (pos, carry) if pos > start else None

    @staticmethod
    def _split_paragraph(src: str, block_start: int, *, hard: bool, after: int = 0) -> tuple[int, str]:
        """Cut a paragraph after its last sentence end; failing that, after its last space when ``hard``
        or when the run without a sentence end is longer than :data:`LONG_SENTENCE` characters (text that
        has no sentences would otherwise be re-sent whole on every update). Only cuts at or after
        ``after`` count (the paragraph's start when there is none)."""
        region = src[block_start:]
        floor = max(0, after - block_start)
        best = 0
        last_end = 0
        for match in _SENTENCE_END_RE.finditer(region):
            last_end = match.end()
            if last_end >= floor:
                best = last_end
        if (hard and best == 0) or len(region) - last_end > LONG_SENTENCE:
            space = region.rfind(" ") + 1
            if space >= floor:
                best = max(best, space)
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
