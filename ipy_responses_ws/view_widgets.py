"""The small widgets the live view is built of: lean answer widgets, the tool-call rows, and closing them all.

Each widget costs a comm_open and a comm_close on iopub, and every write re-sends its whole value
(docs/live-view.md), so these parts are built to be written rarely: answer widgets leave their defaults out of
their comm_open, and a tool-call row is a widget of its own that is rewritten only while its call changes and
never after it finished (like a frozen answer block).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as widgets

from .tool_view import is_final, row_html

__all__ = ["AnswerHTML", "AnswerPage", "CallBox", "CallRows", "Lean", "close_widgets"]

log = logging.getLogger(__name__)


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


class Lean:
    """Mixin for the many answer widgets: their comm_open leaves out traits still at their default.

    Uses ipywidgets' own ``drop_defaults`` (what widget embedding relies on); the model and view names,
    modules and versions are always sent, because a frontend reads them from the comm_open to build the
    model, and every other trait left out takes the frontend model's default, which is the same value.
    Saves ~0.2 KB per widget, of ~2 KB it costs in all.
    """

    def get_state(self, key: Any = None, drop_defaults: bool = False) -> dict[str, Any]:
        if key is not None:
            return super().get_state(key, drop_defaults)  # type: ignore[misc]
        state: dict[str, Any] = super().get_state(None, drop_defaults=True)  # type: ignore[misc]
        for name in _ALWAYS_SENT:
            state[name] = getattr(self, name)
        return state


_ALWAYS_SENT = (
    "_model_name",
    "_model_module",
    "_model_module_version",
    "_view_name",
    "_view_module",
    "_view_module_version",
)


class AnswerHTML(Lean, widgets.HTML):
    """A core ``HTML`` widget (same frontend model) with a lean comm_open."""


class AnswerPage(Lean, widgets.VBox):
    """A core ``VBox`` widget (same frontend model) with a lean comm_open."""


class CallBox(Lean, widgets.VBox):
    """The tool-call rows above the answer: a core ``VBox`` of one ``HTML`` widget per call.

    ``value`` reads the rows' HTML joined (for tests and debugging; the box itself has no value on the wire).
    """

    @property
    def value(self) -> str:
        return "".join(getattr(row, "value", "") for row in self.children)


class CallRows:
    """Draws a turn's calls (``TurnState.calls``) into a :class:`CallBox`, created when the first call shows.

    A row is written only when its HTML changed, and a row drawn in a final state (ok, error, denied,
    cancelled; a hosted call that is done) is never written again, so a long tool loop costs one comm_open and
    a few updates per call.
    """

    def __init__(
        self, make_row: Callable[[str], widgets.HTML], make_box: Callable[[list[widgets.HTML]], CallBox]
    ) -> None:
        self._make_row, self._make_box = make_row, make_box  # the view's: they track and place the widgets
        self.box: CallBox | None = None
        self._rows: dict[str, widgets.HTML] = {}
        self._done: set[str] = set()

    def draw(self, calls: dict[str, Any]) -> bool:
        """Bring the rows up to date with ``calls`` (key → ToolCall | HostedCall); True if a widget was written."""
        wrote = False
        for key, call in calls.items():
            if key in self._done:
                continue
            value = row_html(call)
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = self._make_row(value)
                if self.box is None:
                    self.box = self._make_box([row])
                else:
                    self.box.children = (*self.box.children, row)
                wrote = True
            elif row.value != value:
                row.value = value
                wrote = True
            if is_final(call):
                self._done.add(key)
        return wrote
