"""Issue item 1: per-turn latency over a chained conversation, five clients, against the emulator on loopback.

Contenders (see contenders.py): this engine over WS and over SSE, the openai SDK over WS and over SSE, and a raw
aiohttp WebSocket loop (the floor). The emulator runs in its own process (emuproc.py). All contenders are open at
once; each turn index is run by every contender back to back, in an order rotated turn by turn, so machine drift
hits all of them alike. Ratios are per (round, turn) pairs, then summarised by their median.

Run alone:  python benchmarks/bench_latency.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from contenders import Contender, Engine, RawFloor, SdkSSE, SdkWebSocket, TurnSample
from emuproc import FAKE_KEY, EmulatorProcess
from stats import finite_or_none, markdown_table, median, p90, pairwise_ratios

FLOOR = "raw aiohttp WS (floor)"
SDK_WS = "openai SDK WS"
SDK_SSE = "openai SDK SSE"
ENG_WS = "ipy_responses_ws WS"
ENG_SSE = "ipy_responses_ws SSE"
ORDER = [ENG_WS, ENG_SSE, SDK_WS, SDK_SSE, FLOOR]

#: (ours, theirs, key) pairs; ratio = ours / theirs, < 1 means ours is faster.
PAIRS = [
    (ENG_WS, FLOOR, "ws_vs_floor_ratio"),
    (ENG_WS, SDK_WS, "ws_vs_sdk_ws_ratio"),
    (ENG_SSE, SDK_SSE, "sse_vs_sdk_sse_ratio"),
    (ENG_WS, ENG_SSE, "ws_vs_sse_ratio"),
    (SDK_WS, FLOOR, "sdk_ws_vs_floor_ratio"),
    (SDK_WS, SDK_SSE, "sdk_ws_vs_sdk_sse_ratio"),
]


@dataclass
class Profile:
    name: str
    ttft: float
    token_rate: float
    answer_words: int
    rounds: int
    turns: int


def profiles(quick: bool) -> list[Profile]:
    """Zero-delay (client overhead dominates) and realistic (ttft 0.3 s, 50 tok/s: server time dominates)."""
    if quick:
        return [Profile("zero-delay", 0.0, 0.0, 8, 1, 3), Profile("realistic", 0.05, 2000.0, 0, 1, 2)]
    # The emulator's answers grow with the chain (they list earlier messages): ~70 deltas at turn 1, ~215 at
    # turn 20. At 50 deltas/s a realistic turn takes 2-5 s, so that profile runs a shorter chain once.
    return [Profile("zero-delay", 0.0, 0.0, 12, 5, 20), Profile("realistic", 0.3, 50.0, 0, 1, 5)]


@dataclass
class Track:
    contender: Contender
    samples: dict[tuple[int, int], TurnSample] = field(default_factory=dict)
    error: str | None = None


def make_contenders(base_url: str) -> list[Contender]:
    return [
        Engine(base_url, FAKE_KEY, "ws"),
        Engine(base_url, FAKE_KEY, "sse"),
        SdkWebSocket(base_url, FAKE_KEY),
        SdkSSE(base_url, FAKE_KEY),
        RawFloor(base_url, FAKE_KEY),
    ]


def _fail(track: Track, stage: str) -> None:
    track.error = f"{stage}: {traceback.format_exc(limit=3).strip().splitlines()[-1]}"
    print(f"  [{track.contender.name}] {track.error}", file=sys.stderr)


def run_profile(profile: Profile) -> dict[str, Any]:
    """Run one latency profile; returns per-contender stats and pairwise ratios (all times in ms)."""
    started = time.perf_counter()
    with EmulatorProcess(
        ttft=profile.ttft, token_rate=profile.token_rate, answer_words=profile.answer_words
    ) as emu:
        tracks = {c.name: Track(c) for c in make_contenders(emu.base_url)}
        for track in tracks.values():
            try:
                track.contender.open()
            except Exception:
                _fail(track, "open")
        try:
            for rnd in range(profile.rounds):
                live = [t for t in tracks.values() if t.error is None]
                for t in live:
                    t.contender.new_chain()
                for turn in range(profile.turns):
                    # Rotate who goes first each turn so no contender always follows the same neighbour.
                    shift = (rnd * profile.turns + turn) % max(1, len(live))
                    for t in live[shift:] + live[:shift]:
                        if t.error is not None:
                            continue
                        try:
                            # Client CPU (all threads of this process; the emulator is another process) is
                            # much less sensitive to a busy machine than wall time.
                            c0 = time.process_time()
                            sample = t.contender.turn(f"Turn {turn + 1}: tell me something new.")
                            sample.cpu = time.process_time() - c0
                            t.samples[(rnd, turn)] = sample
                        except Exception:
                            _fail(t, f"round {rnd} turn {turn}")
        finally:
            for track in tracks.values():
                try:
                    track.contender.close()
                except Exception:
                    if track.error is None:
                        _fail(track, "close")
    return summarise(profile, tracks, time.perf_counter() - started)


def summarise(profile: Profile, tracks: dict[str, Track], wall: float) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for name in ORDER:
        track = tracks.get(name)
        ms = [s.seconds * 1000 for s in track.samples.values()] if track else []
        ttfts = [s.ttft * 1000 for s in track.samples.values() if s.ttft is not None] if track else []
        cpu = [s.cpu * 1000 for s in track.samples.values() if s.cpu is not None] if track else []
        per[name] = {
            "n": len(ms),
            "cpu_median_ms": finite_or_none(median(cpu)),
            "median_ms": finite_or_none(median(ms)),
            "p90_ms": finite_or_none(p90(ms)),
            "ttft_median_ms": finite_or_none(median(ttfts)),
            "error": track.error if track else "not run",
        }
    ratios: dict[str, Any] = {}
    for ours, theirs, key in PAIRS:
        a, b = tracks.get(ours), tracks.get(theirs)
        keys = sorted(set(a.samples) & set(b.samples)) if a and b else []
        r = (
            pairwise_ratios([a.samples[k].seconds for k in keys], [b.samples[k].seconds for k in keys])
            if keys
            else []
        )
        rc = (
            pairwise_ratios([a.samples[k].cpu or 0.0 for k in keys], [b.samples[k].cpu or 0.0 for k in keys])
            if a and b and keys
            else []
        )
        ratios[key] = {
            "cpu_median": finite_or_none(median(rc)),
            "ours": ours,
            "theirs": theirs,
            "n": len(r),
            "median": finite_or_none(median(r)),
            "p90": finite_or_none(p90(r)),
        }
    # Every client ran the same prompts in the same order, so a deterministic emulator must give each the
    # same answer per turn; a mismatch means a chain went wrong (e.g. previous_response_id not applied).
    mismatches = 0
    compared = 0
    all_keys = set().union(*(t.samples.keys() for t in tracks.values()))
    for k in all_keys:
        texts = {t.samples[k].text for t in tracks.values() if k in t.samples}
        if len(texts) > 1:
            mismatches += 1
        compared += 1
    return {
        "profile": profile.__dict__,
        "wall_seconds": round(wall, 2),
        "contenders": per,
        "ratios": ratios,
        "turns_compared": compared,
        "answer_mismatches": mismatches,
        "targets": targets(ratios),
    }


def targets(ratios: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, judged on median pairwise ratios; None when a side did not run."""

    def check(key: str, limit: float) -> bool | None:
        value = ratios[key]["median"]
        return None if value is None else value <= limit

    return {
        "engine WS <= 1.15x floor": check("ws_vs_floor_ratio", 1.15),
        "engine WS <= SDK WS": check("ws_vs_sdk_ws_ratio", 1.0),
        "engine SSE <= SDK SSE": check("sse_vs_sdk_sse_ratio", 1.0),
        "engine WS < engine SSE": check("ws_vs_sse_ratio", 1.0),
    }


def _preload() -> None:
    """Import the heavy client libraries (openai takes seconds) while the emulator process boots."""
    import openai.resources.responses  # noqa: F401
    import openai.types.responses.responses_server_event  # noqa: F401

    import ipy_responses_ws.session  # noqa: F401


def run(quick: bool = False, only: str | None = None) -> dict[str, Any]:
    threading.Thread(target=_preload, name="preload", daemon=True).start()
    return {p.name: run_profile(p) for p in profiles(quick) if only in (None, p.name)}


def render(result: dict[str, Any]) -> str:
    out: list[str] = []
    for name, res in result.items():
        prof = res["profile"]
        out.append(
            f"**{name}** (emulator ttft {prof['ttft']} s, {prof['token_rate'] or 'unthrottled'} tok/s, "
            f"{prof['answer_words']}-word answers; {prof['rounds']} round(s) x {prof['turns']} chained turns; "
            f"{res['turns_compared']} turn slots, {res['answer_mismatches']} answer mismatches; "
            f"{res['wall_seconds']} s)\n"
        )
        rows = []
        for cname, c in res["contenders"].items():
            rows.append(
                [cname, c["n"], c["median_ms"], c["p90_ms"], c["ttft_median_ms"], c.get("cpu_median_ms"),
                 c["error"] or ""]
            )  # fmt: skip
        out.append(
            markdown_table(
                ["client", "turns", "median ms", "p90 ms", "first delta ms", "client CPU ms/turn", "error"],
                rows,
            )
        )
        out.append("")
        rows = []
        for r in res["ratios"].values():
            rows.append([f"{r['ours']} / {r['theirs']}", r["n"], r["median"], r["p90"], r.get("cpu_median")])
        out.append(
            markdown_table(
                ["pairwise ratio (ours/theirs)", "pairs", "median", "p90", "client CPU ratio (median)"], rows
            )
        )
        out.append("")
        rows = [[t, "—" if ok is None else ("PASS" if ok else "FAIL")] for t, ok in res["targets"].items()]
        out.append(markdown_table(["target", "result"], rows))
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the CI smoke run")
    parser.add_argument("--json", help="write the raw result here")
    parser.add_argument("--profile", choices=["zero-delay", "realistic"], help="run only this profile")
    args = parser.parse_args()
    result = run(args.quick, args.profile)
    print(render(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
