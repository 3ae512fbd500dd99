"""A notebook-shaped conversation in a real JupyterLab, seen through headless Chromium (issue 13).

JupyterLab sends each cell's id with its execute_request (``metadata.cellId``), so editing a ``%%respond`` cell and
running it again replaces that cell's turn: the conversation forks from where the cell's previous turn started.
The test does what a user would do (two cells, edit the first, re-run it, re-run the second), then clicks **Retry**
under an answer, and reads only the page: the frozen footers ("re-run: replaced turn N"), and the emulator's
answers, which list the conversation the server rebuilt ("Earlier messages"), so the page shows which branch the
model saw. The emulator answers deterministically: ``reply_for([...], words=40)`` is the exact text.

Same harness and emulator as tests/test_browser_lab.py (ttft 0.2 s, ~60 tokens/s). Screenshots go to the
artifacts folder.
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

from ipy_responses_ws.emulator import reply_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

#: The Retry/Continue bar is opt-in (a widget saved in a notebook shows "Error displaying widget" on reopen).
LOAD = "%load_ext ipy_responses_ws\n%config ResponsesMagics.retry_buttons = True"
#: The frozen output of a turn renders as ``.jp-RenderedMarkdown``; its italic footer says how the turn ended.
FINAL = ".jp-RenderedMarkdown"
FOOTER = re.compile(r"\b(done|interrupted|failed|incomplete[^·]*) · ")
#: The Retry/Continue bar is a widget (magics/actions.py); a retried answer is drawn inside its Output widget.
IN_WIDGET = ".jupyter-widgets " + FINAL
#: The browser emulator pads each answer with 40 filler words (browser_harness.start_emulator).
WORDS = 40
FIRST = "Which chart shows a trend best?"
EDITED = "Which chart shows a trend best, for three cities?"
SECOND = "Which colours should the lines use?"
RESP_ID = re.compile(r"resp_\S+")


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


def final(nb: NotebookPage, index: int, *has_text: str | re.Pattern[str]) -> object:
    """The frozen answer of cell ``index`` (outside the Retry bar) with a footer, whose text matches ``has_text``."""
    answer = nb.output(index).locator(f"{FINAL}:not(.jupyter-widgets {FINAL})").filter(has_text=FOOTER)
    for text in has_text:
        answer = answer.filter(has_text=text)
    return answer.first


def run_and_wait(nb: NotebookPage, index: int) -> str:
    """Shift+Enter on cell ``index``, wait for its frozen answer; return its text."""
    nb.run_cell(index)
    answer = final(nb, index)
    answer.wait_for(timeout=60_000)
    nb.wait_execution_count(index, timeout_ms=60_000)
    return answer.inner_text()


def edit_and_run(nb: NotebookPage, index: int, source: str, *has_text: str) -> str:
    """Replace cell ``index``'s source, run it, wait for the new frozen answer (matching ``has_text``)."""
    nb.type_and_run(index, source)
    answer = final(nb, index, *has_text)
    answer.wait_for(timeout=60_000)
    nb.wait_execution_count(index, timeout_ms=60_000)
    return answer.inner_text()


def earlier(answer: object) -> list[str]:
    """The "Earlier messages" list of a rendered emulator answer: the user messages the server was sent."""
    items = answer.locator(
        "p:has-text('Earlier messages') + ol > li, p:has-text('Earlier messages') + ul > li"
    )
    return [t.strip() for t in items.all_inner_texts()]


def footer_of(text: str) -> str:
    lines = [ln for ln in text.splitlines() if FOOTER.search(ln)]
    assert lines, f"no status footer in:\n{text}"
    return lines[-1]


def heading(messages: list[str]) -> str:
    """The answer's heading as the page shows it ("Turn N: " and the question, clipped)."""
    return reply_for(messages, words=WORDS).splitlines()[0].removeprefix("## ")


def filler(messages: list[str]) -> str:
    """The last paragraph of the emulator's answer (the filler words): exact text, the same in the page."""
    return reply_for(messages, words=WORDS).rsplit("\n", 1)[1]


def test_rerun_forks_then_retry_answers_again(lab):
    nb = lab([f"%%respond\n{FIRST}", f"%%respond\n{SECOND}"])
    t0 = time.monotonic()

    # Two turns: the second answer lists the first question as an earlier message.
    run_and_wait(nb, 1)
    second = run_and_wait(nb, 2)
    assert heading([FIRST, SECOND]) in second and filler([FIRST, SECOND]) in second
    assert earlier(final(nb, 2)) == [FIRST]
    nb.screenshot("two-turns")

    # Edit the first question and re-run it: its turn is replaced, not appended (turn 1 again, no earlier
    # messages), and the footer says so.
    edited = edit_and_run(nb, 1, f"%%respond\n{EDITED}", "re-run: replaced turn 1")
    nb.timings["edit_to_fork_frozen_s"] = round(time.monotonic() - t0, 3)
    assert heading([EDITED]) in edited and filler([EDITED]) in edited
    assert earlier(final(nb, 1, "re-run: replaced turn 1")) == ["none, this is the first turn"]
    assert SECOND not in edited and "Turn 3" not in edited
    assert "re-run: replaced turn 1" in footer_of(edited)
    nb.output_screenshot(1, "rerun-forked")

    # Re-run the second cell: its old turn left the active branch with the fork, so it continues the edited
    # question (turn 2 of the new branch), and the old first question is gone from what the server rebuilt.
    rerun = edit_and_run(nb, 2, f"%%respond\n{SECOND}", EDITED)
    answer = final(nb, 2, EDITED)
    assert earlier(answer) == [EDITED], "the server was sent more than the active branch"
    assert heading([EDITED, SECOND]) in rerun and filler([EDITED, SECOND]) in rerun
    first_id = RESP_ID.search(footer_of(rerun)).group(0)
    nb.screenshot("branch-rebuilt")

    # Retry under the second answer: the same prompt from the same parent, drawn in the bar's output area.
    nb.output(2).get_by_role("button", name="Retry").first.wait_for(state="attached", timeout=30_000)
    t1 = time.monotonic()
    nb.click_in_output(2, "Retry")
    retried = nb.output(2).locator(IN_WIDGET).filter(has_text=FOOTER).first
    retried.wait_for(timeout=60_000)
    nb.timings["retry_click_to_frozen_s"] = round(time.monotonic() - t1, 3)
    text = retried.inner_text()
    assert heading([EDITED, SECOND]) in text and filler([EDITED, SECOND]) in text
    assert earlier(retried) == [EDITED], "Retry did not fork from the same parent"
    retry_footer = footer_of(text)
    assert retry_footer.startswith("done · ") and "re-run: replaced turn 2" in retry_footer
    assert RESP_ID.search(retry_footer).group(0) != first_id, "Retry showed the old answer, not a new one"
    assert final(nb, 2, EDITED).count() == 1  # the answer above the bar is still there
    nb.output_screenshot(2, "retried")
    nb.screenshot("retried-page")
    assert FAKE_API_KEY not in nb.page.content(), "the API key reached the page"
