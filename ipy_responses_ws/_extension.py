"""``%load_ext`` / ``%unload_ext`` for ipy_responses_ws: the entry points, and nothing else.

``ipy_responses_ws.__init__`` imports this module lazily, so ``import ipy_responses_ws`` stays cheap. Imports
go one way: this module → ``magics`` → session; the magics never import it back. The state that outlives a
cell lives in one :class:`~ipy_responses_ws.magics.SessionHolder`, created here at load and passed to the
magics; this module only remembers which shell it was loaded into (``%reload_ext`` reloads the package's
``__init__``, not this module, so the record survives a reload).

* ``%load_ext`` twice registers the magics once (idempotent);
* ``%unload_ext`` closes the extension's session (sockets closed with 1000) and forgets its conversations,
  those kept by ``%responses close`` included. The process-wide I/O loop (``runtime``) is left running:
  sessions the user built with the public API share it and keep working; its ``atexit`` hook closes it at
  exit;
* ``%reload_ext`` = unload + load: the old session is closed before the new magics exist, and the new
  session finds the same I/O loop, so no second loop thread or pool appears.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .magics import ResponsesMagics, SessionHolder

__all__ = ["current_session", "get_session", "holder", "last_result", "load", "unload"]


@dataclass(frozen=True)
class _Loaded:
    shell: Any
    holder: SessionHolder
    magics: ResponsesMagics


_LOCK = threading.Lock()
_LOADED: _Loaded | None = None


def load(ip: Any) -> None:
    """Register the magics on ``ip`` with a new :class:`SessionHolder` (once per shell)."""
    global _LOADED
    from .magics import ResponsesMagics, SessionHolder

    with _LOCK:
        if _LOADED is not None:
            if _LOADED.shell is ip:
                return
            _unload(_LOADED)  # another shell (tests): one extension state per process
        state = SessionHolder()
        magics = ResponsesMagics(shell=ip, holder=state)
        ip.register_magics(magics)
        _LOADED = _Loaded(ip, state, magics)


def unload(ip: Any) -> None:
    """Close the extension's session, forget its conversations and remove the magics (``%unload_ext``; also
    the first half of ``%reload_ext``). The I/O loop stays for the user's own sessions."""
    global _LOADED
    with _LOCK:
        loaded, _LOADED = _LOADED, None
        if loaded is not None:
            _unload(loaded)


def _unload(loaded: _Loaded) -> None:
    loaded.holder.shutdown()
    ip, magics = loaded.shell, loaded.magics
    if ip is None:
        return
    registry = getattr(ip.magics_manager, "registry", {})
    registry.pop(type(magics).__name__, None)
    for kind in ("line", "cell"):
        table = ip.magics_manager.magics.get(kind, {})
        for name in ("respond", "responses"):
            if getattr(table.get(name), "__self__", None) is magics:
                del table[name]
    configurables = getattr(ip, "configurables", None)
    if configurables is not None and magics in configurables:
        configurables.remove(magics)


def holder() -> SessionHolder | None:
    """The loaded extension's :class:`SessionHolder`, or ``None`` when it is not loaded."""
    loaded = _LOADED
    return loaded.holder if loaded is not None else None


def get_session() -> Any:
    """The loaded extension's session, created on first use (benchmarks and tests drive it directly)."""
    state = holder()
    if state is None:
        raise RuntimeError("ipy_responses_ws is not loaded: run %load_ext ipy_responses_ws first.")
    return state.session()


def current_session() -> Any:
    """The loaded extension's live session, or ``None`` (not loaded, not created yet, or closed)."""
    state = holder()
    return state.current if state is not None else None


def last_result() -> Any:
    """The ``TurnResult`` of the latest ``%%respond`` turn, or ``None`` (``cli demo`` reads it)."""
    state = holder()
    return state.last_result if state is not None else None
