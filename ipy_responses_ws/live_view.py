"""The live view of one ``%%respond`` turn: status line, answer, reasoning summary, tool calls, Stop.

Core ipywidgets only (HTML, Button, VBox/HBox, Accordion), so JupyterLab, Notebook 7, VS Code and Colab can
render it (DESIGN.md §5). Nothing here talks to the network or to IPython: the magics feed events in, call
:meth:`ResponseView.flush` often, and replace the view by its final bundle when the turn ends. How the view
keeps its iopub traffic small is described in ``docs/live-view.md``.

Threads. Exactly one thread writes to a view's widgets: the kernel's main thread for a foreground cell, the
session's I/O loop thread (through ``on_event`` and done callbacks) for a background cell (DESIGN.md §2).
A Stop click only asks the session to cancel; the resulting end of the turn is drawn by the writer thread.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_string import HTMLStyle

from .blocks import BlockFreezer
from .bundle import final_bundle
from .markdown import render_markdown
from .pacing import CoalescingClock, PacedClock, TextRate, adaptive_interval
from .toolbox import ToolCall
from .view_state import TurnState
from .view_widgets import AnswerHTML, AnswerPage, CallBox, CallRows, close_widgets

__all__ = [
    "CHUNK_OVERHEAD",
    "INTERVAL",
    "LONGEST_INTERVAL",
    "MAX_TAIL",
    "PACE_KNEE",
    "PAGE_SIZE",
    "STATUS_INTERVAL",
    "ResponseView",
    "close_widgets",
]

log = logging.getLogger(__name__)

_TAGS = re.compile(r"<[^>]*>")

#: Answer widgets per page (a ``VBox``): adding one re-sends its page's children list, ~45 B a sibling.
PAGE_SIZE = 12
#: What one more answer widget costs on iopub besides its text (ipykernel 7.4, ipywidgets 8.1): the rest of
#: its comm_open state (~0.6 KB), one update of its page's children list (~0.8 KB with its ~0.5 KB message
#: envelope) and a comm_close at the end (~0.55 KB). See docs/live-view.md.
CHUNK_OVERHEAD = 2000
#: Longest live text (Markdown characters) before its last block is split even mid-block.
MAX_TAIL = 2048
# At a model's pace the view redraws 10+ times a second (DESIGN.md §5); every redraw pays one envelope, so
# redrawing more often only adds traffic. 10% below 0.1 s leaves room for the first and last partial
# intervals of a stream; the pacing clock keeps late redraws from lowering the rate.
INTERVAL = 0.09
# Adaptive pacing. Text arriving faster than PACE_KNEE characters a second (~750 tokens/s: a 90 ms redraw
# would add ~300 characters, ~50 words, more than anyone reads at a glance) is redrawn less often: the
# interval grows in proportion to the rate, INTERVAL * rate / PACE_KNEE, up to LONGEST_INTERVAL (3+ redraws
# a second). At 2,500 tokens/s (~10.8 KB/s) each redraw then carries ~3 KB of new text, more than the ~2 KB
# a new widget costs, so every redraw opens one widget and no text is sent twice. docs/live-view.md.
PACE_KNEE = 3200.0
LONGEST_INTERVAL = 0.3
# The status line's numbers (elapsed, tokens/s) are redrawn this often; a new state or note at once.
STATUS_INTERVAL = 1.0

_STATE_COLOURS = {
    "connecting": "#6b7280",
    "waiting": "#6b7280",
    "streaming": "#2563eb",
    "calling tools": "#2563eb",
    "awaiting approval": "#b45309",
    "done": "#15803d",
    "incomplete": "#b45309",
    "interrupted": "#b45309",
    "failed": "#b91c1c",
}
_BADGE_STYLE = "padding:0 5px;border-radius:4px;font-weight:600;color:#fff;background:{bg};margin-right:6px"


class ResponseView:
    """The live view of one ``%%respond`` turn.

    Feed events with :meth:`handle` (cheap, no widget writes), call :meth:`flush` often (it writes at most
    once per redraw interval, which adapts to how fast text arrives), then :meth:`finish` with the
    ``TurnResult``. :meth:`final_bundle` gives the plain display bundle that replaces the view, and
    :meth:`close` frees every widget.

    A turn with Python tools (issue 12) is several responses, all fed through the same :meth:`handle`; only
    :meth:`finish` ends the view. The tool loop calls, on the view's writer thread (the main thread):

    * :meth:`tool_call` ``(call: ToolCall)`` each time a call's status changes: its row (name, short
      arguments, status, time, a preview of the output or error; full arguments and output collapsed) is added
      or updated and drawn at once;
    * :meth:`awaiting_approval` ``(call)`` while ``--approve`` asks the user on stdin;
    * :meth:`step` ``(n)`` when response *n* ≥ 2 starts ("step 2 · 3 calls" in the status line).

    Server-side tool calls (web search, file search, code interpreter, MCP, image generation) get a row from
    their output items, with no call needed.
    """

    def __init__(
        self,
        *,
        transport: str | None = None,
        model: str | None = None,
        background: bool = False,
        on_stop: Callable[[], Any] | None = None,
        interval: float = INTERVAL,
        longest_interval: float = LONGEST_INTERVAL,
        pace_knee: float = PACE_KNEE,
        status_interval: float = STATUS_INTERVAL,
        max_tail: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = TurnState(
            transport=transport,
            model=model,
            clock=clock,
            freezer=BlockFreezer(min_chunk=1, max_tail=MAX_TAIL if max_tail is None else max_tail),
        )
        self._clock = PacedClock(interval, clock=clock)
        self._now = clock
        self._base_interval, self._longest_interval, self._pace_knee = interval, longest_interval, pace_knee
        self._rate = TextRate()
        self._received = 0  # answer characters handed to the view so far
        self._status_clock = CoalescingClock(status_interval, clock=clock)
        self._lock = threading.Lock()  # guards handle()/flush() when a Stop click races the writer
        self._on_stop = on_stop
        self.background = background
        self._written_version = -1
        self._status_written = ""
        self._status_key: tuple[Any, ...] = ()
        self._shown = ""  # the Markdown source the live widget shows (a prefix of the freezer's tail)
        self._resent = 0  # characters of the live widget's text sent again since it was opened
        self._seal: tuple[int, str] | None = None  # (cut, carry) the live widget was drawn up to
        self._reasoning_written = ""
        self._text_shown = False  # some answer text (not just markup) is on screen
        self.updates = 0  # widget writes of the live tail (tests and benchmarks read this)
        self.closed = False
        self.finished = False

        self._shared_layout = widgets.Layout(margin="0", padding="0")
        self._shared_style = HTMLStyle()
        self._created: list[widgets.Widget] = []

        # Only what every turn needs is created up front (each widget costs a comm_open and a comm_close on
        # iopub); the reasoning accordion, the function calls and the error box appear when first needed.
        self.status = self._html("")
        # The answer: pages of HTML widgets; the last widget of the last page is the live one.
        self.live = self._answer_html("")
        self._pages: list[widgets.VBox] = [self._track(AnswerPage([self.live], layout=self._shared_layout))]
        self.body = self._track(widgets.VBox(self._pages, layout=self._shared_layout))
        self.stop_button: widgets.Button | None = None
        self.reasoning: widgets.Accordion | None = None
        self.reasoning_html: widgets.HTML | None = None
        self._rows = CallRows(self._answer_html, self._call_box)
        self.calls: CallBox | None = None  # one HTML row per tool call, above the answer
        self.error: widgets.HTML | None = None
        header: widgets.Widget = self.status
        if background:
            # A background cell cannot be interrupted (DESIGN.md §2): it gets a Stop button. A foreground
            # cell has none; its status line says to use Interrupt instead.
            self.stop_button = self._track(
                widgets.Button(
                    description="Stop",
                    icon="stop",
                    button_style="warning",
                    tooltip="Stop this background response",
                    layout=widgets.Layout(width="auto"),
                )
            )
            self.stop_button.on_click(self._stop_clicked)
            header = self._track(
                widgets.HBox([self.status, self.stop_button], layout=widgets.Layout(align_items="center"))
            )
        self._header = header
        self.widget = self._track(widgets.VBox([header, self.body], layout=self._shared_layout))
        self._write_status(force=True)

    # -- construction helpers ------------------------------------------------------------------------------

    def _track(self, w: widgets.Widget) -> Any:
        self._created.append(w)
        return w

    def _answer_html(self, value: str) -> widgets.HTML:
        return self._track(AnswerHTML(value, layout=self._shared_layout, style=self._shared_style))

    def _html(self, value: str) -> widgets.HTML:
        return self._track(widgets.HTML(value, layout=self._shared_layout, style=self._shared_style))

    def _call_box(self, rows: list[widgets.HTML]) -> CallBox:
        self.calls = self._track(CallBox(rows, layout=self._shared_layout))
        self._show(self.calls, before_body=True)
        return self.calls

    def _show(self, w: widgets.Widget, *, before_body: bool) -> None:
        """Insert a lazily created part above (or below) the answer."""
        children = list(self.widget.children)
        index = children.index(self.body)
        children.insert(index if before_body else index + 1, w)
        self.widget.children = tuple(children)

    # -- feeding ----------------------------------------------------------------------------------------------

    def handle(self, item: Any) -> str:
        """Fold one event/notice into the view's state (no widget writes); return the text it added."""
        with self._lock:
            added = self.state.apply(item)
            self._received += len(added)
            return added

    def tool_call(self, call: ToolCall) -> None:
        """Add the call's row (first time its ``call_id`` is seen) or update it, and draw it at once."""
        self._tools(self.state.tool_call, call)

    def awaiting_approval(self, call: ToolCall) -> None:
        """Show the call's row as "awaiting approval" (the question itself is asked on stdin)."""
        self._tools(self.state.awaiting_approval, call)

    def step(self, n: int) -> None:
        """Response ``n`` (≥ 2) of the same turn starts: the view stays live and says "step n"."""
        self._tools(self.state.step, n)

    def _tools(self, change: Callable[[Any], None], arg: Any) -> None:
        if self.closed or self.finished:
            return
        with self._lock:
            change(arg)
            self._rows.draw(self.state.calls)  # rows are few, and a finished one is never redrawn
            self._write_status(force=True)

    def due(self) -> bool:
        """True when the next :meth:`flush` would redraw the answer (interval passed, or first text)."""
        return self._clock.due() or self._first_text_pending()

    def flush(self, *, force: bool = False) -> bool:
        """Write pending changes to the widgets if an update is due (or ``force``). True if it wrote.

        The answer is redrawn at most once per ``interval`` (90 ms at a model's pace; longer, up to
        ``longest_interval``, while text comes faster than ``pace_knee`` characters a second), except its
        first text, which is drawn at once (the time to first visible text is what a user feels). The
        status line has its own clock, so a status change never delays the answer.
        """
        if self.closed:
            return False
        with self._lock:
            wrote = False
            changed = force or self.state.version != self._written_version
            if changed and (force or self._clock.due() or self._first_text_pending()):
                self._written_version = self.state.version
                wrote = self._write_body(final=False)
                wrote |= self._write_extras()
                if wrote:
                    self._clock.mark()
                    self._pace()
            wrote |= self._write_status(force=force)
            return wrote

    def _pace(self) -> None:
        """Set the next redraw interval from the rate at which answer text arrives (adaptive pacing)."""
        rate = self._rate.observe(self._now(), self._received)
        self._clock.interval = adaptive_interval(
            rate, base=self._base_interval, knee=self._pace_knee, longest=self._longest_interval
        )

    def _first_text_pending(self) -> bool:
        """True while no visible answer text has been drawn yet but some has arrived.

        Visible: a first delta such as ``"## "`` renders as an empty heading, which is not yet text, so the
        next delta is drawn at once too."""
        if self._text_shown:
            return False
        html_ = self.state.freezer.tail_html() if self.state.freezer.tail.strip() else ""
        return bool(_TAGS.sub("", html_).strip())

    def finish(self, result: Any, *, draw: bool = True) -> None:
        """Show how the turn ended (freezes the rest of the answer, final status, error in words).

        ``draw=False`` only records the end (and disables Stop): for a view that is replaced by its final
        bundle right away, drawing the last state would be iopub traffic nobody sees.
        """
        if self.closed:
            return
        if not draw:
            with self._lock:
                self.state.finish(result)
                self.finished = True
            return
        with self._lock:
            self.state.finish(result)
            text = getattr(result, "text", None)
            if (
                text is not None
                and text != self.state.freezer.text
                and text.startswith(self.state.freezer.text)
            ):
                # Events can be cut short (interrupt); the result's text is the truth.
                self.state.freezer.feed(text[len(self.state.freezer.text) :])
            self._write_body(final=True)
            self._write_extras()
            if self.state.error:
                if self.error is None:
                    self.error = self._html("")
                    self._show(self.error, before_body=False)
                self.error.value = (
                    '<div style="color:#b91c1c;white-space:pre-wrap"><b>Error:</b> '
                    f"{html.escape(self.state.error)}</div>"
                )
            if self.stop_button is not None:
                self.stop_button.disabled = True
                self.stop_button.layout.display = "none"
            self.finished = True
            self._write_status(force=True)

    def final_bundle(self, result: Any) -> tuple[dict[str, str], dict[str, Any]]:
        """The plain ``text/markdown`` + ``text/plain`` bundle that replaces this view in the saved notebook."""
        return final_bundle(result, model=self.state.model, hosted=self.state.hosted_calls())

    def close(self) -> None:
        """Close every widget of the view (no comm is left open)."""
        if self.closed:
            return
        self.closed = True
        close_widgets(self._created)
        close_widgets([self._shared_layout, self._shared_style])
        self._created.clear()

    # -- writing ---------------------------------------------------------------------------------------------

    def _write_body(self, *, final: bool) -> bool:
        """Draw the answer; True if a widget was written.

        Only the live widget is ever rewritten. When re-sending its text has cost about as much as a new
        widget (:data:`CHUNK_OVERHEAD`, a ski-rental rule), it is drawn up to a block boundary (a sentence
        end, a list item, a code line) and, at the next redraw, left as it is (frozen: never sent again)
        while a new live widget opens with the text after the boundary. So every answer character is sent
        in one widget's last value, and re-sent only while its widget is young. docs/live-view.md.
        """
        freezer = self.state.freezer
        if final:
            self._seal = None
            src = freezer.tail
            return self._draw(src, freezer.freeze(final=True) or "")
        src = freezer.tail
        opening = False
        if self._seal is not None:
            cut, carry = self._seal
            self._seal = None
            if src[:cut] == self._shown and src[cut:].strip():
                # The live widget already shows tail[:cut] as it will stay: it is frozen as drawn, and the
                # text after the cut opens the next live widget (in the same message as its text).
                frozen = freezer.cut(cut, carry)
                if frozen is not None and frozen != self.live.value:
                    self.live.value = frozen  # defensive: the freezer and the drawing always agree
                opening = True
                self._shown, self._resent = "", 0
                src = freezer.tail
        shown = self._shown
        if src == shown and not opening:
            return False
        # Keeping this widget one more redraw re-sends what it shows now; opening a new one costs
        # CHUNK_OVERHEAD. With ~a new characters a redraw, a widget kept k redraws re-sends a*k*(k-1)/2:
        # seal when re-sent + shown + new reaches the overhead (a*k*(k+1)/2 >= CHUNK_OVERHEAD), which is
        # where one more redraw in this widget would cost more per redraw than a new widget.
        # A burst (a fast stream) is drawn once, up to a boundary, and frozen at the next redraw.
        if self._text_shown and self._resent + len(shown) + len(src) >= CHUNK_OVERHEAD:
            seal = freezer.plan(split=True, after=len(shown))
            if seal is not None:
                self._seal = seal
                src = src[: seal[0]]
        self._resent += len(shown)
        value = freezer.render(src) if src.strip() else ""
        if opening:
            self._open_live(value)
            self._shown = src
            return True
        return self._draw(src, value)

    def _draw(self, src: str, value: str) -> bool:
        self._shown = src
        if value == self.live.value:
            return False
        self.live.value = value
        self._count_update(value)
        return True

    def _count_update(self, value: str) -> None:
        if not self._text_shown:
            self._text_shown = bool(_TAGS.sub("", value).strip())
        self.updates += 1

    def _open_live(self, value: str) -> None:
        """Leave the live widget as it is (frozen) and open the next one, showing ``value``, after it."""
        self.live = self._answer_html(value)
        self._count_update(value)
        page = self._pages[-1]
        if len(page.children) < PAGE_SIZE:
            page.children = (*page.children, self.live)
        else:
            self._pages.append(self._track(AnswerPage([self.live], layout=self._shared_layout)))
            self.body.children = tuple(self._pages)

    def _write_extras(self) -> bool:
        wrote = False
        reasoning = self.state.reasoning_text
        if reasoning != self._reasoning_written:
            if self.reasoning is None:
                self.reasoning_html = self._html("")
                self.reasoning = self._track(
                    widgets.Accordion(
                        children=[self.reasoning_html],
                        titles=("Reasoning summary",),
                        selected_index=None,  # collapsed
                        layout=self._shared_layout,
                    )
                )
                self._show(self.reasoning, before_body=True)
            assert self.reasoning_html is not None
            self.reasoning_html.value = render_markdown(reasoning)
            self._reasoning_written = reasoning
            wrote = True
        return self._rows.draw(self.state.calls) or wrote

    def _write_status(self, *, force: bool) -> bool:
        st = self.state
        # Numbers (elapsed, tok/s) refresh every status_interval; a new state, badge or note at once.
        key = (st.state, st.transport_badge(), len(st.notes), st.response_id, *st.tool_parts())
        if not force and key == self._status_key and not self._status_clock.due():
            return False
        self._status_key = key
        self._status_clock.mark()
        value = self._status_html()
        if value == self._status_written:
            return False
        self.status.value = value
        self._status_written = value
        return True

    def _status_html(self) -> str:
        st = self.state
        colour = _STATE_COLOURS.get(st.state, "#6b7280")
        badge_bg = {"ws": "#7c3aed", "sse": "#0e7490"}.get((st.transport or "").lower(), "#9ca3af")
        badge = f'<span style="{_BADGE_STYLE.format(bg=badge_bg)}">{html.escape(st.transport_badge())}</span>'
        parts = [f'<b style="color:{colour}">{html.escape(st.state)}</b>']
        parts += [html.escape(p) for p in st.status_parts()[1:]]
        if st.state in ("streaming", "waiting", "connecting", "calling tools") and not self.background:
            parts.append("Interrupt ■ to stop")
        notes = ""
        if st.notes:
            notes = f' <span style="color:#b45309">({html.escape("; ".join(st.notes))})</span>'
        # Compact on purpose: the status line is re-sent on every status update.
        return (
            f'<div style="margin:2px 0;font-size:85%;color:#4b5563">{badge}{" · ".join(parts)}{notes}</div>'
        )

    # -- stop ------------------------------------------------------------------------------------------------

    def _stop_clicked(self, _button: widgets.Button) -> None:
        if self._on_stop is None or self.finished:
            return
        try:
            self._on_stop()
        except Exception:
            log.exception("stopping the response failed")
