"""The extension in a real JupyterLab, seen through headless Chromium (GitHub issue "Proof in a real browser").

Each test opens a fresh notebook whose kernel talks to the session's emulator (ttft 0.2 s, ~60 tokens/s, so
streaming is visible), does what a user would do, and asserts on what the page shows. Screenshots of each
step go to the artifacts folder (see docs/browser-tests.md). The emulator's answer names the turn number
("## Turn N: ..."), which is how these tests see the conversation chain from the page alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_harness import (  # noqa: F401
    FAKE_API_KEY,
    REPO,
    BrowserEnv,
    NotebookPage,
    artifacts_dir,
    browser_context,
    browser_env,
    new_notebook,
    record_timings,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

LOAD = "%load_ext ipy_responses_ws"
#: The final, frozen output of a turn is a plain Markdown bundle (DESIGN.md §5) that JupyterLab renders in a
#: ``.jp-RenderedMarkdown``; its italic footer starts with how the turn ended.
FINAL = ".jp-RenderedMarkdown"
FOOTER = re.compile(r"\b(done|interrupted|failed|incomplete[^·]*) · ")
#: A prompt line the emulator reads as "go silent for 30 s after 20 events" (emulator/faults.py): the answer
#: starts, then hangs, so there is time to interrupt or stop it mid-stream.
STALL = "!fault stall after=20 seconds=30"
#: Untrusted HTML in a prompt, which the emulator's answer quotes back: if it were ever inserted as markup, the
#: browser would run its handler and mark <body>.
XSS = "<img src=x onerror=\"document.body.dataset.pwned='yes'\">"
#: The live view's status line while streaming: the transport badge, then the state (widgets.py).
LIVE_WS = r"\bWS\s*streaming"
LIVE_SSE = r"\bSSE\s*streaming"


@pytest.fixture
def lab(browser_env: BrowserEnv, new_notebook):  # noqa: F811
    """``lab(cells)`` -> a fresh notebook, open and idle, whose first cell (``%load_ext``) has run."""
    browser_env.require_emulator()

    def open_with(cells: list[str], **kw) -> NotebookPage:
        nb = new_notebook([LOAD, *cells], **kw)
        nb.mark("kernel_idle")
        nb.run_cell(0)
        nb.wait_execution_count(0)
        nb.mark("extension_loaded")
        assert "Error" not in nb.output_text(0), nb.output_text(0)
        return nb

    return open_with


def wait_final(nb: NotebookPage, index: int, timeout_ms: int = 30_000) -> str:
    """Wait until cell ``index`` shows its frozen Markdown answer with a footer; return the output text."""
    nb.output(index).locator(FINAL).filter(has_text=FOOTER).first.wait_for(timeout=timeout_ms)
    nb.mark(f"cell{index}_final")
    return nb.output_text(index)


def footer(text: str) -> str:
    """The status footer line of a final answer (the last line matching FOOTER)."""
    lines = [ln for ln in text.splitlines() if FOOTER.search(ln)]
    assert lines, f"no status footer in:\n{text}"
    return lines[-1]


def assert_no_key(nb: NotebookPage) -> None:
    assert FAKE_API_KEY not in nb.page.content(), "the API key reached the page"


# --------------------------------------------------------------------------------------------------------------
# 1. %%respond streams visibly and ends as rendered Markdown
# --------------------------------------------------------------------------------------------------------------


def test_respond_streams_then_renders_markdown(lab):
    nb = lab(["%%respond\nShow me streaming in a real browser"])
    nb.start_sampling(1, interval_ms=40, done_selector=FINAL, watch=LIVE_WS)
    t0 = time.monotonic()
    nb.run_cell(1)
    # Mid-stream evidence: wait for some answer text, then take the screenshot while it is still growing.
    nb.wait_for_output(1, "Turn 1", timeout_ms=20_000)
    nb.timings["shift_enter_to_first_words_s"] = round(time.monotonic() - t0, 3)
    nb.screenshot("mid-stream")
    mid_shot = nb.output_screenshot(1, "mid-stream-answer")
    text = wait_final(nb, 1)
    nb.timings["shift_enter_to_frozen_s"] = round(time.monotonic() - t0, 3)
    samples = nb.stop_sampling()
    nb.screenshot("finished")
    shot = nb.output_screenshot(1, "finished-answer")

    streaming = [s.length for s in samples if not s.done and s.length > 0]
    rises = sum(1 for a, b in zip(streaming, streaming[1:], strict=False) if b > a)
    assert any(s.watched for s in samples), "the live view never showed the 'WS streaming' badge"
    # The sampler ticks every 40 ms on the page's main thread, so the gaps between its samples show how long
    # the page was blocked (rendering widget updates) while the answer streamed.
    live = [s.seconds for s in samples if not s.done]
    gaps = sorted(b - a for a, b in zip(live, live[1:], strict=False))
    nb.timings.update(
        stream_samples=len(streaming),
        stream_rises=rises,
        stream_max_chars=max(streaming, default=0),
        page_tick_gap_median_ms=round(1000 * gaps[len(gaps) // 2], 1) if gaps else None,
        page_tick_gap_max_ms=round(1000 * gaps[-1], 1) if gaps else None,
    )
    assert gaps and gaps[-1] < 1.0, f"the page froze for {gaps[-1]:.2f}s while the answer streamed"
    assert rises >= 4, f"the answer did not visibly grow while streaming: {samples}"
    assert max(streaming) - min(streaming) > 200, f"too little growth before the end: {streaming}"

    out = nb.output(1)
    for selector in ("h2", "li", "pre code", "table"):
        assert out.locator(selector).first.is_visible(), f"no visible <{selector}> in the final answer"
    assert "Turn 1: Show me streaming in a real browser" in out.locator("h2").first.inner_text()
    assert "turn = 1" in out.locator("pre code").first.inner_text()
    foot = footer(text)
    assert foot.startswith("done · WS"), foot
    assert "Error displaying widget" not in text
    assert_no_key(nb)
    # The README's screenshot (just the answer cell) is refreshed only on request, so a normal run leaves the
    # git tree clean: IPY_RWS_UPDATE_DOCS_IMG=1 pytest -m browser -k streams_then
    if os.environ.get("IPY_RWS_UPDATE_DOCS_IMG"):
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, REPO / "docs" / "img" / "respond-finished.png")
        shutil.copyfile(mid_shot, REPO / "docs" / "img" / "respond-streaming.png")


# --------------------------------------------------------------------------------------------------------------
# 2 + 5. The toggle reaches the kernel; the chain continues across transports; Reset empties it; Close + a
# refused upgrade falls back to SSE visibly
# --------------------------------------------------------------------------------------------------------------


def test_transport_toggle_and_reset_in_control_panel(lab, browser_env: BrowserEnv):  # noqa: F811
    nb = lab(
        [
            "%responses",
            "%%respond\nFirst, over the WebSocket",
            "%%respond\nSecond, over SSE",
            "%%respond\nThird, back on the WebSocket",
            "%%respond\nFourth, after Reset",
            "%%respond\nFifth, after Close",
        ]
    )
    emulator = browser_env.require_emulator()
    # Imported here (after the skip check), so a broken emulator skips instead of failing collection.
    from ipy_responses_ws.emulator import Fault

    nb.run_cell(1)
    panel = nb.output(1)
    panel.get_by_role("button", name="SSE").wait_for()
    nb.screenshot("control-panel")

    nb.run_cell(2)
    first = wait_final(nb, 2)
    assert "Turn 1" in first and footer(first).startswith("done · WS")

    nb.click_in_output(1, "SSE")
    nb.start_sampling(3, interval_ms=40, done_selector=FINAL, watch=LIVE_SSE)
    nb.run_cell(3)
    second = wait_final(nb, 3)
    assert any(s.watched for s in nb.stop_sampling()), "the live badge never said 'SSE streaming'"
    assert footer(second).startswith("done · SSE"), footer(second)
    assert "Turn 2: Second, over SSE" in second, "the chain did not carry over to SSE"

    nb.click_in_output(1, "WebSocket")
    nb.run_cell(4)
    third = wait_final(nb, 4)
    assert footer(third).startswith("done · WS"), footer(third)
    assert "Turn 3: Third, back on the WebSocket" in third, "the chain did not carry back to WS"
    nb.screenshot("toggled-ws-sse-ws")

    nb.click_in_output(1, "Refresh")
    # Wording of the panel (widgets.py) may change; these patterns key on the numbers and one word each.
    panel.get_by_text(re.compile(r"default\W+3 turns")).first.wait_for(timeout=10_000)
    nb.click_in_output(1, "Reset")
    panel.get_by_text(re.compile(r"\breset\b")).first.wait_for(timeout=10_000)  # the message, not "Reset"
    panel.get_by_text(re.compile(r"default\W+0 turns|[Nn]o conversation")).first.wait_for(timeout=10_000)
    nb.screenshot("after-reset")
    nb.run_cell(5)
    fourth = wait_final(nb, 5)
    assert "Turn 1: Fourth, after Reset" in fourth, "Reset did not empty the chain"

    # Close drops the open sockets; the next turn must dial again. The emulator refuses that one upgrade
    # with HTTP 426 (PROTOCOL.md §6), so the answer falls back to SSE, says so, and the chain goes on.
    nb.click_in_output(1, "Close")
    panel.get_by_text(re.compile(r"\bclosed\b", re.I)).first.wait_for(timeout=10_000)
    emulator.add_fault(Fault("refuse_upgrade", status=426, transport="ws", count=1))
    try:
        nb.run_cell(6)
        fifth = wait_final(nb, 6)
    finally:
        emulator.clear_faults()
    nb.screenshot("fell-back-to-sse")
    assert re.match(r"done · SSE \(fell back", footer(fifth)), footer(fifth)
    assert "Turn 2: Fifth, after Close" in fifth, "the chain did not survive Close + fallback"
    assert_no_key(nb)


# --------------------------------------------------------------------------------------------------------------
# 3. Interrupt stops a foreground stream
# --------------------------------------------------------------------------------------------------------------


def test_interrupt_stops_foreground_stream(lab):
    nb = lab([f"%%respond\nAnswer slowly please\n{STALL}", "%%respond\nAfter the interrupt"])
    nb.run_cell(1)
    nb.wait_for_output(1, "Turn 1", timeout_ms=20_000)
    nb.screenshot("stalled-mid-stream")
    # A foreground cell cannot handle a click until it ends, so its Stop must not look usable (DESIGN.md §2);
    # the live status line points to Interrupt instead.
    stop = nb.output(1).get_by_role("button", name="Stop")
    assert stop.count() == 0 or stop.first.is_disabled(), "a foreground Stop button that cannot work"
    assert "Interrupt" in nb.output_text(1)
    t0 = time.monotonic()
    nb.interrupt("toolbar")
    wait_final(nb, 1, timeout_ms=10_000)
    stop_seconds = time.monotonic() - t0
    nb.timings["interrupt_to_frozen_s"] = round(stop_seconds, 3)
    nb.wait_execution_count(1, timeout_ms=10_000)
    # The traceback is drawn after the frozen answer: wait for it before reading the whole output.
    text = nb.wait_for_output(1, "KeyboardInterrupt", timeout_ms=10_000)
    nb.screenshot("interrupted")
    assert footer(text).startswith("interrupted"), footer(text)
    assert "KeyboardInterrupt" in text, "Run All must stop at an interrupted cell (the cell re-raises)"
    assert "Turn 1" in text, "the partial answer should stay visible"
    assert stop_seconds < 5, f"interrupt took {stop_seconds:.1f}s to show"

    nb.run_cell(2)
    after = wait_final(nb, 2)
    assert footer(after).startswith("done"), footer(after)
    # An interrupted turn is not the base of the next one (DESIGN.md §4): the chain is still at turn 0.
    assert "Turn 1: After the interrupt" in after
    assert_no_key(nb)


# --------------------------------------------------------------------------------------------------------------
# 4. A --background cell's Stop button ends its stream
# --------------------------------------------------------------------------------------------------------------


def test_background_stop_button(lab):
    nb = lab([f"%%respond --background\nA long background answer\n{STALL}", "print('kernel is free', 6 * 7)"])
    nb.run_cell(1)
    nb.wait_for_output(1, "Turn 1", timeout_ms=20_000)
    # The cell returned at once: another cell runs while the answer is still streaming (stalled).
    nb.run_cell(2)
    assert "kernel is free 42" in nb.wait_for_output(2, "kernel is free")
    assert not nb.output(1).locator(FINAL).filter(has_text=FOOTER).count(), "it ended before Stop was clicked"
    nb.screenshot("background-streaming")
    t0 = time.monotonic()
    nb.click_in_output(1, "Stop")
    text = wait_final(nb, 1, timeout_ms=10_000)
    nb.timings["stop_to_frozen_s"] = round(time.monotonic() - t0, 3)
    nb.screenshot("background-stopped")
    assert re.match(r"(interrupted|stopped)", footer(text)), footer(text)
    assert "Turn 1" in text, "the partial answer should stay visible"
    assert_no_key(nb)


# --------------------------------------------------------------------------------------------------------------
# 6. Save, shut the kernel down, reopen: the answers are still there, with no widget errors
# --------------------------------------------------------------------------------------------------------------


def test_answers_survive_save_shutdown_reopen(lab, browser_env, browser_context):  # noqa: F811
    """Also: model output is untrusted (DESIGN.md §5). The second answer quotes an ``<img onerror>`` from its
    prompt; it must show as text, live, frozen and after reopening, and its handler must never run."""
    nb = lab(
        [
            "%%respond --reasoning-summary auto\nRemember this answer",
            f"%%respond\nAnd this one, with HTML: {XSS}",
            "print('queued behind two streams', 6 * 7)",
        ]
    )
    # Run All queues every cell at once: each must get its reply while the one before it streams
    # (the nest-asyncio regression of DESIGN.md §1 lost exactly these queued cells).
    nb.run_all()
    wait_final(nb, 1)
    second_live = wait_final(nb, 2)
    assert "queued behind two streams 42" in nb.wait_for_output(3, "queued behind")
    assert 'onerror="document.body.dataset.pwned' in second_live, "the HTML should show as literal text"
    nb.save()
    saved = browser_env.server.read_notebook(nb.path)
    for cell in saved["cells"][1:3]:
        kinds = {k for o in cell["outputs"] for k in o.get("data", {})}
        assert "text/markdown" in kinds, f"no frozen Markdown output saved: {cell['outputs']}"
        assert not any("widget" in k for k in kinds), f"a widget view was saved: {kinds}"
    assert nb.shutdown_kernel() == 1
    assert nb.page.evaluate("document.body.dataset.pwned") is None, "the answer's HTML ran in the live page"

    nb = nb.reopen(browser_context)
    first = wait_final(nb, 1, timeout_ms=15_000)
    second = wait_final(nb, 2, timeout_ms=15_000)
    nb.screenshot("after-reopen")
    assert "Turn 1: Remember this answer" in first
    # The reasoning summary asked for in cell 1 is part of the frozen answer, so it survives the reopen too.
    assert "Reasoning summary" in first and "Planning turn 1" in first, first[:400]
    assert "Turn 2: And this one, with HTML:" in second
    assert nb.output(1).locator("pre code").first.is_visible()
    body = nb.page.locator(".jp-Notebook").first.inner_text()
    assert "Error displaying widget" not in body and "model not found" not in body
    assert nb.output(2).locator("img").count() == 0, "the answer's <img> became an element"
    assert nb.page.evaluate("document.body.dataset.pwned") is None, "the saved answer's HTML ran on reopen"
    assert_no_key(nb)


# --------------------------------------------------------------------------------------------------------------
# 7. nbconvert --to html of an executed notebook contains the answers
# --------------------------------------------------------------------------------------------------------------


def test_nbconvert_html_contains_answers(browser_env: BrowserEnv, tmp_path: Path):  # noqa: F811
    """``jupyter nbconvert --to html --execute`` runs a notebook against the emulator and the HTML holds the
    answers as rendered Markdown; opened in Chromium it shows them without any kernel or widget manager."""
    browser_env.require_emulator()
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(LOAD),
        nbformat.v4.new_code_cell("%%respond\nConvert me to HTML"),
        nbformat.v4.new_code_cell("%%respond\nAnd keep the chain"),
    ]
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    # This test is about what is saved, not about pacing: an unthrottled emulator of its own saves ~5 s on the
    # 2-core machine. The kernel nbconvert starts inherits this environment (isolated IPython profile, fake key).
    from ipy_responses_ws.emulator import Emulator

    t0 = time.monotonic()
    with Emulator(api_key=FAKE_API_KEY).run_in_thread() as fast:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": fast.base_url,
            "OPENAI_API_KEY": FAKE_API_KEY,
            "IPYTHONDIR": str(tmp_path / "ipython"),
        }
        proc = subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    convert_seconds = time.monotonic() - t0
    html_text = (tmp_path / "executed.html").read_text()
    assert "Turn 1: Convert me to HTML" in html_text
    assert "Turn 2: And keep the chain" in html_text
    # (The code block is syntax-highlighted into <span>s, so "turn = 2" is checked on the rendered page below.)
    assert "done · WS" in html_text, "the status footer is part of the frozen answer"
    assert FAKE_API_KEY not in html_text and FAKE_API_KEY not in proc.stderr
    assert "model not found" not in html_text
    shutil.copyfile(tmp_path / "executed.html", artifacts_dir() / "nbconvert-executed.html")

    page = browser_env.context.new_page()
    try:
        page.goto((tmp_path / "executed.html").as_uri())
        headings = page.locator("h2", has_text=re.compile(r"Turn \d"))
        headings.first.wait_for(timeout=10_000)
        assert headings.count() == 2
        assert page.locator("table").first.is_visible()
        for n in (1, 2):
            assert page.locator("pre").filter(has_text=f"turn = {n}").first.is_visible()
        page.screenshot(path=str(artifacts_dir() / "nbconvert-html.png"), full_page=True)
    finally:
        page.close()
    record_timings({"test": "nbconvert", "execute_and_convert_s": round(convert_seconds, 3)})
