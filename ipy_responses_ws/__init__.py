"""Stream OpenAI Responses API answers into live Jupyter widgets over a kernel-lifetime WebSocket pool.

``%load_ext ipy_responses_ws`` adds ``%%respond`` and ``%responses``. The package import is cheap: the
magics, the session and the widgets load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "ResponsesSession",
    "Settings",
    "TurnResult",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]

if TYPE_CHECKING:
    from .config import Settings
    from .session import ResponsesSession, TurnResult

_LAZY = {"ResponsesSession": "session", "TurnResult": "session", "Settings": "config"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext ipy_responses_ws``: register ``%%respond`` and ``%responses`` (idempotent)."""
    from . import _extension

    _extension.load(ip)


def unload_ipython_extension(ip: Any) -> None:
    """``%unload_ext ipy_responses_ws``: close the extension's session (its sockets, its conversations) and
    remove the magics. Sessions you built yourself keep working (the I/O loop stays until exit)."""
    from . import _extension

    _extension.unload(ip)
