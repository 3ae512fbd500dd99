"""A byte-counting TCP relay on loopback, to measure what a client really puts on the wire.

Put it between a client and the emulator (``base_url`` → the relay's port): it forwards every byte unchanged
and counts client→server (``up``) and server→client (``down``) totals, including HTTP headers, WebSocket frame
headers and masking, so WS and SSE are compared on equal terms. ``log`` keeps each chunk's direction and size in
arrival order, so :meth:`ByteCountingRelay.requests_since` can split the upstream bytes per request. It runs on its own loop thread and listens on
127.0.0.1 only; ``close()`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType


class ByteCountingRelay:
    """``with ByteCountingRelay("127.0.0.1", emulator_port) as relay: relay.port; relay.up; relay.down``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.up = 0
        self.down = 0
        self.log: list[tuple[bool, int]] = []  # (upstream?, bytes) per chunk, in arrival order
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="byte-relay", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def snapshot(self) -> tuple[int, int]:
        """``(up, down)`` so far; read between turns (the loop thread only ever adds)."""
        return (self.up, self.down)

    def __enter__(self) -> ByteCountingRelay:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = fut.result(10)
        return self

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if upstream:
                        self.up += len(chunk)
                    else:
                        self.down += len(chunk)
                    self.log.append((upstream, len(chunk)))
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        self._writers.difference_update((writer, up_writer))

    def requests_since(self, start: int) -> list[int]:
        """Upstream bytes per request from log index *start*: runs of upstream chunks between downstream ones."""
        out: list[int] = []
        last_up = False
        for upstream, n in self.log[start:]:
            if upstream:
                if last_up:
                    out[-1] += n
                else:
                    out.append(n)
            last_up = upstream
        return out

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.close()
        await asyncio.sleep(0.05)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
