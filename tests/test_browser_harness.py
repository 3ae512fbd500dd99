"""Prove the browser harness on plain Python cells (no extension): JupyterLab in headless Chromium runs what a
user types, shows output as it arrives, renders widgets whose clicks reach the kernel, interrupts, saves and
reopens. If this fails, the extension flows in test_browser_lab.py cannot be trusted either; if this passes
and they fail, the extension is at fault.

All steps share one notebook: a kernel start costs 5-15 s on the 2-core machine, so one test, many checks.
"""

from __future__ import annotations

import pytest
from browser_harness import FAKE_API_KEY, browser_context, browser_env, new_notebook  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

STREAM = "import time\nfor i in range(12):\n    print(f'line {i:02d}', flush=True)\n    time.sleep(0.15)"
WIDGETS = (
    "import ipywidgets as w\n"
    "label = w.Label('clicks=0')\n"
    "b = w.Button(description='Press me')\n"
    "t = w.ToggleButtons(options=[('WebSocket', 'ws'), ('SSE', 'sse')], value='ws')\n"
    "def on_click(_):\n    label.value = 'clicks=' + str(int(label.value.split('=')[1]) + 1)\n"
    "b.on_click(on_click)\n"
    "w.VBox([b, t, label])"
)
ASK_KERNEL = "print('transport=' + t.value)"
SLEEP = "import time\nprint('started', flush=True)\ntime.sleep(60)"
AFTER = "print('after', 6 * 7)"
SLEEP_AGAIN = "import time\nprint('sleeping again', flush=True)\ntime.sleep(60)"
#: The same probe test_browser_lab.py puts in a prompt: shown as HTML, it marks <body> when its handler runs.
HTML_PROBE = (
    'from IPython.display import HTML\nHTML("<img src=x onerror=\\"document.body.dataset.pwned=\'yes\'\\">")'
)


def test_plain_cells_in_jupyterlab(new_notebook, browser_env, browser_context):  # noqa: F811
    nb = new_notebook(["", STREAM, WIDGETS, ASK_KERNEL, SLEEP, AFTER, HTML_PROBE, SLEEP_AGAIN])
    nb.mark("kernel_idle")

    # Typing into a cell and pressing Shift+Enter runs it; the kernel inherits the server's environment (how
    # OPENAI_BASE_URL reaches %%respond), and the key itself is never printed.
    code = (
        "import os\n"
        "print('base=' + str(os.environ.get('OPENAI_BASE_URL')))\n"
        "print('key_is_fake=' + str(os.environ['OPENAI_API_KEY'].startswith('sk-test-FAKE')))\n"
        "print(sum(range(101)))"
    )
    nb.type_and_run(0, code)
    text = nb.wait_for_output(0, "5050")
    nb.screenshot("typed-cell")
    assert f"base={browser_env.base_url}" in text
    assert "key_is_fake=True" in text
    assert FAKE_API_KEY not in text
    assert nb.wait_execution_count(0) == 1

    # The sampler sees a streaming output grow in several steps before the cell ends.
    nb.run_cell(1)
    samples = nb.sample_output_lengths(1, duration_s=10, interval_ms=40, done_text="line 11")
    lengths = [n for _, n in samples]
    assert len({n for n in lengths if n > 0}) >= 5, f"output did not grow in steps: {samples}"
    assert lengths == sorted(lengths), "output length went backwards while streaming"
    assert "line 11" in nb.output_text(1)
    nb.mark("streamed")

    # A Button and ToggleButtons render as real buttons; clicks run kernel callbacks and reach kernel state.
    nb.run_cell(2)
    nb.output(2).get_by_role("button", name="Press me").wait_for()
    nb.click_in_output(2, "Press me")
    nb.click_in_output(2, "Press me")
    nb.output(2).get_by_text("clicks=2").wait_for()
    nb.click_in_output(2, "SSE")
    nb.screenshot("widgets-clicked")
    nb.run_cell(3)
    assert "transport=sse" in nb.wait_for_output(3, "transport=")
    nb.mark("widgets")

    # I,I in command mode (the keyboard twin of the toolbar's ■, which test_browser_lab.py uses) stops a busy
    # cell (KeyboardInterrupt shown) and the kernel stays usable.
    nb.run_cell(4)
    nb.wait_for_output(4, "started")
    nb.interrupt("keys")
    assert "started" in nb.wait_for_output(4, "KeyboardInterrupt", timeout_ms=15_000)
    nb.screenshot("interrupted")
    nb.run_cell(5)
    assert "after 42" in nb.wait_for_output(5, "after")
    # And Kernel → Interrupt Kernel from the menu bar, on the same cell run again.
    nb.run_cell(7)
    nb.wait_for_output(7, "sleeping again")
    nb.interrupt("menu")
    nb.wait_for_output(7, "KeyboardInterrupt", timeout_ms=15_000)
    nb.mark("interrupted")

    # The HTML probe works: an <img onerror> displayed as HTML does run in the page. So when the extension's
    # tests find body.dataset.pwned unset, the answer's HTML really was inert (and not just undetected).
    nb.run_cell(6)
    nb.wait_execution_count(6)
    nb.page.wait_for_function("document.body.dataset.pwned === 'yes'", timeout=10_000)

    # Ctrl+S writes outputs to disk; after the kernel is shut down the reopened notebook still shows them.
    nb.save()
    saved = browser_env.server.read_notebook(nb.path)
    saved_text = "".join("".join(o.get("text", "")) for o in saved["cells"][5]["outputs"])
    assert "after 42" in saved_text
    assert nb.shutdown_kernel() == 1
    nb = nb.reopen(browser_context)
    assert "after 42" in nb.wait_for_output(5, "after 42")
    assert "line 11" in nb.output_text(1)
    # Plain widgets are not saved with the notebook: JupyterLab says so. This is the message the extension's
    # frozen answers must avoid (test_browser_lab.py), and it proves the harness would see it.
    assert "model not found" in nb.wait_for_output(2, "model not found", timeout_ms=15_000)
    nb.screenshot("reopened")
    nb.mark("reopened")
