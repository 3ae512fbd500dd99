"""The HTTP SSE transport: ``POST {base}/responses`` with ``stream: true`` (PROTOCOL.md §3).

It uses the runtime's shared ``aiohttp.ClientSession``. Framing is the Sans-I/O :class:`~..sse.SSEDecoder`;
each ``data:`` payload goes through the same :func:`~..events.parse_event` as WebSocket frames.

* HTTP errors before streaming become structured :class:`~..errors.APIError` s (status, code, message, param,
  ``x-request-id``, ``Retry-After``).
* ``error`` events are read in both shapes (nested real wire, flat SDK type, §2.7). A nested error is followed
  by ``response.failed``; it is kept as :attr:`Outcome.error_event` for a richer message.
* The stream ending without a terminal event is a :class:`~..errors.ProtocolError`.
* WS-only fields (``generate``, ``stream_id``, §1.4, §1.5) are never sent over HTTP: proxies answer 400
  "Unsupported parameter: generate" (§7.9).
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from ..errors import (
    ConfigError,
    ConnectError,
    ConnectionClosedError,
    ProtocolError,
    ProxyError,
    ResponsesError,
    StreamTimeoutError,
    masked_proxy_url,
)
from ..events import Notice, error_from_event, error_from_http
from ..redact import redact_url, register_secret
from ..sse import SSEDecoder
from ..stream import ResponseStream, Step
from . import ConnectionInfo, Emit, MakeRequest, Outcome, ssl_for

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SSETransport", "WS_ONLY_FIELDS", "EnvProxy", "env_proxy", "map_connect_error"]

WS_ONLY_FIELDS = frozenset({"type", "generate", "stream_id"})
_ERROR_BODY_LIMIT = 64 * 1024


class SSETransport:
    """Streams one response per HTTP request; nothing to pool beyond aiohttp's keep-alive connector."""

    name = "sse"

    def __init__(self, http_session: Callable[[], aiohttp.ClientSession]) -> None:
        self._http = http_session
        self.requests = 0

    async def run(
        self,
        make_request: MakeRequest,
        emit: Emit,
        *,
        settings: Settings,
        affinity: str | None = None,
        want_cached: str | None = None,
        fresh: bool = False,
    ) -> Outcome:
        url = settings.http_url()
        settings.check_secure(url)
        headers = settings.auth_headers()
        headers["Accept"] = "text/event-stream"
        headers["Content-Type"] = "application/json"
        body = {k: v for k, v in make_request(ConnectionInfo("sse")).items() if k not in WS_ONLY_FIELDS}
        body["stream"] = True
        data = json.dumps(body, separators=(",", ":")).encode()
        proxy = env_proxy(url)  # read now: a notebook may set HTTPS_PROXY between cells
        emit(Notice("connecting", {"transport": "sse", "url": redact_url(url)}))
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout)
        stream = ResponseStream(
            first_output_timeout=settings.first_event_timeout, idle_timeout=settings.idle_timeout
        )
        # The timer is moved only when the stream's deadline drifted by more than this: one timer operation
        # per many events, and a timeout fires at most this late.
        slack = settings.idle_timeout * 0.02
        request_id: str | None = None
        self.requests += 1
        stream.sent(loop.time())
        try:
            async with asyncio.timeout_at(stream.deadline()) as timer:
                failed: BaseException | None = None
                try:
                    resp_cm = self._http().post(
                        url,
                        data=data,
                        headers=headers,
                        timeout=timeout,
                        ssl=ssl_for(settings),
                        # an https:// request goes through the proxy's CONNECT tunnel
                        proxy=proxy.url if proxy else None,
                    )
                    resp = await resp_cm.__aenter__()
                except aiohttp.ConnectionTimeoutError:
                    raise StreamTimeoutError(phase="connect", seconds=settings.connect_timeout) from None
                except (aiohttp.ClientError, OSError) as exc:
                    # mapped below, outside this handler: aiohttp's exception may hold the proxy's credentials
                    failed = exc
                if failed is not None:
                    raise map_connect_error(failed, url, proxy, settings, brief=True)
                try:
                    request_id = resp.headers.get("x-request-id")
                    if resp.status >= 400:
                        raw = await resp.content.read(_ERROR_BODY_LIMIT)
                        raise error_from_http(resp.status, raw, resp.headers)
                    ctype = resp.headers.get("Content-Type", "")
                    if "text/event-stream" not in ctype:
                        raise ProtocolError(
                            f"Expected an event stream from {url}, got HTTP {resp.status} with {ctype or 'no'} "
                            "content type."
                        )
                    emit(
                        Notice(
                            "connected",
                            {"transport": "sse", "reused": False, "connection_id": None, "age": 0.0},
                        )
                    )
                    decoder = SSEDecoder()
                    content = resp.content
                    while True:
                        chunk = await content.readany()
                        messages = decoder.feed(chunk) if chunk else decoder.flush()
                        for msg in messages:
                            if msg.data == "[DONE]":  # not sent by OpenAI (§3); tolerated like openai-python
                                continue
                            step = stream.feed_payload(msg.data, loop.time())
                            if step is Step.EMIT:
                                emit(stream.event)  # type: ignore[arg-type]
                            elif step is Step.FINISH:
                                emit(stream.event)  # type: ignore[arg-type]
                                return Outcome(
                                    "sse",
                                    stream.terminal,  # type: ignore[arg-type]
                                    request=body,
                                    error_event=stream.error_event,
                                    request_id=request_id,
                                )
                            elif step is not Step.DROP:  # FAIL (RECONNECT means nothing over HTTP)
                                raise _with_request_id(stream.error, request_id)  # type: ignore[arg-type]
                        if not chunk:
                            break
                        deadline = stream.deadline()
                        if abs(deadline - timer.when()) > slack:  # type: ignore[operator]
                            timer.reschedule(deadline)
                    if stream.error_event is not None:
                        raise error_from_event(stream.error_event, request_id=request_id)
                    raise ProtocolError(
                        "The event stream ended without a terminal event (response.completed)."
                    )
                finally:
                    await resp_cm.__aexit__(None, None, None)
        except TimeoutError:
            raise stream.timeout_error() from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError) as exc:
            raise ConnectionClosedError(
                f"The event stream broke off ({type(exc).__name__}) before a terminal event.",
                received_any=stream.received,
            ) from None

    async def aclose(self) -> None:
        """Nothing of its own to close: the ClientSession belongs to the runtime."""


def _with_request_id(err: ResponsesError, request_id: str | None) -> ResponsesError:
    """An in-stream error carries the HTTP response's ``x-request-id`` (support asks for it)."""
    if request_id and getattr(err, "request_id", "") is None:
        err.request_id = request_id  # type: ignore[attr-defined]
    return err


# --- proxies and TLS errors (shared with the WebSocket transport) ---------------------------------------------


class EnvProxy(NamedTuple):
    """The proxy the environment names for one URL."""

    url: str  # as set, credentials included: handed to aiohttp only, never shown (ProxyError masks it)
    variable: str  # the environment variable it came from, named in errors


def env_proxy(url: str) -> EnvProxy | None:
    """The HTTP proxy to reach *url* through, from the environment as it is now, or None to go direct.

    Read on every connect, so a notebook that sets ``os.environ["HTTPS_PROXY"]`` is honoured by the next cell.
    ``wss://`` and ``https://`` use ``https_proxy`` / ``HTTPS_PROXY``; ``ws://`` and ``http://`` use ``http_proxy``
    / ``HTTP_PROXY``; ``all_proxy`` / ``ALL_PROXY`` is the fallback (as in curl, requests and httpx) when it is an
    HTTP proxy (a SOCKS one is left to the tools it was set for; elsewhere a SOCKS proxy is an error). Lower case
    wins, empty means unset. ``no_proxy`` / ``NO_PROXY`` bypasses with urllib's rules (``*``, a host, a domain
    suffix, ``host:port``). aiohttp's own ``trust_env`` is not used: it would look up ``WSS_PROXY`` for the
    WebSocket upgrade (which nobody sets) and read ``~/.netrc`` for the API host, whose credentials would clash
    with the ``Authorization`` header. A proxy without a scheme is ``http://`` (curl's rule).
    """
    parts = urlsplit(url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    env = os.environ
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY")
    if no_proxy and parts.hostname:
        port = parts.port or (443 if scheme == "https" else 80)
        if urllib.request.proxy_bypass_environment(f"{parts.hostname}:{port}", {"no": no_proxy}):
            return None
    for variable in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = env.get(variable, "").strip()
        if value:
            break
    else:
        return None
    if "://" not in value:
        value = f"http://{value}"
    proxy = urlsplit(value)
    if proxy.scheme.lower() not in ("http", "https"):
        if variable.lower() == "all_proxy":
            return None  # often a SOCKS proxy set for other tools; aiohttp ignores ALL_PROXY altogether
        raise ConfigError(
            f"{variable} names a {proxy.scheme}:// proxy ({masked_proxy_url(value)}); only HTTP proxies are "
            "supported (http://HOST:PORT, tunnelling with CONNECT).",
            hint=f"Point {variable} at the proxy's http:// address, or unset it (or list the host in NO_PROXY).",
        )
    register_secret(proxy.password)  # so no later message can show it, whoever builds the message
    return EnvProxy(value, variable)


def map_connect_error(
    exc: BaseException, url: str, proxy: EnvProxy | None, settings: Settings, *, brief: bool = False
) -> ResponsesError:
    """A failed connect as the package's error: a proxy that refused the tunnel (its answer to CONNECT) or cannot be
    reached names its variable, an untrusted certificate names the CA trusted; else a ConnectError naming the
    exception (its type only when *brief*)."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        variable = proxy.variable if proxy else "HTTPS_PROXY"
        return ProxyError(status=exc.status, proxy=proxy.url if proxy else None, variable=variable, url=url)
    if isinstance(exc, aiohttp.ClientProxyConnectionError) and proxy is not None:
        return ConnectError(
            f"Could not connect to the proxy {masked_proxy_url(proxy.url)} (from {proxy.variable}): "
            f"{_describe(exc.os_error)}.",
            url=url,
            hint=(
                f"Check {proxy.variable}: is the proxy running and reachable from here? If {_host(url)} can be "
                f"reached without a proxy, unset {proxy.variable} or add the host to NO_PROXY."
            ),
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        ca = settings.resolved_ca_file()
        source = "ca_file" if settings.ca_file else "SSL_CERT_FILE"
        trusted = f"the CA file {ca} (from {source})" if ca else "the system's certificate store"
        why = getattr(exc.certificate_error, "verify_message", None) or _describe(exc.certificate_error)
        via = f" (reached through the proxy from {proxy.variable})" if proxy else ""
        return ConnectError(
            f"The TLS certificate of {_host(url)}{via} is not trusted ({why}); trusted: {trusted}.",
            url=url,
            hint=(
                "If a proxy or firewall inspects TLS (a corporate CA), set SSL_CERT_FILE (or the ca_file setting) "
                "to a PEM file holding that CA, then run the cell again; verification is never turned off."
            ),
        )
    return ConnectError(
        f"Could not connect to {url}: {type(exc).__name__ if brief else _describe(exc)}.", url=url
    )


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
