"""The WebSocket transport: a bounded pool of exclusively leased connections.

Rules (PROTOCOL.md §1, DESIGN.md §3, PRIOR-ART.md §3):

* **Lazy**: no socket until the first turn. URL = base URL with http→ws / https→wss + ``/responses``.
* **One in-flight response per connection.** A turn leases a connection exclusively from ``response.create``
  to its terminal event and reads it itself (one reader per socket). A concurrent turn gets another
  connection; at ``pool_size`` open connections further turns wait for one to be released.
* **Never reuse a dirty connection.** Only a connection whose response reached a terminal event goes back
  to the idle list. After a cancel, timeout, error event or protocol error it is closed (there is no
  cancel event; the server would keep streaming the old response into it, §1.6, §7.3).
* **Affinity.** A released connection remembers the chain (``affinity``) and the id of the response it just
  completed (its connection-local cache, §1.7). A chain gets its own idle connection back first, then an
  unclaimed one, then a new one, and steals another chain's idle connection only when the pool is full.
* **Health.** aiohttp heartbeats (``heartbeat=``) close a connection whose peer stopped answering pings;
  idle connections that are closed or older than ``max_connection_age`` are dropped at lease time (rotation
  before the 60-minute cap, §1.9).
* **Retries, at most one of each, never after an event was delivered:** a reused connection that fails
  before anything arrived (dead idle socket) → one retry on a fresh connection (Notice ``retry``);
  ``websocket_connection_limit_reached`` → reconnect and retry (Notice ``reconnect``).
* **Close** sends close code 1000 on every connection, idle or busy.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import (
    APIError,
    AuthenticationError,
    ConnectError,
    ConnectionClosedError,
    HandshakeError,
    PoolClosedError,
    ProtocolError,
    RateLimitError,
    ResponsesError,
    StreamTimeoutError,
    api_error_from_status,
)
from ..events import Notice, ServerEvent, error_from_event, from_legacy_done, parse_event
from . import ConnectionInfo, Emit, MakeRequest, Outcome, ws_target

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["WSPool", "WSConnection"]

log = logging.getLogger(__name__)

_TEXT = aiohttp.WSMsgType.TEXT
_BINARY = aiohttp.WSMsgType.BINARY
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_CONN_LIMIT_CODE = "websocket_connection_limit_reached"
_dumps = json.dumps
_ids = itertools.count(1)


class _Reconnect(Exception):
    """Internal: the server asked for a new connection (connection cap)."""

    def __init__(self, received: bool) -> None:
        super().__init__("websocket_connection_limit_reached")
        self.received = received  # whether this turn's response had already started streaming


class WSConnection:
    """One leased-or-idle WebSocket and what the pool knows about it."""

    __slots__ = ("id", "ws", "created", "turns", "busy", "affinity", "cached_response_id", "url", "target")

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse[bool], created: float, url: str, target: int = 0
    ) -> None:
        self.id = f"ws-{next(_ids)}"
        self.ws = ws
        self.created = created
        self.turns = 0
        self.busy = False
        self.affinity: str | None = None
        self.cached_response_id: str | None = None
        self.url = url
        # Hash of (URL, handshake headers): a connection made for another base URL or key is never reused.
        self.target = target

    def age(self, now: float) -> float:
        return now - self.created

    def looks_dead(self) -> bool:
        """Best-effort check without reading: closed by us, by the heartbeat, or the transport is gone."""
        ws = self.ws
        if ws.closed or ws.close_code is not None or ws.exception() is not None:
            return True
        conn = getattr(ws, "_conn", None)  # aiohttp internals; absence just means "unknown"
        transport = getattr(conn, "transport", None) if conn is not None else None
        return conn is not None and (transport is None or transport.is_closing())


class WSPool:
    """Bounded pool of WebSocket connections, owned by one session, living on the runtime loop."""

    name = "ws"

    def __init__(self, http_session: Callable[[], aiohttp.ClientSession]) -> None:
        self._http = http_session
        self._idle: list[WSConnection] = []
        self._busy: set[WSConnection] = set()
        self._connecting = 0
        self._cond: asyncio.Condition | None = None
        self._waiting = 0  # leases parked in cond.wait(); a release only notifies when there are some
        self._closers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.handshakes = 0  # connections opened, for status and tests

    # --- public ----------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def connections(self) -> list[dict[str, Any]]:
        """Snapshot for ``status()``: id, age, busy, turns (call on the loop thread)."""
        now = asyncio.get_running_loop().time() if self._cond is not None else 0.0
        return [
            {
                "id": c.id,
                "age": round(c.age(now), 3),
                "busy": c.busy,
                "turns": c.turns,
                "affinity": c.affinity,
            }
            for c in [*self._busy, *self._idle]
        ]

    async def run(
        self,
        make_request: MakeRequest,
        emit: Emit,
        *,
        settings: Settings,
        affinity: str | None = None,
    ) -> Outcome:
        """Lease a connection, send one ``response.create``, stream to the terminal event."""
        retried = reconnected = False
        fresh_only = False
        while True:
            conn, reused = await self._lease(settings, emit, affinity, fresh_only=fresh_only)
            clean = False
            try:
                now = asyncio.get_running_loop().time()
                info = ConnectionInfo("ws", conn.id, reused, conn.age(now), conn.cached_response_id)
                body = make_request(info)
                frame = {"type": "response.create", **body}
                frame.pop("stream", None)  # "stream is implicit over WebSocket and should not be sent" (§1.3)
                terminal, error_event = await self._exchange(conn, frame, emit, settings)
                clean = True
                conn.turns += 1
                conn.affinity = affinity
                conn.cached_response_id = (
                    terminal.response.get("id")
                    if terminal.type == "response.completed" and terminal.response
                    else None
                )
                return Outcome(
                    "ws",
                    terminal,
                    connection_id=conn.id,
                    request=frame,
                    error_event=error_event,
                    retried=retried,
                    reconnected=reconnected,
                )
            except _Reconnect as why:
                if reconnected or why.received:
                    raise connection_limit_error() from None
                reconnected = True
                fresh_only = True
                emit(Notice("reconnect", {"reason": "connection age limit reached on the server"}))
            except APIError:
                # Only a request-level error event gets here (no response.created, nothing else will come,
                # PROTOCOL.md §1.10): the socket is clean, e.g. for the resend after previous_response_not_found.
                # The server's cache is no longer what we assumed, so forget it.
                clean = True
                conn.cached_response_id = None
                raise
            except ConnectionClosedError as exc:
                # A reused idle socket that died unnoticed fails before any event: retry once, fresh.
                if reused and not exc.received_any and not retried:
                    retried = True
                    fresh_only = True
                    emit(Notice("retry", {"reason": f"reused connection was closed ({exc.code})"}))
                else:
                    raise
            finally:
                self._release(conn, clean=clean)

    async def warmup(
        self, settings: Settings, request: dict[str, Any], affinity: str | None = None
    ) -> Outcome:
        """Open (or reuse) a connection and run a ``generate: false`` create on it (§1.4)."""
        return await self.run(
            lambda info: {**request, "generate": False},
            lambda _item: None,
            settings=settings,
            affinity=affinity,
        )

    async def aclose(self) -> None:
        """Close every connection with 1000 (idle and busy). Idempotent."""
        self._closed = True
        conns = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for c in conns:
            self._close_later(c)
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()
        if self._closers:
            await asyncio.wait(list(self._closers), timeout=3.0)

    # --- leasing -----------------------------------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def _lease(
        self, settings: Settings, emit: Emit, affinity: str | None, *, fresh_only: bool
    ) -> tuple[WSConnection, bool]:
        cond = self._condition()
        loop = asyncio.get_running_loop()
        url, headers, target = ws_target(settings)
        async with cond:
            while True:
                if self._closed:
                    raise PoolClosedError()
                now = loop.time()
                # Drop idle connections that died, are too old to start a turn on (rotation), or were made
                # for another base URL / key / header set (settings changed since).
                for c in [
                    c
                    for c in self._idle
                    if c.target != target or c.looks_dead() or c.age(now) >= settings.max_connection_age
                ]:
                    self._idle.remove(c)
                    self._close_later(c)
                pick = None
                if not fresh_only:
                    pick = next((c for c in self._idle if c.affinity == affinity), None) or next(
                        (c for c in self._idle if c.affinity is None), None
                    )
                total = len(self._idle) + len(self._busy) + self._connecting
                if pick is None and total >= settings.pool_size and self._idle:
                    # Full: steal the least recently used idle connection (its chain may need a full resend).
                    pick = self._idle[0]
                    if fresh_only:
                        self._idle.remove(pick)
                        self._close_later(pick)
                        pick = None
                        total -= 1
                if pick is not None:
                    self._idle.remove(pick)
                    pick.busy = True
                    self._busy.add(pick)
                    emit(
                        Notice(
                            "connected",
                            {
                                "transport": "ws",
                                "reused": True,
                                "connection_id": pick.id,
                                "age": pick.age(now),
                            },
                        )
                    )
                    return pick, True
                if total < settings.pool_size:
                    self._connecting += 1
                    break
                self._waiting += 1
                try:
                    await cond.wait()
                finally:
                    self._waiting -= 1
        try:
            conn = await self._connect(url, headers, target, settings, emit)
        finally:
            self._connecting -= 1
        if self._closed:
            self._close_later(conn)
            raise PoolClosedError()
        conn.busy = True
        self._busy.add(conn)
        emit(Notice("connected", {"transport": "ws", "reused": False, "connection_id": conn.id, "age": 0.0}))
        return conn, False

    def _release(self, conn: WSConnection, *, clean: bool) -> None:
        self._busy.discard(conn)
        conn.busy = False
        if clean and not self._closed and not conn.looks_dead():
            self._idle.append(conn)
        else:
            self._close_later(conn)
        cond = self._cond
        # A lease checks the pool and parks with no await in between (one loop), so with nobody parked there
        # is nobody to wake: skip the per-turn notify task (docs/benchmarks.md: it delayed the caller's wake-up).
        if cond is not None and self._waiting:
            # notify needs the lock; take it in a task so release works from finally blocks of cancelled turns.
            async def _notify() -> None:
                async with cond:
                    cond.notify()

            task = asyncio.get_running_loop().create_task(_notify())
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)

    def _close_later(self, conn: WSConnection) -> None:
        """Close *conn* with 1000 in the background (tracked, so ``aclose`` can wait for it)."""
        if conn.ws.closed:
            return
        task = asyncio.get_running_loop().create_task(self._close_ws(conn))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    @staticmethod
    async def _close_ws(conn: WSConnection) -> None:
        try:
            await conn.ws.close(code=aiohttp.WSCloseCode.OK)
        except Exception as exc:  # closing is best effort
            log.debug("closing %s: %s", conn.id, type(exc).__name__)

    # --- connecting --------------------------------------------------------------------------------

    async def _connect(
        self, url: str, headers: dict[str, str], target: int, settings: Settings, emit: Emit
    ) -> WSConnection:
        emit(Notice("connecting", {"transport": "ws", "url": url}))
        ws = await open_websocket(self._http(), url, headers, settings)
        self.handshakes += 1
        return WSConnection(ws, asyncio.get_running_loop().time(), url, target)

    # --- one exchange ------------------------------------------------------------------------------

    async def _exchange(
        self, conn: WSConnection, frame: dict[str, Any], emit: Emit, settings: Settings
    ) -> tuple[ServerEvent, ServerEvent | None]:
        ws = conn.ws
        try:
            await ws.send_str(_dumps(frame, separators=(",", ":")))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise ConnectionClosedError(
                f"Could not send the request: {_describe(exc)}.", code=ws.close_code, received_any=False
            ) from None
        loop = asyncio.get_running_loop()
        idle = settings.idle_timeout
        slack = idle * 0.05  # re-arm the idle timer only when it drifted 5%: one timer op per ~N events
        received = started = False
        error_event: ServerEvent | None = None
        deadline = loop.time() + settings.first_event_timeout
        try:
            async with asyncio.timeout_at(deadline) as timer:
                while True:
                    msg = await ws.receive()
                    mtype = msg.type
                    if mtype is _TEXT:
                        try:
                            ev = parse_event(msg.data)
                        except ProtocolError:
                            if not msg.data.strip():
                                continue  # empty keep-alive frame (some gateways send them; docker-agent#2300)
                            raise
                        now = loop.time()
                        if not received or deadline - now < idle - slack:
                            received = True
                            deadline = now + idle
                            timer.reschedule(deadline)
                        etype = ev.type
                        if etype == "error":
                            err = error_from_event(ev)
                            if err.code == _CONN_LIMIT_CODE:
                                raise _Reconnect(started)
                            if started:
                                # An error inside a started response: response.failed follows (§2.7, §1.10).
                                if error_event is None:
                                    error_event = ev
                                continue
                            raise err  # request-level: no response.created, nothing else will come
                        if etype == "response.created":
                            started = True
                        elif etype == "response.done":
                            ev = from_legacy_done(ev) or ev
                            etype = ev.type
                        emit(ev)
                        if etype in _TERMINAL:
                            return ev, error_event
                    elif mtype is _BINARY:
                        raise ProtocolError(
                            "The server sent a binary WebSocket frame; the Responses API sends text."
                        )
                    else:
                        code = ws.close_code
                        reason = msg.extra if isinstance(msg.extra, str) else None
                        if msg.type is aiohttp.WSMsgType.ERROR and msg.data is not None:
                            reason = reason or _describe(msg.data)
                        raise ConnectionClosedError(code=code, reason=reason, received_any=received)
        except TimeoutError:
            phase = "idle" if received else "first_event"
            seconds = idle if received else settings.first_event_timeout
            raise StreamTimeoutError(phase=phase, seconds=seconds) from None


def connection_limit_error() -> APIError:
    """``websocket_connection_limit_reached`` again on a fresh connection: give up with a clear error (§1.9)."""
    return api_error_from_status(
        400,
        message="The server keeps refusing new responses on fresh connections "
        "(websocket_connection_limit_reached).",
        code=_CONN_LIMIT_CODE,
    )


async def open_websocket(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], settings: Settings
) -> aiohttp.ClientWebSocketResponse[bool]:
    """Open one WebSocket, mapping aiohttp's failures to the package's errors (the one place for it)."""
    try:
        async with asyncio.timeout(settings.connect_timeout):
            ws = await http.ws_connect(
                url,
                headers=headers,
                heartbeat=settings.heartbeat,
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
        raise ConnectError(f"Could not connect to {url}: {_describe(exc)}.", url=url) from None
    log.debug("connected %s", url)
    return ws


def _handshake_error(status: int, url: str, message: str) -> ResponsesError:
    """401/403 → AuthenticationError (never fall back); 429 → RateLimitError; else HandshakeError."""
    # No "(HTTP nnn)" in the messages: APIError.__str__ appends the status from the field.
    if status in (401, 403):
        return AuthenticationError(
            "The server rejected the API key on the WebSocket handshake.", status=status
        )
    if status == 429:
        return RateLimitError("Rate limited on the WebSocket handshake.", status=429)
    return HandshakeError(status=status, url=url, body=message or None)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
