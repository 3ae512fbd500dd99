"""Pure units of the emulator: the deterministic model, delta splitting, directives and the fault registry."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from markdown_it import MarkdownIt

from ipy_responses_ws.emulator import Fault, reply_for
from ipy_responses_ws.emulator.faults import FaultSet, parse_directives
from ipy_responses_ws.emulator.model import count_tokens, normalize_input, split_deltas, user_messages


def test_reply_is_realistic_markdown_that_names_the_turn_and_quotes_history():
    text = reply_for(["What is SSE?", "And WebSockets?", "Compare them"])
    kinds = {tok.type for tok in MarkdownIt().enable("table").parse(text)}
    assert {"heading_open", "blockquote_open", "ordered_list_open", "fence", "table_open"} <= kinds
    assert text.startswith("## Turn 3: Compare them")
    assert "> Compare them" in text
    assert "1. What is SSE?\n2. And WebSockets?" in text


def test_reply_depends_on_every_input_it_takes():
    base = reply_for(["hi"])
    assert reply_for(["hi"]) == base  # deterministic
    assert reply_for(["earlier", "hi"]) != base
    assert "Instructions: Talk like a pirate" in reply_for(["hi"], instructions="Talk like a pirate")
    assert len(reply_for(["hi"], words=200).split()) >= len(base.split()) + 200
    assert "`call_1` returned `42`" in reply_for(["hi"], tool_results=[("call_1", "42")])


def test_directive_lines_are_not_part_of_the_answer():
    assert reply_for(["Explain\n!fault drop after=3\n!refuse"]) == reply_for(["Explain"])


def test_split_deltas_are_small_and_lossless():
    text = reply_for(["a prompt with\nnewlines and    spaces"], words=30)
    pieces = split_deltas(text)
    assert "".join(pieces) == text
    assert max(len(p.strip()) for p in pieces) <= 5 and len(pieces) > len(text) / 8


def test_token_count_is_about_four_chars_per_token():
    assert count_tokens("") == 0 and count_tokens("abcd") == 1 and count_tokens("abcde") == 2


def test_input_normalization_and_user_messages():
    items = normalize_input(
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "one"},
            {"type": "message", "role": "assistant", "content": "reply"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "two"}]},
        ]
    )
    assert user_messages(items) == ["one", "two"]
    assert items[2]["content"] == [{"type": "output_text", "text": "reply"}]
    assert user_messages(normalize_input("just text")) == ["just text"]


def test_parse_directives():
    fault, refuse = parse_directives(["hello\n!fault stall seconds=1.5 after=2 transport=ws", "!refuse"])
    assert fault == Fault("stall", seconds=1.5, after=2, transport="ws") and refuse
    assert parse_directives(["plain"]) == (None, False)
    for bad in ("!fault", "!fault drop after", "!fault nope", "!fault drop colour=red"):
        with pytest.raises(ValueError):
            parse_directives([bad])


def test_fault_validation_and_defaults():
    assert Fault("refuse_upgrade").status == 426 and Fault("close").code == 1011
    with pytest.raises(ValueError):
        Fault("cap", transport="sse")
    with pytest.raises(ValueError):
        Fault("malformed", variant="xml")
    with pytest.raises(ValueError):
        Fault("drop", count=0)


def test_fault_set_counts_targets_and_phases():
    faults = FaultSet()
    faults.add(Fault("refuse_upgrade", status=503))
    faults.add(Fault("drop", transport="sse", count=2))
    faults.add(Fault("stall", transport="ws", count=None))
    faults.add(Fault("cap", responses=2))
    assert faults.take("ws", "upgrade").status == 503
    assert faults.take("ws", "upgrade") is None  # one-shot, used up
    assert [getattr(faults.take("sse", "request"), "kind", None) for _ in range(3)] == ["drop", "drop", None]
    assert faults.take("ws", "request").kind == "stall"  # persistent
    assert faults.take("ws", "request").kind == "stall"
    assert [f.kind for f in faults.snapshot()] == ["stall", "cap"]
    faults.clear()
    faults.add(Fault("cap", responses=2))
    assert faults.take("ws", "request", finished_responses=1) is None
    assert faults.take("ws", "request", finished_responses=2).kind == "cap"


def test_the_emulator_imports_no_jupyter_and_has_one_sse_encoder():
    code = (
        "import sys, ipy_responses_ws.emulator as e, ipy_responses_ws.emulator.__main__;"
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'ipykernel', 'trustme') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # trustme too: it loads only when TLS is asked for
    assert importlib.util.find_spec("ipy_responses_ws.emulator.sse") is None


def test_think_directive_and_giving_back_a_shot():
    fault, _ = parse_directives(["!fault think 3"])
    assert fault == Fault("think", seconds=3.0)
    faults = FaultSet()
    faults.add(Fault("drop", after=99, count=2))
    shot = faults.take("ws", "request")
    faults.give_back(shot)
    assert [f.count for f in faults.snapshot()] == [2]
    last = faults.take("ws", "request") and faults.take("ws", "request")
    assert faults.snapshot() == []
    faults.give_back(last)  # a used-up fault comes back for one more use
    assert [(f.kind, f.count) for f in faults.snapshot()] == [("drop", 1)]
