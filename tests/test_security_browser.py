"""Hostile model output in a real JupyterLab: nothing it carries may run, live or frozen.

The emulator's model quotes the user's prompt in its answer (``## Turn N: <prompt>`` and ``> <prompt>``), so a
prompt full of HTML and script is exactly "model output carrying HTML and script". Each payload, if it ever
became live DOM, would set a flag on ``window``; the test reads those flags from the page while the answer
streams (live widgets) and after it froze (the plain ``text/markdown`` bundle, DESIGN.md §5).

Why the frozen bundle matters: JupyterLab renders Markdown *outputs* of the running session as trusted, and
trusted Markdown keeps raw HTML (only untrusted outputs go through the sanitizer). So raw ``<img onerror>`` in
``text/markdown`` runs in the user's page even though the live widget view escaped it. This test first ran
against a bundle that shipped the raw answer: 4 of the 5 payloads ran (img onerror, script, iframe srcdoc,
details ontoggle). ``render.safe_markdown`` fixed it; this test keeps it fixed.
"""

from __future__ import annotations

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

FLAGS = ("pwn_img", "pwn_svg", "pwn_script", "pwn_iframe", "pwn_details")
HOSTILE = (
    '<img src=x onerror="window.pwn_img=1"> '
    '<svg onload="window.pwn_svg=1"></svg> '
    "<script>window.pwn_script=1</script> "
    '<iframe srcdoc="<script>parent.pwn_iframe=1</script>"></iframe> '
    '<details open ontoggle="window.pwn_details=1"><summary>s</summary></details> '
    "[click me](javascript:window.pwn_link=1)"
)


def _flags(nb: NotebookPage) -> dict[str, object]:
    return nb.page.evaluate(f"() => Object.fromEntries({list(FLAGS)!r}.map(k => [k, window[k] ?? null]))")


DANGEROUS = "img, svg, script, iframe, details, a[href^='javascript' i]"


def _dangerous_nodes(nb: NotebookPage, index: int) -> list[str]:
    """Elements in the cell's output that a payload could have created (the HTML of each)."""
    return nb.output(index).evaluate(f"el => [...el.querySelectorAll({DANGEROUS!r})].map(e => e.outerHTML)")


def test_hostile_answer_stays_inert_live_and_frozen(browser_env: BrowserEnv, new_notebook) -> None:  # noqa: F811
    browser_env.require_emulator()
    # The stall keeps the live view on screen for a while; the directive line is not part of the answer.
    cell = f"%%respond\n!fault stall after=40 seconds=2\n{HOSTILE}"
    nb = new_notebook(["%load_ext ipy_responses_ws", cell])
    nb.run_cell(0)
    nb.wait_execution_count(0)
    nb.run_cell(1)

    # Live: the quoted payload is on screen as text, and nothing ran.
    nb.output(1).get_by_text("onerror", exact=False).first.wait_for(timeout=30_000)
    nb.screenshot("hostile_live")
    assert _flags(nb) == dict.fromkeys(FLAGS), "a payload ran in the live view"
    assert _dangerous_nodes(nb, 1) == []

    # Frozen: the italic footer appears when the bundle replaced the widgets.
    nb.output(1).locator(".jp-RenderedMarkdown").filter(has_text="done · ").first.wait_for(timeout=30_000)
    nb.page.wait_for_timeout(500)  # give onerror/onload handlers time to fire
    nb.screenshot("hostile_frozen")
    flags = _flags(nb)
    nodes = _dangerous_nodes(nb, 1)
    assert FAKE_API_KEY not in nb.page.content()
    assert flags == dict.fromkeys(FLAGS), f"a payload ran after the answer froze: {flags}; elements: {nodes}"
    assert nodes == [], f"the frozen answer created live elements: {nodes}"
    assert "onerror" in nb.output_text(1), "the payload should be visible as text"
