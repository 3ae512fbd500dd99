"""Kernel memory around long answers: foreground vs ``--background`` cells.

Found by the soak (docs/reliability.md §2): a turn started with ``on_event`` also put every event into its
``TurnHandle`` queue, which nobody reads in background mode, so a long answer kept all its event objects
alive until the turn ended; the small-object arenas they filled stayed mapped afterwards (fragmentation) and
the kernel's RSS jumped (+75 MB for three 200 KB answers, vs +1 MB in the foreground). Fixed in 4084bb5
(``on_event`` turns do not queue); these tests keep it fixed, in a real kernel and through the public API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from engine_helpers import new_session
from kernel_helpers import Kernel

from ipy_responses_ws.emulator import Emulator
from ipy_responses_ws.events import Notice

KEY = "sk-test-FAKE-memory-0123456789abcdef"
WORDS = 34_000  # a ~200 KB answer, ~45,000 deltas
RSS = (
    "import ctypes, gc, json\n"
    "gc.collect(); ctypes.CDLL('libc.so.6').malloc_trim(0)\n"
    "print(json.dumps({l.split(':')[0]: int(l.split()[1]) * 1024 for l in open('/proc/self/status')"
    " if l.startswith(('VmRSS', 'VmHWM'))}))"
)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with (
        Emulator(KEY, answer_words=WORDS).run_in_thread() as emu,
        Kernel({"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": KEY}) as k,
    ):
        assert k.execute("%load_ext ipy_responses_ws").status == "ok"
        assert k.execute("%%respond --new\nwarm up with a long answer", timeout=120).status == "ok"
        yield k


def _rss(kernel: Kernel) -> int:
    return json.loads(kernel.execute(RSS).stdout())["VmRSS"]


def _three_long_answers(kernel: Kernel, flag: str) -> int:
    """RSS growth (bytes) over three long answers in the given mode."""
    before = _rss(kernel)
    for i in range(3):
        assert kernel.execute(f"%%respond --new {flag} -o mem\nlong answer {i}", timeout=120).status == "ok"
        deadline = time.monotonic() + 60
        while kernel.execute("print(getattr(mem, 'status', ''))").stdout().strip() != "completed":
            assert time.monotonic() < deadline, "the background answer did not finish"
            time.sleep(0.2)
        kernel.execute("del mem")
    return _rss(kernel) - before


@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_foreground_long_answers_do_not_grow_the_kernel(kernel: Kernel) -> None:
    growth = _three_long_answers(kernel, "")
    print(f"foreground: {growth / 1e6:+.1f} MB")
    assert growth < 15e6, f"{growth / 1e6:.1f} MB after three foreground answers"


@pytest.mark.kernel
@pytest.mark.timeout(240)
def test_background_long_answers_do_not_grow_the_kernel(kernel: Kernel) -> None:
    growth = _three_long_answers(kernel, "--background")
    print(f"background: {growth / 1e6:+.1f} MB")
    assert growth < 15e6, f"{growth / 1e6:.1f} MB after three background answers"


def test_on_event_turns_feed_the_callback_only_and_polled_turns_still_queue() -> None:
    with (
        Emulator(api_key=KEY).run_in_thread() as emu,
        new_session(emu, KEY) as s,
    ):
        seen: list = []
        h = s.start("background", on_event=seen.append)
        r = h.result(timeout=10)
        assert r.ok and any(getattr(i, "type", "") == "response.completed" for i in seen)
        assert h.get(timeout=0) is None  # nothing was queued: only the end marker
        assert h._queue.qsize() == 0

        polled = s.start("foreground")
        items = list(polled.events())
        assert polled.result(timeout=10).ok
        assert [i.type for i in items if not isinstance(i, Notice)][-1] == "response.completed"
