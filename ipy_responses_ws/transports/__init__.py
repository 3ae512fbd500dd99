"""Transports: one protocol, two implementations (the WebSocket pool, HTTP SSE). They only move bytes.

Which events belong to a request and which wait applies is :mod:`..stream`'s call (one
:class:`~..stream.ResponseStream` per request, in both transports); what to do after a failure is
:mod:`..recovery`'s. A transport never retries, reconnects or falls back by itself.

A turn calls :meth:`Transport.run` with

* ``make_request(info)``: builds the ``response.create`` body *after* a connection was chosen, so the chain
  can decide by-id vs full transcript knowing whether this connection still caches the parent response
  (``info.cached_response_id``; PROTOCOL.md §1.7). It is called again if the transport retries on another
  connection;
* ``emit(item)``: called on the loop thread for every :class:`~ipy_responses_ws.events.ServerEvent` and
  :class:`~ipy_responses_ws.events.Notice`, in order. ``error`` events are *not* emitted: they become the
  raised :class:`~ipy_responses_ws.errors.APIError` (or :attr:`Outcome.error_event`).

``run`` returns an :class:`Outcome` once a terminal event (completed / incomplete / failed) was emitted, and
raises a :class:`~ipy_responses_ws.errors.ResponsesError` otherwise. aiohttp exceptions are mapped to the
package's errors in exactly one place per transport. ``want_cached`` (the chain's parent id) lets the WS pool
lease the connection whose cache holds it; ``fresh`` asks for a new connection.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError
from .network import env_proxy

if TYPE_CHECKING:
    from ..config import Settings
    from ..events import Notice, ServerEvent

__all__ = ["Transport", "ConnectionInfo", "Outcome", "Emit", "MakeRequest", "ws_target", "ssl_for"]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the request builder knows about the connection that will carry the request."""

    transport: str  # "ws" | "sse"
    connection_id: str | None = None
    reused: bool = False
    age: float = 0.0
    # The id of the last response this connection completed (its connection-local cache), or None.
    cached_response_id: str | None = None
    stream_id: str | None = None


@dataclass(slots=True)
class Outcome:
    """How a successful exchange ended."""

    transport: str
    terminal: ServerEvent
    connection_id: str | None = None
    request: dict[str, Any] | None = None
    error_event: ServerEvent | None = None  # an ``error`` event that preceded ``response.failed``
    request_id: str | None = None


Emit = Callable[["ServerEvent | Notice"], None]
MakeRequest = Callable[[ConnectionInfo], dict[str, Any]]


class Transport(Protocol):
    """The one streaming method plus ``aclose()`` (STYLE.md, httpx's transport shape)."""

    name: str

    async def run(
        self,
        make_request: MakeRequest,
        emit: Emit,
        *,
        settings: Settings,
        affinity: str | None = None,
        want_cached: str | None = None,
        fresh: bool = False,
    ) -> Outcome: ...

    async def aclose(self) -> None: ...


def ws_target(settings: Settings) -> tuple[str, dict[str, str], int]:
    """The WebSocket URL, its handshake headers and a hashable identity of both, for one turn.

    ``check_secure`` runs first, so a key is never offered over ``ws://`` to a remote host. The identity tells a
    pool whether an idle connection was opened for other settings (base URL, key, extra headers) and must go.
    """
    url = settings.ws_url()
    if settings.ws_model_query:
        url = with_model_query(url, settings.model)
    settings.check_secure(url)
    headers = settings.auth_headers()
    proxy = env_proxy(url)  # a changed HTTPS_PROXY / NO_PROXY must not reuse a socket opened the other way
    identity = (
        url,
        tuple(sorted(headers.items())),
        settings.resolved_ca_file(),
        proxy.url if proxy else None,
    )
    return url, headers, hash(identity)


@functools.lru_cache(maxsize=64)
def with_model_query(url: str, model: str) -> str:
    """*url* with ``model=<model>`` in its query (kept if the base URL already names one). Gateways route the
    upgrade on it (LiteLLM's proxy refuses an upgrade without it in some versions; livekit's client sends it);
    the model is then part of the connection's identity, so a turn for another model gets its own socket."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "model" for k, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("model", model)])))


@functools.lru_cache(maxsize=8)
def _context_for(ca_file: str, mtime: float) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def ssl_for(settings: Settings) -> ssl.SSLContext | bool:
    """The TLS verification to use: a context trusting ``ca_file`` / ``SSL_CERT_FILE``, else aiohttp's default.

    Built once per file (and rebuilt when the file changes); verification is never turned off.
    """
    ca_file = settings.resolved_ca_file()
    if not ca_file:
        return True
    try:
        mtime = os.stat(ca_file).st_mtime
    except OSError as exc:
        raise ConfigError(
            f"The CA file {ca_file!r} cannot be read ({exc.strerror}); set ca_file or SSL_CERT_FILE to a PEM file."
        ) from None
    return _context_for(ca_file, mtime)
