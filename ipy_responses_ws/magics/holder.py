"""The extension's state that outlives a cell: one :class:`SessionHolder`, created at ``%load_ext`` and passed to
the magics.

It owns the extension's :class:`~ipy_responses_ws.session.ResponsesSession` (created on first use, with the
magics' traits as settings), the conversations that ``%responses close`` keeps for the next session, the
transport listeners of displayed toggles, and the latest turn's result. Nothing else holds any of it: no
module-level dict, no import back from the magics.

Lifetimes (the README says the same under "Lifecycle"):

* ``%responses close`` (:meth:`SessionHolder.close` with ``keep_conversations=True``) closes the session's
  sockets (1000); the next cell gets a new session that continues every conversation, pending function calls
  included (:meth:`~ipy_responses_ws.chain.Chain.continue_from`).
* ``%unload_ext`` (:meth:`SessionHolder.shutdown`) closes the session and forgets everything, kept
  conversations included. It does not stop the process-wide I/O loop (``runtime``): sessions that the user
  built with the public API share it and keep working; the loop's ``atexit`` hook closes it at exit, and
  ``%reload_ext`` finds the same loop again, so no second loop thread ever appears.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..chain import Chain
    from ..session import ResponsesSession, TurnResult

__all__ = ["SessionHolder"]

log = logging.getLogger(__name__)


def _no_overrides() -> Mapping[str, Any]:
    return {}


class SessionHolder:
    """The extension's session and what must survive it (see the module docstring)."""

    def __init__(self, settings: Callable[[], Mapping[str, Any]] = _no_overrides) -> None:
        self._settings = settings
        self._lock = threading.RLock()
        self._session: ResponsesSession | None = None
        self._kept: dict[str, Chain] = {}
        self._listeners: list[Callable[[str], Any]] = []
        #: The ``TurnResult`` of the latest ``%%respond`` turn (the CLI demo reads it for its timing table).
        self.last_result: TurnResult | Any = None
        self.last_turn: Callable[[], Any] | None = None  # runs the last %%respond again (--retry)

    def use_settings(self, settings: Callable[[], Mapping[str, Any]]) -> None:
        """Where a new session's settings come from (the magics' traits), read when it is created."""
        self._settings = settings

    @property
    def current(self) -> ResponsesSession | None:
        """The live session, or ``None`` when none was created yet (or it was closed)."""
        return self._session

    def session(self) -> ResponsesSession:
        """The session, created on first use; it continues the conversations a close kept."""
        with self._lock:
            if self._session is not None:
                return self._session
            from ..config import Settings
            from ..session import ResponsesSession

            overrides = dict(self._settings())
            profiles = overrides.pop("profiles", None)
            session = ResponsesSession(settings=Settings.from_env(**overrides), profiles=profiles)
            for listener in self._listeners:
                session.on_transport_change(listener)
            for name, old in self._kept.items():
                session.chain(name).continue_from(old)
            self._kept = {}
            self._session = session
            return session

    def on_transport_change(self, callback: Callable[[str], Any]) -> None:
        """``callback(new_transport)`` on the current session and on every later one (a toggle displayed before
        ``%responses close`` keeps following the transport)."""
        with self._lock:
            self._listeners.append(callback)
            if self._session is not None:
                self._session.on_transport_change(callback)

    def close(self, *, keep_conversations: bool = True) -> None:
        """Close the session's connections (code 1000). With ``keep_conversations`` the next session continues
        them (``%responses close``, the panel's Close button); without, they are forgotten."""
        with self._lock:
            session, self._session = self._session, None
            if not keep_conversations:
                self._kept = {}
            if session is None:
                return
            try:
                session.close()
            except Exception:
                log.exception("closing the Responses session failed")
            if keep_conversations:
                self._kept.update(session.chains)

    def shutdown(self) -> None:
        """``%unload_ext``: close the session, forget the kept conversations, the listeners and the last result."""
        with self._lock:
            self.close(keep_conversations=False)
            self._listeners.clear()
            self.last_result = None

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "no session"
        kept = f", {len(self._kept)} kept conversation(s)" if self._kept else ""
        return f"SessionHolder({state}{kept})"
