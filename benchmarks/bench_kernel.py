"""Issue items 4-6: the notebook path in a real kernel (jupyter_client), against emulators in their own processes.

4. Time from the execute request to the first widget update that shows answer text (warm connection), and iopub
   bytes per response for answers from 1 KB to 200 KB with the number of widget updates: bytes per answer byte
   per size and a least-squares line through (answer bytes, iopub bytes), whose r² says how linear it is.
5. Memory and leaks: kernel RSS, fds, sockets, threads, asyncio tasks on the engine's loop and live widgets,
   before and after 1,000 fast turns through the session API inside the kernel, and around a run of
   ``%%respond`` cells.
6. Concurrency: 8 ``%%respond --background`` cells on 8 chains at once vs the same 8 cells one after another;
   all must complete; connections seen (peak ESTABLISHED sockets from the kernel to the emulator). Then the same
   wave with a pool as large as the wave, and over the opt-in ``stream_id`` lanes (one socket).

Run alone:  python benchmarks/bench_kernel.py [--quick] [--only first_update,iopub,memory,concurrency]
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.request
from typing import Any

from emuproc import FAKE_KEY, EmulatorProcess
from kernel import Execution, Kernel
from stats import finite_or_none, linear_fit, markdown_table, median, p90, pairwise_ratios

# The emulator's answer starts with "## Turn N: <prompt>" (ipy_responses_ws.emulator.model.reply_for); the
# first update whose HTML contains "Turn" is the first one that shows answer text.
_ANSWER_MARK = re.compile(r"Turn\b")


def _port(base_url: str) -> int:
    return int(base_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _env(base_url: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": FAKE_KEY}


def first_answer_update(ex: Execution) -> tuple[float | None, str]:
    """Seconds from the execute request until answer text first reached the frontend, and by which message.

    Answer text can arrive as a live-tail ``update``, as the ``comm_open`` of a new (frozen block) widget, or, if
    the whole answer finished before the first coalesced update, only in the final ``update_display_data``.
    """
    hits: list[tuple[float, str]] = []
    for t, kind, state in ex.widget_states():
        value = state.get("value")
        if isinstance(value, str) and _ANSWER_MARK.search(value):
            hits.append((t, f"widget {kind}"))
            break
    for t, m in ex.messages:
        if m["msg_type"] in ("update_display_data", "display_data"):
            text = m["content"].get("data", {}).get("text/markdown", "")
            if _ANSWER_MARK.search(text):
                hits.append((t, m["msg_type"]))
                break
    return min(hits) if hits else (None, "none")


def _words_for(target_bytes: int) -> int:
    """Filler words that make a first-turn answer about ``target_bytes`` long (reply_for is linear in words)."""
    from ipy_responses_ws.emulator.model import reply_for

    base = len(reply_for(["size probe"], words=0).encode())
    per_word = (len(reply_for(["size probe"], words=1000).encode()) - base) / 1000
    return max(0, round((target_bytes - base) / per_word))


# --- item 4 ------------------------------------------------------------------------------------------------


def first_update(k: Kernel, cells: int) -> dict[str, Any]:
    """Execute request → first widget update with answer text, on a warm connection (zero-delay emulator)."""
    for i in range(2):
        k.run(f"%%respond -c fu\nwarm-up {i}")
    firsts: list[float] = []
    via: dict[str, int] = {}
    totals: list[float] = []
    baseline: list[float] = []
    for i in range(cells):
        # Interleave an empty cell: the kernel's own execute → idle round trip is the floor under everything.
        empty = k.run("pass")
        baseline.append(empty.messages[-1][0] * 1000)
        ex = k.run(f"%%respond -c fu\nprobe {i}")
        t, kind = first_answer_update(ex)
        via[kind] = via.get(kind, 0) + 1
        if t is not None:
            firsts.append(t * 1000)
        totals.append(ex.messages[-1][0] * 1000)
    return {
        "cells": cells,
        "with_answer_update": len(firsts),
        "first_answer_via": via,
        "first_update_ms_median": finite_or_none(median(firsts)),
        "first_update_ms_p90": finite_or_none(p90(firsts)),
        "cell_to_idle_ms_median": finite_or_none(median(totals)),
        "cell_to_idle_ms_p90": finite_or_none(p90(totals)),
        "empty_cell_to_idle_ms_median": finite_or_none(median(baseline)),
    }


def first_update_streaming(k: Kernel, cells: int, token_rate: float) -> dict[str, Any]:
    """The same, while the answer is still streaming (ttft 0, ``token_rate`` deltas/s), so the live view draws.

    ``engine_ttft_ms`` is the engine's own time to the first delta (``TurnResult.ttft``, from ``start()``), for
    context: the difference is roughly what the magic and the widget layer add before text is visible.
    """
    firsts: list[float] = []
    ttfts: list[float] = []
    via: dict[str, int] = {}
    with EmulatorProcess(token_rate=token_rate) as emu:
        k.run(f"%responses config base_url={emu.base_url}")
        k.run("%%respond -c fus\nwarm-up")
        for i in range(cells):
            ex = k.run(f"%%respond --new -c fus -o _bench_fus\nprobe {i}", timeout=120)
            t, kind = first_answer_update(ex)
            via[kind] = via.get(kind, 0) + 1
            if t is not None:
                firsts.append(t * 1000)
            ttft = k.eval_json("_bench_fus.ttft")
            if ttft is not None:
                ttfts.append(ttft * 1000)
    return {
        "cells": cells,
        "token_rate": token_rate,
        "first_answer_via": via,
        "first_update_ms_median": finite_or_none(median(firsts)),
        "first_update_ms_p90": finite_or_none(p90(firsts)),
        "engine_ttft_ms_median": finite_or_none(median(ttfts)),
    }


def iopub_by_kind(ex: Execution) -> dict[str, dict[str, int]]:
    """iopub bytes and messages of one execution by kind: ``comm_open HTMLModel``, ``comm_msg HTMLModel value``
    (the answer and status redraws), ``comm_msg VBoxModel children``, ``comm_close``, ``update_display_data``...
    Bytes are counted like :meth:`Execution.iopub_bytes`. Says where a view's traffic goes (docs/live-view.md).
    """
    model_of: dict[str, str] = {}
    out: dict[str, dict[str, int]] = {}
    for _, m in ex.messages:
        content = m.get("content", {})
        kind = m["msg_type"]
        if kind == "comm_open":
            model_of[content.get("comm_id", "")] = (
                content.get("data", {}).get("state", {}).get("_model_name", "?")
            )
            kind = f"comm_open {model_of[content.get('comm_id', '')]}"
        elif kind == "comm_msg":
            state = content.get("data", {}).get("state", {})
            kind = f"comm_msg {model_of.get(content.get('comm_id', ''), '?')} {','.join(sorted(state))}"
        size = sum(
            len(json.dumps(m.get(part, {}), default=str, separators=(",", ":")).encode())
            for part in ("header", "parent_header", "metadata", "content")
        )
        row = out.setdefault(kind, {"messages": 0, "bytes": 0})
        row["messages"] += 1
        row["bytes"] += size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))


def _one_size(k: Kernel, i: int, size: int, token_rate: float) -> dict[str, Any]:
    with EmulatorProcess(answer_words=_words_for(size), token_rate=token_rate) as emu:
        k.run(f"%responses config base_url={emu.base_url}")
        ex = k.run(f"%%respond --new -c size{i} -o _bench_size\nsize probe", timeout=600)
        info = k.eval_json(
            "{'bytes': len(_bench_size.text.encode()), 'status': _bench_size.status, "
            "'elapsed': _bench_size.elapsed}"
        )
    updates = ex.widget_updates()
    value_updates = [s for _, s in updates if "value" in s]
    iopub = ex.iopub_bytes()
    return {
        "target_bytes": size,
        "token_rate": token_rate,
        "answer_bytes": info["bytes"],
        "status": info["status"],
        "stream_seconds": info["elapsed"],
        "iopub_bytes": iopub,
        "iopub_messages": len(ex.messages),
        "widget_updates": len(updates),
        "value_updates": len(value_updates),
        "largest_value_bytes": max((len(s["value"].encode()) for s in value_updates), default=0),
        "iopub_bytes_per_answer_byte": iopub / info["bytes"] if info["bytes"] else None,
        "iopub_by_kind": iopub_by_kind(ex),
    }


def iopub_scaling(
    k: Kernel, sizes: list[int], token_rate: float, slow: tuple[int, float] | None
) -> dict[str, Any]:
    """iopub bytes and widget updates for answers of the given sizes; each size gets its own emulator.

    The fit uses the sizes streamed at ``token_rate``. ``slow`` = (size, rate) adds one answer streamed at a
    model-like rate: the live tail is re-sent on every coalesced update, so per answer byte a slow stream costs
    more than a fast one (traffic grows with stream duration x tail size, still linear in the answer length).
    """
    rows = [_one_size(k, i, size, token_rate) for i, size in enumerate(sizes)]
    slow_row = _one_size(k, len(sizes), slow[0], slow[1]) if slow else None
    slope, intercept, r2 = linear_fit([r["answer_bytes"] for r in rows], [r["iopub_bytes"] for r in rows])
    up_slope, _, up_r2 = linear_fit([r["answer_bytes"] for r in rows], [r["widget_updates"] for r in rows])
    return {
        "token_rate": token_rate,
        "sizes": rows,
        "slow_rate": slow_row,
        "fit_bytes_per_answer_byte": finite_or_none(slope),
        "fit_intercept_bytes": finite_or_none(intercept),
        "fit_r2": finite_or_none(r2),
        "updates_per_kb_fit": finite_or_none(up_slope * 1000),
        "updates_fit_r2": finite_or_none(up_r2),
    }


# --- item 5 ------------------------------------------------------------------------------------------------

_MEM_SETUP = r"""
import asyncio as _aio, gc as _gc, threading as _th, time as _time
from ipy_responses_ws import _extension as _ext
from ipy_responses_ws.runtime import get_runtime as _get_runtime
_bench_s = _ext.get_session()

def _bench_turns(n, block=20, chain="mem"):
    bad = 0
    t0 = _time.perf_counter()
    for i in range(n):
        if i % block == 0:
            _bench_s.reset(chain)
        r = _bench_s.respond(f"m{i}", chain=chain)
        bad += r.status != "completed"
    return {"bad": bad, "seconds": _time.perf_counter() - t0}

def _bench_tracemalloc(n):
    # Python-level allocations that survive n more turns (the RSS numbers cannot tell a leak from allocator
    # arenas that are kept for reuse).
    import tracemalloc
    tracemalloc.start(8)
    try:
        _gc.collect()
        s1 = tracemalloc.take_snapshot()
        _bench_turns(n)
        _gc.collect()
        s2 = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    diff = s2.compare_to(s1, "traceback")
    top = diff[0] if diff else None
    site = f"{top.traceback[-1].filename.rsplit('/', 1)[-1]}:{top.traceback[-1].lineno}" if top else ""
    return {"turns": n, "net_kib": sum(d.size_diff for d in diff) / 1024,
            "top_kib": (top.size_diff / 1024) if top else 0.0, "top_site": site}

def _bench_state():
    async def _count():
        return len(_aio.all_tasks()) - 1   # minus this counting task
    try:
        import ipywidgets.widgets.widget as _w
        widgets = len(getattr(_w, "_instances", {}))
    except Exception:
        widgets = -1
    comms = len(get_ipython().kernel.comm_manager.comms) if hasattr(get_ipython(), "kernel") else -1
    _gc.collect()
    return {"loop_tasks": _get_runtime().run(_count(), timeout=10), "threads": _th.active_count(),
            "widgets": widgets, "comms": comms,
            "connections": len(_bench_s.status().get("connections", []))}
"""


def memory(k: Kernel, turns: int, cells: int) -> dict[str, Any]:
    k.run(_MEM_SETUP)
    warm = k.eval_json("_bench_turns(50)")
    before = {**k.proc_stats(), **k.eval_json("_bench_state()")}
    # Two halves: a leak keeps growing in the second half, allocator warm-up does not.
    first = k.eval_json(f"_bench_turns({turns // 2})", timeout=900)
    middle = {**k.proc_stats(), **k.eval_json("_bench_state()")}
    second = k.eval_json(f"_bench_turns({turns - turns // 2})", timeout=900)
    after = {**k.proc_stats(), **k.eval_json("_bench_state()")}
    run = {"bad": first["bad"] + second["bad"], "seconds": first["seconds"] + second["seconds"]}
    traced = k.eval_json(f"_bench_tracemalloc({max(20, turns // 2)})", timeout=900)

    # A smaller run of %%respond cells (new conversation every 20 cells, like the session loop above).
    for i in range(3):
        k.run(f"%%respond -c cells\nwarm-up {i}")
    cells_before = {**k.proc_stats(), **k.eval_json("_bench_state()")}
    t0 = time.perf_counter()
    failed = 0
    for i in range(cells):
        new = " --new" if i % 20 == 0 else ""
        ex = k.execute(f"%%respond -c cells{new}\ncell {i}")
        failed += not ex.ok
    cells_seconds = time.perf_counter() - t0
    cells_after = {**k.proc_stats(), **k.eval_json("_bench_state()")}
    return {
        "turns": turns,
        "warmup_bad": warm["bad"],
        "bad_turns": run["bad"],
        "turns_per_second": turns / run["seconds"],
        "before": before,
        "after": after,
        "rss_growth_mb": after["rss_mb"] - before["rss_mb"],
        "rss_growth_mb_first_half": middle["rss_mb"] - before["rss_mb"],
        "rss_growth_mb_second_half": after["rss_mb"] - middle["rss_mb"],
        "tracemalloc": traced,
        "cells": cells,
        "cells_failed": failed,
        "cells_seconds": cells_seconds,
        "cells_before": cells_before,
        "cells_after": cells_after,
        "cells_rss_growth_mb": cells_after["rss_mb"] - cells_before["rss_mb"],
    }


# --- item 6 ------------------------------------------------------------------------------------------------


def _ws_log(origin: str) -> list[dict[str, Any]]:
    """The emulator's WebSocket connection log entries (handshakes, client frames), oldest first."""
    with urllib.request.urlopen(origin + "/_emulator/log", timeout=10) as resp:
        entries = json.loads(resp.read())["connections"]
    return [e for e in entries if e.get("transport") == "ws"]


def _ws_connections_logged(origin: str) -> int:
    return len(_ws_log(origin))


def _lane_frames(entry: dict[str, Any]) -> int:
    """How many requests on this logged connection named a ``stream_id`` lane."""
    return sum(1 for f in entry.get("frames", []) if isinstance(f, dict) and f.get("stream_id"))


def _background_wave(k: Kernel, n: int, tag: str, port: int) -> tuple[float, int, list[str], bool]:
    """Submit ``n`` ``%%respond --background`` cells back to back; wait until every ``-o`` variable exists.

    Returns (seconds from the first submit until all were done, peak ESTABLISHED sockets from the kernel to the
    emulator seen while waiting, the TurnResult statuses, whether every cell was accepted and finished).
    """
    ok = True
    peak = 0
    k.run("for _n in [n for n in list(globals()) if n.startswith('_bg_')]: del globals()[_n]")
    t0 = time.perf_counter()
    for i in range(n):
        ex = k.execute(f"%%respond --background --new -c bg{tag}_{i} -o _bg_{i}\nhello {i}", timeout=60)
        ok &= ex.ok
    while True:
        peak = max(peak, k.tcp_connections_to(port))
        done = k.eval_json(f"sum(1 for i in range({n}) if f'_bg_{{i}}' in globals())")
        if done >= n:
            break
        if time.perf_counter() - t0 > 300:
            ok = False
            break
    seconds = time.perf_counter() - t0
    statuses = k.eval_json(
        f"[globals()[f'_bg_{{i}}'].status for i in range({n}) if f'_bg_{{i}}' in globals()]"
    )
    return seconds, peak, statuses, ok


def concurrency(k: Kernel, emu: EmulatorProcess, n: int, reps: int) -> dict[str, Any]:
    k.run(f"%responses config base_url={emu.base_url}")
    k.run("%%respond -c conc-warm\nwarm-up")
    port = _port(emu.base_url)
    pool_size = k.eval_json("_bench_s.settings.pool_size")
    seq_times: list[float] = []
    bg_times: list[float] = []
    peak_sockets = 0
    all_completed = True
    statuses: list[str] = []
    ws_before = _ws_connections_logged(emu.origin)
    for rep in range(reps):
        # Sequential: n foreground cells, one after another.
        t0 = time.perf_counter()
        for i in range(n):
            ex = k.execute(f"%%respond --new -c seq{rep}_{i}\nhello {i}", timeout=300)
            all_completed &= ex.ok
        seq_times.append(time.perf_counter() - t0)
        # Concurrent: the same n cells in the background, all at once.
        seconds, peak, st, ok = _background_wave(k, n, str(rep), port)
        bg_times.append(seconds)
        peak_sockets = max(peak_sockets, peak)
        statuses += st
        all_completed &= ok
    ws_opened = _ws_connections_logged(emu.origin) - ws_before
    pool = k.eval_json("_bench_s.status().get('connections', [])")
    ratios = pairwise_ratios(bg_times, seq_times)
    result = {
        "cells": n,
        "reps": reps,
        "pool_size": pool_size,
        "sequential_seconds": seq_times,
        "background_seconds": bg_times,
        "background_vs_sequential_ratio": finite_or_none(median(ratios)),
        "all_completed": all_completed and statuses.count("completed") == n * reps,
        "background_statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "peak_established_sockets": peak_sockets,
        "ws_connections_opened": ws_opened,
        "pool_connections_after": len(pool),
    }
    if n > pool_size:
        # The pool caps connections at pool_size: run one more wave with a pool as large as the wave, to show
        # what the cap costs (compared with the median sequential time of the rounds above, not interleaved).
        k.run(f"_bench_s.configure(pool_size={n})")
        try:
            seconds, peak, st, ok = _background_wave(k, n, "big", port)
        finally:
            k.run(f"_bench_s.configure(pool_size={pool_size})")
        result["bigger_pool"] = {
            "pool_size": n,
            "background_seconds": seconds,
            "vs_median_sequential": seconds / median(seq_times),
            "peak_established_sockets": peak,
            "all_completed": ok and st.count("completed") == n,
        }
    # Opt-in stream_id lanes (Settings.use_stream_lanes, PROTOCOL.md §1.5): the same wave multiplexed on the
    # pool's sockets (the one pool carries lanes on the idle sockets it already has). Counted from the
    # emulator's log: the create frames with a stream_id sent during the wave, and the sockets that carried them.
    before = _ws_connections_logged(emu.origin)
    lane_frames_before = [_lane_frames(e) for e in _ws_log(emu.origin)]
    k.run("_bench_s.configure(use_stream_lanes=True)")
    try:
        seconds, peak, st, ok = _background_wave(k, n, "lanes", port)
    finally:
        k.run("_bench_s.configure(use_stream_lanes=False)")
    log_after = _ws_log(emu.origin)
    during = [
        _lane_frames(e) - (lane_frames_before[i] if i < len(lane_frames_before) else 0)
        for i, e in enumerate(log_after)
    ]
    result["stream_lanes"] = {
        "background_seconds": seconds,
        "vs_median_sequential": seconds / median(seq_times),
        "lane_connections": sum(1 for d in during if d),
        "requests_on_lane_connections": sum(during),
        "ws_connections_opened": len(log_after) - before,
        "all_completed": ok and st.count("completed") == n,
    }
    return result


# --- driver ------------------------------------------------------------------------------------------------


def _memory_and_concurrency(k: Kernel, res: dict[str, Any], want: set[str], cfg: dict[str, Any]) -> None:
    if not want & {"memory", "concurrency"}:
        return
    # memory() defines the in-kernel helpers concurrency() uses.
    res["memory"] = memory(k, cfg["turns"], cfg["cells"])
    if "concurrency" in want:
        ttft, rate = cfg["conc_profile"]
        with EmulatorProcess(ttft=ttft, token_rate=rate) as slow:
            res["concurrency"] = concurrency(k, slow, cfg["conc"], cfg["reps"])
        res["concurrency"]["emulator"] = {"ttft": ttft, "token_rate": rate}


def run(quick: bool = False, only: set[str] | None = None) -> dict[str, Any]:
    want = only or {"first_update", "iopub", "memory", "concurrency"}
    res: dict[str, Any] = {}
    if quick:
        cfg = {"fu_cells": 3, "sizes": [1_000, 4_000], "rate": 0.0, "slow": None, "turns": 30, "cells": 3, "conc": 3,
               "reps": 1, "conc_profile": (0.02, 1000.0)}  # fmt: skip
    else:
        cfg = {"fu_cells": 20, "sizes": [1_000, 10_000, 50_000, 100_000, 200_000], "rate": 2500.0,
               "slow": (3_000, 100.0),
               "turns": 1000, "cells": 100, "conc": 8, "reps": 2, "conc_profile": (0.3, 50.0)}  # fmt: skip
    with EmulatorProcess() as emu:
        with Kernel(env=_env(emu.base_url)) as k:
            k.run("%load_ext ipy_responses_ws")
            if "first_update" in want:
                res["first_update"] = first_update(k, cfg["fu_cells"])
                res["first_update_streaming"] = first_update_streaming(k, cfg["fu_cells"], 200.0)
                k.run(f"%responses config base_url={emu.base_url}")
            if "iopub" in want:
                res["iopub"] = iopub_scaling(k, cfg["sizes"], cfg["rate"], cfg["slow"])
                k.run(f"%responses config base_url={emu.base_url}")
            if quick:  # one kernel for everything keeps the smoke run short
                _memory_and_concurrency(k, res, want, cfg)
        if not quick and want & {"memory", "concurrency"}:
            # A fresh kernel, so the memory baseline is not inflated by the 200 KB answers above.
            with Kernel(env=_env(emu.base_url)) as k:
                k.run("%load_ext ipy_responses_ws")
                _memory_and_concurrency(k, res, want, cfg)
    return res


def render(result: dict[str, Any]) -> str:
    out: list[str] = []
    if "first_update" in result:
        fu = result["first_update"]
        fs = result.get("first_update_streaming") or {}
        rows = []
        if fs:
            rows.append(
                [f"execute request → first widget update with answer text (streaming: ttft 0, "
                 f"{fs['token_rate']:.0f} deltas/s)", fs["first_update_ms_median"], fs["first_update_ms_p90"]]
            )  # fmt: skip
            rows.append(
                [
                    "... the engine's own time to the first delta (TurnResult.ttft)",
                    fs["engine_ttft_ms_median"],
                    "—",
                ]
            )
        rows += [
            ["execute request → answer text first visible (zero-delay: widget or final display)",
             fu["first_update_ms_median"], fu["first_update_ms_p90"]],
            ["execute request → idle (whole %%respond cell, zero-delay)", fu["cell_to_idle_ms_median"],
             fu["cell_to_idle_ms_p90"]],
            ["execute request → idle (empty cell, kernel floor)", fu["empty_cell_to_idle_ms_median"], "—"],
        ]  # fmt: skip
        out.append(markdown_table(["measure (warm connection)", "median ms", "p90 ms"], rows))
        via = f"zero-delay {json.dumps(fu['first_answer_via'])}"
        if fs:
            via += f", streaming {json.dumps(fs['first_answer_via'])}"
        out.append(f"\n{fu['cells']} cells each; answer text first arrived via: {via}.\n")
    if "iopub" in result:
        io = result["iopub"]
        rows = [
            [r["target_bytes"], r["token_rate"] or "unthrottled", r["answer_bytes"], r["status"], r["stream_seconds"], r["iopub_bytes"],
             r["iopub_bytes_per_answer_byte"], r["widget_updates"], r["value_updates"], r["largest_value_bytes"]]
            for r in io["sizes"] + ([io["slow_rate"]] if io.get("slow_rate") else [])
        ]  # fmt: skip
        out.append(
            markdown_table(
                [
                    "target",
                    "deltas/s",
                    "answer bytes",
                    "status",
                    "stream s",
                    "iopub bytes",
                    "iopub B / answer B",
                    "widget updates",
                    "value updates",
                    "largest value B",
                ],
                rows,
            )  # fmt: skip
        )
        out.append(
            f"\nFit over the rows at {io['token_rate'] or 'unthrottled'} deltas/s: iopub bytes = "
            f"{io['fit_bytes_per_answer_byte']:.3f} × answer bytes + {io['fit_intercept_bytes']:,.0f} "
            f"(r² = {io['fit_r2']:.4f}); widget updates = {io['updates_per_kb_fit']:.3f} per KB "
            f"(r² = {io['updates_fit_r2']:.4f}).\n"
        )
        largest = max(io["sizes"], key=lambda r: r["answer_bytes"])
        out.append(f"Where the iopub bytes of the {largest['answer_bytes']:,}-byte answer went:\n")
        out.append(
            markdown_table(
                ["message kind", "messages", "bytes", "B / answer B"],
                [
                    [kind, v["messages"], v["bytes"], v["bytes"] / largest["answer_bytes"]]
                    for kind, v in largest["iopub_by_kind"].items()
                ],
            )  # fmt: skip
        )
    if "memory" in result:
        m = result["memory"]
        keys = ["rss_mb", "fds", "sockets", "threads", "loop_tasks", "widgets", "comms", "connections"]
        rows = [[key, m["before"].get(key), m["after"].get(key), m["cells_before"].get(key),
                 m["cells_after"].get(key)] for key in keys]  # fmt: skip
        out.append(
            markdown_table(
                ["kernel", f"before {m['turns']} turns", "after", f"before {m['cells']} cells", "after"], rows
            )
        )
        out.append(
            f"\n{m['turns']} session turns at {m['turns_per_second']:.0f} turns/s ({m['bad_turns']} not completed): "
            f"RSS {m['rss_growth_mb']:+.1f} MB ({m['rss_growth_mb_first_half']:+.1f} MB in the first half, "
            f"{m['rss_growth_mb_second_half']:+.1f} MB in the second); tracemalloc over {m['tracemalloc']['turns']} "
            f"more turns: {m['tracemalloc']['net_kib']:+.0f} KiB of Python objects survive (largest site "
            f"{m['tracemalloc']['top_kib']:+.0f} KiB at `{m['tracemalloc']['top_site']}`). {m['cells']} %%respond cells in {m['cells_seconds']:.1f} s "
            f"({m['cells_failed']} failed): RSS {m['cells_rss_growth_mb']:+.1f} MB.\n"
        )
    if "concurrency" in result:
        c = result["concurrency"]
        out.append(
            markdown_table(
                ["concurrency", "value"],
                [
                    ["cells × repetitions", f"{c['cells']} × {c['reps']}"],
                    ["pool_size (default)", c["pool_size"]],
                    ["emulator", f"ttft {c['emulator']['ttft']} s, {c['emulator']['token_rate']} deltas/s"],
                    ["sequential (foreground) s", ", ".join(f"{x:.2f}" for x in c["sequential_seconds"])],
                    ["all at once (--background) s", ", ".join(f"{x:.2f}" for x in c["background_seconds"])],
                    ["background / sequential (pairwise median)", c["background_vs_sequential_ratio"]],
                    ["all completed", c["all_completed"]],
                    ["background statuses", json.dumps(c["background_statuses"])],
                    ["peak ESTABLISHED sockets kernel → emulator", c["peak_established_sockets"]],
                    ["WS connections opened (emulator log)", c["ws_connections_opened"]],
                    ["pool connections afterwards", c["pool_connections_after"]],
                    *(
                        [
                            [
                                f"with pool_size={c['bigger_pool']['pool_size']}: all at once s",
                                c["bigger_pool"]["background_seconds"],
                            ],
                            ["... vs median sequential", c["bigger_pool"]["vs_median_sequential"]],
                            ["... peak sockets", c["bigger_pool"]["peak_established_sockets"]],
                            ["... all completed", c["bigger_pool"]["all_completed"]],
                        ]
                        if c.get("bigger_pool")
                        else []
                    ),
                    *(
                        [
                            ["with stream_id lanes: all at once s", c["stream_lanes"]["background_seconds"]],
                            ["... vs median sequential", c["stream_lanes"]["vs_median_sequential"]],
                            [
                                "... WS connections carrying lanes (requests on them)",
                                f"{c['stream_lanes']['lane_connections']} "
                                f"({c['stream_lanes']['requests_on_lane_connections']})",
                            ],
                            ["... WS connections opened in all", c["stream_lanes"]["ws_connections_opened"]],
                            ["... all completed", c["stream_lanes"]["all_completed"]],
                        ]
                        if c.get("stream_lanes")
                        else []
                    ),
                ],
            )
        )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="comma-separated subset: first_update,iopub,memory,concurrency")
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run(args.quick, set(args.only.split(",")) if args.only else None)
    print(render(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
