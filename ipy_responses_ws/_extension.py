"""Load/unload logic for ``%load_ext ipy_responses_ws`` and the kernel-lifetime session holder.

``ipy_responses_ws.__init__`` imports this module lazily, so ``import ipy_responses_ws`` stays cheap.

One session per process lives in :data:`_HOLDER` (a module-level holder in a module that ``%reload_ext``
does not reload: it reloads only the package's ``__init__``). So:

* ``%load_ext`` twice registers the magics once (idempotent);
* ``%unload_ext`` closes the session (sockets closed with 1000) and forgets it;
* ``%reload_ext`` = unload + load: the old session is closed before the new magics exist, and the I/O
  loop thread is the engine's process singleton (``runtime``), so no second loop or pool appears.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

__all__ = [
    "close_session",
    "current_session",
    "get_session",
    "last_result",
    "load",
    "on_transport_change",
    "set_last_result",
    "unload",
]

log = logging.getLogger(__name__)

_LOCK = threading.RLock()
_HOLDER: dict[str, Any] = {"session": None, "magics": None, "shell": None}
# Transport listeners of displayed toggles (each holds only a weak reference to its toggle).
_LISTENERS: list[Any] = []


def load(ip: Any) -> None:
    """Register the magics on ``ip`` (once)."""
    from .magics import ResponsesMagics

    with _LOCK:
        if _HOLDER["magics"] is not None and _HOLDER["shell"] is ip:
            return
        magics = ResponsesMagics(shell=ip)
        ip.register_magics(magics)
        _HOLDER["magics"] = magics
        _HOLDER["shell"] = ip


def unload(ip: Any) -> None:
    """Close the session and drop the magics (``%unload_ext``; also the first half of ``%reload_ext``).

    Also stops the engine's I/O loop thread, so nothing of the extension keeps running; the next session
    starts a fresh one (``runtime.get_runtime()`` creates it only when none is alive).
    """
    with _LOCK:
        close_session()
        _stop_runtime()
        magics = _HOLDER["magics"]
        if magics is not None and ip is not None:
            registry = getattr(ip.magics_manager, "registry", {})
            registry.pop(type(magics).__name__, None)
            for kind in ("line", "cell"):
                table = ip.magics_manager.magics.get(kind, {})
                for name in ("respond", "responses"):
                    fn = table.get(name)
                    if getattr(fn, "__self__", None) is magics:
                        del table[name]
            configurables = getattr(ip, "configurables", None)
            if configurables is not None and magics in configurables:
                configurables.remove(magics)
        _HOLDER["magics"] = None
        _HOLDER["shell"] = None
        _LISTENERS.clear()


def _stop_runtime() -> None:
    from .runtime import THREAD_NAME, get_runtime

    if any(t.name == THREAD_NAME and t.is_alive() for t in threading.enumerate()):
        try:
            get_runtime().close()  # returns the live runtime (never starts one while a thread is alive)
        except Exception:
            log.exception("stopping the I/O loop thread failed")


def on_transport_change(callback: Any) -> None:
    """Register ``callback(new_transport)`` on the current session and on every later one (toggles
    displayed before ``%responses close`` keep following the transport)."""
    with _LOCK:
        _LISTENERS.append(callback)
        session = _HOLDER["session"]
        if session is not None:
            session.on_transport_change(callback)


def set_last_result(result: Any) -> None:
    """Remember the latest turn's ``TurnResult`` (the CLI demo reads it for its timing table)."""
    _HOLDER["last_result"] = result


def last_result() -> Any:
    """The ``TurnResult`` of the latest ``%%respond`` turn in this process, or ``None``."""
    return _HOLDER.get("last_result")


def current_session() -> Any:
    """The live session, or ``None`` if none was created yet (or it was closed)."""
    return _HOLDER["session"]


def get_session(magics: Any | None = None) -> Any:
    """The kernel-lifetime session, created on first use with the magics' traits as settings."""
    with _LOCK:
        session = _HOLDER["session"]
        if session is not None:
            return session
        from .config import Settings
        from .session import ResponsesSession

        magics = magics or _HOLDER["magics"]
        overrides = magics.settings_overrides() if magics is not None else {}
        session = ResponsesSession(settings=Settings.from_env(**overrides))
        for listener in _LISTENERS:
            session.on_transport_change(listener)
        if magics is not None:
            ref = weakref.ref(magics)

            def follow(new: str) -> None:
                m = ref()
                if m is not None:
                    m._follow_session_transport(new)

            session.on_transport_change(follow)
        kept = _HOLDER.pop("kept_chains", None) or {}
        for name, old in kept.items():
            # Carry the conversation over (`%responses close` closes sockets, not conversations). These
            # are the chain's public fields (docs/contracts.md); with store=false the chain resends its
            # transcript on the new connection, visibly (DESIGN.md §4).
            chain = session.chain(name)
            chain.previous_response_id = old.previous_response_id
            chain.transcript = list(old.transcript)
            chain.turns = old.turns
            chain.last_transport = old.last_transport
            chain.last_store = old.last_store
        _HOLDER["session"] = session
        return session


def close_session(*, keep_chains: bool = False) -> None:
    """Close the session's connections (code 1000). With ``keep_chains`` the next session continues the
    conversations (``%responses close``); otherwise they are forgotten (unload)."""
    with _LOCK:
        session = _HOLDER["session"]
        if session is None:
            return
        _HOLDER["session"] = None
        try:
            session.close()
        except Exception:
            log.exception("closing the Responses session failed")
        if keep_chains:
            _HOLDER["kept_chains"] = getattr(session, "chains", None)
        else:
            _HOLDER.pop("kept_chains", None)
