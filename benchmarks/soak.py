"""Soak run: many turns on several chains with random faults, interrupts and transport switches.

    python benchmarks/soak.py                       # 1,000 turns, 6 chains, pool of 4 (a few minutes)
    python benchmarks/soak.py --turns 150 --chains 4 --seed 7

One ``ResponsesSession`` (pool_size 4 by default) drives N chains from N threads at once, so chains compete for
pooled connections. Half of the chains use ``store=true``, half ``store=false`` (the case where the client's
transcript is the only thing that can rebuild history, DESIGN.md §4). Before a turn, with probability
``--fault-rate``, a one-shot emulator fault is armed (it strikes whichever request comes next); with
``--cancel-rate`` the turn is interrupted at its first visible delta; with ``--switch-rate`` the session's
transport toggle flips (WS ↔ SSE) mid-run, under everyone's feet.

Invariants checked for every turn (any violation makes the exit status 1):

* **no lost completed turn** — every turn that ends ``completed`` is in its chain afterwards (the chain's turn
  count and user messages equal the driver's own record), and no turn hangs;
* **no corrupted chain** — every completed answer equals ``reply_for`` of the chain's committed user messages
  plus the prompt, and the streamed deltas the user saw equal that answer (no stale or duplicated text);
* **clear errors** — a failed turn carries a ``ResponsesError`` whose text is non-empty and has no key in it;
* **bounded connections** — sampled every 50 ms: the session never holds more than ``pool_size`` WebSockets,
  and the server never sees more than ``pool_size`` open (plus the ones the client is closing at that moment);
* **memory** — RSS growth of this process is reported next to the bytes of the chains' transcripts, which is
  the only state that should grow.

The emulator runs in a child process (``--serve``, this same file) so its response store and logs do not
count in the client's RSS. The child adds a tiny ``/_soak/*`` control plane to the emulator's app (open
WebSocket count, one-shot fault arming with a count of faults that never fired) and stops itself after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

KEY = "sk-test-FAKE-soak-5c1d2e3f4a5b6c7d8e9f"

# One-shot faults the driver picks from (docs/emulator.md). Stalls are sized against the session's
# timeouts below: the long one exceeds idle_timeout, the short one does not.
FAULTS: list[dict[str, Any]] = [
    {"kind": "drop", "after": 0},
    {"kind": "drop", "after": 6},
    {"kind": "close", "code": 1011, "after": 6},
    {"kind": "close", "code": 1000, "after": 3},
    {"kind": "error", "status": 429, "after": 0},
    {"kind": "error", "status": 500, "after": 0},
    {"kind": "error", "status": 500, "after": 8},
    {"kind": "failed", "after": 6},
    {"kind": "stall", "after": 6, "seconds": 3.0},
    {"kind": "stall", "after": 4, "seconds": 0.3},
    {"kind": "malformed", "variant": "json", "after": 6},
    {"kind": "malformed", "variant": "binary", "after": 5},
    {"kind": "malformed", "variant": "utf8", "after": 7},
    {"kind": "cap", "responses": 1},
    {"kind": "refuse_upgrade", "status": 426},
    {"kind": "refuse_upgrade", "status": 503},
]

# Timeouts are generous next to loopback latencies but short next to the long stall (3 s), so a stall fault
# times out while a CPU-starved machine (2 cores shared with other work) does not produce false timeouts.
SESSION_SETTINGS = {
    "connect_timeout": 5.0,
    "first_event_timeout": 10.0,
    "idle_timeout": 2.0,
    "heartbeat": 5.0,
}
#: A cancel must be confirmed by the loop side within this long or the turn counts as stuck (a violation).
#: DESIGN.md §2 waits ~1 s in the magic; slower confirmations are counted and reported, not failed.
CANCEL_STUCK = 5.0


# --- the child: emulator + a light control plane ---------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Run the emulator in this process until SIGTERM or ``max_seconds``; print the base URL first."""
    import asyncio

    from aiohttp import web

    from ipy_responses_ws.emulator import Emulator, Fault

    class SoakEmulator(Emulator):
        unfired = 0
        armed = 0

        def make_app(self) -> web.Application:
            app = super().make_app()
            app.router.add_get("/_soak/stats", self._stats)
            app.router.add_post("/_soak/arm", self._arm)
            return app

        async def _stats(self, request: web.Request) -> web.Response:
            # Trim the logs of closed connections: the soak only needs counts, and full request bodies
            # (store=false resends the whole transcript) would otherwise grow this process without bound.
            open_ws = 0
            for c in self.connections:
                if c.closed_at is None and c.transport == "ws" and c.status == 101:
                    open_ws += 1
                elif c.closed_at is not None:
                    c.frames = []
            return web.json_response(
                {
                    "open_ws": open_ws,
                    "ws_total": sum(c.transport == "ws" for c in self.connections),
                    "http_total": sum(c.transport != "ws" for c in self.connections),
                    "armed": self.armed,
                    "unfired": self.unfired + len(self.faults.snapshot()),
                }
            )

        async def _arm(self, request: web.Request) -> web.Response:
            # At most one fault pending: a fault that found no matching request (an upgrade fault while
            # every turn reused a socket) is cleared and counted as unfired.
            self.unfired += len(self.faults.snapshot())
            self.faults.clear()
            self.faults.add(Fault.from_dict(await request.json()))
            self.armed += 1
            return web.json_response({"ok": True})

    emu = SoakEmulator(KEY, ttft=args.ttft, token_rate=args.token_rate)

    async def main() -> None:
        async with emu.serve():
            print(emu.base_url, flush=True)
            await asyncio.sleep(args.max_seconds)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@contextlib.contextmanager
def emulator_process(*, ttft: float, token_rate: float, max_seconds: float) -> Iterator[str]:
    """Start the child emulator; yield its base URL; always stop it."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--serve",
        "--ttft",
        str(ttft),
        "--token-rate",
        str(token_rate),
        "--max-seconds",
        str(max_seconds),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the soak emulator did not start (got {base_url!r})")
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def _control(base_url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    origin = base_url.rsplit("/v1", 1)[0]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(origin + path, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


# --- the driver ------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), after handing freed heap back to the OS.

    ``malloc_trim`` makes RSS show what is still in use rather than glibc's high-water mark (the soak
    builds and frees request bodies of hundreds of KB: store=false resends the whole transcript).
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pymalloc_stats() -> tuple[int, int]:
    """(bytes in pymalloc arenas, bytes in allocated blocks) from ``sys._debugmallocstats``.

    Small objects (<= 512 bytes) live in 1 MiB arenas that are returned to the OS only when completely
    empty; the gap between the two numbers is fragmentation that ``malloc_trim`` cannot release.
    """
    fd, path = tempfile.mkstemp()
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)  # the stats are written by C code to file descriptor 2
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    os.unlink(path)
    arenas = used = 0
    for line in text.splitlines():
        if "arenas * " in line and "bytes/arena" in line:
            arenas = int(line.rsplit("=", 1)[1].replace(",", "").strip())
        elif line.startswith("# bytes in allocated blocks"):
            used = int(line.rsplit("=", 1)[1].replace(",", "").strip())
    return arenas, used


@dataclass
class SoakReport:
    """Counts and measurements of one soak run; ``violations`` must stay empty."""

    turns: int = 0
    chains: int = 0
    pool_size: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    faults_armed: int = 0
    faults_unfired: int = 0
    cancels_requested: int = 0
    cancel_latencies: list[float] = field(default_factory=list)
    switches: int = 0
    max_client_ws: int = 0
    max_server_ws: int = 0
    server_over_pool_samples: int = 0
    samples: int = 0
    latencies: list[float] = field(default_factory=list)
    rss_start: int = 0
    rss_end: int = 0
    pymalloc_start: tuple[int, int] = (0, 0)
    pymalloc_end: tuple[int, int] = (0, 0)
    transcript_bytes: int = 0
    traced_growth: int | None = None  # live Python allocations made after the baseline (tracemalloc)
    traced_top: list[str] = field(default_factory=list)
    committed_turns: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def table(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        growth = self.rss_end - self.rss_start
        rows = [
            ("turns / chains / pool_size", f"{self.turns} / {self.chains} / {self.pool_size}"),
            ("wall time", f"{self.seconds:.1f} s ({self.turns / max(self.seconds, 1e-9):.1f} turns/s)"),
            ("outcomes", ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))),
            ("errors", ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"),
            ("recoveries", ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items())) or "none"),
            ("faults armed / never fired", f"{self.faults_armed} / {self.faults_unfired}"),
            ("interrupts requested", str(self.cancels_requested)),
            (
                "cancel confirmed by the loop: p50 / max (> 1 s)",
                f"{statistics.median(cl) * 1000:.0f} / {max(cl) * 1000:.0f} ms ({sum(c > 1 for c in cl)})"
                if (cl := self.cancel_latencies)
                else "n/a",
            ),
            ("transport switches", str(self.switches)),
            (
                "completed-turn latency p50 / p95",
                f"{statistics.median(lat) * 1000:.0f} / {p95 * 1000:.0f} ms",
            ),
            ("max WS held by the session", f"{self.max_client_ws} (pool_size {self.pool_size})"),
            (
                "max WS open on the server",
                f"{self.max_server_ws} ({self.server_over_pool_samples} of {self.samples} samples above pool_size)",
            ),
            ("committed turns (all chains)", str(self.committed_turns)),
            ("transcript bytes (JSON)", f"{self.transcript_bytes / 1e6:.2f} MB"),
            (
                "RSS start → end (growth)",
                f"{self.rss_start / 1e6:.1f} → {self.rss_end / 1e6:.1f} MB ({growth / 1e6:+.1f} MB, "
                f"{growth / max(self.transcript_bytes, 1):.1f}× the transcript)",
            ),
            (
                "pymalloc arenas (small objects): held / in use",
                f"{self.pymalloc_start[0] / 1e6:.1f} / {self.pymalloc_start[1] / 1e6:.1f} → "
                f"{self.pymalloc_end[0] / 1e6:.1f} / {self.pymalloc_end[1] / 1e6:.1f} MB"
                if all(self.pymalloc_end)
                else "n/a (tracemalloc hooks the allocator, pymalloc stats are not printed)",
            ),
            (
                "live Python heap growth (tracemalloc)",
                "not measured (--trace-memory)"
                if self.traced_growth is None
                else f"{self.traced_growth / 1e6:+.1f} MB ({self.traced_growth / max(self.transcript_bytes, 1):.1f}× "
                "the transcript)",
            ),
            ("lost completed turns", str(sum("lost" in v for v in self.violations))),
            ("corrupted answers", str(sum("corrupt" in v for v in self.violations))),
            ("violations", str(len(self.violations))),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|---|"]
        lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
        return "\n".join(lines)


class _Driver:
    def __init__(self, session: Any, base_url: str, report: SoakReport, args: Any) -> None:
        self.session = session
        self.base_url = base_url
        self.report = report
        self.args = args
        self.lock = threading.Lock()

    def violation(self, text: str) -> None:
        with self.lock:
            self.report.violations.append(text)

    def cancel(self, handle: Any, chain: str) -> None:
        """Interrupt like the magic does (cancel, wait for the loop to confirm) and time the confirmation."""
        t0 = time.perf_counter()
        confirmed = handle.cancel(wait=CANCEL_STUCK)
        with self.lock:
            self.report.cancel_latencies.append(time.perf_counter() - t0)
        if not confirmed:
            self.violation(f"{chain}: cancel not confirmed within {CANCEL_STUCK:g} s (stuck)")

    def run_turn(self, prompt: str, chain: str, store: bool, rng: random.Random) -> tuple[Any, str]:
        """One turn, foreground or background at random, maybe interrupted; returns (result, streamed)."""
        cancel = rng.random() < self.args.cancel_rate
        if cancel:
            with self.lock:
                self.report.cancels_requested += 1
        deltas: list[str] = []
        timeout = self.args.turn_timeout
        if rng.random() < 0.5:  # foreground: poll the handle like the magic
            handle = self.session.start(prompt, chain=chain, store=store)
            deadline = time.monotonic() + timeout
            while True:
                item = handle.get(timeout=0.05)
                if item is not None:
                    d = getattr(item, "delta", None)
                    if d and getattr(item, "type", "") == "response.output_text.delta":
                        deltas.append(d)
                        if cancel:
                            cancel = False
                            self.cancel(handle, chain)
                elif handle.done():
                    while (item := handle.get(timeout=0)) is not None:
                        d = getattr(item, "delta", None)
                        if d and item.type == "response.output_text.delta":
                            deltas.append(d)
                    break
                if time.monotonic() > deadline:
                    handle.cancel(wait=1.0)
                    self.violation(f"{chain}: turn hung (lost): {prompt!r}")
                    break
        else:  # background: on_event on the loop thread + done callback
            done = threading.Event()
            saw_delta = threading.Event()

            def on_event(item: Any) -> None:
                d = getattr(item, "delta", None)
                if d and item.type == "response.output_text.delta":
                    deltas.append(d)
                    saw_delta.set()

            handle = self.session.start(prompt, chain=chain, store=store, on_event=on_event)
            handle.add_done_callback(lambda _r: done.set())
            if cancel and saw_delta.wait(timeout):
                self.cancel(handle, chain)
            if not done.wait(timeout):
                handle.cancel(wait=1.0)
                self.violation(f"{chain}: background turn hung (lost): {prompt!r}")
        try:
            return handle.result(timeout=5), "".join(deltas)
        except TimeoutError:
            return None, "".join(deltas)

    def chain_worker(self, index: int, turns: int, seed: int) -> list[str]:
        from ipy_responses_ws.emulator import reply_for
        from ipy_responses_ws.errors import ResponsesError

        rng = random.Random(seed)
        name = f"chain-{index}"
        store = {"on": True, "off": False}.get(self.args.store, index % 2 == 0)
        committed: list[str] = []
        for i in range(turns):
            if rng.random() < self.args.fault_rate:
                _control(self.base_url, "/_soak/arm", rng.choice(FAULTS))
            if rng.random() < self.args.switch_rate:
                self.session.transport = "sse" if self.session.transport == "ws" else "ws"
                with self.lock:
                    self.report.switches += 1
            prompt = f"{name} turn {i}: {rng.choice(PROMPTS)}"
            t0 = time.perf_counter()
            result, streamed = self.run_turn(prompt, name, store, rng)
            if result is None:
                continue  # already reported as hung
            with self.lock:
                self.report.outcomes[result.status] += 1
                for flag in ("fallback_reason", "retried", "reconnected", "resent_transcript"):
                    if getattr(result, flag, None):
                        self.report.flags[flag] += 1
            if result.status == "completed":
                expected = reply_for([*committed, prompt])
                if result.text != expected:
                    self.violation(f"{name}: corrupt answer at turn {i} ({result.transport}, store={store})")
                elif streamed != expected:
                    self.violation(f"{name}: corrupt stream at turn {i}: the deltas shown != the answer")
                committed.append(prompt)
                with self.lock:
                    self.report.latencies.append(time.perf_counter() - t0)
            elif result.status == "failed":
                err = result.error
                kind = type(err).__name__
                if kind == "StreamTimeoutError":
                    kind += f"({err.phase})"
                with self.lock:
                    self.report.errors[kind] += 1
                if not isinstance(err, ResponsesError) or not str(err).strip() or KEY in str(err):
                    self.violation(f"{name}: unclear error at turn {i}: {err!r}")
            elif result.status not in ("cancelled", "incomplete"):
                self.violation(f"{name}: unknown status {result.status!r}")
        return committed

    def sample_connections(self, stop: threading.Event) -> None:
        while not stop.wait(0.05):
            try:
                conns = self.session.status()["connections"]
                server = _control(self.base_url, "/_soak/stats")
            except Exception:  # the session closing at the very end
                continue
            with self.lock:
                r = self.report
                r.samples += 1
                r.max_client_ws = max(r.max_client_ws, len(conns))
                r.max_server_ws = max(r.max_server_ws, server["open_ws"])
                if server["open_ws"] > r.pool_size:
                    r.server_over_pool_samples += 1
                if len(conns) > r.pool_size:
                    r.violations.append(f"the session held {len(conns)} WebSockets (pool_size {r.pool_size})")


PROMPTS = [
    "Summarise the plan in one line.",
    "What did I ask before? Keep it short.",
    "Écris une phrase en français, s'il te plaît — merci ✓",
    "Show a **bold** word, a `code` span and a list:\n- one\n- two",
    "<b>not bold</b> & <script>alert(1)</script> should stay text",
    "Explain previous_response_id in 10 words.",
    "数字を三つください",
    "A longer prompt " + "with several repeated words " * 8,
]


def run(
    *,
    turns: int = 1000,
    chains: int = 6,
    pool_size: int = 4,
    seed: int = 1,
    fault_rate: float = 0.10,
    cancel_rate: float = 0.05,
    switch_rate: float = 0.03,
    ttft: float = 0.0,
    token_rate: float = 4000.0,
    turn_timeout: float = 30.0,
    max_seconds: float = 900.0,
    trace_memory: bool = False,
    store: str = "mixed",
    lanes: bool = False,
) -> SoakReport:
    """Run the soak and return its report (see the module docstring for the invariants)."""
    from ipy_responses_ws.session import ResponsesSession

    args = argparse.Namespace(
        fault_rate=fault_rate,
        cancel_rate=cancel_rate,
        switch_rate=switch_rate,
        turn_timeout=turn_timeout,
        store=store,
    )
    report = SoakReport(turns=turns, chains=chains, pool_size=pool_size)
    per_chain = [turns // chains + (1 if i < turns % chains else 0) for i in range(chains)]
    with emulator_process(ttft=ttft, token_rate=token_rate, max_seconds=max_seconds) as base_url:
        session = ResponsesSession(
            base_url=base_url, api_key=KEY, pool_size=pool_size, use_stream_lanes=lanes, **SESSION_SETTINGS
        )
        driver = _Driver(session, base_url, report, args)
        try:
            # Warm the process (imports, loop thread, first connections, both transports, the control
            # plane) before the memory baseline, so one-time costs do not count as growth.
            from ipy_responses_ws.emulator import reply_for  # noqa: F401  (imported by the workers)

            _control(base_url, "/_soak/stats")
            for i in range(chains):
                for transport in ("ws", "sse", "ws"):
                    session.respond("warm-up", chain=f"warm-{i}", transport=transport)
            for i in range(chains):
                session.reset(f"warm-{i}")
            report.rss_start = rss_bytes()
            report.pymalloc_start = pymalloc_stats()
            if trace_memory:
                # Only allocations made from here on are traced: what is still alive at the end is growth.
                tracemalloc.start(1)
            stop = threading.Event()
            sampler = threading.Thread(target=driver.sample_connections, args=(stop,), daemon=True)
            sampler.start()
            committed: dict[int, list[str]] = {}
            t0 = time.perf_counter()

            def work(i: int) -> None:
                try:
                    committed[i] = driver.chain_worker(i, per_chain[i], seed * 1000 + i)
                except Exception as exc:  # a crash in the driver is a failed soak, not a hang
                    driver.violation(f"chain-{i}: driver crashed: {exc!r}")

            workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(chains)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(max_seconds)
            report.seconds = time.perf_counter() - t0
            stop.set()
            sampler.join(5)
            # No lost completed turn: the session's chains hold exactly the committed prompts.
            for i, prompts in committed.items():
                chain = session.chain(f"chain-{i}")
                users = [text for role, text in chain.history() if role == "user"]
                if chain.turns != len(prompts) or users != prompts:
                    report.violations.append(
                        f"chain-{i}: lost turns: the session has {chain.turns}, the driver saw {len(prompts)}"
                    )
                report.committed_turns += chain.turns
            report.transcript_bytes = sum(
                len(json.dumps(c.transcript, ensure_ascii=False).encode()) for c in session.chains.values()
            )
            report.rss_end = rss_bytes()
            report.pymalloc_end = pymalloc_stats()
            if trace_memory:
                snap = tracemalloc.take_snapshot()
                report.traced_growth = tracemalloc.get_traced_memory()[0]
                tracemalloc.stop()
                report.traced_top = [
                    f"{st.size / 1e6:7.2f} MB {st.count:7d} blocks  {st.traceback[0]}"
                    for st in snap.statistics("lineno")[:10]
                ]
            stats = _control(base_url, "/_soak/stats")
            report.faults_armed, report.faults_unfired = stats["armed"], stats["unfired"]
        finally:
            session.close()
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", type=int, default=1000)
    p.add_argument("--chains", type=int, default=6)
    p.add_argument("--pool-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault-rate", type=float, default=0.10)
    p.add_argument("--cancel-rate", type=float, default=0.05)
    p.add_argument("--switch-rate", type=float, default=0.03)
    p.add_argument("--ttft", type=float, default=0.0)
    p.add_argument("--token-rate", type=float, default=4000.0, help="emulator deltas per second")
    p.add_argument("--max-seconds", type=float, default=900.0, help="hard stop for the child emulator")
    p.add_argument(
        "--store",
        choices=("mixed", "on", "off"),
        default="mixed",
        help="store per chain (mixed: even chains on)",
    )
    p.add_argument(
        "--lanes", action="store_true", help="use_stream_lanes=True (one socket, a lane per chain)"
    )
    p.add_argument(
        "--trace-memory", action="store_true", help="also trace live Python allocations (tracemalloc; slower)"
    )
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    report = run(
        turns=args.turns,
        chains=args.chains,
        pool_size=args.pool_size,
        seed=args.seed,
        fault_rate=args.fault_rate,
        cancel_rate=args.cancel_rate,
        switch_rate=args.switch_rate,
        ttft=args.ttft,
        token_rate=args.token_rate,
        max_seconds=args.max_seconds,
        trace_memory=args.trace_memory,
        store=args.store,
        lanes=args.lanes,
    )
    print(report.table())
    if report.traced_top:
        print("\nlargest live allocations made during the run (tracemalloc, by line):")
        print("\n".join(report.traced_top))
    for v in report.violations[:50]:
        print("VIOLATION:", v)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
