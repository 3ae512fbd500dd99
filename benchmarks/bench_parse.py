"""Issue item 3: event parsing throughput on one core, ours vs the openai SDK, on the same recorded payloads.

Payloads are recorded once from the emulator (a separate process): the WS text frames and the raw SSE response
bodies of a few chained turns with longish answers, so deltas dominate as they do in real streams, and the big
Response snapshots of ``response.created`` / ``in_progress`` / ``completed`` are included too.

Contenders, each timed over the whole recording, interleaved round by round:

* WS path, ours: ``ipy_responses_ws.events.parse_event(frame)``.
* WS path, SDK: what ``AsyncResponsesConnection.recv()`` does per frame,
  ``construct_type_unchecked(value=json.loads(frame), type_=ResponsesServerEvent)``.
* SSE path, ours: ``ipy_responses_ws.sse.SSEDecoder.feed(chunk)`` then ``parse_event(message.data)``.
* SSE path, SDK: ``openai._streaming.SSEDecoder.iter_bytes`` then ``sse.json()`` and ``construct_type(
  type_=ResponseStreamEvent, ...)`` (what ``AsyncStream`` + ``_process_response_data`` do without strict validation).
* Reference: bare ``json.loads`` per WS frame (nothing can be cheaper in pure Python).

Bodies are fed in 4 KiB chunks, the same for both SSE decoders. Only construction is timed; attribute access
afterwards is not.

Run alone:  python benchmarks/bench_parse.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from contenders import MODEL, TERMINAL, user_message
from emuproc import FAKE_KEY, EmulatorProcess
from stats import finite_or_none, markdown_table, median, p90, pairwise_ratios, percentile

CHUNK = 4096


async def _record(base_url: str, turns: int) -> tuple[list[str], list[bytes]]:
    """Record WS frames and SSE bodies of ``turns`` chained turns on each transport."""
    import aiohttp

    frames: list[str] = []
    bodies: list[bytes] = []
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    async with aiohttp.ClientSession() as session:
        ws_url = base_url.replace("http://", "ws://", 1) + "/responses"
        async with session.ws_connect(ws_url, headers=headers, max_msg_size=0) as ws:
            prev = None
            for i in range(turns):
                body: dict[str, Any] = {
                    "type": "response.create",
                    "model": MODEL,
                    "input": user_message(f"q{i}"),
                }
                if prev:
                    body["previous_response_id"] = prev
                await ws.send_str(json.dumps(body))
                while True:
                    msg = await ws.receive()
                    frames.append(msg.data)
                    ev = json.loads(msg.data)
                    if ev["type"] in TERMINAL:
                        prev = ev["response"]["id"]
                        break
        prev = None
        for i in range(turns):
            req: dict[str, Any] = {"model": MODEL, "input": user_message(f"q{i}"), "stream": True}
            if prev:
                req["previous_response_id"] = prev
            async with session.post(base_url + "/responses", json=req, headers=headers) as resp:
                raw = await resp.read()
            bodies.append(raw)
            last = [line for line in raw.decode().splitlines() if line.startswith("data: ")][-1]
            prev = json.loads(last[6:])["response"]["id"]
    return frames, bodies


def _chunks(body: bytes) -> list[bytes]:
    return [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]


def make_parsers(frames: list[str], bodies: list[bytes]) -> dict[str, tuple[Callable[[], int], str]]:
    """name -> (function that parses the whole recording and returns the event count, path)."""
    from openai import _streaming
    from openai._models import construct_type, construct_type_unchecked
    from openai.types.responses import ResponseStreamEvent
    from openai.types.responses.responses_server_event import ResponsesServerEvent

    from ipy_responses_ws.events import parse_event
    from ipy_responses_ws.sse import SSEDecoder

    chunked = [_chunks(b) for b in bodies]

    def ours_ws() -> int:
        n = 0
        for f in frames:
            parse_event(f)
            n += 1
        return n

    def sdk_ws() -> int:
        n = 0
        loads = json.loads
        for f in frames:
            construct_type_unchecked(value=loads(f), type_=ResponsesServerEvent)
            n += 1
        return n

    def ours_sse() -> int:
        n = 0
        for chunks in chunked:
            dec = SSEDecoder()
            for c in chunks:
                for m in dec.feed(c):
                    parse_event(m.data)
                    n += 1
            for m in dec.flush():
                parse_event(m.data)
                n += 1
        return n

    def sdk_sse() -> int:
        n = 0
        for chunks in chunked:
            dec = _streaming.SSEDecoder()
            for sse in dec.iter_bytes(iter(chunks)):
                construct_type(type_=ResponseStreamEvent, value=sse.json())
                n += 1
        return n

    def json_only() -> int:
        loads = json.loads
        for f in frames:
            loads(f)
        return len(frames)

    return {
        "ours WS (parse_event)": (ours_ws, "ws"),
        "SDK WS (construct_type_unchecked)": (sdk_ws, "ws"),
        "ours SSE (SSEDecoder + parse_event)": (ours_sse, "sse"),
        "SDK SSE (SSEDecoder + construct_type)": (sdk_sse, "sse"),
        "json.loads only (reference)": (json_only, "ws"),
    }


def run(quick: bool = False) -> dict[str, Any]:
    words, turns, rounds = (60, 2, 3) if quick else (200, 4, 10)
    with EmulatorProcess(answer_words=words) as emu:
        frames, bodies = asyncio.run(_record(emu.base_url, turns))
    parsers = make_parsers(frames, bodies)
    names = list(parsers)
    times: dict[str, list[float]] = {n: [] for n in names}
    counts: dict[str, int] = {}
    # Repeat the recording inside one measurement so each sample lasts tens of milliseconds.
    reps = 1 if quick else max(1, 2000 // max(1, len(frames)))
    for rnd in range(rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            fn = parsers[name][0]
            t0 = time.perf_counter()
            for _ in range(reps):
                counts[name] = fn()
            times[name].append((time.perf_counter() - t0) / reps)
    per = {}
    for name in names:
        evs = [counts[name] / t for t in times[name]]
        per[name] = {
            "events": counts[name],
            "events_per_s_median": finite_or_none(median(evs)),
            "events_per_s_p10": finite_or_none(percentile(evs, 10.0)),
            "us_per_event": finite_or_none(median(times[name]) / counts[name] * 1e6),
        }
    ws_ratio = pairwise_ratios(times["ours WS (parse_event)"], times["SDK WS (construct_type_unchecked)"])
    sse_ratio = pairwise_ratios(
        times["ours SSE (SSEDecoder + parse_event)"], times["SDK SSE (SSEDecoder + construct_type)"]
    )
    return {
        "recording": {
            "ws_frames": len(frames),
            "ws_bytes": sum(len(f.encode()) for f in frames),
            "sse_bodies": len(bodies),
            "sse_bytes": sum(len(b) for b in bodies),
            "answer_words": words,
            "turns": turns,
        },
        "rounds": rounds,
        "reps_per_sample": reps,
        "parsers": per,
        "ratios": {
            "parse_vs_sdk_ratio": {
                "median": finite_or_none(median(ws_ratio)),
                "p90": finite_or_none(p90(ws_ratio)),
            },
            "sse_parse_vs_sdk_ratio": {
                "median": finite_or_none(median(sse_ratio)),
                "p90": finite_or_none(p90(sse_ratio)),
            },
        },
    }


def render(result: dict[str, Any]) -> str:
    rec = result["recording"]
    out = [
        f"Recording: {rec['ws_frames']} WS frames ({rec['ws_bytes']:,} bytes) and {rec['sse_bodies']} SSE bodies "
        f"({rec['sse_bytes']:,} bytes) from {rec['turns']} chained turns with {rec['answer_words']} filler words; "
        f"{result['rounds']} interleaved rounds, {result['reps_per_sample']} pass(es) per sample.\n",
        markdown_table(
            ["parser", "events", "events/s (median)", "events/s (p10, slow tail)", "µs/event (median)"],
            [
                [n, p["events"], p["events_per_s_median"], p["events_per_s_p10"], p["us_per_event"]]
                for n, p in result["parsers"].items()
            ],
        ),
        "",
        markdown_table(
            ["time ratio (ours/SDK, pairwise)", "median", "p90"],
            [
                [
                    "WS path",
                    result["ratios"]["parse_vs_sdk_ratio"]["median"],
                    result["ratios"]["parse_vs_sdk_ratio"]["p90"],
                ],
                [
                    "SSE path",
                    result["ratios"]["sse_parse_vs_sdk_ratio"]["median"],
                    result["ratios"]["sse_parse_vs_sdk_ratio"]["p90"],
                ],
            ],
        ),
        "",
    ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run(args.quick)
    print(render(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
