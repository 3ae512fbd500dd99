"""``python -m ipy_responses_ws.emulator``: serve until SIGINT/SIGTERM.

The first line of stdout is the base URL (``http://127.0.0.1:PORT/v1``), flushed at once, so a parent
process can read it and point a client there. With ``--tls`` the URL is ``https://`` and the second line
is the path of the CA certificate (PEM) a client must trust.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from .server import Emulator


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ipy_responses_ws.emulator",
        description="Serve a local emulator of the OpenAI Responses API (WebSocket mode + HTTP SSE).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=0, help="port (0 = pick a free one; default)")
    p.add_argument(
        "--api-key",
        default=os.environ.get("EMULATOR_API_KEY"),
        help="require this Bearer key (default: $EMULATOR_API_KEY; unset = accept any key)",
    )
    p.add_argument("--ttft", type=float, default=0.0, help="seconds before the first output event")
    p.add_argument("--token-rate", type=float, default=0.0, help="deltas per second (0 = unthrottled)")
    p.add_argument("--words", type=int, default=None, help="pad every answer with this many filler words")
    p.add_argument("--max-connection-age", type=float, default=3600.0, help="WS lifetime cap in seconds")
    p.add_argument("--max-frame-size", type=int, default=None, help="inbound WS frame limit in bytes (1009)")
    p.add_argument(
        "--strict-lanes", action="store_true", help="reject a create on a busy lane (gateway mode)"
    )
    p.add_argument("--tls", action="store_true", help="serve https/wss with a self-signed CA made at start")
    p.add_argument(
        "--ping-interval",
        type=float,
        default=None,
        help="send a WS ping every this many seconds (uvicorn: 20; default: no pings)",
    )
    p.add_argument(
        "--ping-timeout",
        type=float,
        default=None,
        help="close a WS with 1011 when a pong is this many seconds late (uvicorn: 20; default: never)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG to stderr")
    return p


async def _serve(emu: Emulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with emu.serve():
        print(emu.base_url, flush=True)
        if emu.ca_path:
            print(emu.ca_path, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    emu = Emulator(
        args.api_key,
        ttft=args.ttft,
        token_rate=args.token_rate,
        answer_words=args.words,
        max_connection_age=args.max_connection_age,
        strict_lanes=args.strict_lanes,
        max_frame_size=args.max_frame_size,
        host=args.host,
        port=args.port,
        tls=args.tls,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
    )
    asyncio.run(_serve(emu))
    return 0


if __name__ == "__main__":
    sys.exit(main())
