"""``%%respond --tools`` in a real JupyterLab, seen through headless Chromium: the model calls the notebook's own
functions, and the page shows each call while the turn runs (a row per call: the name, the arguments, then the
status and a preview of the output), then, once the turn ends, the frozen Markdown with the calls listed above
the answer, which quotes every output.

Same harness and emulator as tests/test_browser_lab.py (ttft 0.2 s, ~60 tokens/s, so the live view lasts long
enough to be seen). The emulator's tool-using model calls the tools the prompt names, with the arguments written
in it, one call per response (docs/emulator.md "Tools"). Screenshots go to the artifacts folder.
"""

from __future__ import annotations

import re
import time

import pytest
from browser_harness import (  # noqa: F401
    FAKE_API_KEY,
    BrowserEnv,
    NotebookPage,
    browser_context,
    browser_env,
    new_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

LOAD = "%load_ext ipy_responses_ws"
#: The frozen output of a turn renders as ``.jp-RenderedMarkdown``; its italic footer says how the turn ended.
FINAL = ".jp-RenderedMarkdown"
FOOTER = re.compile(r"\b(done|interrupted|failed|incomplete[^·]*) · ")
#: The live view draws each call as a ``<details class="irw-tool ...">`` row (tool_view.row_html).
LIVE_ROW = "details.irw-tool"
DEFINE = '''
import time
CITY_TEMPS = {"Paris": 21, "Oslo": 4}

def get_weather(city: str) -> str:
    """The weather in a city, from the notebook's own data."""
    time.sleep(1.0)  # long enough for the page to show the call "running…"
    return f"{CITY_TEMPS[city]} C in {city}"

def convert_units(value: float, unit: str = "C") -> str:
    """Convert a temperature from Celsius to Fahrenheit."""
    return f"{value * 9 / 5 + 32:.1f} F"
'''
PROMPT = 'Check get_weather(city="Oslo") and then convert_units(value=4, unit="C").'
CELL = f"%%respond --tools get_weather,convert_units\n{PROMPT}"
#: (what the row names, what the tool returned)
CALLS = [('get_weather(city="Oslo")', "4 C in Oslo"), ('convert_units(value=4, unit="C")', "39.2 F")]


@pytest.fixture
def lab(browser_env: BrowserEnv, new_notebook):  # noqa: F811
    """``lab(cells)`` -> a fresh notebook, open and idle, whose first cell (``%load_ext``) has run."""
    browser_env.require_emulator()

    def open_with(cells: list[str]) -> NotebookPage:
        nb = new_notebook([LOAD, *cells])
        nb.run_cell(0)
        nb.wait_execution_count(0)
        assert "Error" not in nb.output_text(0), nb.output_text(0)
        return nb

    return open_with


def test_tool_calls_show_live_then_above_the_frozen_answer(lab):
    nb = lab([DEFINE, CELL])
    nb.run_cell(1)
    nb.wait_execution_count(1)
    assert "Error" not in nb.output_text(1), nb.output_text(1)

    # The sampler records, every 40 ms, whether the first call's row said "running…" (it sleeps 1 s).
    nb.start_sampling(2, interval_ms=40, done_selector=FINAL, watch=r'get_weather\(city="Oslo"\) · running')
    t0 = time.monotonic()
    nb.run_cell(2)
    out = nb.output(2)

    # While the turn runs: one live row per call, each with its name and arguments, then "ok" and the output.
    for label, output in CALLS:
        row = out.locator(LIVE_ROW).filter(has_text=label).filter(has_text=f": {output}")
        row.first.wait_for(state="attached", timeout=30_000)
        assert " · ok · " in row.first.inner_text()
    nb.timings["shift_enter_to_calls_shown_s"] = round(time.monotonic() - t0, 3)
    assert out.locator(FINAL).count() == 0, "the turn was already frozen: the calls were not seen live"
    live = out.inner_text()
    nb.screenshot("calls-live")
    nb.output_screenshot(2, "calls-live-cell")
    assert "step" in live, f"the live status line does not say which step runs:\n{live[-1500:]}"

    # The turn ends: the live view is replaced by plain Markdown, the calls listed above the answer.
    final = out.locator(FINAL).filter(has_text=FOOTER).first
    final.wait_for(timeout=60_000)
    nb.timings["shift_enter_to_frozen_s"] = round(time.monotonic() - t0, 3)
    samples = nb.stop_sampling()
    nb.wait_execution_count(2)
    nb.screenshot("frozen")
    nb.output_screenshot(2, "frozen-cell")
    assert any(s.watched and not s.done for s in samples), "the page never showed get_weather 'running…'"
    assert out.locator(LIVE_ROW).count() == 0, "the live rows are still there after the turn ended"

    text = nb.output_text(2)
    footer = [ln for ln in text.splitlines() if FOOTER.search(ln)][-1]
    assert footer.startswith("done · WS · 2 calls in 3 steps"), footer
    heading = text.index("Turn 1: Check get_weather")
    for label, output in CALLS:
        row_at = text.index(f"🔧 {label} · ok")
        assert row_at < heading, f"{label} is not listed above the answer:\n{text}"
        assert f"returned {output}" in text[heading:], f"the answer does not quote {output!r}:\n{text}"

    # Each listed call is a collapsed <details>; opening it shows the arguments and the whole output.
    rows = final.locator("details")
    assert rows.count() == 2, final.inner_html()[:2000]
    assert not rows.first.locator("pre").first.is_visible(), "a call's details should start collapsed"
    rows.nth(1).locator("summary").click()
    opened = rows.nth(1).locator("pre")
    opened.first.wait_for(state="visible", timeout=10_000)
    assert '"value": 4' in opened.nth(0).inner_text() and opened.nth(1).inner_text() == "39.2 F"
    nb.output_screenshot(2, "frozen-call-opened")
    assert FAKE_API_KEY not in nb.page.content(), "the API key reached the page"
