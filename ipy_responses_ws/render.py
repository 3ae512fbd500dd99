"""The pure rendering names, gathered under their historical module (re-exports only).

The code lives in rooms named for what they hold: :mod:`.markdown` (Markdown to safe HTML and to inert
Markdown), :mod:`.blocks` (block freezing), :mod:`.pacing` (the coalescing clocks), :mod:`.status_text`
(durations, usage, the footer line), :mod:`.bundle` (the final display bundle) and :mod:`.view_state` (the
state of one streaming turn). None of them imports IPython or ipywidgets.
"""

from __future__ import annotations

from .blocks import LONG_SENTENCE, BlockFreezer
from .bundle import final_bundle
from .markdown import render_markdown, safe_link, safe_markdown
from .pacing import CoalescingClock
from .status_text import error_text, footer_text, format_seconds, format_usage, tokens_per_second
from .view_state import STATES, TERMINAL_EVENT_TYPES, TurnState

__all__ = [
    "LONG_SENTENCE",
    "STATES",
    "TERMINAL_EVENT_TYPES",
    "BlockFreezer",
    "CoalescingClock",
    "TurnState",
    "error_text",
    "final_bundle",
    "footer_text",
    "format_seconds",
    "format_usage",
    "render_markdown",
    "safe_link",
    "safe_markdown",
    "tokens_per_second",
]
