"""Widget iopub traffic and first-update latency of ``%%respond`` in a real kernel (DESIGN.md §5).

What a user notices: a long answer must not flood the notebook's connection (iopub bytes stay linear in the
answer: at most 4x its size plus 50 KB, the final two-format bundle included), the live view must keep
moving (10+ redraws a second at a model's pace, when each redraw adds a few words; 3+ a second, never
still for half a second, when text comes faster than anyone reads), and the first words must show up
right away.

Bytes are counted on the wire by a raw ZMQ subscriber (tests/kernel_helpers.py): every frame of every
iopub message of the cell, envelopes and signatures included. One kernel and one in-process emulator serve
the module; each test sets the emulator's pace.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_helpers import FAKE_KEY, Execution, Kernel

from ipy_responses_ws.emulator import Emulator, reply_for

pytestmark = pytest.mark.kernel

WORDS_200KB = 34_000  # reply_for(...) with this many filler words is ~199 KB
STATUS_MARK = "font-size:85%"  # the status line's HTML (live_view.ResponseView._status_html), not the answer


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(FAKE_KEY).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def kernel(emu: Emulator) -> Iterator[Kernel]:
    with Kernel({"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": FAKE_KEY}) as k:
        ex = k.execute("%load_ext ipy_responses_ws")
        assert ex.status == "ok", ex.error
        ex = k.execute("%%respond -c warm\nwarm up the connection and the widget code")
        assert ex.status == "ok", ex.error
        yield k


def pace(emu: Emulator, **changes: Any) -> None:
    emu.settings = dataclasses.replace(emu.settings, **changes)


def ns(kernel: Kernel, expr: str) -> Any:
    ex = kernel.execute(f"import json as _j; print(_j.dumps({expr}))")
    assert ex.status == "ok", ex.error
    return json.loads(ex.stdout().strip().splitlines()[-1])


def answer_redraws(ex: Execution) -> list[tuple[float, str]]:
    """(arrival time, HTML) of every message that put answer HTML on screen: live-tail updates and the
    comm_opens of frozen chunks. The status line's updates are left out."""
    html_ids = {m["content"]["comm_id"] for m in ex.comm_opens("HTMLModel")}
    out: list[tuple[float, str]] = []
    for m in ex.messages:
        content = m["content"]
        if content.get("comm_id") not in html_ids:
            continue
        if m["msg_type"] == "comm_open":
            value = content["data"]["state"].get("value", "")
        elif m["msg_type"] == "comm_msg":
            value = content["data"].get("state", {}).get("value")
        else:
            continue
        if value and STATUS_MARK not in value:
            out.append((m["_t"], value))
    return out


@dataclasses.dataclass
class Run:
    size: int
    wire: int
    redraws: list[tuple[float, str]]
    stream_seconds: float
    ex: Execution

    @property
    def per_byte(self) -> float:
        return self.wire / self.size

    def redraw_rate(self) -> float:
        times = [t for t, _ in self.redraws]
        return (len(times) - 1) / (times[-1] - times[0])


def stream_200kb(kernel: Kernel, emu: Emulator, token_rate: float, tag: str) -> Run:
    pace(emu, token_rate=token_rate, words=WORDS_200KB, ttft=0.0)
    prompt = f"A very long answer please ({tag})"
    ex = kernel.execute(f"%%respond --new -c {tag} -o _wt\n{prompt}", timeout=120)
    assert ex.status == "ok", ex.error
    answer = reply_for([prompt], words=WORDS_200KB)
    final = [m for m in ex.messages if m["msg_type"] == "update_display_data"]
    assert final and final[-1]["content"]["data"]["text/plain"] == answer, "the saved answer is not exact"
    info = ns(kernel, "{'elapsed': _wt.elapsed, 'ttft': _wt.ttft, 'status': _wt.status}")
    assert info["status"] == "completed"
    size = len(answer.encode())
    assert 190_000 < size < 210_000
    return Run(size, kernel.raw.bytes_for(ex.msg_id), answer_redraws(ex), info["elapsed"] - info["ttft"], ex)


@pytest.fixture(scope="module")
def run_2500(kernel: Kernel, emu: Emulator) -> Run:
    """One ~200 KB answer at 2,500 tokens/s (~19 s): a fast model's pace, shared by two tests."""
    return stream_200kb(kernel, emu, 2500.0, "t2500")


def gaps_between(run: Run) -> list[float]:
    times = [t for t, _ in run.redraws]
    return sorted(b - a for a, b in zip(times, times[1:], strict=False))


def assert_live(run: Run, *, rate: float, longest_gap: float) -> None:
    """The redraws cover the stream (not a burst at the end), come at least ``rate`` times a second, and
    the view never stands still longer than ``longest_gap`` while text arrives."""
    times = [t for t, _ in run.redraws]
    gaps = gaps_between(run)
    assert times[-1] - times[0] >= 0.8 * run.stream_seconds, (times[-1] - times[0], run.stream_seconds)
    assert run.redraw_rate() >= rate, f"{run.redraw_rate():.1f} redraws/s"
    assert gaps[-1] <= longest_gap, f"longest gap {gaps[-1] * 1000:.0f} ms"


def describe(run: Run, label: str) -> str:
    gaps = gaps_between(run)
    return (
        f"{label}: {run.wire:,} B for {run.size:,} B ({run.per_byte:.2f}x), {run.redraw_rate():.1f} redraws/s, "
        f"gaps median {statistics.median(gaps) * 1000:.0f} ms, longest {gaps[-1] * 1000:.0f} ms"
    )


def test_view_redraws_10_times_a_second_at_model_speed(kernel: Kernel, emu: Emulator) -> None:
    """At a model's pace (200 tokens/s, ~0.8 KB/s: a few words a redraw) the answer is drawn as it is typed,
    10+ times a second, as before adaptive pacing."""
    pace(emu, token_rate=200.0, words=600, ttft=0.0)
    ex = kernel.execute("%%respond --new -c model_speed -o _ms\nan answer at a model's pace", timeout=60)
    assert ex.status == "ok", ex.error
    info = ns(kernel, "{'elapsed': _ms.elapsed, 'ttft': _ms.ttft, 'size': len(_ms.text.encode())}")
    wire = kernel.raw.bytes_for(ex.msg_id)
    run = Run(info["size"], wire, answer_redraws(ex), info["elapsed"] - info["ttft"], ex)
    print(describe(run, "200 tok/s"))
    assert run.stream_seconds > 3.0, run.stream_seconds
    assert_live(run, rate=10.0, longest_gap=0.5)
    median_gap = statistics.median(gaps_between(run))
    assert median_gap <= 0.1, f"median gap {median_gap * 1000:.0f} ms"


def test_view_stays_live_while_a_long_answer_streams_fast(run_2500: Run) -> None:
    """Faster than anyone reads (2,500 tokens/s, ~10 KB/s) the view redraws less often, so each redraw
    carries more new text than it costs to send (docs/live-view.md), but it still moves 3+ times a second
    and never stands still for half a second."""
    print(describe(run_2500, "2,500 tok/s"))
    assert_live(run_2500, rate=3.0, longest_gap=0.5)


def test_long_answer_at_2500_tokens_per_second_within_4x_plus_50kb(run_2500: Run) -> None:
    """DESIGN.md §5's bound (the issue's 4.25x at 200 KB), final two-format bundle included: ~4.0x measured
    with adaptive pacing; it was ~5.3x at a fixed 10 redraws a second, and per-token updates would cost tens
    of times more."""
    assert run_2500.wire <= 4 * run_2500.size + 50_000, f"{run_2500.per_byte:.2f}x"


@pytest.mark.parametrize("token_rate", [20_000.0, 0.0], ids=["20k-tokens-per-s", "unthrottled"])
def test_long_fast_answer_within_4x_plus_50kb(kernel: Kernel, emu: Emulator, token_rate: float) -> None:
    run = stream_200kb(kernel, emu, token_rate, f"fast{int(token_rate)}")
    print(describe(run, f"{token_rate or 'unthrottled'}"))
    assert run.wire <= 4 * run.size + 50_000, (
        f"{run.wire:,} iopub bytes for {run.size:,} ({run.per_byte:.2f}x)"
    )
    if run.stream_seconds > 1.0:  # long enough to judge a rate
        assert_live(run, rate=3.0, longest_gap=0.5)


class FirstDeltaWatch:
    """Records when the emulator sent the first event after its time-to-first-token pause (the first text
    delta), by watching its per-connection event counter from a thread. ``time.monotonic`` is the same
    clock as the arrival stamps of kernel messages (tests/kernel_helpers.py)."""

    def __init__(self, emu: Emulator, pause: float) -> None:
        self.emu, self.pause = emu, pause
        self.sent_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self) -> int:
        return sum(c.events_sent for c in self.emu.connections)

    def _run(self) -> None:
        last, changed_at = self._count(), time.monotonic()
        while not self._stop.is_set():
            now, count = time.monotonic(), self._count()
            if count != last:
                if now - changed_at >= self.pause * 0.8 and last > 0 and self.sent_at is None:
                    self.sent_at = now
                last, changed_at = count, now
            time.sleep(0.0005)

    def __enter__(self) -> FirstDeltaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def test_first_answer_text_is_drawn_at_once(kernel: Kernel, emu: Emulator) -> None:
    """The first widget update showing answer text reaches the frontend within 60 ms (median of 5) of the
    emulator sending the first delta; it used to wait for the next coalescing tick (~90 ms)."""
    pause = 0.4
    pace(emu, token_rate=200.0, words=40, ttft=pause)
    latencies = []
    for i in range(5):
        prompt = f"first words {i}"
        with FirstDeltaWatch(emu, pause) as watch:
            ex = kernel.execute(f"%%respond --new -c first{i}\n{prompt}", timeout=60)
        assert ex.status == "ok", ex.error
        assert watch.sent_at is not None, "the first delta was not seen leaving the emulator"
        shown = [t for t, value in answer_redraws(ex) if "Turn" in value]
        assert shown, "no widget update showed the answer"
        latencies.append(shown[0] - watch.sent_at)
    print("first answer update after the first delta:", [f"{x * 1000:.1f} ms" for x in latencies])
    assert min(latencies) > 0, latencies  # the watch saw the delta before the update arrived
    assert statistics.median(latencies) < 0.060, [f"{x * 1000:.0f} ms" for x in latencies]
