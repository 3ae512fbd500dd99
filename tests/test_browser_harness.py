"""Prove the browser harness on plain Python cells (no extension): JupyterLab in headless Chromium runs what a
user types, shows output as it arrives, renders widgets whose clicks reach the kernel, interrupts, saves and
reopens. If these fail, the extension flows in test_browser_lab.py cannot be trusted either.
"""

from __future__ import annotations

import re

import pytest
from browser_harness import FAKE_API_KEY, browser_context, browser_env, new_notebook  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def test_typed_cell_runs_and_kernel_sees_server_env(new_notebook, browser_env):  # noqa: F811
    """Typing into a cell and pressing Shift+Enter runs it; the kernel inherits the server's environment
    (how OPENAI_BASE_URL reaches %%respond), and the key itself is never printed."""
    nb = new_notebook([""])
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


def test_output_grows_while_cell_runs(new_notebook):  # noqa: F811
    """The sampler sees a streaming output grow in several steps before the cell ends."""
    nb = new_notebook(
        ["import time\nfor i in range(12):\n    print(f'line {i:02d}', flush=True)\n    time.sleep(0.15)"]
    )
    nb.run_cell(0)
    samples = nb.sample_output_lengths(0, duration_s=10, interval_ms=40, done_text="line 11")
    nb.screenshot("after-stream")
    lengths = [n for _, n in samples]
    distinct_growth = sorted(set(n for n in lengths if n > 0))
    assert len(distinct_growth) >= 5, f"output did not grow in steps: {samples}"
    assert lengths == sorted(lengths), "output length went backwards while streaming"
    assert "line 11" in nb.output_text(0)


def test_widget_button_and_toggle_reach_kernel(new_notebook):  # noqa: F811
    """A Button and ToggleButtons render as real buttons; clicking them runs kernel callbacks."""
    nb = new_notebook(
        [
            "import ipywidgets as w\n"
            "label = w.Label('clicks=0')\n"
            "b = w.Button(description='Press me')\n"
            "t = w.ToggleButtons(options=[('WebSocket', 'ws'), ('SSE', 'sse')], value='ws')\n"
            "def on_click(_):\n    label.value = 'clicks=' + str(int(label.value.split('=')[1]) + 1)\n"
            "b.on_click(on_click)\n"
            "t.observe(lambda ch: setattr(label, 'description', ''), 'value')\n"
            "w.VBox([b, t, label])",
            "print('transport=' + t.value)",
        ]
    )
    nb.run_cell(0)
    nb.output(0).get_by_role("button", name="Press me").wait_for()
    nb.click_in_output(0, "Press me")
    nb.click_in_output(0, "Press me")
    nb.output(0).get_by_text("clicks=2").wait_for()
    nb.click_in_output(0, "SSE")
    nb.screenshot("widgets-clicked")
    # The toggle's new value must be in the kernel, not just in the page: ask the kernel.
    nb.run_cell(1)
    assert "transport=sse" in nb.wait_for_output(1, "transport=")


def test_interrupt_stops_a_running_cell_then_next_cell_runs(new_notebook):  # noqa: F811
    """The toolbar Interrupt stops a busy cell (KeyboardInterrupt shown) and the kernel stays usable."""
    nb = new_notebook(["import time\nprint('started', flush=True)\ntime.sleep(60)", "print('after', 6 * 7)"])
    nb.run_cell(0)
    nb.wait_for_output(0, "started")
    nb.interrupt("toolbar")
    text = nb.wait_for_output(0, "KeyboardInterrupt", timeout_ms=15_000)
    nb.screenshot("interrupted")
    assert "started" in text
    nb.run_cell(1)
    assert "after 42" in nb.wait_for_output(1, "after")


def test_save_shutdown_reopen_keeps_outputs(new_notebook, browser_env, browser_context):  # noqa: F811
    """Ctrl+S writes outputs to disk; after the kernel is shut down the reopened notebook still shows them."""
    nb = new_notebook(["print('persisted', 'x' * 3)"])
    nb.run_cell(0)
    nb.wait_for_output(0, "persisted xxx")
    nb.save()
    saved = browser_env.server.read_notebook(nb.path)
    saved_text = "".join("".join(o.get("text", "")) for o in saved["cells"][0]["outputs"])
    assert "persisted xxx" in saved_text
    assert nb.shutdown_kernel() == 1
    nb = nb.reopen(browser_context)
    assert re.search("persisted xxx", nb.wait_for_output(0, "persisted xxx"))
    nb.screenshot("reopened")
