"""A notebook-shaped conversation in a real kernel (issue 13): cells that send their ``cellId`` fork when re-run,
data and figures in prompts, the last error, a cut-off answer continued, code into the next cell, cost and the
budget, and a conversation exported, the kernel restarted, and the conversation loaded and continued by id.

The emulator records what each request carried (its input items), and its answers list the conversation it
reconstructed ("Earlier messages"), so each check reads what the server was actually sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import requests_received
from kernel_helpers import Kernel, all_text

from ipy_responses_ws.emulator import Emulator, reply_for

pytestmark = pytest.mark.kernel

KEY = "sk-test-FAKE-notebook-conv-0123456789"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY, ttft=0.01, token_rate=5000).run_in_thread() as server:
        yield server


def _env(emu: Emulator) -> dict[str, str]:
    return {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": emu.base_url, "MPLBACKEND": "Agg"}


@pytest.fixture(scope="module")
def kernel(emu: Emulator) -> Iterator[Kernel]:
    with Kernel(_env(emu)) as k:
        ex = k.execute("%load_ext ipy_responses_ws")
        assert ex.status == "ok", ex.error
        yield k


def _last_user_parts(emu: Emulator) -> list[dict[str, Any]]:
    items = requests_received(emu)[-1]["input"]
    user = [it for it in items if it.get("role") == "user"][-1]
    return (
        user["content"]
        if isinstance(user["content"], list)
        else [{"type": "input_text", "text": user["content"]}]
    )


def _value(kernel: Kernel, expr: str) -> Any:
    ex = kernel.execute(f"import json as _j; print(_j.dumps({expr}, default=str))")
    assert ex.status == "ok", ex.error
    return json.loads(ex.stdout())


def test_rerunning_a_cell_forks_its_turn_and_the_server_sees_only_the_active_branch(kernel: Kernel) -> None:
    assert kernel.execute("%%respond --new -o a\nfirst question", cell_id="cell-1").status == "ok"
    assert kernel.execute("%%respond -o b\nsecond question", cell_id="cell-2").status == "ok"
    assert kernel.execute("%%respond -o c\nthird question", cell_id="cell-3").status == "ok"
    ex = kernel.execute("%%respond -o b\nsecond question, edited", cell_id="cell-2")
    assert ex.status == "ok", ex.error
    assert _value(kernel, "b.text") == reply_for(["first question", "second question, edited"])
    assert _value(kernel, "b.forked_from") == 2
    frozen = [m["content"]["data"]["text/markdown"] for m in ex.of_type("update_display_data")][-1]
    assert "re-run: replaced turn 2" in frozen
    history = kernel.execute("%responses history").stdout()
    assert "cell cell-1" in history and "cell cell-2" in history and "third question" not in history
    # the next cell continues the active branch; a cell without an id appends at the tail
    kernel.execute("%%respond -o d\nfourth", cell_id="cell-4")
    assert _value(kernel, "d.text") == reply_for(["first question", "second question, edited", "fourth"])
    kernel.execute("%%respond -o e\nno id")
    assert _value(kernel, "e.forked_from") is None
    assert _value(kernel, "e.text") == reply_for(
        ["first question", "second question, edited", "fourth", "no id"]
    )


def test_a_dataframe_in_the_prompt_arrives_as_a_compact_table(kernel: Kernel, emu: Emulator) -> None:
    kernel.execute(
        "import pandas as pd\n"
        "df = pd.DataFrame({'city': ['Paris', 'Oslo', 'Rome'] * 400, 'temp': list(range(1200))})"
    )
    ex = kernel.execute("%%respond --new -o r\nSummarise {df}")
    assert ex.status == "ok", ex.error
    text = _last_user_parts(emu)[0]["text"]
    assert "shape (1200, 2)" in text and "| Paris |" in text and "temp (int64)" in text
    assert len(text) < 5000  # a view within the budget, not 1,200 rows
    frozen = [m["content"]["data"]["text/markdown"] for m in ex.of_type("update_display_data")][-1]
    assert "attached df (" in frozen  # the saved footer says what went in


def test_a_figure_is_attached_as_an_image(kernel: Kernel, emu: Emulator) -> None:
    kernel.execute(
        "import matplotlib; matplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "fig, ax = plt.subplots(figsize=(2, 1), dpi=50); ax.plot([1, 3, 2])"
    )
    ex = kernel.execute("%%respond --new --image fig -o r\nWhat does this chart show?")
    assert ex.status == "ok", ex.error
    parts = _last_user_parts(emu)
    assert [p["type"] for p in parts] == ["input_text", "input_image"]
    url = parts[1]["image_url"]
    assert url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 100  # 2 in × 50 dpi


def test_error_adds_the_last_exception_and_the_failing_cell(kernel: Kernel, emu: Emulator) -> None:
    bad = kernel.execute("totals = {'a': 1}\nratio = totals['a'] / (len(totals) - 1)")
    assert bad.status == "error"
    ex = kernel.execute("%%respond --new --error -o r\nWhy does this fail?")
    assert ex.status == "ok", ex.error
    text = _last_user_parts(emu)[0]["text"]
    assert text.startswith("Why does this fail?")
    assert "ZeroDivisionError" in text and "ratio = totals['a'] / (len(totals) - 1)" in text
    assert KEY not in text
    # the line magic with no prompt: "explain the last error"
    ex = kernel.execute("%respond --new")
    assert ex.status == "ok", ex.error
    text = _last_user_parts(emu)[0]["text"]
    assert text.startswith("Explain this error and how to fix it.") and "ZeroDivisionError" in text


def test_an_empty_prompt_with_no_error_to_explain_says_what_to_do(kernel: Kernel) -> None:
    forget = "import sys\nfor _n in ('last_type', 'last_value', 'last_traceback', 'last_exc'):\n    sys.__dict__.pop(_n, None)"
    for cell in ("%respond", "%%respond\n   "):
        kernel.execute(forget)  # no error yet in this kernel (a UsageError counts as one too)
        ex = kernel.execute(cell)
        assert ex.status == "error" and ex.error["ename"] == "UsageError"
        assert (
            "The cell is empty" in ex.error["evalue"] and "no cell has raised one yet" in ex.error["evalue"]
        )
        assert not ex.comm_opens(), "no view for a cell that never started"
    kernel.execute(forget)
    ex = kernel.execute("%respond --error")
    assert ex.status == "error" and "No error to explain" in ex.error["evalue"]


def test_continue_answer_goes_on_from_a_cut_off_answer(kernel: Kernel, emu: Emulator) -> None:
    ex = kernel.execute("%%respond --new --max-output-tokens 20 -o cut\nTell me a long story")
    assert ex.status == "ok", ex.error
    assert _value(kernel, "cut.status") == "incomplete"
    partial = _value(kernel, "cut.text")
    ex = kernel.execute("%respond --continue-answer -o more")
    assert ex.status == "ok", ex.error
    text = _last_user_parts(emu)[0]["text"]
    assert partial in text and "Tell me a long story" in text and "Continue exactly where it stops" in text
    assert _value(kernel, "more.status") == "completed"
    refused = kernel.execute("%respond --continue-answer")
    assert refused.status == "error" and "incomplete" in refused.error["evalue"]


def test_code_puts_the_answers_code_block_into_the_next_cell(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond --new --code -o r\nshow me code")
    assert ex.status == "ok", ex.error
    payload = ex.reply["content"]["payload"]
    nxt = [p for p in payload if p.get("source") == "set_next_input"]
    assert len(nxt) == 1 and nxt[0]["text"] == "turn = 1\nprompt_chars = 12" and nxt[0]["replace"] is False
    assert "put into a new cell below" in ex.stdout()


def test_cost_is_estimated_and_the_budget_refuses_the_next_turn(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond --new -o r\nhow much?")
    assert ex.status == "ok", ex.error
    usd = _value(kernel, "r.cost.usd")
    assert usd > 0
    footer = [m["content"]["data"]["text/markdown"] for m in ex.of_type("update_display_data")][-1]
    assert "≈$" in footer
    assert "estimated cost:" in kernel.execute("%responses status").stdout()
    kernel.execute("%responses config budget=0.0000001")
    refused = kernel.execute("%%respond\none more")
    assert refused.status == "error" and refused.error["ename"] == "UsageError"
    assert "Budget reached" in refused.error["evalue"] and "budget=" in refused.error["evalue"]
    kernel.execute("%responses config budget=none")
    assert kernel.execute("%%respond\none more").status == "ok"


def test_export_restart_load_and_continue_by_id(emu: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "chat.json"
    with Kernel(_env(emu)) as k:
        k.execute("%load_ext ipy_responses_ws")
        k.execute("%%respond -o one\nremember the word heron")
        k.execute("%%respond -o two\nand the word kestrel")
        last_id = _value(k, "two.response_id")
        ex = k.execute(f"%responses export -c default {path}")  # -c may come before the path
        assert ex.status == "ok", ex.error
        md = k.execute(f"%responses export {tmp_path / 'chat.md'}")
        assert md.status == "ok", md.error
    assert "kestrel" in (tmp_path / "chat.md").read_text()
    assert KEY not in path.read_text()
    with Kernel(_env(emu)) as k:  # tomorrow, another kernel
        k.execute("%load_ext ipy_responses_ws")
        ex = k.execute(f"%responses load {path}")
        assert ex.status == "ok", ex.error
        assert "by its last response id" in ex.stdout()
        k.execute("%%respond -o three\nwhich words?")
        assert requests_received(emu)[-1]["previous_response_id"] == last_id
        assert _value(k, "three.text") == reply_for(
            ["remember the word heron", "and the word kestrel", "which words?"]
        )
        assert KEY not in all_text(k.all_messages)


def _buttons(ex: Any) -> dict[str, str]:
    return {
        m["content"]["data"]["state"]["description"]: m["content"]["comm_id"]
        for m in ex.comm_opens("ButtonModel")
    }


def _wait_for(kernel: Kernel, expr: str, timeout: float = 20) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = _value(kernel, expr)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{expr} never became true")


def test_retry_reruns_the_last_turn_from_the_same_parent(kernel: Kernel) -> None:
    kernel.execute("%%respond --new -o q1\nfirst", cell_id="again-1")
    kernel.execute("%%respond -o q2\nsecond", cell_id="again-2")
    ex = kernel.execute("%respond --retry")
    assert ex.status == "ok", ex.error
    assert _value(kernel, "q2.text") == reply_for(["first", "second"])  # not first → second → second
    assert _value(kernel, "q2.forked_from") == 2
    # no Retry bar unless asked for: a saved widget shows "Error displaying widget" on reopen
    assert "Retry" not in _buttons(ex)


def test_retry_button_runs_the_prompt_again_from_the_same_parent(kernel: Kernel, emu: Emulator) -> None:
    assert "retry_buttons = True" in kernel.execute("%responses config retry_buttons=true").stdout()
    kernel.execute("%%respond --new -o r1\nalpha", cell_id="retry-1")
    ex = kernel.execute("%%respond -o r2\nbeta", cell_id="retry-2")
    old = _value(kernel, "r2.response_id")
    buttons = _buttons(ex)
    assert "Retry" in buttons
    kernel.click(buttons["Retry"])
    _wait_for(kernel, f"r2.response_id not in (None, {old!r})")
    # the server rebuilt alpha → beta, not alpha → beta → beta: the retry forked from r1, as a re-run would
    assert _value(kernel, "r2.text") == reply_for(["alpha", "beta"])
    assert _value(kernel, "r2.forked_from") == 2
    # the retried answer, frozen, is in the bar's output area
    outputs = [
        m["content"]["data"]["state"]["outputs"]
        for m in kernel.all_messages
        if m["msg_type"] == "comm_msg" and "outputs" in m["content"]["data"].get("state", {})
    ]
    assert any(o and "text/markdown" in o[0].get("data", {}) for o in outputs)
    # and the conversation goes on from the retried turn
    kernel.execute("%%respond -o r3\ngamma", cell_id="retry-3")
    assert _value(kernel, "r3.text") == reply_for(["alpha", "beta", "gamma"])


def test_continue_button_under_a_cut_off_answer(kernel: Kernel, emu: Emulator) -> None:
    kernel.execute("%responses config retry_buttons=true")  # the bar is opt-in; do not rely on another test
    ex = kernel.execute("%%respond --new --max-output-tokens 20 -o cut2\nTell me another long story")
    assert _value(kernel, "cut2.status") == "incomplete"
    partial = _value(kernel, "cut2.text")
    old = _value(kernel, "cut2.response_id")
    kernel.click(_buttons(ex)["Continue"])
    _wait_for(kernel, f"cut2.response_id != {old!r}")
    asked = [
        part["text"]
        for req in requests_received(emu)
        for it in req["input"]
        if it.get("role") == "user" and isinstance(it.get("content"), list)
        for part in it["content"]
        if "Continue exactly where it stops" in part.get("text", "")
        and "another long story" in part.get("text", "")
    ]
    assert len(asked) == 1 and partial in asked[0]
    # the continuation came at the end of the conversation, after the cut-off turn's parent
    assert _value(kernel, "cut2.prompt").startswith("Your previous answer was cut off")
