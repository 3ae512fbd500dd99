"""notebooks/conversation.ipynb runs end to end (nbclient, a real kernel) against the emulator, and its saved
outputs show what a reader would look for: the per-cell history, a DataFrame sent as a compact summary, a figure
attached, the last error explained, code offered for the next cell, a cut-off answer continued, the cost in the
footers and in ``%responses status``, and a conversation exported, loaded and continued by id.

nbclient sends no ``metadata.cellId`` (nbclient 0.11 calls ``kc.execute(source)`` only), and a notebook file runs
each cell once, so editing and re-running a cell is shown in JupyterLab by tests/test_browser_conversation.py; here
the notebook forks with ``%respond --retry`` (the last turn again, from the same parent) and explains the re-run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from engine_helpers import requests_received
from nbclient import NotebookClient
from notebook_helpers import answer, cell, stdout

from ipy_responses_ws.emulator import Emulator, reply_for

pytestmark = pytest.mark.kernel

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "conversation.ipynb"
KEY = "sk-test-FAKE-conversation-nb-0123456789"
Q1 = "I have daily sales for three cities. Which chart shows the trend best?"
Q2 = "Which colours should the three lines use?"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY, ttft=0.01, token_rate=3000).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def executed(emu: Emulator, tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook, executed once for the module in a fresh folder (where its export writes)."""
    folder = tmp_path_factory.mktemp("conversation-nb")
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENAI_BASE_URL", emu.base_url)
    mp.setenv("OPENAI_API_KEY", KEY)
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = NotebookClient(
            nb,
            timeout=60,
            kernel_name="python3",
            allow_errors=False,  # only the cell tagged raises-exception may fail
            record_timing=False,
            resources={"metadata": {"path": str(folder)}},
        )
        client.execute()
    finally:
        mp.undo()
    assert KEY not in json.dumps(nb), "the key leaked into the executed notebook"
    return nb, folder


def user_parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    user = [it for it in request["input"] if it.get("role") == "user"][-1]
    content = user["content"]
    return content if isinstance(content, list) else [{"type": "input_text", "text": content}]


def test_cells_are_turns_and_retry_forks_the_last_one(executed: Any) -> None:
    nb, _ = executed
    assert answer(cell(nb, "%%respond -o draft"))["text"] == reply_for([Q1])
    follow = answer(cell(nb, "%%respond -o follow_up"))
    assert follow["text"] == reply_for([Q1, Q2])
    assert "Earlier messages:\n\n1. I have daily sales" in follow["text"]
    # --retry: the same prompt from the same parent; turn 2 is replaced, not followed by a third turn
    retried = answer(cell(nb, "%respond --retry"))
    assert retried["text"] == reply_for([Q1, Q2]) and retried["response_id"] != follow["response_id"]
    assert "· re-run: replaced turn 2 ·" in retried["markdown"]
    history = stdout(cell(nb, "%responses history"))
    assert history.startswith("(re-run cells forked this conversation 1×")
    assert history.count("user: ") == 2 and f"user: {Q1}" in history and f"user: {Q2}" in history
    assert history.count("── (no cell id)") == 2, history  # nbclient sends no cell ids
    # re-running an edited cell (what JupyterLab does) is explained where a reader meets it
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "re-run: replaced turn 1" in prose and "--continue" in prose and "retry_buttons=true" in prose


def test_a_dataframe_goes_in_as_a_compact_summary(executed: Any, emu: Emulator) -> None:
    nb, _ = executed
    assert "(1200, 3)" in json.dumps(cell(nb, "import numpy as np").outputs)
    sales = answer(cell(nb, "%%respond --new -o about_sales"))
    assert sales["status"] == "completed" and sales["text"].startswith("## Turn 1: What stands out")
    md = sales["markdown"]  # the emulator quotes what it received: the summary, not 1,200 rows
    assert "pandas DataFrame, shape (1200, 3)" in md and "day (datetime64" in md and "units (int64)" in md
    assert "> | 2026-01-01 00:00:00 | Paris | 10 |" in md and "(showing 5 of 1,200 rows)" in md
    sent = [r for r in requests_received(emu) if "What stands out" in user_parts(r)[0]["text"]]
    assert len(sent) == 1 and len(user_parts(sent[0])[0]["text"]) < 5000


def test_a_figure_is_shown_and_attached(executed: Any, emu: Emulator) -> None:
    nb, _ = executed
    shown = [
        o for o in cell(nb, "import matplotlib.pyplot as plt").outputs if "image/png" in o.get("data", {})
    ]
    assert len(shown) == 1, "the chart is not shown in the notebook"
    about = answer(cell(nb, "%%respond --image fig -o about_fig"))
    assert about["status"] == "completed" and about["text"].startswith("## Turn 2: Describe this chart")
    (sent,) = [
        r for r in requests_received(emu) if user_parts(r)[0]["text"].startswith("Describe this chart")
    ]
    parts = user_parts(sent)
    assert [p["type"] for p in parts] == ["input_text", "input_image"]
    png = base64.b64decode(parts[1]["image_url"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_error_is_explained_with_the_failing_cell(executed: Any, emu: Emulator) -> None:
    nb, _ = executed
    failing = cell(nb, 'per_city = sales.groupby("city")')
    (err,) = [o for o in failing.outputs if o.output_type == "error"]
    assert err["ename"] == "KeyError"
    why = answer(cell(nb, "%%respond --error -o why"))
    assert why["status"] == "completed"
    assert "> **KeyError**: 'Berlin'" in why["markdown"]
    assert 'share = per_city["Berlin"] / per_city.sum()' in why["markdown"]
    (sent,) = [
        r for r in requests_received(emu) if user_parts(r)[0]["text"].startswith("Why does this fail?")
    ]
    text = user_parts(sent)[0]["text"]
    assert 'per_city = sales.groupby("city")["units"].sum()' in text  # the whole failing cell went along
    assert KEY not in text


def test_code_is_offered_for_the_next_cell(executed: Any) -> None:
    nb, _ = executed
    c = cell(nb, "%%respond --code -o snippet")
    assert "```python\nturn = 4\nprompt_chars = 54\n```" in answer(c)["text"]
    assert stdout(c).startswith("--code: block 1 of 1 (python code, 2 lines) put into a new cell below")


def test_a_cut_off_answer_is_continued(executed: Any) -> None:
    nb, _ = executed
    cut = answer(cell(nb, "%%respond --max-output-tokens 20 -o cut"))
    assert cut["status"] == "incomplete" and "incomplete (max\\_output\\_tokens)" in cut["markdown"]
    assert "not added to the conversation" in cut["markdown"]
    rest = answer(cell(nb, "%respond --continue-answer -o rest"))
    assert rest["status"] == "completed"
    assert "Your previous answer was cut off (max_output_tokens)" in rest["text"]
    assert cut["text"].splitlines()[0] in rest["text"]  # the partial answer was quoted back
    assert stdout(cell(nb, 'print(cut.status, "->"')).strip() == "incomplete -> completed"


def test_cost_in_every_footer_and_in_status(executed: Any) -> None:
    nb, _ = executed
    footers = [
        answer(c)["markdown"].rstrip().splitlines()[-1]
        for c in nb.cells
        if c.cell_type == "code" and c.source.startswith(("%%respond", "%respond"))
    ]
    assert len(footers) == 10 and all(" · ≈" in f and "$0." in f for f in footers), footers
    status = stdout(cell(nb, "%responses status"))
    assert "estimated cost: $0." in status and "this session" in status
    assert "chain 'default': turns=5" in status
    assert stdout(cell(nb, "%responses config budget=5")).strip() == "budget = 5.0"
    assert stdout(cell(nb, "%responses config max_turns=6")).strip() == "max_turns = 6"


def test_export_then_load_continues_by_id(executed: Any, emu: Emulator) -> None:
    nb, folder = executed
    written = stdout(cell(nb, "%responses export conversation.json"))
    assert "(5 turns) written to conversation.json" in written and "written to conversation.md" in written
    exported = (folder / "conversation.md").read_text()
    assert "Describe this chart in one sentence." in exported and "Write the code that plots" in exported
    assert KEY not in (folder / "conversation.json").read_text()
    loaded = stdout(cell(nb, "%responses load conversation.json -c tomorrow"))
    assert "Conversation 'tomorrow' loaded (5 turns)" in loaded and "by its last response id" in loaded
    resumed = answer(cell(nb, "%%respond -c tomorrow -o resumed"))
    assert resumed["text"].startswith("## Turn 6: Where were we?")
    assert "4. Write the code that plots the 30-day average per city." in resumed["text"]
    rest_id = answer(cell(nb, "%respond --continue-answer -o rest"))["response_id"]
    (sent,) = [r for r in requests_received(emu) if user_parts(r)[0]["text"].startswith("Where were we?")]
    assert sent["previous_response_id"] == rest_id  # chained by id: nothing resent
    assert len(sent["input"]) == 1
