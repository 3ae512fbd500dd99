"""``%responses`` with no argument: the transport toggle and the control panel (core ipywidgets only).

:class:`TransportToggle` is bound both ways to ``session.transport``; :class:`ControlPanel` adds the
conversation and connection summary and the Reset / Close / Refresh buttons. Nothing here talks to the
network: the buttons call the session.
"""

from __future__ import annotations

import html
import logging
import weakref
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from .live_view import close_widgets
from .status_text import format_seconds

__all__ = ["TRANSPORT_OPTIONS", "ControlPanel", "TransportToggle", "status_html"]

log = logging.getLogger(__name__)


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
    """``session.status()`` in a few plain lines: each chain (turns, last response id, store, estimated cost), the
    session's cost, and each open connection (id, age, busy or idle, turns served)."""
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
        if info.get("cost"):
            parts.append(f"≈{esc(str(info['cost']))} so far")
        lines.append(f"Conversation <b>{esc(str(name))}</b>: " + ", ".join(parts))
    if not chains:
        lines.append("No conversation yet.")
    elif status.get("cost"):
        lines.append(esc(str(status["cost"])).capitalize())
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
