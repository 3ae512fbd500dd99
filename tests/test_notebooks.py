"""The notebooks in notebooks/ run end to end (nbclient, a real kernel) against the emulator, and say the
right things: answers in plain Markdown outputs that survive without widgets, the chain, the fallback, the
timings table, the store=false recovery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_helpers import answer, cell, stdout

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


def test_tools(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = run("tools", emu, monkeypatch)
    listing = stdout(cell(nb, "%responses tools"))
    for line in ("find_orders(customer, status)", "order_total(order_id)", "in_stock(item)"):
        assert line in listing, listing
    assert "The total price of one order" in listing and '"pending" | "shipped" | null' in listing

    # a multi-step turn: one row per call above the answer, which quotes every output
    outputs = {
        "find_orders": '[{"id": 1003, "customer": "Ada", "item": "mouse", "qty": 3, "unit_price": 19.5, '
        '"status": "pending"}]',
        "order_total": "order 1003: 3 x 19.50 = 58.50 EUR",
        "in_stock": "40",
    }
    multi = answer(cell(nb, "%%respond --tools find_orders,order_total,in_stock -o r"))
    md = multi["markdown"]
    heading = md.index("## Turn 1: Which orders does Ada")
    rows = [md.index(f"<summary>🔧 {name}(") for name in outputs]
    assert rows == sorted(rows) and rows[-1] < heading, "the calls are listed, in order, above the answer"
    assert "in_stock(item=&quot;mouse&quot;) · ok" in md and "58.50 EUR</summary>" in md
    for out in outputs.values():
        assert f"returned `{out}`" in md[heading:] and out in multi["text"], (
            f"the answer does not quote {out}"
        )
    assert "done · WS · 3 calls in 4 steps" in md
    assert multi["steps"] == 4 and [c["name"] for c in multi["tool_calls"]] == list(outputs)
    assert stdout(cell(nb, 'print(r.status, "in"')).splitlines() == [
        "completed in 4 steps",
        f"step 1: find_orders({{'customer': 'Ada', 'status': 'pending'}}) -> ok: {outputs['find_orders']}",
        f"step 2: order_total({{'order_id': 1003}}) -> ok: {outputs['order_total']}",
        "step 3: in_stock({'item': 'mouse'}) -> ok: 40",
    ]

    # an exception in a tool goes back to the model as the call's output
    err = "ValueError: no order 2001; the ids are 1001, 1002, 1003, 1004"
    failed = answer(cell(nb, "%%respond --tools order_total -o failed"))
    assert failed["status"] == "completed"
    assert "order_total(order_id=2001) · failed · " in failed["markdown"]
    assert f"returned `Error: {err}`" in failed["markdown"] and "189.00 EUR" in failed["text"]
    assert "2 calls in 3 steps · 1 failed" in failed["markdown"]
    assert stdout(cell(nb, "for c in failed.tool_calls")).splitlines()[0] == (
        f"order_total {{'order_id': 2001}} error | Error: {err}"
    )

    # --max-steps: the turn stops incomplete, the call it did not run is answered in the next turn
    limited = answer(cell(nb, "%%respond --tools in_stock --max-steps 2 -o limited"))
    assert limited["status"] == "incomplete" and "incomplete (max\\_steps)" in limited["markdown"]
    assert [c["status"] for c in limited["tool_calls"]] == ["ok", "error"]
    not_run = "not run: the turn reached its step limit (max_steps=2)"
    assert stdout(cell(nb, "print(limited.status")).splitlines() == [
        "incomplete max_steps 2",
        "in_stock {'item': 'keyboard'} ok | 12",
        f"in_stock {{'item': 'monitor'}} error | {not_run}",
    ]
    after = answer(cell(nb, "%%respond\nWhich stock checks"))
    assert after["status"] == "completed" and f"returned `{not_run}`" in after["markdown"]

    # the Python API: the same loop, the functions passed themselves
    printed = stdout(cell(nb, "from ipy_responses_ws import ResponsesSession"))
    first, _, text = printed.partition("\n")
    assert first == (
        "completed 3 [('order_total', 'order 1002: 1 x 189.00 = 189.00 EUR'), ('in_stock', '0')]"
    )
    assert "returned `order 1002: 1 x 189.00 = 189.00 EUR`" in text and "returned `0`" in text
