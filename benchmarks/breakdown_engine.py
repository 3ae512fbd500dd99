"""Where a WS turn of the engine spends its wall time outside the stream itself.

Wraps (in this process only, for the duration of the script) aiohttp's ``send_str``/``receive`` and the engine's
``ResponsesSession._turn`` and ``TurnHandle._finish`` with ``perf_counter`` marks, runs chained turns against a
zero-delay emulator process, and prints the median and p90 of each step:

    respond() called → task starts on the I/O loop → response.create sent → response.completed received
    → TurnHandle._finish → respond() returns

The raw aiohttp floor spends about 0.2 ms a turn outside the stream; this shows what the engine adds and where.

    python benchmarks/breakdown_engine.py [--turns 100]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from contenders import Engine
from emuproc import FAKE_KEY, EmulatorProcess
from stats import median, p90

STEPS = [
    ("respond() called -> task starts on the I/O loop", "call", "turn_start"),
    ("task start -> response.create sent", "turn_start", "send"),
    ("sent -> response.completed received (the stream)", "send", "terminal"),
    ("response.completed -> TurnHandle._finish", "terminal", "finish"),
    ("_finish -> respond() returns in the caller", "finish", "returned"),
    ("total", "call", "returned"),
]


def instrument(marks: dict[str, float]) -> None:
    """Patch the four probe points to write into ``marks`` (benchmark process only)."""
    from aiohttp import client_ws

    import ipy_responses_ws.session as session_mod

    orig_send = client_ws.ClientWebSocketResponse.send_str
    orig_recv = client_ws.ClientWebSocketResponse.receive
    orig_turn = session_mod.ResponsesSession._turn
    orig_finish = session_mod.TurnHandle._finish

    async def send_str(self: Any, data: str, compress: int | None = None) -> None:
        marks["send"] = time.perf_counter()
        return await orig_send(self, data, compress)

    async def receive(self: Any, timeout: float | None = None) -> Any:
        msg = await orig_recv(self, timeout)
        head = msg.data[:60] if isinstance(msg.data, bytes | str) else b""
        if (b'"response.completed"' if isinstance(head, bytes) else '"response.completed"') in head:
            marks["terminal"] = time.perf_counter()
        return msg

    async def _turn(self: Any, handle: Any, spec: Any, settings: Any) -> Any:
        marks["turn_start"] = time.perf_counter()
        return await orig_turn(self, handle, spec, settings)

    def _finish(self: Any, result: Any) -> None:
        marks["finish"] = time.perf_counter()
        return orig_finish(self, result)

    client_ws.ClientWebSocketResponse.send_str = send_str  # type: ignore[method-assign]
    client_ws.ClientWebSocketResponse.receive = receive  # type: ignore[method-assign]
    session_mod.ResponsesSession._turn = _turn  # type: ignore[method-assign]
    session_mod.TurnHandle._finish = _finish  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100)
    args = parser.parse_args()
    marks: dict[str, float] = {}
    instrument(marks)
    rows: list[dict[str, float]] = []
    with EmulatorProcess(answer_words=12) as emu:
        engine = Engine(emu.base_url, FAKE_KEY, "ws")
        engine.open()
        try:
            for i in range(args.turns):
                if i % 20 == 0:
                    engine.new_chain()
                marks.clear()
                marks["call"] = time.perf_counter()
                engine.turn(f"Turn {i % 20 + 1}: tell me something new.")
                marks["returned"] = time.perf_counter()
                rows.append(dict(marks))
        finally:
            engine.close()
    print(f"{args.turns} engine WS turns (zero-delay emulator); milliseconds")
    for label, a, b in STEPS:
        values = [(r[b] - r[a]) * 1000 for r in rows if a in r and b in r]
        print(f"  {label:52s} median {median(values):7.3f}   p90 {p90(values):7.3f}")


if __name__ == "__main__":
    main()
