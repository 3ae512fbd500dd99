"""CI smoke run of the benchmark suite: ``python benchmarks/run_all.py --quick`` with tiny sizes.

These tests check that the scripts run end to end and produce well-formed tables and JSON, plus facts that do
not depend on timing (every client got the same chained answers, WS sends only the new turn while SSE without
store resends the transcript, nothing leaked a failed turn). They never assert on how fast anything was: on a
shared 2-core machine that would be flaky, and the full run is for humans to read (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
HEADLINE_KEYS = [
    "ws_vs_floor_ratio",
    "ws_vs_sdk_ws_ratio",
    "sse_vs_sdk_sse_ratio",
    "ws_vs_sse_ratio",
    "parse_vs_sdk_ratio",
    "iopub_bytes_per_answer_byte_200k",
    "first_update_ms_median",
    "rss_growth_mb_1000_turns",
]
CLIENTS = [
    "ipy_responses_ws WS",
    "ipy_responses_ws SSE",
    "openai SDK WS",
    "openai SDK SSE",
    "raw aiohttp WS (floor)",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--out", str(out / "r.json"),
         "--markdown", str(out / "r.md")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(ROOT),
    )  # fmt: skip
    assert proc.returncode == 0, f"run_all --quick failed:\n{proc.stderr[-3000:]}"
    return json.loads((out / "r.json").read_text()), (out / "r.md").read_text(), proc


pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]


def test_results_json_has_every_headline_figure_as_a_number(quick_run):
    report, _, _ = quick_run
    assert report["quick"] is True
    assert report["errors"] == {}
    for key in HEADLINE_KEYS:
        value = report[key]
        assert isinstance(value, int | float) and math.isfinite(value), f"{key} = {value!r}"
    for key in HEADLINE_KEYS[:5]:
        assert report[key] > 0, f"a time ratio must be positive: {key} = {report[key]}"
    assert report["machine"]["nproc"] >= 1 and report["machine"]["cpu_model"]
    assert report["machine"]["packages"]["openai"], "the SDK version must be recorded next to its numbers"


def test_latency_table_lists_all_five_clients_with_agreeing_chained_answers(quick_run):
    report, markdown, _ = quick_run
    for profile in ("zero-delay", "realistic"):
        res = report["results"]["latency"][profile]
        for client in CLIENTS:
            stats = res["contenders"][client]
            assert stats["error"] is None, f"{profile}/{client}: {stats['error']}"
            assert stats["n"] == res["profile"]["rounds"] * res["profile"]["turns"]
            assert stats["median_ms"] > 0 and stats["p90_ms"] >= stats["median_ms"]
            assert stats["cpu_median_ms"] > 0
        # Same prompts, deterministic emulator: a chain that lost previous_response_id answers differently.
        assert res["answer_mismatches"] == 0
        assert set(res["targets"]) == {
            "engine WS <= 1.15x floor", "engine WS <= SDK WS", "engine SSE <= SDK SSE", "engine WS < engine SSE"
        }  # fmt: skip
    header = "| client | turns | median ms | p90 ms | first delta ms | client CPU ms/turn | error |"
    assert markdown.count(header) == 2
    for client in CLIENTS:
        assert f"| {client} | " in markdown


def test_bytes_show_ws_incremental_and_sse_full_resend(quick_run):
    report, markdown, _ = quick_run
    res = report["results"]["bytes"]
    turns = res["turns"]
    cases = res["cases"]
    for case in cases.values():
        assert "error" not in case, case
        assert len(case["up_bytes"]) == turns and all(b > 0 for b in case["up_bytes"])
    ws, sse_full = cases["WS store=true"], cases["SSE store=false"]
    assert ws["requests_with_previous_response_id"] == turns - 1
    assert sse_full["requests_with_previous_response_id"] == 0
    # The full transcript grows every turn; the incremental frame does not.
    assert sse_full["up_bytes"][-1] > sse_full["up_bytes"][1] > ws["up_bytes"][-1]
    assert sse_full["max_input_items"] == 2 * turns - 1
    assert "| turn | WS store=true | WS store=false | SSE store=true | SSE store=false |" in markdown


def test_parse_table_compares_the_same_events(quick_run):
    report, _, _ = quick_run
    parsers = report["results"]["parse"]["parsers"]
    counts = {p["events"] for p in parsers.values()}
    assert len(counts) == 1 and counts.pop() > 10, "every parser must see the same recorded events"
    assert all(p["events_per_s_median"] > 0 for p in parsers.values())


def test_kernel_section_completed_every_turn_and_cell(quick_run):
    report, markdown, _ = quick_run
    k = report["results"]["kernel"]
    assert k["first_update"]["with_answer_update"] == k["first_update"]["cells"]
    sizes = k["iopub"]["sizes"]
    assert [s["status"] for s in sizes] == ["completed"] * len(sizes)
    assert sizes[-1]["answer_bytes"] > sizes[0]["answer_bytes"]
    assert all(s["iopub_bytes"] > s["answer_bytes"] for s in sizes), "iopub carries at least the answer"
    mem = k["memory"]
    assert mem["bad_turns"] == 0 and mem["cells_failed"] == 0
    for key in ("rss_mb", "fds", "threads", "loop_tasks"):
        assert key in mem["before"] and key in mem["after"]
    conc = k["concurrency"]
    assert conc["all_completed"] is True, conc
    assert conc["background_statuses"] == {"completed": conc["cells"] * conc["reps"]}
    lanes = conc["stream_lanes"]
    assert lanes["all_completed"] is True
    assert lanes["lane_connections"] >= 1 and lanes["requests_on_lane_connections"] >= conc["cells"]
    assert "background / sequential" in markdown


def test_stats_helpers_compute_pairwise_ratios_percentiles_and_fits():
    sys.path.insert(0, str(BENCH))
    try:
        import stats
    finally:
        sys.path.remove(str(BENCH))
    assert stats.pairwise_ratios([2.0, 3.0], [1.0, 6.0]) == [2.0, 0.5]
    with pytest.raises(ValueError):
        stats.pairwise_ratios([1.0], [1.0, 2.0])
    assert stats.percentile([float(i) for i in range(1, 11)], 90) == pytest.approx(9.1)
    slope, intercept, r2 = stats.linear_fit([1, 2, 3, 4], [5, 7, 9, 11])
    assert (slope, intercept, r2) == pytest.approx((2.0, 3.0, 1.0))
    table = stats.markdown_table(["a", "b"], [["x", 1234.5678], ["y", float("nan")]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x | 1,235 |", "| y | — |"]
