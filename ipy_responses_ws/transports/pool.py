"""The WebSocket pool: bounded, lazily connected, one lifelong reader per socket, with optional lanes.

Rules (PROTOCOL.md §1, DESIGN.md §3, PRIOR-ART.md §3):

* **Lazy and bounded.** No socket until the first turn; at most ``pool_size`` open (or opening). URL = base
  URL with http→ws / https→wss + ``/responses``, query kept.
* **A plain request holds its connection exclusively** from ``response.create`` to the terminal event. With
  ``use_stream_lanes`` a connection carries up to :data:`MAX_ACTIVE` requests at once, one per ``stream_id``
  lane (a chain's lane name is :func:`lane_id`), and every lane name ever sent counts toward the server's
  :data:`MAX_LANES`: a connection whose names are used up takes no new lane and is retired once idle.
* **Never reuse a dirty connection.** A plain request that ends without its terminal event (cancel, timeout)
  leaves the server streaming into the socket (there is no cancel event, §1.6): the connection is closed. An
  abandoned lane is only renamed: the chain's next turn takes a new lane name (``.N``), and the reader drops
  the old lane's frames.
* **Which connection.** A turn is leased, in order: the idle connection whose cache (§1.7) holds the chain's
  parent (``want_cached``), the chain's own idle connection, an unclaimed idle one, a new one while there is
  room, else (full) the least recently used idle one. Otherwise it waits; it is woken when a request ends, a
  connection dies, **or a connect fails** (so a queued cell never waits forever behind a failing upgrade).
* **Health.** Idle connections are read all the time (pings answered, closes noticed at once); connections
  past ``max_connection_age`` (rotation before the server's 60-minute cap, §1.9), made for other settings, or
  retired are closed at lease time when idle.
* **No retries here.** Failures are raised as typed errors; what to do about them is :mod:`..recovery`'s call.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from ..errors import ConnectionClosedError, PoolClosedError
from ..events import Notice, ServerEvent
from ..stream import Phase, ResponseStream
from . import ConnectionInfo, Emit, MakeRequest, Outcome, ws_target
from .ws import Lease, WSConnection, close_ws, describe, open_websocket

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["WSPool", "lane_id", "MAX_ACTIVE", "MAX_LANES"]

log = logging.getLogger(__name__)

MAX_ACTIVE = 16  # active responses per connection (§1.5)
MAX_LANES = 32  # distinct named lanes per connection, counted by the server for the connection's life (§1.5)
_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_dumps = json.dumps


def lane_id(chain: str | None) -> str:
    """A valid, stable ``stream_id`` for a chain name (``^[A-Za-z0-9_.-]{1,256}$``, unique per name)."""
    name = chain or "default"
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{_BAD.sub('_', name)[:64]}.{digest}"


class WSPool:
    """Bounded pool of WebSocket connections, owned by one session, living on the runtime loop."""

    name = "ws"

    def __init__(self, http_session: Callable[[], aiohttp.ClientSession]) -> None:
        self._http = http_session
        self._conns: list[WSConnection] = []
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        # Lane generation per chain: bumped when a turn abandons its lane, so the chain's next turn does not
        # queue FIFO behind the abandoned response the server is still generating (§1.5).
        self._generation: dict[str, int] = {}
        self.handshakes = 0  # connections opened, for status and tests

    # --- public ----------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def connections(self) -> list[dict[str, Any]]:
        """Snapshot for ``status()``: id, age, busy, turns, affinity (call on the loop thread)."""
        if not self._conns:
            return []
        now = asyncio.get_running_loop().time()
        return [c.snapshot(now) for c in self._conns]

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
        """Lease a connection, send one ``response.create``, stream it to its terminal event.

        Raises the request's error (typed; see :mod:`..recovery` for what a turn does with it). *fresh* asks
        for a new connection (a retry after a dead or capped one).
        """
        key = affinity or "default"
        lane: str | None = None
        if settings.use_stream_lanes:
            gen = self._generation.get(key, 0)
            lane = lane_id(key) if not gen else f"{lane_id(key)}.{gen}"
        conn, reused = await self._lease(settings, emit, affinity, lane, want_cached, fresh)
        loop = asyncio.get_running_loop()
        stream = ResponseStream(
            first_output_timeout=settings.first_event_timeout,
            idle_timeout=settings.idle_timeout,
            finished=conn.finished,
        )
        lease = Lease(conn, lane, stream, emit, loop.create_future())
        try:
            now = loop.time()
            info = ConnectionInfo("ws", conn.id, reused, conn.age(now), conn.cache.get(lane), lane)
            frame = {"type": "response.create", **make_request(info)}
            frame.pop("stream", None)  # "stream is implicit over WebSocket and should not be sent" (§1.3)
            if lane is not None:
                frame["stream_id"] = lane
                conn.lanes_used.add(lane)
            conn.cache[lane] = None  # until this response completes, the cache is in flux
            if not conn.alive:
                raise ConnectionClosedError(code=conn.ws.close_code, reason="closed before the request")
            # Registered before the write, with no await in between: every frame the reader routes to this
            # lease from now on was sent by the server after it saw the request.
            conn.leases[lane] = lease
            stream.sent(now)
            try:
                await conn.ws.send_str(_dumps(frame, separators=(",", ":")))
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                conn.leases.pop(lane, None)
                raise ConnectionClosedError(
                    f"Could not send the request: {describe(exc)}.",
                    code=conn.ws.close_code,
                    received_any=False,
                ) from None
            lease.arm()
            terminal: ServerEvent = await lease.future
            conn.turns += 1
            if terminal.type == "response.completed" and terminal.response:
                conn.cache[lane] = terminal.response.get("id")
            if lane is None:
                conn.affinity = affinity
            return Outcome(
                "ws", terminal, connection_id=conn.id, request=frame, error_event=stream.error_event
            )
        finally:
            lease.disarm()
            self._release(lease, key)

    async def warmup(
        self, settings: Settings, request: dict[str, Any], affinity: str | None = None
    ) -> Outcome | None:
        """Have a connection ready for *affinity*: open one and run a ``generate: false`` create on it (§1.4).

        Nothing is sent when an idle connection for the chain is already open; the warm-up never lands on a
        connection whose cache holds a chain's parent (``store=false`` would then resend that chain).
        """
        url, headers, target = ws_target(settings)
        idle = [c for c in self._conns if c.usable and not c.leases and c.target == target]
        if any(c.affinity == affinity for c in idle):
            return None  # the chain's socket is open and ready (and may cache its parent: leave it alone)
        unclaimed = any(c.affinity is None and not c.lanes_used for c in idle)
        if not unclaimed and len(self._conns) + self._connecting >= settings.pool_size:
            return None  # full: warming up would take another chain's socket and evict its cached parent
        # With want_cached=None the pool picks an unclaimed socket or opens a new one (never a cached parent).
        return await self.run(
            lambda info: {**request, "generate": False},
            lambda _item: None,
            settings=settings,
            affinity=affinity,
        )

    async def aclose(self) -> None:
        """Close every connection with 1000 (idle and busy). Idempotent."""
        self._closed = True
        conns, self._conns = self._conns, []
        for c in conns:
            c._die(ConnectionClosedError(code=1000, reason="session closed"))
            self._spawn(close_ws(c))
        self._wake(all_=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=3.0)

    # --- leasing ---------------------------------------------------------------------------------------

    async def _lease(
        self,
        settings: Settings,
        emit: Emit,
        affinity: str | None,
        lane: str | None,
        want: str | None,
        fresh: bool,
    ) -> tuple[WSConnection, bool]:
        loop = asyncio.get_running_loop()
        url, headers, target = ws_target(settings)
        while True:
            if self._closed:
                raise PoolClosedError()
            now = loop.time()
            max_age = settings.max_connection_age
            # Close idle connections that are dead, retired, too old to start a turn on (rotation), or made for
            # this URL with other credentials or headers (a rotated key: the old socket must go). Idle ones for
            # another endpoint (profile, base URL, model) stay until their room is needed: alternating two
            # providers cell by cell keeps a socket for each.
            for c in [c for c in self._conns if not c.leases]:
                if (
                    not c.usable
                    or c.age(now) >= max_age
                    or (c.url == url and c.target != target)
                    or (c.target == target and self._lanes_full(c, lane))
                ):
                    self._drop(c)
            pick = None if fresh else self._pick(lane, affinity, want, target, now, max_age)
            if pick is not None:
                emit(
                    Notice(
                        "connected",
                        {
                            "transport": "ws",
                            "reused": True,
                            "connection_id": pick.id,
                            "age": pick.age(now),
                            **({"stream_id": lane} if lane else {}),
                        },
                    )
                )
                pick.last_used = now
                return pick, True
            if len(self._conns) + self._connecting < settings.pool_size:
                break
            # Full. A plain request may take the least recently used idle connection to this endpoint (its chain
            # will resend under store=false); otherwise an idle connection is closed to make room (the least
            # recently used; another endpoint's first).
            idle = sorted(
                (c for c in self._conns if not c.leases), key=lambda c: (c.target == target, c.last_used)
            )
            same = [c for c in idle if c.target == target]
            if same and not fresh and lane is None:
                pick = same[0]
                pick.last_used = now
                emit(
                    Notice(
                        "connected",
                        {"transport": "ws", "reused": True, "connection_id": pick.id, "age": pick.age(now)},
                    )
                )
                return pick, True
            if idle:
                self._drop(idle[0])
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._connecting += 1
        try:
            ws = await open_websocket(self._http(), url, headers, settings, emit)
        except BaseException:
            self._connecting -= 1
            self._wake()  # a slot is free again: a waiter must not wait forever behind a failed connect
            raise
        self._connecting -= 1
        self.handshakes += 1
        conn = WSConnection(ws, loop.time(), url, target, self._on_dead)
        if self._closed:
            self._spawn(close_ws(conn))
            raise PoolClosedError()
        conn.start_reader()
        self._conns.append(conn)
        emit(
            Notice(
                "connected",
                {
                    "transport": "ws",
                    "reused": False,
                    "connection_id": conn.id,
                    "age": 0.0,
                    **({"stream_id": lane} if lane else {}),
                },
            )
        )
        return conn, False

    def _pick(
        self,
        lane: str | None,
        affinity: str | None,
        want: str | None,
        target: int,
        now: float,
        max_age: float,
    ) -> WSConnection | None:
        ok = [c for c in self._conns if c.usable and c.target == target and c.age(now) < max_age]
        if lane is None:
            idle = [c for c in ok if not c.leases]
            return (
                (next((c for c in idle if c.cache.get(None) == want), None) if want else None)
                or next((c for c in idle if c.affinity == affinity), None)
                or next((c for c in idle if c.affinity is None and not c.lanes_used), None)
            )
        shared = [
            c
            for c in ok
            if None not in c.leases
            and lane not in c.leases
            and len(c.leases) < MAX_ACTIVE
            and (lane in c.lanes_used or len(c.lanes_used) < MAX_LANES)
        ]
        return (
            (next((c for c in shared if c.cache.get(lane) == want), None) if want else None)
            or next((c for c in shared if lane in c.lanes_used), None)
            or min(shared, key=lambda c: len(c.leases), default=None)
        )

    @staticmethod
    def _lanes_full(conn: WSConnection, lane: str | None) -> bool:
        return lane is not None and lane not in conn.lanes_used and len(conn.lanes_used) >= MAX_LANES

    def _release(self, lease: Lease, key: str) -> None:
        conn = lease.conn
        if conn.leases.get(lease.stream_id) is lease:
            del conn.leases[lease.stream_id]
        if not lease.ended and lease.stream.phase is not Phase.CONNECT:
            # Abandoned after the request went out (cancel, timeout, a broken consumer): the server keeps
            # streaming that response. (Nothing sent, e.g. cancelled while building the request: still clean.)
            conn.cache[lease.stream_id] = None
            if lease.stream_id is None:
                conn.retired = True  # dirty: never reused (DESIGN.md §3)
            else:
                self._generation[key] = self._generation.get(key, 0) + 1
        if not conn.leases and (not conn.usable or self._closed):
            self._drop(conn)
        self._wake()

    def _on_dead(self, conn: WSConnection) -> None:
        """Called by a connection's reader when the socket died (also while idle)."""
        if conn in self._conns and not conn.leases:
            self._drop(conn)
        self._wake()

    def _drop(self, conn: WSConnection) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
        conn.retired = True
        self._spawn(close_ws(conn))

    def _wake(self, *, all_: bool = False) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_:
                    return

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
