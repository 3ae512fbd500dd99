"""Profile the engine's per-turn overhead with cProfile, on both threads it uses.

``ResponsesSession.respond()`` runs on the caller's thread and hands the turn to the engine's I/O loop thread,
where the socket, parsing, chain and recorder work happens. cProfile profiles one thread at a time, so this
script enables one profiler on the caller's thread and another *inside* the loop thread (through a coroutine run
on that loop), runs N chained turns against a zero-delay emulator process, and prints the top functions of each.
For comparison it also profiles the raw aiohttp floor doing the same turns.

    python benchmarks/profile_engine.py [--transport ws|sse] [--turns 300] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

from contenders import RawFloor
from emuproc import FAKE_KEY, EmulatorProcess
from stats import median


def _table(prof: cProfile.Profile, top: int, sort: str) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
    return buf.getvalue()


def profile_engine(base_url: str, transport: str, turns: int, top: int) -> str:
    from ipy_responses_ws import ResponsesSession
    from ipy_responses_ws.runtime import get_runtime

    session = ResponsesSession(base_url=base_url, api_key=FAKE_KEY, transport=transport, model="gpt-5-mini")
    try:
        session.respond("warm-up", chain="prof")
        session.reset("prof")
        rt = get_runtime()
        # thread_time: per-thread CPU, so waiting in epoll or for the GIL costs nothing in the tables.
        loop_prof = cProfile.Profile(time.thread_time)
        main_prof = cProfile.Profile(time.thread_time)

        async def _enable() -> None:
            loop_prof.enable()

        async def _disable() -> None:
            loop_prof.disable()

        rt.run(_enable())
        main_prof.enable()
        times = []
        for i in range(turns):
            if i % 20 == 0:
                session.reset("prof")
            t0 = time.perf_counter()
            result = session.respond(f"Turn {i}: tell me something new.", chain="prof")
            times.append(time.perf_counter() - t0)
            if result.status != "completed":
                raise RuntimeError(f"turn {i}: {result.status} {result.error!r}")
        main_prof.disable()
        rt.run(_disable())
    finally:
        session.close()
    return (
        f"engine {transport}: {turns} turns, median {median(times) * 1000:.2f} ms (profiled, so slower)\n\n"
        f"--- I/O loop thread, by tottime ---\n{_table(loop_prof, top, 'tottime')}\n"
        f"--- I/O loop thread, by cumulative ---\n{_table(loop_prof, top, 'cumulative')}\n"
        f"--- caller thread, by tottime ---\n{_table(main_prof, top, 'tottime')}\n"
    )


def profile_floor(base_url: str, turns: int, top: int) -> str:
    floor = RawFloor(base_url, FAKE_KEY)
    floor.open()
    prof = cProfile.Profile(time.thread_time)
    times = []
    try:
        prof.enable()
        for i in range(turns):
            if i % 20 == 0:
                floor.new_chain()
            times.append(floor.turn(f"Turn {i}: tell me something new.").seconds)
        prof.disable()
    finally:
        floor.close()
    return (
        f"floor: {turns} turns, median {median(times) * 1000:.2f} ms (profiled)\n\n"
        f"--- by tottime ---\n{_table(prof, top, 'tottime')}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", default="ws", choices=["ws", "sse"])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-floor", action="store_true")
    args = parser.parse_args()
    with EmulatorProcess(answer_words=12) as emu:
        print(profile_engine(emu.base_url, args.transport, args.turns, args.top))
        if not args.no_floor:
            print(profile_floor(emu.base_url, args.turns, args.top))


if __name__ == "__main__":
    main()
