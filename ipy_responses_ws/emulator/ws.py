"""WebSocket mode (PROTOCOL.md §1): the upgrade, one reader per connection, a FIFO worker per lane, the
connection-local lane cache, the age cap, and server keepalive pings like uvicorn's.

Keepalive (``ping_interval`` / ``ping_timeout``, off by default) follows the ``websockets`` library that
uvicorn serves with (20 s / 20 s there): every ``ping_interval`` seconds a Ping goes out; if its Pong does
not come back within ``ping_timeout``, the server sends a close frame ``1011 keepalive ping timeout`` and
closes the TCP connection without waiting for the client's answer (websockets ``keepalive()`` /
``Protocol.fail``). An aiohttp client answers a Ping only while something reads the socket, so an idle
pooled socket that nobody reads is dropped: ``ConnectionLog.closed_by_ping_timeout`` records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from typing import Any

from aiohttp import WSMsgType, web

from .connection_log import ConnectionLog
from .service import NO_PARENT, Gone, Service
from .store import LaneCache
from .wire import OPENAI_VERSION, RequestError, dumps, fault_error, request_id

__all__ = ["MAX_ACTIVE", "MAX_LANES", "WsRoute"]

# §1.5: lane names, at most 16 active responses and 32 named lanes per connection.
_STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
MAX_ACTIVE = 16
MAX_LANES = 32


class WsRoute:
    """``GET {prefix}/responses`` with ``Upgrade: websocket``; tracks open connections for shutdown."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.open: set[WsConnection] = set()

    async def shutdown(self) -> None:
        for conn in list(self.open):
            await conn.shutdown()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        svc = self.svc
        started = time.monotonic()
        entry = svc.new_log(request, "ws")
        ws = web.WebSocketResponse(
            compress=True,  # permessage-deflate when the client offers it (Codex does, §1.1)
            max_msg_size=svc.max_frame_size or 0,  # 0 = unlimited; a set limit closes with 1009
            autoping=False,  # the reader answers Pings and sees Pongs (for the keepalive)
            timeout=2.0,
        )
        if not ws.can_prepare(request).ok:
            entry.status = 400
            return svc.http_error(
                RequestError(400, "Expected a WebSocket upgrade or a POST.", code=None), started
            )
        refusal = svc.auth_error(request)
        fault = svc.faults.take("ws", "upgrade")
        if refusal is None and fault is not None:
            if fault.kind == "unauthorized":
                refusal = RequestError(
                    401, "Incorrect API key provided. (emulator fault)", code="invalid_api_key"
                )
            else:
                refusal = RequestError(
                    fault.status or 426,
                    fault.message or f"WebSocket upgrade refused by the emulator (HTTP {fault.status}).",
                    code=str(fault.code) if fault.code else None,
                    headers=fault.headers,
                )
        if refusal is not None:
            # §1.1: a plain HTTP error on the upgrade, no 101.
            entry.status = refusal.status
            return svc.http_error(refusal, started)
        ws.headers.update({"x-request-id": request_id(), "openai-version": OPENAI_VERSION})
        await ws.prepare(request)
        entry.status = 101
        conn = WsConnection(svc, request, ws, entry)
        self.open.add(conn)
        try:
            await conn.run()
        finally:
            self.open.discard(conn)
            entry.closed_at = time.time()
        return ws


class WsConnection:
    """One WebSocket: a reader, one FIFO worker per lane, a lane cache, the age cap and the keepalive."""

    def __init__(self, svc: Service, request: web.Request, ws: web.WebSocketResponse, entry: ConnectionLog):
        self.svc, self.request, self.ws, self.entry = svc, request, ws, entry
        self.cache = LaneCache()
        self.queues: dict[str | None, asyncio.Queue[dict[str, Any]]] = {}
        self.workers: dict[str | None, asyncio.Task[None]] = {}
        self.busy: dict[str | None, int] = {}
        self.named: set[str] = set()
        self.active = asyncio.Semaphore(MAX_ACTIVE)
        self.send_lock = asyncio.Lock()
        self.opened = time.monotonic()
        self.finished = 0
        self.closed = False
        self.ping_payload: bytes | None = None
        self.pong = asyncio.Event()

    async def run(self) -> None:
        keepalive = asyncio.create_task(self.keepalive()) if self.svc.ping_interval else None
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type == WSMsgType.PING:
                    with contextlib.suppress(ConnectionError):
                        await self.ws.pong(msg.data)  # control frames need no send_lock (no compression)
                elif msg.type == WSMsgType.PONG:
                    if self.ping_payload is not None and msg.data == self.ping_payload:
                        self.entry.pongs_received += 1
                        self.pong.set()
                elif msg.type == WSMsgType.BINARY:
                    self.entry.frames.append(f"<binary frame, {len(msg.data)} bytes>")
                    await self.send_error(
                        RequestError(400, "Binary frames are not supported; send JSON text.", code=None), None
                    )
                elif msg.type == WSMsgType.CLOSE:
                    if not self.closed:
                        self.entry.close_code = self.ws.close_code  # the code the client sent
                    break
                else:  # CLOSING, CLOSED, ERROR (e.g. 1009 on an oversized frame)
                    if msg.type == WSMsgType.ERROR and self.entry.server_close_code is None:
                        # The code we closed with (1009 for an oversized frame) is on the error itself;
                        # ws.close_code may already read 1006 when the peer dropped during the close.
                        code = getattr(msg.data, "code", None)
                        self.entry.server_close_code = code if isinstance(code, int) else self.ws.close_code
                    break
        finally:
            tasks = [*self.workers.values(), *([keepalive] if keepalive else [])]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.cache.clear()  # §1.7: closing clears every lane's cache
            if not self.ws.closed:
                await self.ws.close()

    async def keepalive(self) -> None:
        """Ping every ``ping_interval`` s; close 1011 when a Pong is ``ping_timeout`` s late (uvicorn)."""
        interval, timeout = self.svc.ping_interval or 0.0, self.svc.ping_timeout
        while not self.closed and not self.ws.closed:
            await asyncio.sleep(interval)
            self.pong.clear()
            self.ping_payload = os.urandom(4)
            try:
                await self.ws.ping(self.ping_payload)
            except (ConnectionError, RuntimeError):
                return
            self.entry.pings_sent += 1
            if timeout is None:
                continue
            try:
                await asyncio.wait_for(self.pong.wait(), timeout)
            except TimeoutError:
                await self.ping_timed_out()
                return

    async def ping_timed_out(self) -> None:
        self.closed = True
        self.entry.closed_by_ping_timeout = True
        self.entry.server_close_code = 1011
        try:
            # The close frame, then the TCP close without waiting for the client's reply (websockets).
            await asyncio.wait_for(self.ws.close(code=1011, message=b"keepalive ping timeout"), 1.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if self.request.transport is not None:
                self.request.transport.close()

    async def shutdown(self) -> None:
        """Server is stopping: close with 1001 (going away)."""
        self.closed = True
        self.entry.server_close_code = 1001
        with contextlib.suppress(Exception):
            await self.ws.close(code=1001, message=b"emulator stopping")

    async def on_text(self, data: str) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            self.entry.frames.append(data)
            await self.send_error(
                RequestError(400, "Invalid JSON in WebSocket message.", code="invalid_json"), None
            )
            return
        self.entry.frames.append(payload)
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "response.create":
            await self.on_create(payload)
        elif kind == "response.steer":
            await self.send_steer_failed(payload)
        else:
            # Unknown client event: an error event, and the socket stays open (§ checklist, emulator choice).
            await self.send_error(
                RequestError(
                    400,
                    f"Invalid value: {kind!r}. Supported values are: 'response.create' and 'response.steer'.",
                    code="invalid_value",
                    param="type",
                ),
                None,
            )

    def lane_error(self, req: dict[str, Any]) -> tuple[RequestError, str | None] | None:
        """The error a create gets before it is queued (lane rules, background, strict mode), if any."""
        lane: str | None = None
        if "stream_id" in req:
            lane = req["stream_id"]
            if not isinstance(lane, str) or not _STREAM_ID_RE.match(lane):
                message = "Invalid 'stream_id': expected 1-256 characters matching ^[A-Za-z0-9_.-]+$."
                # §1.5: no stream_id on this event
                return RequestError(400, message, code="invalid_stream_id", param="stream_id"), None
            if lane not in self.named:
                if len(self.named) >= MAX_LANES:
                    message = f"Too many stream_ids on this connection: the limit is {MAX_LANES}."
                    return RequestError(
                        400, message, code="websocket_stream_limit_reached", param="stream_id"
                    ), lane
                self.named.add(lane)
        if req.get("background"):
            message = "background is not supported over WebSocket."
            return RequestError(400, message, code="unsupported_parameter", param="background"), lane
        if self.svc.strict_lanes and self.busy.get(lane):
            # Optional "gateway" behaviour (§1.8): reject instead of queueing.
            message = "A response is already in flight on this stream."
            return RequestError(409, message, code="response_already_in_flight"), lane
        return None

    async def on_create(self, req: dict[str, Any]) -> None:
        if time.monotonic() - self.opened >= self.svc.max_connection_age:
            await self.hit_cap()
            return
        refused = self.lane_error(req)
        if refused is not None:
            await self.send_error(*refused)
            return
        lane = req.get("stream_id")
        self.busy[lane] = self.busy.get(lane, 0) + 1
        queue = self.queues.get(lane)
        if queue is None:
            queue = self.queues[lane] = asyncio.Queue()
            self.workers[lane] = asyncio.create_task(self.lane_worker(lane, queue))
        queue.put_nowait(req)

    async def lane_worker(self, lane: str | None, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Per-lane FIFO (§1.5, §1.8): a queued create waits for the one before it, even if abandoned."""
        while True:
            req = await queue.get()
            try:
                async with self.active:
                    await self.serve_one(lane, req)
            except Gone:
                return
            finally:
                self.busy[lane] -= 1

    async def serve_one(self, lane: str | None, req: dict[str, Any]) -> None:
        parent_lane: object = NO_PARENT
        svc = self.svc
        try:
            prep = svc.prepare(req)
            parent, parent_lane, cached = svc.resolve_parent(req, self.cache)
            fault = prep.fault or svc.faults.take("ws", "request", finished_responses=self.finished)
            if fault is not None and fault.kind == "cap":
                await self.hit_cap()
                raise Gone
            if fault is not None and fault.kind == "error" and fault.after == 0:
                raise fault_error(fault, req.get("model") or "gpt-5-mini")
            turn = svc.build(req, prep, parent, cached, "ws", fault, self.entry)
        except RequestError as exc:
            await self.send_error(exc, lane)
            if parent_lane == lane:
                self.cache.evict(req["previous_response_id"])  # §1.7: failed same-lane continuation
            return
        outcome = await svc.stream(
            _WsSink(self, lane),
            turn,
            fault,
            lambda t: svc.remember(t, self.cache, lane),
            self.entry,
            registered=prep.fault is None,
        )
        self.finished += 1
        if outcome in ("dropped", "closed"):
            raise Gone
        if outcome == "failed" and parent_lane == lane:
            self.cache.evict(req["previous_response_id"])

    async def hit_cap(self) -> None:
        """§1.9: the exact limit error (no stream_id), then a normal close (1000; emulator choice)."""
        age = self.svc.max_connection_age
        span = f"{age / 60:g} minutes" if age % 60 == 0 else f"{age:g} seconds"
        await self.send_error(
            RequestError(
                400,
                f"Responses websocket connection limit reached ({span}). "
                "Create a new websocket connection to continue.",
                code="websocket_connection_limit_reached",
            ),
            None,
        )
        self.closed = True
        self.entry.server_close_code = 1000
        await self.ws.close(code=1000)

    async def send_error(self, exc: RequestError, lane: str | None) -> None:
        event = exc.ws_event()
        if lane is not None:
            event["stream_id"] = lane
        await self.send_text(dumps(event))

    async def send_steer_failed(self, req: dict[str, Any]) -> None:
        """``response.steer`` is not implemented: say so with the documented failure event (§1.6)."""
        event = {
            "type": "response.steer.failed",
            "sequence_number": 0,
            "error": {
                "code": "steering_not_supported",
                "message": "The emulator does not support response.steer.",
                "type": "invalid_request_error",
            },
            "steer": {"input": req.get("input"), "previous_response_id": req.get("previous_response_id")},
        }
        await self.send_text(dumps(event))

    async def send_text(self, text: str) -> None:
        async with self.send_lock:  # one frame at a time: compression may yield mid-frame
            try:
                await self.ws.send_str(text)
            except ConnectionError as exc:
                raise Gone from exc


class _WsSink:
    transport = "ws"

    def __init__(self, conn: WsConnection, lane: str | None) -> None:
        self.conn, self.lane, self.seq = conn, lane, 0

    async def send(self, event: dict[str, Any]) -> None:
        event = dict(event, sequence_number=self.seq)
        self.seq += 1
        if self.lane is not None:
            event["stream_id"] = self.lane  # §1.5: every event of a named-lane response is tagged
        await self.conn.send_text(dumps(event))

    async def drop(self) -> None:
        self.conn.closed = True
        self.conn.entry.server_close_code = 1006
        transport = self.conn.request.transport
        if transport is not None:
            transport.abort()  # no close frame: the client sees 1006

    async def close(self, code: int) -> None:
        self.conn.closed = True
        self.conn.entry.server_close_code = code
        await self.conn.ws.close(code=code, message=b"emulator fault")

    async def malformed(self, variant: str) -> None:
        ws = self.conn.ws
        async with self.conn.send_lock:
            if variant == "binary":
                await ws.send_bytes(b"\x00\x01 not a text frame")
            elif variant == "utf8":
                # aiohttp cannot send invalid UTF-8 as text through its public API; use the frame writer.
                await ws._writer.send_frame(b'{"type":"\xff\xfe"}', WSMsgType.TEXT)  # type: ignore[union-attr]
            else:
                await ws.send_str('{"type": "response.output_text.delta", "delta": ')
