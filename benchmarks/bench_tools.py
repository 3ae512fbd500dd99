"""Issue 12 item 9: a 20-step tool rollout (one function call per step, then the answer), six clients.

The emulator (its own process, emuproc.py) runs its deterministic tool-using model: the prompt
``call step 20 times`` with a function tool ``step`` gives 20 responses with one ``function_call`` each, then an
answer quoting every output (docs/emulator.md, "Tools"). Every client runs that rollout to the end, executing
``step(n)`` locally between responses; a rollout is 21 requests.

Contenders:

* ``ResponsesSession.respond(prompt, tools=[step], max_steps=25)`` over WS and over SSE, each with store true
  and false (SSE without store has no server-side state to chain on, so it re-sends the growing transcript);
* the OpenAI Agents SDK: ``Runner.run`` of an ``Agent`` with ``function_tool(step)`` on ``OpenAIResponsesWSModel``
  (``auto_previous_response_id=True``, ``max_turns=25``);
* livekit-plugins-openai's ``responses.LLM`` (WebSocket) with the chat → run calls → append outputs loop.

The two peers pin websockets below ours and bring many dependencies, so they run from their own venv
(benchmarks/peers/make_venv.sh, built here on first use) in one worker process each (benchmarks/peers/worker.py),
which times each rollout itself (wall and its own CPU) and answers over a pipe. Ours run in this process, timed
around ``respond()`` with ``time.process_time`` (every thread of this process; the emulator is another process).

Per repetition every contender runs one rollout, in an order rotated each repetition; ratios are ours ÷ theirs
per repetition, summarised by their median (stats.py). Profiles: zero delay (client overhead only) and realistic
(ttft 0.3 s before each response's first output event, 100 deltas/s).

Bytes: after the timed runs, each contender runs one more rollout through a byte-counting TCP relay (real wire
bytes: HTTP request lines and headers, WebSocket frame headers and masks). The upstream bytes are cut into
requests at each turn of the conversation (a run of client→server bytes with no server→client bytes between),
which is exact here because each request waits for the previous response. The emulator's request log gives what
each request carried (``previous_response_id``, input items).

Run alone:  python benchmarks/bench_tools.py [--quick] [--json out.json] [--profile zero-delay|realistic]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contenders import MODEL
from emuproc import FAKE_KEY, EmulatorProcess
from stats import finite_or_none, fmt, linear_fit, markdown_table, median, p90, pairwise_ratios
from wire import ByteCountingRelay

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
PROMPT = "call step 20 times"
STEPS = 20
REQUESTS = STEPS + 1  # the prompt, then one request per function_call_output

WS = "ours WS store=true"
WS_NOSTORE = "ours WS store=false"
SSE = "ours SSE store=true"
SSE_NOSTORE = "ours SSE store=false"
AGENTS = "OpenAI Agents SDK (WS model)"
LIVEKIT = "livekit-plugins-openai responses.LLM (WS)"
ORDER = [WS, WS_NOSTORE, SSE, SSE_NOSTORE, AGENTS, LIVEKIT]

#: (ours, theirs, key); ratio = ours / theirs of total rollout wall time, < 1 means ours is faster.
PAIRS = [
    (WS, AGENTS, "ws_vs_agents_sdk_ratio"),
    (WS, LIVEKIT, "ws_vs_livekit_ratio"),
    (WS, SSE, "ws_vs_sse_ratio"),
    (WS_NOSTORE, SSE_NOSTORE, "ws_nostore_vs_sse_nostore_ratio"),
    (WS_NOSTORE, AGENTS, "ws_nostore_vs_agents_sdk_ratio"),
    (WS_NOSTORE, LIVEKIT, "ws_nostore_vs_livekit_ratio"),
]


def step(n: int) -> str:
    """One step of a long rollout."""
    return f"step {n} done"


def _quoted(text: str) -> int:
    """How many tool outputs the final answer quotes (the emulator writes ``returned `step k done` ``)."""
    return sum(1 for k in range(1, STEPS + 1) if f"`step {k} done`" in text)


@dataclass
class Profile:
    name: str
    ttft: float
    token_rate: float
    reps: int


def profiles(quick: bool) -> list[Profile]:
    if quick:
        return [Profile("zero-delay", 0.0, 0.0, 2), Profile("realistic", 0.02, 0.0, 1)]
    # Realistic: 0.3 s before each response's first output event, then 100 deltas/s (a fast model's streaming
    # rate); a rollout takes ~10 s there, so 3 repetitions of 6 clients already take 3 minutes.
    return [Profile("zero-delay", 0.0, 0.0, 7), Profile("realistic", 0.3, 100.0, 3)]


@dataclass
class Sample:
    wall: float
    cpu: float
    calls: int
    quoted: int


# --- contenders -----------------------------------------------------------------------------------------------


class Ours:
    """``ResponsesSession(transport=..., store=...).respond(PROMPT, tools=[step], max_steps=25)`` on a fresh chain."""

    def __init__(self, name: str, base_url: str, transport: str, store: bool) -> None:
        self.name = name
        self.base_url = base_url
        self.transport = transport
        self.store = store
        self.chain = "bench"

    def open(self) -> None:
        from ipy_responses_ws import ResponsesSession

        self.session = ResponsesSession(
            base_url=self.base_url, api_key=FAKE_KEY, transport=self.transport, store=self.store, model=MODEL
        )
        # Warm up on the measured chain (the pool gives a chain its own idle socket back), then reset it.
        res = self.session.respond("call step 2 times", tools=[step], max_steps=5, chain=self.chain)
        if not res.ok:
            raise RuntimeError(f"warm-up rollout ended {res.status}: {res.error!r}")

    def rollout(self) -> Sample:
        self.session.reset(chain=self.chain)
        c0 = time.process_time()
        t0 = time.perf_counter()
        res = self.session.respond(PROMPT, tools=[step], max_steps=STEPS + 5, chain=self.chain)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if not res.ok:
            raise RuntimeError(f"rollout ended {res.status}: {res.error!r}")
        return Sample(wall, cpu, len(res.tool_calls), _quoted(res.text))

    def close(self) -> None:
        self.session.close()


def ensure_peers_venv(build: bool = True) -> Path:
    """The peers' interpreter, building their venv first if needed (about 40 s once; reused after).

    With ``build=False`` (``--quick``, the CI smoke run) an existing, complete venv is used and a missing one is
    not built: the peers are then reported as not run.
    """
    venv = Path(os.environ.get("IPY_RWS_PEERS_VENV", PEERS_DIR / ".venv"))
    if not build:
        installed = venv / "requirements.installed.txt"
        req = PEERS_DIR / "requirements.txt"
        if not (installed.exists() and installed.read_text() == req.read_text()):
            raise RuntimeError(
                "not built (--quick does not build it; bash benchmarks/peers/make_venv.sh does)"
            )
        return venv / "bin" / "python"
    proc = subprocess.run(
        ["bash", str(PEERS_DIR / "make_venv.sh")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks/peers/make_venv.sh failed: {proc.stderr.strip()[-500:]}")
    return venv / "bin" / "python"


class Peer:
    """A peer in its own worker process (benchmarks/peers/worker.py), one JSON line per rollout."""

    def __init__(self, name: str, kind: str, base_url: str, python: Path) -> None:
        self.name = name
        self.kind = kind
        self.base_url = base_url
        self.python = python
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []

    def open(self) -> None:
        self.proc = subprocess.Popen(
            [str(self.python), str(PEERS_DIR / "worker.py"), self.kind, self.base_url, FAKE_KEY, MODEL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._drain, daemon=True, name=f"{self.kind}-stderr").start()
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"{self.kind} worker did not start: {ready}")

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-40]

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            tail = "".join(self.stderr[-8:]).strip()
            raise RuntimeError(f"{self.kind} worker exited {self.proc.returncode}: {tail[-600:]}")
        return json.loads(line)

    def rollout(self) -> Sample:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": "rollout", "prompt": PROMPT}) + "\n")
        self.proc.stdin.flush()
        res = self._read()
        if "error" in res:
            raise RuntimeError(res["error"])
        return Sample(res["wall"], res["cpu"], res["calls"], _quoted(res.get("text", "")))

    def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def make_contenders(base_url: str, peers_python: Path | None) -> list[Any]:
    out: list[Any] = [
        Ours(WS, base_url, "ws", True),
        Ours(WS_NOSTORE, base_url, "ws", False),
        Ours(SSE, base_url, "sse", True),
        Ours(SSE_NOSTORE, base_url, "sse", False),
    ]
    if peers_python is not None:
        out += [
            Peer(AGENTS, "agents", base_url, peers_python),
            Peer(LIVEKIT, "livekit", base_url, peers_python),
        ]
    return out


def _emulator_requests(origin: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(request body or frame, its log entry)`` for every request the emulator parsed, in order."""
    with urllib.request.urlopen(origin + "/_emulator/log", timeout=10) as resp:
        entries = json.loads(resp.read())["connections"]
    out = []
    for entry in sorted(entries, key=lambda e: e["id"]):
        for frame in entry.get("frames", []):
            if isinstance(frame, dict) and "input" in frame:
                out.append((frame, entry))
    return out


def measure_bytes(emu: EmulatorProcess, peers_python: Path | None) -> dict[str, Any]:
    """One more rollout per contender through its own relay: wire bytes of each request, what each carried."""
    parts = urlsplit(emu.base_url)
    out: dict[str, Any] = {}
    for name in ORDER:
        if name in (AGENTS, LIVEKIT) and peers_python is None:
            continue
        with ByteCountingRelay(parts.hostname or "127.0.0.1", parts.port or 80) as relay:
            url = f"http://127.0.0.1:{relay.port}/v1"
            contender = next(c for c in make_contenders(url, peers_python) if c.name == name)
            try:
                contender.open()
                mark = len(relay.log)
                seen = len(_emulator_requests(emu.origin))
                sample = contender.rollout()
                time.sleep(0.05)  # let the relay's loop log the last chunks
                sizes = relay.requests_since(mark)
                logged = _emulator_requests(emu.origin)[seen:]
                reqs = [r for r, _ in logged]
                extensions = sorted(
                    {
                        v
                        for _, e in logged
                        for k, v in (e.get("headers") or {}).items()
                        if k.lower() == "sec-websocket-extensions"
                    }
                )
                out[name] = {
                    "up_bytes_per_request": sizes,
                    "up_bytes_total": sum(sizes),
                    "requests": len(sizes),
                    "server_requests": len(reqs),
                    "input_items_per_request": [len(r.get("input") or []) for r in reqs],
                    # what each request carried, re-serialised compactly: comparable across clients whatever
                    # their framing or compression (the Agents SDK's websockets client deflates its frames)
                    "json_bytes_per_request": [
                        len(json.dumps(r, separators=(",", ":")).encode()) for r in reqs
                    ],
                    "by_previous_response_id": sum(1 for r in reqs if r.get("previous_response_id")),
                    "ws_extensions_offered": extensions,
                    "calls": sample.calls,
                    "error": None,
                }
            except Exception:
                out[name] = {"error": traceback.format_exc(limit=2).strip().splitlines()[-1]}
                print(f"  [bytes {name}] {out[name]['error']}", file=sys.stderr)
            finally:
                with contextlib.suppress(Exception):
                    contender.close()
    return out


# --- the timed runs --------------------------------------------------------------------------------------------


@dataclass
class Track:
    contender: Any
    samples: dict[int, Sample] = field(default_factory=dict)
    error: str | None = None


def _fail(track: Track, stage: str) -> None:
    track.error = f"{stage}: {traceback.format_exc(limit=3).strip().splitlines()[-1]}"
    print(f"  [{track.contender.name}] {track.error}", file=sys.stderr)


def run_profile(
    profile: Profile, peers_python: Path | None, peers_error: str | None, with_bytes: bool
) -> dict:
    started = time.perf_counter()
    with EmulatorProcess(ttft=profile.ttft, token_rate=profile.token_rate) as emu:
        tracks = {c.name: Track(c) for c in make_contenders(emu.base_url, peers_python)}
        for track in tracks.values():
            try:
                track.contender.open()
            except Exception:
                _fail(track, "open")
        try:
            for rep in range(profile.reps):
                live = [t for t in tracks.values() if t.error is None]
                shift = rep % max(1, len(live))
                for t in live[shift:] + live[:shift]:
                    try:
                        t.samples[rep] = t.contender.rollout()
                    except Exception:
                        _fail(t, f"repetition {rep}")
        finally:
            for track in tracks.values():
                try:
                    track.contender.close()
                except Exception:
                    if track.error is None:
                        _fail(track, "close")
        wire = measure_bytes(emu, peers_python) if with_bytes else None
    res = summarise(profile, tracks, peers_error)
    if wire is not None:
        res["bytes"] = wire
    res["wall_seconds"] = round(time.perf_counter() - started, 1)
    return res


def summarise(profile: Profile, tracks: dict[str, Track], peers_error: str | None) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for name in ORDER:
        track = tracks.get(name)
        samples = list(track.samples.values()) if track else []
        wall = [s.wall * 1000 for s in samples]
        cpu = [s.cpu * 1000 for s in samples]
        error = track.error if track else (peers_error or "not run")
        per[name] = {
            "n": len(samples),
            "wall_median_ms": finite_or_none(median(wall)),
            "wall_p90_ms": finite_or_none(p90(wall)),
            "wall_all_ms": [round(w, 2) for w in wall],
            "per_request_ms": finite_or_none(median(wall) / REQUESTS),
            # above the emulator's fixed ttft (token pacing, where set, is still inside)
            "per_request_above_ttft_ms": finite_or_none(median(wall) / REQUESTS - profile.ttft * 1000),
            "cpu_median_ms": finite_or_none(median(cpu)),
            "cpu_per_request_ms": finite_or_none(median(cpu) / REQUESTS),
            "calls": sorted({s.calls for s in samples}),
            "outputs_quoted": sorted({s.quoted for s in samples}),
            "error": error,
        }
    ratios: dict[str, Any] = {}
    for ours, theirs, key in PAIRS:
        a, b = tracks.get(ours), tracks.get(theirs)
        keys = sorted(set(a.samples) & set(b.samples)) if a and b else []
        r = (
            pairwise_ratios([a.samples[k].wall for k in keys], [b.samples[k].wall for k in keys])
            if keys
            else []
        )
        rc = (
            pairwise_ratios([a.samples[k].cpu for k in keys], [b.samples[k].cpu for k in keys])
            if keys
            else []
        )
        ratios[key] = {
            "ours": ours,
            "theirs": theirs,
            "n": len(r),
            "median": finite_or_none(median(r)),
            "p90": finite_or_none(p90(r)),
            "cpu_median": finite_or_none(median(rc)),
        }
    return {"profile": profile.__dict__, "contenders": per, "ratios": ratios}


def bytes_summary(wire: dict[str, Any]) -> dict[str, Any]:
    """Step requests (2..21, one function_call_output each): flat for ours over WS, growing for SSE no store."""
    out: dict[str, Any] = {}
    for name, w in wire.items():
        sizes = w.get("up_bytes_per_request") or []
        steps = sizes[1:]
        if len(steps) >= 2:
            slope, _, _ = linear_fit(list(range(len(steps))), steps)
            spread = (max(steps) - min(steps)) / median(steps)
        else:
            slope, spread = float("nan"), float("nan")
        js = (w.get("json_bytes_per_request") or [])[1:]
        out[name] = {
            "step_json_bytes_median": finite_or_none(median(js)),
            "step_json_bytes_last": js[-1] if js else None,
            "first_request_bytes": sizes[0] if sizes else None,
            "step_bytes_median": finite_or_none(median(steps)),
            "step_bytes_last": steps[-1] if steps else None,
            "step_bytes_slope_per_step": finite_or_none(slope),
            "step_bytes_spread": finite_or_none(spread),
        }
    return out


def targets(result: dict[str, Any]) -> dict[str, Any]:
    zero = result.get("zero-delay") or {}
    ratios = zero.get("ratios") or {}

    def check(key: str, limit: float) -> bool | None:
        value = (ratios.get(key) or {}).get("median")
        return None if value is None else value <= limit

    wire = zero.get("bytes") or {}
    ws = (wire.get(WS) or {}).get("up_bytes_per_request") or []
    sse = (wire.get(SSE_NOSTORE) or {}).get("up_bytes_per_request") or []
    flat = None
    if len(ws) == REQUESTS:
        steps = ws[1:]
        flat = (max(steps) - min(steps)) <= 0.05 * median(steps)
    grows = None
    if len(sse) == REQUESTS:
        steps = sse[1:]
        grows = all(b > a for a, b in zip(steps, steps[1:], strict=False))
    return {
        "ours WS <= Agents SDK WS (zero delay, total rollout)": check("ws_vs_agents_sdk_ratio", 1.0),
        "ours WS <= livekit responses.LLM (zero delay, total rollout)": check("ws_vs_livekit_ratio", 1.0),
        "ours WS <= ours SSE (zero delay, total rollout)": check("ws_vs_sse_ratio", 1.0),
        "ours WS step requests flat (spread <= 5%)": flat,
        "ours SSE store=false step requests grow every step": grows,
    }


def _preload() -> None:
    import ipy_responses_ws.session  # noqa: F401
    import ipy_responses_ws.tool_loop  # noqa: F401


def run(quick: bool = False, only: str | None = None) -> dict[str, Any]:
    threading.Thread(target=_preload, name="preload", daemon=True).start()
    peers_python: Path | None = None
    peers_error: str | None = None
    try:
        peers_python = ensure_peers_venv(build=not quick)
    except Exception as exc:
        peers_error = f"peers venv: {exc}"
        print(f"  {peers_error}", file=sys.stderr)
    result: dict[str, Any] = {}
    for p in profiles(quick):
        if only in (None, p.name):
            result[p.name] = run_profile(p, peers_python, peers_error, with_bytes=p.name == "zero-delay")
    if "zero-delay" in result and "bytes" in result["zero-delay"]:
        result["zero-delay"]["bytes_summary"] = bytes_summary(result["zero-delay"]["bytes"])
    result["targets"] = targets(result)
    result["peer_versions"] = peer_versions(peers_python)
    return result


def peer_versions(python: Path | None) -> dict[str, str | None]:
    if python is None:
        return {}
    code = (
        "import json; from importlib import metadata as m; "
        "print(json.dumps({n: m.version(n) for n in "
        "['openai-agents', 'livekit-agents', 'livekit-plugins-openai', 'openai', 'websockets', 'aiohttp']}))"
    )
    try:
        return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout)
    except Exception:
        return {}


def render(result: dict[str, Any]) -> str:
    out: list[str] = []
    if result.get("peer_versions"):
        out.append(
            "Peers (own venv): " + ", ".join(f"{k} {v}" for k, v in result["peer_versions"].items()) + "."
        )
        out.append("")
    for pname in ("zero-delay", "realistic"):
        res = result.get(pname)
        if not res:
            continue
        prof = res["profile"]
        out.append(
            f"**{pname}** (emulator ttft {prof['ttft']} s, {prof['token_rate'] or 'unthrottled'} deltas/s; "
            f"`{PROMPT}`: {REQUESTS} requests per rollout; {prof['reps']} repetitions, order rotated; "
            f"{res.get('wall_seconds')} s)\n"
        )
        rows = []
        for cname, c in res["contenders"].items():
            rows.append(
                [cname, c["n"], c["wall_median_ms"], c["wall_p90_ms"], c["per_request_ms"],
                 c["cpu_median_ms"], c["cpu_per_request_ms"], ",".join(map(str, c["calls"])) or "—",
                 c["error"] or ""]
            )  # fmt: skip
        out.append(
            markdown_table(
                [
                    "client",
                    "rollouts",
                    "median ms",
                    "p90 ms",
                    "ms per request",
                    "client CPU ms",
                    "CPU ms per request",
                    "calls run",
                    "error",
                ],
                rows,
            )  # fmt: skip
        )
        out.append("")
        rows = [
            [f"{r['ours']} / {r['theirs']}", r["n"], r["median"], r["p90"], r["cpu_median"]]
            for r in res["ratios"].values()
        ]
        out.append(
            markdown_table(
                ["pairwise ratio (ours/theirs)", "pairs", "median", "p90", "client CPU ratio"], rows
            )
        )
        out.append("")
        wire = res.get("bytes")
        if wire:
            summ = res.get("bytes_summary") or {}
            out.append(
                "Bytes sent (one rollout each through a byte-counting relay; wire bytes per request):\n"
            )
            rows = []
            for cname, w in wire.items():
                if w.get("error"):
                    rows.append([cname] + ["—"] * 8 + [w["error"]])
                    continue
                s = summ.get(cname, {})
                items = w["input_items_per_request"]
                rows.append(
                    [cname, f"{w['requests']} ({w['server_requests']} at the server)", s.get("first_request_bytes"),
                     s.get("step_bytes_median"), s.get("step_bytes_last"), w["up_bytes_total"],
                     f"{fmt(s.get('step_json_bytes_median'))} → {fmt(s.get('step_json_bytes_last'))}",
                     f"{w['by_previous_response_id']}/{w['server_requests']}",
                     f"{items[1] if len(items) > 1 else '—'} → {items[-1] if items else '—'}",
                     "; ".join(w.get("ws_extensions_offered") or []) or "none"]
                )  # fmt: skip
            out.append(
                markdown_table(
                    [
                        "client",
                        "requests",
                        "request 1 wire B",
                        "step request wire B (median)",
                        "last request wire B",
                        "total wire B",
                        "step request JSON B (median → last)",
                        "by previous_response_id",
                        "input items (request 2 → last)",
                        "WS extensions offered",
                    ],
                    rows,
                )  # fmt: skip
            )
            out.append("")
            for cname in (WS, SSE_NOSTORE):
                sizes = (wire.get(cname) or {}).get("up_bytes_per_request")
                if sizes:
                    out.append(f"- {cname}, bytes of each request: {', '.join(map(str, sizes))}")
            out.append("")
    rows = [
        [t, "—" if ok is None else ("PASS" if ok else "FAIL")] for t, ok in result.get("targets", {}).items()
    ]
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
