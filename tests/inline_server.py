"""A small aiohttp app served on loopback from its own thread, for tests that need a server behaving in one
particular way the emulator does not (a slow refusal, strays after a terminal, a close while idle).

``with serve(app) as base_url:`` yields ``http://127.0.0.1:PORT/v1`` and stops the server after the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web


@contextlib.contextmanager
def serve(app: web.Application) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        state["stop"] = asyncio.Event()
        started.set()
        await state["stop"].wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the inline server did not start"
    try:
        yield f"http://127.0.0.1:{state['port']}/v1"
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        loop.close()
