"""The notebook face: the live response view, the transport toggle and the control panel.

Core ipywidgets only (HTML, Button, ToggleButtons, VBox/HBox, Accordion), so JupyterLab, Notebook 7, VS Code
and Colab can all render them (DESIGN.md §5). Nothing here talks to the network or to IPython: the magics
feed events in and decide where the view is displayed.

Traffic. Setting a widget value re-sends all of it; per-token updates are quadratic (DESIGN.md §5). The view
therefore:

* coalesces: widget writes happen only in :meth:`ResponseView.flush`, at most once per ``interval``
  (:data:`INTERVAL`, 90 ms on a steady beat, so 10+ redraws a second), except the first visible answer
  text, which is drawn at once; the status line has its own, slower clock and never takes the answer's turn;
* freezes: finished Markdown blocks (:class:`~ipy_responses_ws.render.BlockFreezer`) go into child ``HTML``
  widgets that are never written again; only the live tail is re-rendered. Child widgets share one
  ``Layout`` and one style, so each costs one ``comm_open``; they sit in pages of :data:`PAGE_SIZE` so no
  children list grows long;
* freezes lazily: a finished block stays in the live tail until re-sending it would have cost about as much
  as a new child widget (a ski-rental rule, :data:`CHUNK_OVERHEAD`), so slow streams do not create one
  widget per paragraph and fast streams freeze a large chunk per update.

Measured on a real kernel (tests/test_widget_traffic.py), ~200 KB answers, final two-format bundle (2x)
included: unthrottled ~3.3x the answer on iopub, 20,000 tokens/s ~3.6x, 10,000 ~3.9x, 5,000 ~4.7x, 2,500
~5.8x. Below ~7,000 tokens/s the 10-redraws-a-second floor dominates: every redraw pays a ~0.55 KB message
envelope, and between freezes the growing tail is re-sent; the sweep of CHUNK_OVERHEAD and MAX_TAIL found
no better trade-off with core widgets. A 100 tokens/s stream costs ~8 KB/s of iopub whatever is shown:
linear in time, not in text.

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
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as widgets
from ipywidgets.widgets.widget_string import HTMLStyle

from .render import BlockFreezer, CoalescingClock, TurnState, final_bundle, format_seconds, render_markdown

__all__ = [
    "CHUNK_OVERHEAD",
    "INTERVAL",
    "PAGE_SIZE",
    "STATUS_INTERVAL",
    "ControlPanel",
    "ResponseView",
    "TransportToggle",
    "close_widgets",
]

log = logging.getLogger(__name__)

_TAGS = re.compile(r"<[^>]*>")

PAGE_SIZE = 24
# Measured on a real kernel (ipykernel 7.4, ipywidgets 8.1; tests/test_widget_traffic.py prints them): every
# iopub message costs a ~0.55 KB envelope (ZMQ topic, header, parent header, metadata, HMAC signature). A
# frozen child widget costs its comm_open (~1.1 KB with the shared Layout and style), one update of its
# page's children list (~0.6 KB + ~46 B per sibling) and a comm_close at the end (~0.55 KB): ~2.8 KB.
CHUNK_OVERHEAD = 2800
# Longest live tail (Markdown characters) before the last block is split: at 2,500 tokens/s the ski-rental
# rule above freezes about every 2.5 KB anyway; this bounds the tail of slower, long blocks.
MAX_TAIL = 2048
# The slowest redraw rate the view may have while text arrives is 10 a second (DESIGN.md §5); every redraw
# pays one envelope, so redrawing more often only adds traffic. 10% below 0.1 s leaves room for the first
# and last partial intervals of a stream; the pacing clock keeps late redraws from lowering the rate.
INTERVAL = 0.09
# The status line's numbers (elapsed, tokens/s) are redrawn this often; a new state or note at once.
STATUS_INTERVAL = 1.0

_STATE_COLOURS = {
    "connecting": "#6b7280",
    "waiting": "#6b7280",
    "streaming": "#2563eb",
    "done": "#15803d",
    "incomplete": "#b45309",
    "interrupted": "#b45309",
    "failed": "#b91c1c",
}
_BADGE_STYLE = "padding:0 5px;border-radius:4px;font-weight:600;color:#fff;background:{bg};margin-right:6px"


def close_widgets(items: Iterable[widgets.Widget]) -> None:
    """Close widgets and the Layout/Style widgets they hold, so no comm is left open."""
    seen: set[int] = set()
    for w in items:
        for part in (w, getattr(w, "layout", None), getattr(w, "style", None)):
            if isinstance(part, widgets.Widget) and id(part) not in seen:
                seen.add(id(part))
                try:
                    part.close()
                except Exception:  # a widget whose kernel is gone; nothing left to free
                    log.debug("closing %r failed", part, exc_info=True)


class _PacedClock(CoalescingClock):
    """A :class:`CoalescingClock` that keeps a steady beat: a redraw that came late (the writer polls its
    queue every 50 ms) moves the next one earlier, by up to half an interval, so the mean rate stays at
    ``1 / interval`` instead of dropping to ``1 / (interval + lateness)``."""

    def mark(self) -> None:
        now = self._clock()
        if now - self._last > 1.5 * self.interval:  # after a pause: a new beat starts now
            self._last = now
        else:
            self._last = max(self._last + self.interval, now - self.interval / 2)


class ResponseView:
    """The live view of one ``%%respond`` turn.

    Feed events with :meth:`handle` (cheap, no widget writes), call :meth:`flush` often (it writes at most
    once per ``interval``), then :meth:`finish` with the ``TurnResult``. :meth:`final_bundle` gives the
    plain display bundle that replaces the view, and :meth:`close` frees every widget.
    """

    def __init__(
        self,
        *,
        transport: str | None = None,
        model: str | None = None,
        background: bool = False,
        on_stop: Callable[[], Any] | None = None,
        interval: float = INTERVAL,
        status_interval: float = STATUS_INTERVAL,
        max_tail: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = TurnState(
            transport=transport,
            model=model,
            clock=clock,
            freezer=BlockFreezer(min_chunk=1 << 30, max_tail=MAX_TAIL if max_tail is None else max_tail),
        )
        self._clock = _PacedClock(interval, clock=clock)
        self._status_clock = CoalescingClock(status_interval, clock=clock)
        self._lock = threading.Lock()  # guards handle()/flush() when a Stop click races the writer
        self._on_stop = on_stop
        self.background = background
        self._written_version = -1
        self._status_written = ""
        self._status_key: tuple[Any, ...] = ()
        self._tail_written = ""
        self._reasoning_written = ""
        self._calls_written = ""
        self._resent_since_freeze = 0
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
        self.live = self._html("")
        self._pages: list[widgets.VBox] = []
        self.body = self._track(widgets.VBox([self.live], layout=self._shared_layout))
        self.stop_button: widgets.Button | None = None
        self.reasoning: widgets.Accordion | None = None
        self.reasoning_html: widgets.HTML | None = None
        self.calls: widgets.HTML | None = None
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

    def _html(self, value: str) -> widgets.HTML:
        return self._track(widgets.HTML(value, layout=self._shared_layout, style=self._shared_style))

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
            return self.state.apply(item)

    def due(self) -> bool:
        """True when the next :meth:`flush` would redraw the answer (interval passed, or first text)."""
        return self._clock.due() or self._first_text_pending()

    def flush(self, *, force: bool = False) -> bool:
        """Write pending changes to the widgets if an update is due (or ``force``). True if it wrote.

        The answer is redrawn at most once per ``interval``, except its first text, which is drawn at once
        (the time to first visible text is what a user feels). The status line has its own clock, so a
        status change never delays the answer.
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
            wrote |= self._write_status(force=force)
            return wrote

    def _first_text_pending(self) -> bool:
        """True while no visible answer text has been drawn yet but some has arrived.

        Visible: a first delta such as ``"## "`` renders as an empty heading, which is not yet text, so the
        next delta is drawn at once too."""
        if self._text_shown or self._pages:
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
        return final_bundle(result, model=self.state.model)

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
        freezer = self.state.freezer
        chunk: str | None = None
        if final:
            chunk = freezer.freeze(final=True)
        else:
            # Ski rental: text stays in the live tail (re-sent on every update) until re-sending it has cost
            # about as much as one more child widget; then whatever can be frozen is frozen, including
            # the finished part of the last block. A burst of finished blocks is frozen at once.
            due = self._resent_since_freeze >= CHUNK_OVERHEAD
            freezer.min_chunk = max(1, CHUNK_OVERHEAD - self._resent_since_freeze)
            chunk = freezer.freeze(split=due)
        if chunk:
            self._append_chunk(chunk)
            self._resent_since_freeze = 0
        tail = "" if final else freezer.tail_html()
        if tail == self._tail_written and not chunk:
            return False
        if tail != self._tail_written:
            self.live.value = tail
            self._tail_written = tail
            if not self._text_shown:
                self._text_shown = bool(_TAGS.sub("", tail).strip())
            self.updates += 1
            self._resent_since_freeze += len(freezer.tail)
        return True

    def _append_chunk(self, chunk_html: str) -> None:
        child = self._html(chunk_html)
        if self._pages and len(self._pages[-1].children) < PAGE_SIZE:
            page = self._pages[-1]
            page.children = (*page.children, child)
        else:
            page = self._track(widgets.VBox([child], layout=self._shared_layout))
            self._pages.append(page)
            self.body.children = (*self._pages, self.live)

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
        calls = _calls_html(self.state.calls)
        if calls != self._calls_written:
            if self.calls is None:
                self.calls = self._html("")
                self._show(self.calls, before_body=True)
            self.calls.value = calls
            self._calls_written = calls
            wrote = True
        return wrote

    def _write_status(self, *, force: bool) -> bool:
        st = self.state
        # Numbers (elapsed, tok/s) refresh every status_interval; a new state, badge or note at once.
        key = (st.state, st.transport_badge(), len(st.notes), st.response_id)
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
        if st.state in ("streaming", "waiting", "connecting") and not self.background:
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


def _calls_html(calls: dict[str, dict[str, str]]) -> str:
    if not calls:
        return ""
    rows = []
    for call in calls.values():
        rows.append(
            '<div style="margin:2px 0">🔧 <b>function call</b> '
            f"<code>{html.escape(call['name'])}</code>"
            f'<pre style="margin:2px 0 2px 1.5em;white-space:pre-wrap">{html.escape(call["arguments"])}</pre></div>'
        )
    return "".join(rows)


# -- transport toggle and control panel ------------------------------------------------------------------

TRANSPORT_OPTIONS = (("WebSocket", "ws"), ("SSE", "sse"))


class _ToggleButtons(widgets.ToggleButtons):
    """The core ToggleButtons (same frontend model) that also accepts ``{"value": "sse"}`` in a state update.

    ipywidgets 8 syncs a selection through ``index`` only, so an update naming ``value`` (as a test
    harness or another client may send) would be ignored silently; translate it to ``index``.
    """

    def set_state(self, sync_data: dict[str, Any]) -> None:
        if "value" in sync_data and "index" not in sync_data:
            sync_data = dict(sync_data)
            value = sync_data.pop("value")
            values = list(self._options_values)
            if value in values:
                sync_data["index"] = values.index(value)
        super().set_state(sync_data)


class TransportToggle:
    """``ToggleButtons`` (WebSocket | SSE) bound both ways to ``session.transport``.

    Clicking sets ``session.transport``; a change made elsewhere (``%responses transport sse``, another
    toggle) arrives through ``session.on_transport_change`` and moves this toggle. Only a weak reference
    to the toggle is registered, so a closed toggle does not linger.

    ``provider`` (returns the current session) and ``subscribe`` (registers a transport listener on the
    current and future sessions) let the magics replace the session (``%responses close``) under a
    displayed toggle; by default both use ``session``.
    """

    def __init__(
        self,
        session: Any,
        *,
        provider: Callable[[], Any] | None = None,
        subscribe: Callable[[Callable[[str], Any]], Any] | None = None,
    ) -> None:
        self._provider = provider or (lambda: session)
        self.widget = _ToggleButtons(
            options=list(TRANSPORT_OPTIONS),
            value=self._provider().transport,
            description="Transport",
            tooltips=[
                "The WebSocket pool (default): one socket per kernel, lowest latency",
                "HTTP server-sent events: one request per turn",
            ],
            style={"button_width": "110px"},
        )
        self.widget.observe(self._on_value, names="value")
        ref = weakref.ref(self)

        def follow(new: str) -> None:
            toggle = ref()
            if toggle is not None:
                toggle._follow(new)

        (subscribe or session.on_transport_change)(follow)

    @property
    def session(self) -> Any:
        return self._provider()

    def _on_value(self, change: dict[str, Any]) -> None:
        new = change["new"]
        session = self._provider()
        if new != session.transport:
            try:
                session.transport = new
            except Exception:
                log.exception("switching transport to %r failed", new)
                self.widget.value = change["old"]

    def _follow(self, new: str) -> None:
        if self.widget.comm is None:  # closed
            return
        if new in dict((v, k) for k, v in TRANSPORT_OPTIONS) and self.widget.value != new:
            self.widget.value = new

    def close(self) -> None:
        close_widgets([self.widget])


class ControlPanel:
    """``%responses`` with no argument: the toggle, the chain, open connections, Reset and Close buttons."""

    def __init__(
        self,
        session: Any,
        *,
        chain: str = "default",
        on_close: Callable[[], Any] | None = None,
        provider: Callable[[], Any] | None = None,
        subscribe: Callable[[Callable[[str], Any]], Any] | None = None,
    ):
        self._provider = provider or (lambda: session)
        self.chain = chain
        self._on_close = on_close
        self.toggle = TransportToggle(session, provider=self._provider, subscribe=subscribe)
        self.info = widgets.HTML()
        self.message = widgets.HTML()
        self.reset_button = widgets.Button(
            description="Reset", icon="undo", tooltip=f"Start a fresh conversation on chain {chain!r}"
        )
        self.close_button = widgets.Button(
            description="Close", icon="times", tooltip="Close the open connections (the chain is kept)"
        )
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.reset_button.on_click(lambda _b: self._act(self._reset))
        self.close_button.on_click(lambda _b: self._act(self._close))
        self.refresh_button.on_click(lambda _b: self.refresh())
        buttons = widgets.HBox([self.reset_button, self.close_button, self.refresh_button])
        self.widget = widgets.VBox([self.toggle.widget, self.info, buttons, self.message])
        self.refresh()

    @property
    def session(self) -> Any:
        return self._provider()

    def _reset(self) -> str:
        self.session.reset(chain=self.chain)
        return f"Conversation {self.chain!r} reset: the next cell starts a new conversation."

    def _close(self) -> str:
        if self._on_close is not None:
            self._on_close()
        else:
            self.session.close()
        return "Connections closed."

    def _act(self, action: Callable[[], str]) -> None:
        try:
            self.message.value = html.escape(action())
        except Exception as exc:  # shown in words; the key never appears (engine errors are redacted)
            self.message.value = f'<span style="color:#b91c1c">{html.escape(str(exc))}</span>'
        self.refresh()

    def refresh(self) -> None:
        """Re-read ``session.status()`` into the info box."""
        try:
            status = self.session.status()
        except Exception as exc:
            self.info.value = f'<span style="color:#b91c1c">{html.escape(str(exc))}</span>'
            return
        self.info.value = status_html(status)

    def close(self) -> None:
        self.toggle.close()
        close_widgets(
            [
                self.info,
                self.message,
                self.reset_button,
                self.close_button,
                self.refresh_button,
                *self.widget.children[2:3],
                self.widget,
            ]
        )


def status_html(status: dict[str, Any]) -> str:
    """``session.status()`` in a few plain lines: each chain (turns, last response id, store) and each open
    connection (id, age, busy or idle, turns served)."""
    esc = html.escape
    lines = []
    chains = status.get("chains") or {}
    for name, info in chains.items():
        info = info or {}
        turns = int(info.get("turns") or 0)
        last = info.get("previous_response_id") or info.get("last_response_id")
        store = info.get("last_store", info.get("store"))
        parts = [f"{turns} turn{'s' if turns != 1 else ''}"]
        parts.append(f"last response <code>{esc(str(last))}</code>" if last else "no response yet")
        if store is not None:
            parts.append("stored" if store else "store=false")
        pending = info.get("pending_calls") or ()
        if pending:
            parts.append(
                f"{len(pending)} function call{'s' if len(pending) != 1 else ''} awaiting tool output"
            )
        lines.append(f"Conversation <b>{esc(str(name))}</b>: " + ", ".join(parts))
    if not chains:
        lines.append("No conversation yet.")
    conns = status.get("connections") or []
    for conn in conns:
        turns = int(conn.get("turns") or 0)
        lines.append(
            f"Connection <code>{esc(str(conn.get('id', '?')))}</code>: open {esc(format_seconds(conn.get('age')))}, "
            f"{'busy' if conn.get('busy') else 'idle'}, {turns} turn{'s' if turns != 1 else ''}"
        )
    if not conns:
        lines.append("No open connection.")
    return '<div style="font-size:90%;line-height:1.6">' + "<br>".join(lines) + "</div>"
