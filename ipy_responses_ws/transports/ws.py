"""One pooled WebSocket: its single lifelong reader, and the leases (requests) it routes frames to.

* **One reader for the socket's whole life** (DESIGN.md §3, STYLE.md "what 0.1 taught"). aiohttp answers a
  server's ping only while someone reads the socket, so a socket nobody reads between cells is dropped by
  servers that ping (uvicorn-based gateways ping every 20 s and close after 20 s more). The reader also notices
  a close while idle, so a socket the server closed is never leased.
* **Routing.** A frame goes to the lease of its ``stream_id`` (``None`` for a plain request, a lane name for
  ``stream_id`` lanes, §1.5). Each lease owns a :class:`~..stream.ResponseStream` that decides what the frame
  means; the connection only moves frames. A frame with no lease (after a terminal event, for an abandoned lane,
  between turns) is stale and dropped: it is never read as the next answer.
* **Ending.** A lease ends in the reader, the moment its stream finishes or fails: it is unregistered at once,
  and its response id joins :attr:`WSConnection.finished`, so a late frame of it is dropped even after the next
  request started. A close, a binary frame or an unparseable payload fails every lease of the connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import (
    AuthenticationError,
    ConnectionClosedError,
    HandshakeError,
    ProtocolError,
    ProxyError,
    RateLimitError,
    ResponsesError,
    StreamTimeoutError,
)
from ..events import Notice, ServerEvent, error_from_event, parse_event
from ..redact import redact_url
from ..stream import Phase, ResponseStream, Step
from . import Emit, ssl_for
from .network import env_proxy, map_connect_error

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["WSConnection", "Lease", "open_websocket", "describe"]

log = logging.getLogger(__name__)

_TEXT = aiohttp.WSMsgType.TEXT
_BINARY = aiohttp.WSMsgType.BINARY
_ids = itertools.count(1)
_FINISHED_KEEP = 64  # recent response ids per connection whose late frames are recognised as stale


class _Finished:
    """A bounded set of the response ids that ended on one connection (membership test only)."""

    __slots__ = ("_ids", "_order")

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def add(self, rid: str | None) -> None:
        if rid is None or rid in self._ids:
            return
        self._ids.add(rid)
        self._order.append(rid)
        if len(self._order) > _FINISHED_KEEP:
            self._ids.discard(self._order.popleft())

    def __contains__(self, rid: object) -> bool:
        return rid in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class Lease:
    """One request on one connection: its stream, its consumer, and the future its turn awaits."""

    __slots__ = ("conn", "stream_id", "stream", "emit", "future", "timer", "context", "_armed_for")

    def __init__(
        self,
        conn: WSConnection,
        stream_id: str | None,
        stream: ResponseStream,
        emit: Emit,
        future: asyncio.Future[ServerEvent],
    ) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.stream = stream
        self.emit = emit
        self.future = future
        self.timer: asyncio.TimerHandle | None = None
        # The turn's context (a copy of the submitting cell's): the reader delivers this lease's events in it,
        # so widget messages of a background cell carry that cell's parent header, not the one of whichever
        # cell opened the socket.
        self.context = contextvars.copy_context()
        self._armed_for: Phase | None = None

    def arm(self) -> None:
        """(Re)start the timer for the stream's current wait (after sending, and when the phase changes)."""
        if self.timer is not None:
            self.timer.cancel()
        self._armed_for = self.stream.phase
        self.timer = asyncio.get_running_loop().call_at(self.stream.deadline(), self._check)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        """The timer fired: fail with the phase's timeout, or wait on if events moved the deadline."""
        if self.future.done():
            return
        loop = asyncio.get_running_loop()
        deadline = self.stream.deadline()
        if loop.time() >= deadline:
            self.fail(self.stream.timeout_error())
        else:
            self.timer = loop.call_at(deadline, self._check)

    @property
    def ended(self) -> bool:
        """The server finished this request (terminal event or a request-level error)."""
        return self.stream.done

    def fail(self, error: ResponsesError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class WSConnection:
    """One WebSocket, its reader task and what the pool knows about it."""

    __slots__ = (
        "id",
        "ws",
        "created",
        "url",
        "target",
        "leases",
        "lanes_used",
        "cache",
        "finished",
        "turns",
        "affinity",
        "last_used",
        "error",
        "retired",
        "reader",
        "_on_dead",
    )

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse[bool],
        created: float,
        url: str,
        target: int,
        on_dead: Callable[[WSConnection], None],
    ) -> None:
        self.id = f"ws-{next(_ids)}"
        self.ws = ws
        self.created = created
        self.url = url
        # Hash of (URL, handshake headers): a connection made for another base URL or key is never reused.
        self.target = target
        self.leases: dict[str | None, Lease] = {}
        self.lanes_used: set[str] = set()  # lane names ever sent: the server counts them all (§1.5)
        # The connection-local cache (§1.7): the last response each lane (None: no lane) completed.
        self.cache: dict[str | None, str | None] = {}
        self.finished = _Finished()
        self.turns = 0
        self.affinity: str | None = None  # the chain of its last plain (lane-less) request
        self.last_used = created
        self.error: ResponsesError | None = None  # why it died
        self.retired = False  # takes no new request (dirty, connection cap, lane names used up)
        self.reader: asyncio.Task[None] | None = None
        self._on_dead = on_dead

    def age(self, now: float) -> float:
        return now - self.created

    @property
    def alive(self) -> bool:
        return self.error is None and not self.ws.closed

    @property
    def usable(self) -> bool:
        return self.alive and not self.retired

    def start_reader(self) -> None:
        # An empty context: the reader outlives the cell that opened the socket and must not hold on to it.
        self.reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"{self.id}-reader", context=contextvars.Context()
        )

    # --- the one reader --------------------------------------------------------------------------------

    async def _read(self) -> None:
        ws = self.ws
        loop = asyncio.get_running_loop()
        error: ResponsesError | None = None
        try:
            while True:
                msg = await ws.receive()
                mtype = msg.type
                if mtype is _TEXT:
                    error = self._on_text(msg.data, loop.time())
                    if error is not None:
                        return
                elif mtype is _BINARY:
                    error = ProtocolError(
                        "The server sent a binary WebSocket frame; the Responses API sends text."
                    )
                    return
                else:
                    reason = msg.extra if isinstance(msg.extra, str) else None
                    code = ws.close_code
                    if mtype is aiohttp.WSMsgType.CLOSE and isinstance(msg.data, int):
                        # The code the server sent. ws.close_code turns 1006 when our autoclose reply fails
                        # because the server already tore the connection down (common over TLS).
                        code = msg.data
                    elif mtype is aiohttp.WSMsgType.ERROR and msg.data is not None:
                        reason = reason or describe(msg.data)
                    error = ConnectionClosedError(code=code, reason=reason)
                    return
        except asyncio.CancelledError:
            error = ConnectionClosedError(code=ws.close_code, reason="connection closed by the client")
            raise
        except Exception as exc:  # never let the reader die silently: fail its leases
            error = ConnectionClosedError(code=ws.close_code, reason=describe(exc))
        finally:
            self._die(error or ConnectionClosedError(code=ws.close_code, reason="connection closed"))

    def _on_text(self, data: Any, now: float) -> ResponsesError | None:
        """Route one text frame; return an error that kills the connection, or None."""
        try:
            ev = parse_event(data)
        except ProtocolError as exc:
            if not data.strip():
                return None  # an empty keep-alive frame (some gateways send them; docker-agent#2300)
            return exc
        sid = ev.data.get("stream_id")
        lease = self.leases.get(sid if sid.__class__ is str else None)
        if lease is None:
            if ev.type == "error" and sid is None and self.leases:
                # An error without stream_id while lanes are busy is connection-level (§1.10): it ends them all.
                err = error_from_event(ev)
                self.retired = True
                for other in list(self.leases.values()):
                    self._end(other)
                    other.fail(err)
                return None
            log.debug("%s: dropped a stale %s frame", self.id, ev.type)
            return None
        stream = lease.stream
        step = stream.feed(ev, now)
        if step is Step.EMIT:
            lease.context.run(lease.emit, stream.event)  # type: ignore[arg-type]
            if stream.phase is not lease._armed_for:
                lease.arm()  # the first output arrived: from now on the (shorter) idle wait applies
        elif step is Step.FINISH:
            self._end(lease)
            lease.context.run(lease.emit, stream.event)  # type: ignore[arg-type]
            if not lease.future.done():
                lease.future.set_result(stream.event)  # type: ignore[arg-type]
        elif step is not Step.DROP:
            # FAIL or RECONNECT (a DROP is a stale frame, or an error kept until response.failed)
            self._end(lease)
            if step is Step.RECONNECT:
                self.retired = True  # the server will take no new response here (connection cap, §1.9)
            lease.fail(stream.error)  # type: ignore[arg-type]
        return None

    def _end(self, lease: Lease) -> None:
        if self.leases.get(lease.stream_id) is lease:
            del self.leases[lease.stream_id]
        self.finished.add(lease.stream.response_id)

    def _die(self, error: ResponsesError) -> None:
        if self.error is not None:
            return
        self.error = error
        for lease in list(self.leases.values()):
            received = lease.stream.received
            if isinstance(error, ConnectionClosedError):
                lease.fail(
                    ConnectionClosedError(
                        error.message, code=error.code, reason=error.reason, received_any=received
                    )
                )
            else:
                lease.fail(error)
        self.leases.clear()
        self._on_dead(self)

    def snapshot(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "age": round(self.age(now), 3),
            "busy": bool(self.leases),
            "turns": self.turns,
            "affinity": self.affinity,
        }
        if self.lanes_used:
            out["lanes"] = sorted(self.lanes_used)
        return out


async def open_websocket(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], settings: Settings, emit: Emit
) -> aiohttp.ClientWebSocketResponse[bool]:
    """Open one WebSocket, mapping aiohttp's failures to the package's errors (the one place for it)."""
    proxy = env_proxy(url)  # read now: a notebook may set HTTPS_PROXY between cells
    emit(Notice("connecting", {"transport": "ws", "url": redact_url(url)}))
    failed: BaseException | None = None
    try:
        async with asyncio.timeout(settings.connect_timeout):
            ws = await http.ws_connect(
                url,
                # a wss:// upgrade goes through the proxy's CONNECT tunnel
                proxy=proxy.url if proxy else None,
                headers=headers,
                heartbeat=settings.heartbeat,
                ssl=ssl_for(settings),
                max_msg_size=0,  # no inbound limit: completed snapshots can be many MB (§1.12)
                compress=0,
                decode_text=False,  # parse_event decodes the bytes itself, once
                # ws_close bounds how long close() waits for the peer's close frame: a dead peer
                # must not stall a cancel or the shutdown.
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=1.0),
            )
    except aiohttp.WSServerHandshakeError as exc:
        raise _handshake_error(exc.status, url, exc.message) from None
    except TimeoutError:
        raise StreamTimeoutError(phase="connect", seconds=settings.connect_timeout) from None
    except (aiohttp.ClientError, OSError) as exc:
        failed = (
            exc  # mapped below, outside this handler: aiohttp's exception may hold the proxy's credentials
        )
    if failed is not None:
        err = map_connect_error(failed, url, proxy, settings)
        if isinstance(err, ProxyError):
            err.phase = "handshake"  # type: ignore[attr-defined]  # like a refused upgrade: SSE is tried once
        raise err
    log.debug("connected %s", redact_url(url))
    return ws


def _handshake_error(status: int, url: str, message: str) -> ResponsesError:
    """401/403 → AuthenticationError; 429 → RateLimitError; else HandshakeError; each marked ``phase="handshake"``
    so the recovery policy can tell a refused upgrade (SSE may still work) from a refused request."""
    # No "(HTTP nnn)" in the messages: APIError.__str__ appends the status from the field.
    err: ResponsesError
    if status in (401, 403):
        err = AuthenticationError(
            "The server rejected the API key on the WebSocket handshake.", status=status
        )
    elif status == 429:
        err = RateLimitError("Rate limited on the WebSocket handshake.", status=429)
    else:
        err = HandshakeError(status=status, url=url, body=message or None)
    err.phase = "handshake"  # type: ignore[attr-defined]
    return err


async def close_ws(conn: WSConnection) -> None:
    """Close with 1000 (best effort), then wait for the reader to finish."""
    try:
        await conn.ws.close(code=aiohttp.WSCloseCode.OK)
    except Exception as exc:  # closing is best effort
        log.debug("closing %s: %s", conn.id, type(exc).__name__)
    reader = conn.reader
    if reader is not None and not reader.done():
        # After close() the reader sees the close and ends by itself; a stuck one is cancelled.
        await asyncio.wait({reader}, timeout=1.0)
        reader.cancel()


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
