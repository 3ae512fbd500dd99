"""The notebook face's widgets, gathered under their historical module (re-exports only).

:mod:`.live_view` holds the live response view, :mod:`.panel` the transport toggle and the control panel.
"""

from __future__ import annotations

from .live_view import (
    CHUNK_OVERHEAD,
    INTERVAL,
    LONGEST_INTERVAL,
    PACE_KNEE,
    PAGE_SIZE,
    STATUS_INTERVAL,
    ResponseView,
    close_widgets,
)
from .panel import ControlPanel, TransportToggle, status_html

__all__ = [
    "CHUNK_OVERHEAD",
    "INTERVAL",
    "LONGEST_INTERVAL",
    "PACE_KNEE",
    "PAGE_SIZE",
    "STATUS_INTERVAL",
    "ControlPanel",
    "ResponseView",
    "TransportToggle",
    "close_widgets",
    "status_html",
]
