"""The notebooks in notebooks/ run end to end (nbclient, a real kernel) against the emulator, and say the
right things: answers in plain Markdown outputs that survive without widgets, the chain, the fallback, the
timings table, the store=false recovery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from ipy_responses_ws.emulator import Emulator, reply_for

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KEY = "sk-test-FAKE-notebooks-0123456789"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY, ttft=0.01, token_rate=3000).run_in_thread() as server:
        yield server


def run(name: str, emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=False, record_timing=False)
    client.execute()
    text = json.dumps(nb)
    assert KEY not in text, "the key leaked into the executed notebook"
    return nb


def cell(nb: nbformat.NotebookNode, startswith: str) -> nbformat.NotebookNode:
    matches = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith)]
    assert len(matches) == 1, f"{len(matches)} cells start with {startswith!r}"
    return matches[0]


def answer(c: nbformat.NotebookNode) -> dict[str, Any]:
    """The frozen output of a %%respond cell: markdown, plain text and metadata, no widget view."""
    outs = [o for o in c.outputs if o.output_type == "display_data"]
    assert len(outs) == 1, c.outputs
    data = outs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data, "the live view was not frozen"
    return {
        "markdown": data["text/markdown"],
        "text": data["text/plain"],
        **outs[0]["metadata"]["ipy_responses_ws"],
    }


def stdout(c: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")


def test_quickstart(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = run("quickstart", emu, monkeypatch)
    q1 = "In two sentences: what is a WebSocket, and why would a notebook use one?"
    q2 = "And how is that different from server-sent events?"
    first = answer(cell(nb, "%%respond -o hello"))
    assert first["text"] == reply_for([q1]) and first["status"] == "completed" and first["transport"] == "ws"
    assert "done · WS · ttft" in first["markdown"]
    second = answer(cell(nb, "%%respond\nAnd how"))
    assert second["text"] == reply_for([q1, q2])  # the chain carried the first turn
    printed = stdout(cell(nb, "print(hello.status"))
    assert printed.startswith(f"completed ws {first['response_id']}") and "time to first token" in printed
    q3 = "Explain Jupyter kernels to a new user in 3 sentences."
    assert answer(cell(nb, "%%respond -o explained"))["text"] == reply_for([q1, q2, q3])
    status = stdout(cell(nb, "%responses status"))
    assert "chain 'default': turns=3" in status and "connection" in status


def test_transports(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = run("transports", emu, monkeypatch)
    (panel,) = [c for c in nb.cells if c.source.strip() == "%responses"]
    assert any("widget-view" in json.dumps(o) for o in panel.outputs), "the control panel is a widget"
    assert answer(cell(nb, "%%respond -o on_ws"))["transport"] == "ws"
    assert answer(cell(nb, "%%respond -o on_sse"))["transport"] == "sse"
    assert stdout(cell(nb, "%responses transport ws")).strip().endswith("ws sse")
    assert answer(cell(nb, "%%respond -t sse"))["transport"] == "sse"
    fell = answer(cell(nb, "%%respond -o fell_back"))
    assert fell["transport"] == "sse" and fell["fallback_reason"] and "fell back" in fell["markdown"]
    assert "426" in stdout(cell(nb, "print(fell_back.transport"))
    table = stdout(cell(nb, "import statistics"))
    lines = table.strip().splitlines()
    assert lines[0].split() == ["transport", "median", "ttft", "median", "total"]
    assert lines[1].startswith("ws") and lines[2].startswith("sse") and " ms" in lines[1]


def test_chains(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = run("chains", emu, monkeypatch)
    m1 = "My favourite colour is teal. Remember it."
    m2 = "What did I just tell you?"
    assert answer(cell(nb, "%%respond -o second"))["text"] == reply_for([m1, m2])
    history = stdout(cell(nb, "%responses history"))
    assert "favourite colour is teal" in history and "What did I just tell you?" in history
    assert answer(cell(nb, "%%respond -o after_reset"))["text"] == reply_for(
        ["Do you know my favourite colour?"]
    )
    assert answer(cell(nb, "%%respond --new -o fresh"))["text"] == reply_for(["A brand-new conversation."])
    side = answer(cell(nb, "%%respond -c side -o side2"))
    assert side["text"] == reply_for(["A side conversation about tea.", "And coffee?"])
    zdr2 = answer(cell(nb, "%%respond -o zdr2"))
    expected = reply_for(["A private conversation, turn one.", "Turn two, after the connection was closed."])
    assert zdr2["text"] == expected and "transcript resent" in zdr2["markdown"]
    assert (
        stdout(cell(nb, 'print("resent transcript:"')).strip()
        == "resent transcript: True | status: completed"
    )
