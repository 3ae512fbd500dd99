"""Opt-in ``stream_id`` lanes: several chains share one WebSocket (``Settings.use_stream_lanes``).

PROTOCOL.md §1.5: a named lane is an ordered FIFO on one connection; different lanes run concurrently
and their events interleave, each tagged with ``stream_id``; at most 16 active responses and 32 named
lanes per connection; each lane caches its own latest response (§1.7). A server that predates lanes
(the old guide) would reject or ignore ``stream_id``, so this mode is off by default.

How it works here:

* each chain maps to one lane name (:func:`lane_id`, stable and valid per the ``stream_id`` pattern; a
  ``.N`` generation suffix after an abandon, below);
* each connection has **one reader task** that routes frames by ``stream_id`` to the turn consuming that
  lane (an ``asyncio.Queue`` per lane), so one socket still has exactly one reader;
* a turn that ends without its terminal event (cancel, timeout) **abandons** its lane: the server keeps
  streaming that response (there is no cancel event, §1.6), so the reader drops that lane's frames
  until the abandoned response's terminal (or request-level error) arrived, then forgets the lane. The
  chain's next turn goes to a **fresh lane name** (generation ``.N``): on the old lane it would queue FIFO
  behind the response the server is still generating (measured: it waited the whole 2 s stall). The new
  lane caches nothing, so a ``store=false`` chain resends its transcript;
* a connection-level event (an ``error`` without ``stream_id``, e.g. the connection cap), a close, a binary
  frame or invalid JSON fails every lane of that connection, and the connection is discarded;
* connections are picked by lane affinity first, then by free capacity; at most ``pool_size`` are open.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import (
    ConnectionClosedError,
    PoolClosedError,
    ProtocolError,
    ResponsesError,
    StreamTimeoutError,
)
from ..events import Notice, ServerEvent, error_from_event, from_legacy_done, parse_event
from . import ConnectionInfo, Emit, MakeRequest, Outcome, ws_target
from .ws import _CONN_LIMIT_CODE, connection_limit_error, open_websocket

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["LanePool", "lane_id", "MAX_ACTIVE", "MAX_LANES"]

log = logging.getLogger(__name__)

MAX_ACTIVE = 16  # active responses per connection (§1.5)
MAX_LANES = 32  # distinct named lanes per connection (§1.5)
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_ids = itertools.count(1)


def lane_id(chain: str | None) -> str:
    """A valid, stable ``stream_id`` for a chain name (``^[A-Za-z0-9_.-]{1,256}$``, unique per name)."""
    name = chain or "default"
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{_BAD.sub('_', name)[:64]}.{digest}"


class _Closed:
    """Marker put into lane queues when the connection failed."""

    __slots__ = ("error",)

    def __init__(self, error: ResponsesError) -> None:
        self.error = error


class _Lane:
    __slots__ = (
        "name",
        "queue",
        "busy",
        "skip",
        "skip_started",
        "cached_response_id",
        "received",
        "retired",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: asyncio.Queue[Any] | None = None
        self.busy = False
        self.skip = 0  # abandoned responses whose end has not arrived yet
        self.skip_started = False
        self.cached_response_id: str | None = None
        self.received = False  # the current turn got at least one event
        self.retired = False  # abandoned: the chain moved to a fresh lane; forget it once drained


class LaneConnection:
    """One shared WebSocket with a reader task routing frames to lanes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool], created: float, target: int) -> None:
        self.id = f"lanes-{next(_ids)}"
        self.ws = ws
        self.created = created
        self.target = target
        self.lanes: dict[str, _Lane] = {}
        self.turns = 0
        self.failed: ResponsesError | None = None
        self.reader: asyncio.Task[None] | None = None

    @property
    def active(self) -> int:
        return sum(1 for lane in self.lanes.values() if lane.busy)

    def usable(self) -> bool:
        return self.failed is None and not self.ws.closed

    async def read(self) -> None:
        """The only reader of this socket."""
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    try:
                        ev = parse_event(msg.data)
                    except ProtocolError as exc:
                        if not msg.data.strip():
                            continue  # empty keep-alive frame
                        self._fail(exc)
                        return
                    self._route(ev)
                    if self.failed is not None:
                        return
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self._fail(ProtocolError("The server sent a binary WebSocket frame; expected text."))
                    return
                else:
                    reason = msg.extra if isinstance(msg.extra, str) else None
                    self._fail(ConnectionClosedError(code=ws.close_code, reason=reason))
                    return
        finally:
            if self.failed is None:
                self._fail(ConnectionClosedError(code=ws.close_code, reason="connection closed"))

    def _route(self, ev: ServerEvent) -> None:
        sid = ev.data.get("stream_id")
        lane = self.lanes.get(sid) if isinstance(sid, str) else None
        if lane is None:
            if ev.type == "error":  # connection-level (§1.10: an error without stream_id)
                self._fail(error_from_event(ev))
            return  # other unscoped events have no consumer here
        if lane.skip:
            etype = ev.type
            if etype == "response.created":
                lane.skip_started = True
            elif (
                etype in _TERMINAL or etype == "response.done" or (etype == "error" and not lane.skip_started)
            ):
                lane.skip -= 1
                lane.skip_started = False
                if not lane.skip and lane.retired and not lane.busy:
                    del self.lanes[lane.name]  # drained: frees its place among MAX_LANES
            return
        if lane.queue is not None:
            lane.queue.put_nowait(ev)

    def _fail(self, error: ResponsesError) -> None:
        if self.failed is not None:
            return
        self.failed = error
        for lane in self.lanes.values():
            if lane.busy and lane.queue is not None:
                lane.queue.put_nowait(_Closed(error))


class LanePool:
    """WebSocket connections shared by chains through ``stream_id`` lanes."""

    name = "ws"

    def __init__(self, http_session: Callable[[], aiohttp.ClientSession]) -> None:
        self._http = http_session
        self._conns: list[LaneConnection] = []
        self._connecting = 0
        self._cond: asyncio.Condition | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.handshakes = 0
        # Lane generation per chain: bumped when a turn abandons its lane, so the chain's next turn does not
        # queue FIFO behind the abandoned response the server is still generating (§1.5).
        self._generation: dict[str, int] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def connections(self) -> list[dict[str, Any]]:
        now = asyncio.get_running_loop().time()
        return [
            {
                "id": c.id,
                "age": round(now - c.created, 3),
                "busy": c.active > 0,
                "turns": c.turns,
                "lanes": sorted(c.lanes),
            }
            for c in self._conns
        ]

    async def run(
        self,
        make_request: MakeRequest,
        emit: Emit,
        *,
        settings: Settings,
        affinity: str | None = None,
    ) -> Outcome:
        key = affinity or "default"
        retried = reconnected = fresh_only = False
        while True:
            gen = self._generation.get(key, 0)
            name = lane_id(key) if not gen else f"{lane_id(key)}.{gen}"
            conn, lane, reused = await self._lease(settings, emit, name, fresh_only=fresh_only)
            received = False
            ended = False  # the server finished this request (terminal or request-level error)
            try:
                loop = asyncio.get_running_loop()
                info = ConnectionInfo(
                    "ws", conn.id, reused, loop.time() - conn.created, lane.cached_response_id, name
                )
                frame = {"type": "response.create", **make_request(info), "stream_id": name}
                frame.pop("stream", None)
                lane.cached_response_id = None  # until this response completes, the cache is in flux
                try:
                    await conn.ws.send_str(json.dumps(frame, separators=(",", ":")))
                except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                    ended = True
                    raise ConnectionClosedError(
                        f"Could not send the request: {type(exc).__name__}."
                    ) from None
                terminal, error_event, ended = await self._consume(conn, lane, emit, settings)
                conn.turns += 1
                if terminal.type == "response.completed" and terminal.response:
                    lane.cached_response_id = terminal.response.get("id")
                return Outcome(
                    "ws",
                    terminal,
                    connection_id=conn.id,
                    request=frame,
                    error_event=error_event,
                    retried=retried,
                    reconnected=reconnected,
                )
            except _ReconnectLanes:
                ended = True
                if reconnected or lane.received:
                    raise connection_limit_error() from None
                reconnected = fresh_only = True
                emit(Notice("reconnect", {"reason": "connection age limit reached on the server"}))
            except ConnectionClosedError as exc:
                ended = True
                received = lane.received
                if reused and not received and not retried:
                    retried = fresh_only = True
                    emit(Notice("retry", {"reason": f"reused connection was closed ({exc.code})"}))
                else:
                    raise ConnectionClosedError(
                        exc.message, code=exc.code, reason=exc.reason, received_any=received
                    ) from None
            except _LaneEnded as end:
                ended = True
                raise end.error from None
            finally:
                self._release(conn, lane, abandoned=not ended)
                if not ended:
                    self._generation[key] = gen + 1

    async def _consume(
        self, conn: LaneConnection, lane: _Lane, emit: Emit, settings: Settings
    ) -> tuple[ServerEvent, ServerEvent | None, bool]:
        queue = lane.queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        idle = settings.idle_timeout
        received = started = False
        error_event: ServerEvent | None = None
        deadline = loop.time() + settings.first_event_timeout
        try:
            async with asyncio.timeout_at(deadline) as timer:
                while True:
                    item = await queue.get()
                    if item.__class__ is _Closed:
                        err = item.error
                        if isinstance(err, ResponsesError) and getattr(err, "code", None) == _CONN_LIMIT_CODE:
                            raise _ReconnectLanes()
                        if isinstance(err, ConnectionClosedError):
                            raise err
                        raise _LaneEnded(err)
                    ev: ServerEvent = item
                    now = loop.time()
                    if not received or deadline - now < idle * 0.95:
                        received = lane.received = True
                        deadline = now + idle
                        timer.reschedule(deadline)
                    if ev.type == "error":
                        if started:
                            error_event = error_event or ev
                            continue
                        raise _LaneEnded(error_from_event(ev))
                    if ev.type == "response.created":
                        started = True
                    elif ev.type == "response.done":
                        ev = from_legacy_done(ev) or ev
                    emit(ev)
                    if ev.type in _TERMINAL:
                        return ev, error_event, True
        except TimeoutError:
            raise StreamTimeoutError(
                phase="idle" if received else "first_event",
                seconds=idle if received else settings.first_event_timeout,
            ) from None

    # --- leasing -----------------------------------------------------------------------------------

    async def _lease(
        self, settings: Settings, emit: Emit, name: str, *, fresh_only: bool
    ) -> tuple[LaneConnection, _Lane, bool]:
        if self._cond is None:
            self._cond = asyncio.Condition()
        cond = self._cond
        loop = asyncio.get_running_loop()
        url, headers, target = ws_target(settings)
        async with cond:
            while True:
                if self._closed:
                    raise PoolClosedError()
                now = loop.time()
                for c in list(self._conns):
                    stale = c.target != target or now - c.created >= settings.max_connection_age
                    if not c.usable() or (stale and c.active == 0):
                        self._drop(c)
                candidates = [
                    c
                    for c in self._conns
                    if c.usable()
                    and c.target == target
                    and now - c.created < settings.max_connection_age
                    and c.active < MAX_ACTIVE
                    and not (c.lanes.get(name) and c.lanes[name].busy)
                    and (name in c.lanes or len(c.lanes) < MAX_LANES)
                ]
                pick = None
                if not fresh_only:
                    pick = next((c for c in candidates if name in c.lanes), None) or min(
                        candidates, key=lambda c: c.active, default=None
                    )
                if pick is not None:
                    emit(
                        Notice(
                            "connected",
                            {
                                "transport": "ws",
                                "reused": True,
                                "connection_id": pick.id,
                                "age": now - pick.created,
                                "stream_id": name,
                            },
                        )
                    )
                    return pick, self._claim(pick, name), True
                if len(self._conns) + self._connecting < settings.pool_size:
                    self._connecting += 1
                    break
                if fresh_only:
                    idle = next((c for c in self._conns if c.active == 0), None)
                    if idle is not None:
                        self._drop(idle)
                        continue
                await cond.wait()
        try:
            emit(Notice("connecting", {"transport": "ws", "url": url}))
            ws = await open_websocket(self._http(), url, headers, settings)
        finally:
            self._connecting -= 1
        self.handshakes += 1
        conn = LaneConnection(ws, loop.time(), target)
        if self._closed:
            self._spawn(conn.ws.close())
            raise PoolClosedError()
        conn.reader = self._spawn(conn.read())
        self._conns.append(conn)
        emit(
            Notice(
                "connected",
                {"transport": "ws", "reused": False, "connection_id": conn.id, "age": 0.0, "stream_id": name},
            )
        )
        return conn, self._claim(conn, name), False

    @staticmethod
    def _claim(conn: LaneConnection, name: str) -> _Lane:
        lane = conn.lanes.get(name)
        if lane is None:
            lane = conn.lanes[name] = _Lane(name)
        lane.busy = True
        lane.received = False
        lane.queue = asyncio.Queue()
        return lane

    def _release(self, conn: LaneConnection, lane: _Lane, *, abandoned: bool) -> None:
        lane.busy = False
        lane.queue = None
        if abandoned and conn.usable():
            lane.skip += 1
            lane.cached_response_id = None
            lane.retired = True  # run() moves the chain to a fresh lane name
        if not conn.usable():
            self._drop(conn)
        cond = self._cond
        if cond is not None:

            async def _notify() -> None:
                async with cond:
                    cond.notify_all()

            self._spawn(_notify())

    def _drop(self, conn: LaneConnection) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
        if conn.reader is not None and not conn.reader.done():
            conn.reader.cancel()
        if not conn.ws.closed:
            self._spawn(_close(conn.ws))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._conns):
            conn._fail(ConnectionClosedError(code=1000, reason="session closed"))
            self._drop(conn)
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)


async def _close(ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
    try:
        await ws.close(code=aiohttp.WSCloseCode.OK)
    except Exception as exc:  # best effort
        log.debug("closing lane connection: %s", type(exc).__name__)


class _ReconnectLanes(Exception):
    """Internal: the connection hit the server's age cap."""


class _LaneEnded(Exception):
    """Internal: the lane's request ended with an error (the lane itself stays clean)."""

    def __init__(self, error: ResponsesError) -> None:
        super().__init__(str(error))
        self.error = error
