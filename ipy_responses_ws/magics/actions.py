"""Retry and Continue: two buttons under a finished answer.

A foreground cell cannot receive a click while it runs (DESIGN.md §2), so the buttons appear once its turn has
ended, under the frozen answer. A click arrives while the kernel is idle and starts a background turn whose live
view, then frozen Markdown, replaces the bar's output area:

* **Retry**: the same prompt from the same parent. The turn carries the first turn's cell key, so it forks
  exactly as re-running the cell would (chain.py), and becomes the conversation's turn in its place.
* **Continue** (only under an answer that was cut off, ``incomplete``): asks the model to go on from where it
  stopped, with the partial answer quoted (``cell_request.CONTINUE_PROMPT``), at the end of the conversation.

The bar's display carries an empty ``text/plain``, so a saved notebook, nbconvert or GitHub show nothing where
it was: the frozen answer above it stays plain Markdown (DESIGN.md §5). The retried answer is written into the
bar's ``Output`` by setting its ``outputs`` directly (no message capture, which the loop thread could not join).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from .cell_request import continue_prompt

__all__ = ["ActionsBar", "anonymous_cell"]

log = logging.getLogger(__name__)


def anonymous_cell() -> str:
    """A key for a turn whose frontend sent no cell id: Retry can fork from it; a re-run gets a new one (appends)."""
    return f"run-{uuid.uuid4().hex[:12]}"


def _widget_output(widget: widgets.Widget) -> dict[str, Any]:
    return {
        "output_type": "display_data",
        "data": {
            "application/vnd.jupyter.widget-view+json": {
                "model_id": widget.model_id,
                "version_major": 2,
                "version_minor": 0,
            },
            "text/plain": "",
        },
        "metadata": {},
    }


class ActionsBar:
    """The Retry / Continue bar under one cell's answer (see the module docstring)."""

    def __init__(
        self,
        session: Any,
        prompt: str,
        request: dict[str, Any],
        store: Callable[[Any], None],
        result: Any,
        *,
        run: Callable[..., Any],
    ) -> None:
        self.session = session
        self.prompt = prompt
        self.request = dict(request)
        self.store = store
        self.result = result
        self._run = (
            run  # starts a background turn into a view: run(session, prompt, request, on_view, on_done)
        )
        self._handle: Any = None
        self.question = prompt  # Continue quotes the question and everything answered so far
        self.so_far = getattr(result, "text", "") or ""
        self._continuing = False
        self.retry_button = widgets.Button(
            description="Retry", icon="refresh", tooltip="The same prompt again"
        )
        self.continue_button = widgets.Button(
            description="Continue", icon="forward", tooltip="Go on from where the answer was cut off"
        )
        self.retry_button.on_click(lambda _b: self.retry())
        self.continue_button.on_click(lambda _b: self.continue_answer())
        self.output = widgets.Output()
        self.buttons = widgets.HBox([self.retry_button, self.continue_button])
        self.widget = widgets.VBox([self.output, self.buttons])
        self._sync()

    def _sync(self) -> None:
        incomplete = getattr(self.result, "status", None) == "incomplete"
        self.continue_button.layout.display = None if incomplete else "none"
        busy = self._handle is not None and not self._handle.done()
        self.retry_button.disabled = self.continue_button.disabled = busy

    def bundle(self) -> dict[str, Any]:
        """What to display: the widget, with an empty ``text/plain`` for renderers without widgets."""
        return _widget_output(self.widget)["data"]

    # --- the two actions -----------------------------------------------------------------------------------

    def continue_answer(self) -> Any:
        """Go on from the cut-off answer, at the end of the conversation."""
        if getattr(self.result, "status", None) != "incomplete":
            return None
        prompt = continue_prompt(self.result, self.so_far, self.question)
        request = {**self.request, "cell": anonymous_cell(), "tail": True, "attachments": ()}
        self._continuing = True
        return self._start(prompt, request)

    def retry(self) -> Any:
        """The same prompt from the same parent (a fork, like re-running the cell)."""
        self._continuing = False
        return self._start(self.prompt, self.request)

    def _start(self, prompt: str, request: dict[str, Any]) -> Any:
        if self._handle is not None and not self._handle.done():
            return None
        try:
            self._handle = self._run(self.session, prompt, request, self._show, self._done)
        except Exception as exc:  # a refused request (budget, no key): say it where the answer goes
            self.output.outputs = (
                {"output_type": "stream", "name": "stderr", "text": f"{type(exc).__name__}: {exc}\n"},
            )
            return None
        self._sync()
        return self._handle

    def _show(self, widget: widgets.Widget) -> None:
        self.output.outputs = (_widget_output(widget),)

    def _done(self, result: Any, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        """On the loop thread: the retried turn ended; its frozen bundle replaces the live view."""
        self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": metadata},)
        if getattr(result, "status", None) in ("completed", "incomplete"):
            self.result = result
            text = getattr(result, "text", "") or ""
            self.so_far = self.so_far + text if self._continuing else text
        try:
            self.store(result)
        except Exception:
            log.exception("storing the retried result failed")
        self._sync()

    def close(self) -> None:
        self.widget.close()
