"""Run every benchmark, write ``benchmarks/results.json`` and the tables, optionally refresh docs/benchmarks.md.

    python benchmarks/run_all.py                 # full run (< 10 minutes on 2 cores)
    python benchmarks/run_all.py --update-docs   # ... and rewrite the generated part of docs/benchmarks.md
    python benchmarks/run_all.py --quick --out /tmp/r.json --markdown /tmp/r.md   # CI smoke (< 60 s)
    python benchmarks/run_all.py --only tools    # one benchmark; the others' results are kept from --out

Each benchmark runs in its own Python process (``bench_*.py --json``), so one crashing or hanging does not take
the others down and the engine's I/O thread from one does not linger in the next. Ratios inside each benchmark
are pairwise and interleaved (see stats.py); this script only collects them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHES = ["latency", "bytes", "parse", "kernel", "tools"]
BEGIN = "<!-- BEGIN GENERATED: python benchmarks/run_all.py --update-docs -->"
END = "<!-- END GENERATED -->"
PACKAGES = ["ipy_responses_ws", "openai", "aiohttp", "websockets", "pydantic", "httpx2", "ipykernel", "ipywidgets",
            "ipython", "jupyter_client", "markdown-it-py"]  # fmt: skip


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
        "loadavg_start": os.getloadavg(),
    }


def run_bench(name: str, quick: bool, timeout: float) -> tuple[dict[str, Any] | None, str, float]:
    """Run ``bench_<name>.py`` in a subprocess; returns (result or None, error text, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(out)] + (
            ["--quick"] if quick else []
        )
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:.0f} s", time.perf_counter() - t0
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            return None, f"exit {proc.returncode}: {tail}", seconds
        return json.loads(out.read_text()), "", seconds


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's headline figures (ratio = ours/theirs, median of pairwise ratios; < 1 means we are faster)."""
    lat = _get(results, "latency", "zero-delay", "ratios") or {}
    real = _get(results, "latency", "realistic", "ratios") or {}
    sizes = _get(results, "kernel", "iopub", "sizes") or []
    largest = max(sizes, key=lambda r: r["target_bytes"], default=None)
    tools0 = _get(results, "tools", "zero-delay", "ratios") or {}
    tools_real = _get(results, "tools", "realistic", "ratios") or {}
    tool_bytes = _get(results, "tools", "zero-delay", "bytes") or {}
    out = {
        "ws_vs_floor_ratio": _get(lat, "ws_vs_floor_ratio", "median"),
        "ws_vs_sdk_ws_ratio": _get(lat, "ws_vs_sdk_ws_ratio", "median"),
        "sse_vs_sdk_sse_ratio": _get(lat, "sse_vs_sdk_sse_ratio", "median"),
        "ws_vs_sse_ratio": _get(lat, "ws_vs_sse_ratio", "median"),
        "parse_vs_sdk_ratio": _get(results, "parse", "ratios", "parse_vs_sdk_ratio", "median"),
        "iopub_bytes_per_answer_byte_200k": largest["iopub_bytes_per_answer_byte"] if largest else None,
        # The first *widget update* showing answer text, while the answer streams (ttft 0, 200 deltas/s). With
        # an instant answer the magic skips the live view and shows the final display at once; that case is
        # first_answer_visible_ms_zero_delay below.
        "first_update_ms_median": _get(results, "kernel", "first_update_streaming", "first_update_ms_median"),
        "rss_growth_mb_1000_turns": _get(results, "kernel", "memory", "rss_growth_mb"),
        # Extra context for the figures above.
        "first_answer_visible_ms_zero_delay": _get(
            results, "kernel", "first_update", "first_update_ms_median"
        ),
        "engine_ttft_ms_streaming": _get(
            results, "kernel", "first_update_streaming", "engine_ttft_ms_median"
        ),
        "ws_vs_floor_cpu_ratio": _get(lat, "ws_vs_floor_ratio", "cpu_median"),
        "ws_vs_sdk_ws_cpu_ratio": _get(lat, "ws_vs_sdk_ws_ratio", "cpu_median"),
        "sse_vs_sdk_sse_cpu_ratio": _get(lat, "sse_vs_sdk_sse_ratio", "cpu_median"),
        "realistic_ws_vs_floor_ratio": _get(real, "ws_vs_floor_ratio", "median"),
        "realistic_ws_vs_sdk_ws_ratio": _get(real, "ws_vs_sdk_ws_ratio", "median"),
        "realistic_sse_vs_sdk_sse_ratio": _get(real, "sse_vs_sdk_sse_ratio", "median"),
        "realistic_ws_vs_sse_ratio": _get(real, "ws_vs_sse_ratio", "median"),
        "sse_parse_vs_sdk_ratio": _get(results, "parse", "ratios", "sse_parse_vs_sdk_ratio", "median"),
        "iopub_largest_answer_bytes": largest["answer_bytes"] if largest else None,
        "iopub_fit_r2": _get(results, "kernel", "iopub", "fit_r2"),
        "memory_turns": _get(results, "kernel", "memory", "turns"),
        "rss_growth_mb_second_half": _get(results, "kernel", "memory", "rss_growth_mb_second_half"),
        "tracemalloc_net_kib": _get(results, "kernel", "memory", "tracemalloc", "net_kib"),
        "background_lanes_vs_sequential_ratio": _get(
            results, "kernel", "concurrency", "stream_lanes", "vs_median_sequential"
        ),
        "background_vs_sequential_ratio": _get(
            results, "kernel", "concurrency", "background_vs_sequential_ratio"
        ),
        "bytes_sse_full_vs_ws_last_turn_ratio": _get(results, "bytes", "sse_full_vs_ws_last_turn_up_ratio"),
        # Tool rollouts (issue 12 item 9): 20 steps, total wall time at zero delay, ours over WS / the peer.
        "tool_rollout_ws_vs_agents_sdk_ratio": _get(tools0, "ws_vs_agents_sdk_ratio", "median"),
        "tool_rollout_ws_vs_livekit_ratio": _get(tools0, "ws_vs_livekit_ratio", "median"),
        "tool_rollout_ws_vs_sse_ratio": _get(tools0, "ws_vs_sse_ratio", "median"),
        "tool_rollout_ws_nostore_vs_sse_nostore_ratio": _get(
            tools0, "ws_nostore_vs_sse_nostore_ratio", "median"
        ),
        "realistic_tool_rollout_ws_vs_agents_sdk_ratio": _get(tools_real, "ws_vs_agents_sdk_ratio", "median"),
        "realistic_tool_rollout_ws_vs_livekit_ratio": _get(tools_real, "ws_vs_livekit_ratio", "median"),
        "realistic_tool_rollout_ws_vs_sse_ratio": _get(tools_real, "ws_vs_sse_ratio", "median"),
        # Wire bytes of the 20 step requests (each carries one function_call_output), in order.
        "tool_rollout_ws_up_bytes_per_step": (
            tool_bytes.get("ours WS store=true", {}).get("up_bytes_per_request") or [None]
        )[1:]
        or None,
        "tool_rollout_sse_nostore_up_bytes_per_step": (
            tool_bytes.get("ours SSE store=false", {}).get("up_bytes_per_request") or [None]
        )[1:]
        or None,
    }
    return out


def render(report: dict[str, Any]) -> str:
    sys.path.insert(0, str(HERE))
    import bench_bytes
    import bench_kernel
    import bench_latency
    import bench_parse
    import bench_tools
    from stats import markdown_table

    m = report["machine"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    lines = [
        f"Run {report['started']} UTC, {report['duration_seconds']:.0f} s, command `{report['command']}`"
        f"{' (QUICK smoke sizes: not representative)' if report['quick'] else ''}.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']} on {m['platform']}; load average "
        f"{m['loadavg_start'][0]:.2f} at start, {report['loadavg_end'][0]:.2f} at the end (other work on the machine "
        "adds noise to absolute times; the pairwise ratios are interleaved so drift hits both sides).",
        "",
        f"Versions: {pk}; git {m['git_commit']}.",
        "",
    ]
    if report.get("kept"):
        kept = report["kept"]
        lines += [
            f"Kept from the earlier run started {kept['started']} UTC (`{kept['command']}`, its machine and "
            f"versions): {', '.join(kept['benchmarks'])}.",
            "",
        ]
    lines += [
        "### Headline figures",
        "",
        markdown_table(
            ["key", "value"],
            [
                [k, ", ".join(map(str, v)) if isinstance(v, list) else v]
                for k, v in report["headline"].items()
            ],
        ),
        "",
    ]
    renderers = {
        "latency": ("1. Per-turn latency", bench_latency.render),
        "bytes": ("2. Bytes sent per turn", bench_bytes.render),
        "parse": ("3. Event parsing throughput", bench_parse.render),
        "kernel": ("4-6. Kernel: first update, iopub traffic, memory, concurrency", bench_kernel.render),
        "tools": ("7. Tool rollouts: 20 function-call steps", bench_tools.render),
    }
    for name, (title, fn) in renderers.items():
        lines += [f"### {title}", ""]
        res = report["results"].get(name)
        if res is None:
            lines += [f"Not measured: {report['errors'].get(name, 'not run')}", ""]
        else:
            lines += [fn(res), ""]
        lines.append(f"({name}: {report['seconds'].get(name, 0):.0f} s)")
        lines.append("")
    return "\n".join(lines)


def update_docs(markdown: str, path: Path) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n\n{markdown.strip()}\n\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in under a minute")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="where to write the JSON")
    parser.add_argument("--markdown", default=str(HERE / "results.md"), help="where to write the tables")
    parser.add_argument(
        "--update-docs", action="store_true", help="rewrite the generated part of docs/benchmarks.md"
    )
    args = parser.parse_args()
    names = args.only.split(",") if args.only else BENCHES
    unknown = set(names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "started": started,
        "quick": args.quick,
        "command": " ".join(["python", "benchmarks/run_all.py", *sys.argv[1:]]),
        "machine": machine(),
        "results": {},
        "errors": {},
        "seconds": {},
    }
    timeout = 120.0 if args.quick else 400.0
    for name in names:
        print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
        # tools: 18 realistic rollouts of ~10 s each, plus building the peers' venv the first time (~40 s)
        result, error, seconds = run_bench(
            name, args.quick, 600.0 if name == "tools" and not args.quick else timeout
        )
        report["seconds"][name] = round(seconds, 1)
        if result is None:
            report["errors"][name] = error
            print(f"[run_all] {name} FAILED: {error}", file=sys.stderr, flush=True)
        else:
            report["results"][name] = result
        print(f"[run_all] {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    report["duration_seconds"] = round(time.perf_counter() - t0, 1)
    if args.only and Path(args.out).exists():
        # Keep the other benchmarks' results from the file this run would overwrite.
        try:
            prev = json.loads(Path(args.out).read_text())
        except (OSError, ValueError):
            prev = {}
        others = [n for n in BENCHES if n not in names and n in prev.get("results", {})]
        if others:
            for n in others:
                report["results"][n] = prev["results"][n]
                if n in prev.get("seconds", {}):
                    report["seconds"][n] = prev["seconds"][n]
            kept = prev.get("kept") or {"started": prev.get("started"), "command": prev.get("command")}
            report["kept"] = {**kept, "benchmarks": others}
            report["results"] = {n: report["results"][n] for n in BENCHES if n in report["results"]}
    report["loadavg_end"] = os.getloadavg()
    report["headline"] = headline(report["results"])
    # Headline keys at the top level too, as the issue asks ("results.json with at least these keys").
    final = {**report["headline"], **report}
    Path(args.out).write_text(json.dumps(final, indent=2) + "\n")
    markdown = render(report)
    Path(args.markdown).write_text(markdown + "\n")
    if args.update_docs:
        update_docs(markdown, ROOT / "docs" / "benchmarks.md")
    print(markdown)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
