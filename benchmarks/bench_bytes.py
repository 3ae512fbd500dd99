"""Issue item 2: bytes the client sends per turn as the chain grows, WS incremental vs SSE (store on and off).

The engine (``ResponsesSession``) talks to the emulator through a byte-counting TCP relay (wire.py), so the
numbers are real wire bytes: HTTP request lines and headers for every SSE POST, WebSocket frame headers and
masking for WS. Each case runs a warm-up turn on another chain first (so the WS handshake is not billed to turn
1), then one chain of N turns. The emulator's request log is read afterwards to confirm what each case sent:
how many requests carried ``previous_response_id`` and the largest ``input`` list.

Cases (docs/contracts.md ``chain.plan`` rules, PROTOCOL.md §1.7 and §3):

* WS, store=true: new items + ``previous_response_id``.
* WS, store=false: the same, served from the connection-local cache.
* SSE, store=true: new items + ``previous_response_id`` (the server's persisted store).
* SSE, store=false: the whole transcript every turn (HTTP has no connection cache).

Run alone:  python benchmarks/bench_bytes.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from contenders import MODEL
from emuproc import FAKE_KEY, EmulatorProcess
from stats import linear_fit, markdown_table
from wire import ByteCountingRelay

CASES = [("WS store=true", "ws", True), ("WS store=false", "ws", False), ("SSE store=true", "sse", True),
         ("SSE store=false", "sse", False)]  # fmt: skip


def _emulator_log(origin: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(origin + "/_emulator/log", timeout=10) as resp:
        return json.loads(resp.read())["connections"]


def _requests(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``response.create`` frames / POST bodies in these log entries."""
    out = []
    for entry in entries:
        for frame in entry.get("frames", []):
            if isinstance(frame, dict) and "input" in frame:
                out.append(frame)
    return out


def run_case(base_url: str, origin: str, transport: str, store: bool, turns: int) -> dict[str, Any]:
    from ipy_responses_ws import ResponsesSession

    before = len(_emulator_log(origin))
    host_port = urlsplit(base_url)
    with ByteCountingRelay(host_port.hostname or "127.0.0.1", host_port.port or 80) as relay:
        session = ResponsesSession(
            base_url=f"http://127.0.0.1:{relay.port}/v1",
            api_key=FAKE_KEY,
            transport=transport,
            store=store,
            model=MODEL,
        )
        try:
            # Warm up on the measured chain, then reset it, so turn 1 reuses the warm connection (the pool
            # hands a chain its own idle socket back; a new chain name would open another one).
            warm = session.respond("warm-up", chain="bytes")
            if warm.status != "completed":
                raise RuntimeError(f"warm-up ended {warm.status}: {warm.error!r}")
            session.reset(chain="bytes")
            time.sleep(0.05)
            up_per_turn: list[int] = []
            down_per_turn: list[int] = []
            resent = 0
            for turn in range(turns):
                up0, down0 = relay.snapshot()
                result = session.respond(f"Turn {turn + 1}: tell me something new.", chain="bytes")
                if result.status != "completed":
                    raise RuntimeError(f"turn {turn + 1} ended {result.status}: {result.error!r}")
                resent += bool(result.resent_transcript)
                time.sleep(0.02)  # let the tail of an SSE body (chunked terminator) land in this turn
                up1, down1 = relay.snapshot()
                up_per_turn.append(up1 - up0)
                down_per_turn.append(down1 - down0)
        finally:
            session.close()
        connections = relay.connections
    requests = _requests(_emulator_log(origin)[before:])[1:]  # drop the warm-up request
    slope, intercept, r2 = linear_fit(list(range(1, turns + 1)), up_per_turn)
    return {
        "up_bytes": up_per_turn,
        "down_bytes": down_per_turn,
        "up_total": sum(up_per_turn),
        "down_total": sum(down_per_turn),
        "up_growth_bytes_per_turn": slope,
        "up_fit_intercept": intercept,
        "up_fit_r2": r2,
        "tcp_connections": connections,
        "requests_logged": len(requests),
        "requests_with_previous_response_id": sum(1 for r in requests if r.get("previous_response_id")),
        "max_input_items": max(
            (len(r["input"]) if isinstance(r["input"], list) else 1 for r in requests), default=0
        ),
        "engine_reported_resends": resent,
    }


def run(quick: bool = False) -> dict[str, Any]:
    turns, words = (4, 20) if quick else (20, 40)
    cases: dict[str, Any] = {}
    with EmulatorProcess(answer_words=words) as emu:
        for label, transport, store in CASES:
            try:
                cases[label] = run_case(emu.base_url, emu.origin, transport, store, turns)
            except Exception as exc:  # a broken case is reported, not fatal to the whole run
                cases[label] = {"error": f"{type(exc).__name__}: {exc}"}
    ok = {k: v for k, v in cases.items() if "error" not in v}
    ratio = None
    if "WS store=true" in ok and "SSE store=false" in ok:
        ratio = ok["SSE store=false"]["up_bytes"][-1] / ok["WS store=true"]["up_bytes"][-1]
    return {"turns": turns, "answer_words": words, "cases": cases, "sse_full_vs_ws_last_turn_up_ratio": ratio}


def render(result: dict[str, Any]) -> str:
    cases = result["cases"]
    ok = {k: v for k, v in cases.items() if "error" not in v}
    turns = result["turns"]
    shown = sorted({1, 2, 5, 10, 15, turns} & set(range(1, turns + 1)))
    rows = [[f"turn {t}"] + [ok[c]["up_bytes"][t - 1] if c in ok else "—" for c in cases] for t in shown]
    rows.append(["total"] + [ok[c]["up_total"] if c in ok else "—" for c in cases])
    rows.append(
        ["growth per turn (fit)"] + [ok[c]["up_growth_bytes_per_turn"] if c in ok else "—" for c in cases]
    )
    out = [
        f"Client→server wire bytes per turn ({turns}-turn chain, answers padded with {result['answer_words']} "
        "filler words; HTTP headers and WS framing included):\n",
        markdown_table(["turn"] + list(cases), rows),
        "",
    ]
    rows = []
    for c, v in cases.items():
        if "error" in v:
            rows.append([c, "—", "—", "—", "—", "—", v["error"]])
            continue
        rows.append(
            [c, v["down_total"], v["tcp_connections"], f"{v['requests_with_previous_response_id']}/{v['requests_logged']}",
             v["max_input_items"], v["engine_reported_resends"], ""]
        )  # fmt: skip
    out.append(
        markdown_table(
            [
                "case",
                "server→client bytes (total)",
                "TCP connections",
                "requests with previous_response_id",
                "max input items",
                "transcript resends",
                "error",
            ],
            rows,
        )  # fmt: skip
    )
    if result["sse_full_vs_ws_last_turn_up_ratio"] is not None:
        out.append(
            f"\nAt turn {turns}, SSE with store=false sends "
            f"{result['sse_full_vs_ws_last_turn_up_ratio']:.1f}x the bytes of WS incremental."
        )
    out.append("")
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
