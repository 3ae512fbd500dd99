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
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp

from ..errors import (
    ConnectionClosedError,
    ProtocolError,
    ResponsesError,
    StreamTimeoutError,
)
from ..events import Notice, error_from_event, error_from_http
from ..redact import redact_url
from ..sse import SSEDecoder
from ..stream import ResponseStream, Step
from . import ConnectionInfo, Emit, MakeRequest, Outcome, ssl_for
from .network import env_proxy, map_connect_error

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["SSETransport", "WS_ONLY_FIELDS"]

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
