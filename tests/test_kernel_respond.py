"""``%%respond`` and ``%responses`` in a real kernel (jupyter_client) against the real engine and emulator.

One kernel and one emulator serve the whole module (tests run in file order and build on each other's
conversation only where they say so). What a user would notice is asserted from the kernel's iopub
messages: live widget updates, the frozen Markdown bundle, errors, timings.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_helpers import FAKE_KEY, Execution, Kernel, all_text

from ipy_responses_ws.emulator import Emulator, reply_for

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(FAKE_KEY, ttft=0.02, token_rate=1500).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def kernel(emu: Emulator) -> Iterator[Kernel]:
    with Kernel({"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": FAKE_KEY}) as k:
        ex = k.execute("%load_ext ipy_responses_ws")
        assert ex.status == "ok", ex.error
        yield k


@pytest.fixture(autouse=True)
def _pace(emu: Emulator) -> Iterator[None]:
    saved = emu.settings
    yield
    emu.settings = saved
    emu.clear_faults()


def pace(emu: Emulator, **changes: Any) -> None:
    emu.settings = dataclasses.replace(emu.settings, **changes)


def ns(kernel: Kernel, expr: str) -> Any:
    """Evaluate ``expr`` in the kernel and return it (JSON round trip)."""
    ex = kernel.execute(f"import json as _j; print(_j.dumps({expr}))")
    assert ex.status == "ok", ex.error
    return json.loads(ex.stdout().strip().splitlines()[-1])


def live_values(ex: Execution) -> list[str]:
    """Every value the view's HTML widgets were given, in order (comm_open values and updates)."""
    out = []
    ids = {m["content"]["comm_id"] for m in ex.comm_opens("HTMLModel")}
    for m in ex.messages:
        if m["msg_type"] == "comm_open" and m["content"]["comm_id"] in ids:
            out.append(m["content"]["data"]["state"].get("value", ""))
        elif m["msg_type"] == "comm_msg" and m["content"]["comm_id"] in ids:
            state = m["content"]["data"].get("state", {})
            if "value" in state:
                out.append(state["value"])
    return out


def frozen(ex_or_msgs: Execution | list[dict[str, Any]]) -> dict[str, Any]:
    msgs = ex_or_msgs.messages if isinstance(ex_or_msgs, Execution) else ex_or_msgs
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"]
    assert updates, "the live view was not replaced by a plain bundle"
    return updates[-1]["content"]


def comm_balance(ex: Execution) -> tuple[int, int]:
    opened = {m["content"]["comm_id"] for m in ex.of_type("comm_open")}
    closed = {m["content"]["comm_id"] for m in ex.of_type("comm_close")}
    return len(opened), len(opened & closed)


# -- streaming, freezing, chain ------------------------------------------------------------------------------


def test_answer_streams_into_widgets_then_freezes_to_markdown(kernel: Kernel, emu: Emulator) -> None:
    pace(emu, words=900, token_rate=2000)  # ~1 s of streaming: several redraws even on a loaded machine
    ex = kernel.execute("%%respond -o first\nHello kernel")
    assert ex.status == "ok", ex.error
    expected = reply_for(["Hello kernel"], words=900)

    # Live: the view's HTML grew over several updates, rendered as Markdown, before the freeze.
    values = live_values(ex)
    streamed = [v for v in values if "Hello kernel" in v or "Streaming keeps" in v or "notebook" in v]
    assert len(streamed) >= 4, f"only {len(streamed)} live updates"
    assert any("<h2>Turn 1: Hello kernel</h2>" in v for v in values)
    kinds = [m["msg_type"] for m in ex.messages]
    assert kinds.index("comm_msg") < kinds.index("update_display_data")
    # ... and it arrived while the cell was still running, well before the execute reply.
    first_text = next(
        m["_t"]
        for m in ex.messages
        if m["msg_type"] == "comm_msg" and "Hello kernel" in json.dumps(m["content"])
    )
    assert ex.reply_at - first_text > 0.2
    # ... redrawn at least 10 times a second while the text streamed (messages of one flush come together).
    times = [
        m["_t"]
        for m in ex.messages
        if m["msg_type"] in ("comm_msg", "comm_open")
        and "streaming keeps" in json.dumps(m["content"]).lower()
    ]
    redraws = 1 + sum(1 for a, b in zip(times, times[1:], strict=False) if b - a > 0.02)
    assert redraws / (times[-1] - times[0]) >= 10, f"{redraws} redraws in {times[-1] - times[0]:.2f} s"

    # Frozen: a plain bundle with the exact answer and metadata, no widget left behind.
    content = frozen(ex)
    assert content["data"]["text/plain"] == expected
    assert content["data"]["text/markdown"].startswith(expected)
    assert "done · WS" in content["data"]["text/markdown"]
    assert "application/vnd.jupyter.widget-view+json" not in content["data"]
    meta = content["metadata"]["ipy_responses_ws"]
    assert (
        meta["status"] == "completed"
        and meta["transport"] == "ws"
        and meta["response_id"].startswith("resp_")
    )
    opened, closed = comm_balance(ex)
    assert opened > 5 and closed == opened

    # The -o variable holds the TurnResult.
    result = ns(
        kernel,
        "dict(text=first.text, status=first.status, transport=first.transport, "
        "id=first.response_id, ttft=first.ttft, out=first.usage['output_tokens'])",
    )
    assert result["text"] == expected and result["status"] == "completed" and result["transport"] == "ws"
    assert result["id"] == meta["response_id"] and result["ttft"] > 0 and result["out"] > 100


def test_conversation_chains_across_cells(kernel: Kernel) -> None:
    kernel.execute("%responses reset")
    a = kernel.execute("%%respond -o a\nFirst question")
    b = kernel.execute("topic = 'sockets'")
    b = kernel.execute("%%respond -o b\nTell me about {topic} and {{braces}}")
    assert a.status == b.status == "ok"
    assert frozen(b)["data"]["text/plain"] == reply_for(
        ["First question", "Tell me about sockets and {braces}"]
    )
    history = kernel.execute("%responses history")
    assert "First question" in history.stdout() and "Tell me about sockets" in history.stdout()


def test_new_starts_a_fresh_conversation_and_reset_too(kernel: Kernel) -> None:
    kernel.execute("%%respond\nOne")
    ex = kernel.execute("%%respond --new\nFresh start")
    assert frozen(ex)["data"]["text/plain"] == reply_for(["Fresh start"])
    kernel.execute("%%respond\nContinue")
    ex = kernel.execute("%responses reset")
    assert "reset" in ex.stdout()
    ex = kernel.execute("%%respond\nAfter reset")
    assert frozen(ex)["data"]["text/plain"] == reply_for(["After reset"])


# -- transport toggle ------------------------------------------------------------------------------------


def test_toggle_comm_message_switches_transport_for_the_next_cell(kernel: Kernel) -> None:
    panel = kernel.execute("%responses")
    toggles = panel.comm_opens("ToggleButtonsModel")
    assert len(toggles) == 1
    state = toggles[0]["content"]["data"]["state"]
    assert state["_options_labels"] == ["WebSocket", "SSE"] and state["index"] == 0  # WS by default
    info = [v for v in live_values(panel) if "Connection" in v]
    assert info and "turns" in info[-1] and "Conversation <b>default</b>" in info[-1]
    # The toggle driven by a comm message naming the value.
    kernel.send_comm(toggles[0]["content"]["comm_id"], {"method": "update", "state": {"value": "sse"}})
    assert ns(kernel, "get_ipython().run_line_magic('responses', 'transport') or 0") == 0
    ex = kernel.execute("%%respond -o via_sse\nOver SSE please")
    assert frozen(ex)["metadata"]["ipy_responses_ws"]["transport"] == "sse"
    assert "done · SSE" in frozen(ex)["data"]["text/markdown"]
    # %responses transport ws moves the displayed toggle back.
    back = kernel.execute("%responses transport ws")
    assert "transport = ws" in back.stdout()
    moved = [s for s in back.updates(toggles[0]["content"]["comm_id"]) if s.get("index") == 0]
    assert moved, "the displayed toggle did not follow %responses transport ws"
    ex = kernel.execute("%%respond\nBack on WebSocket")
    assert frozen(ex)["metadata"]["ipy_responses_ws"]["transport"] == "ws"


def test_panel_reset_and_close_buttons_and_the_toggle_after_close(kernel: Kernel) -> None:
    kernel.execute("%responses reset")
    kernel.execute("%%respond\nRemember the panel")
    panel = kernel.execute("%responses")
    buttons = {
        m["content"]["data"]["state"]["description"]: m["content"]["comm_id"]
        for m in panel.comm_opens("ButtonModel")
    }
    toggle = panel.comm_opens("ToggleButtonsModel")[0]["content"]["comm_id"]
    kernel.click(buttons["Reset"])
    ex = kernel.execute("%%respond\nAfter the Reset button")
    assert frozen(ex)["data"]["text/plain"] == reply_for(["After the Reset button"])
    kernel.click(buttons["Close"])
    # A click on "SSE" as JupyterLab sends it; the toggle drives the session that replaced the closed one.
    kernel.send_comm(toggle, {"method": "update", "state": {"index": 1}, "buffer_paths": []})
    ex = kernel.execute("%%respond -o after_close\nAfter the Close button")
    meta = frozen(ex)["metadata"]["ipy_responses_ws"]
    assert meta["transport"] == "sse" and meta["status"] == "completed"
    # Close keeps the conversation: the next turn still knows the previous one.
    assert frozen(ex)["data"]["text/plain"] == reply_for(["After the Reset button", "After the Close button"])
    kernel.execute("%responses transport ws")


def test_per_cell_transport_does_not_change_the_default(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond -t sse\nJust this cell")
    assert frozen(ex)["metadata"]["ipy_responses_ws"]["transport"] == "sse"
    assert "transport = ws" in kernel.execute("%responses transport").stdout()


def test_fallback_to_sse_is_shown(kernel: Kernel, emu: Emulator) -> None:
    kernel.execute("%responses close")  # a fresh connection must be opened, so the upgrade can be refused
    ex = kernel.execute(
        "import urllib.request, json, os\n"
        "req = urllib.request.Request(os.environ['OPENAI_BASE_URL'].rsplit('/v1', 1)[0] + '/_emulator/faults',"
        " data=json.dumps({'kind': 'refuse_upgrade', 'status': 426}).encode(), method='POST',"
        " headers={'Content-Type': 'application/json'})\n"
        "urllib.request.urlopen(req).read() and None"
    )
    assert ex.status == "ok", ex.error
    pace(emu, words=300, token_rate=1500)  # long enough to watch the live status line
    ex = kernel.execute("%%respond -o fb\nFall back please")
    content = frozen(ex)
    assert content["metadata"]["ipy_responses_ws"]["transport"] == "sse"
    assert content["metadata"]["ipy_responses_ws"]["fallback_reason"]
    assert "SSE (fell back from WS)" in content["data"]["text/markdown"]
    assert any("fell back" in v for v in live_values(ex))
    # The session remembers a 426 for a while; choosing WebSocket again clears that.
    kernel.execute("%responses transport ws")
    ex = kernel.execute("%%respond\nBack to WebSocket")
    assert frozen(ex)["metadata"]["ipy_responses_ws"]["transport"] == "ws"


def test_reasoning_summary_streams_into_a_collapsed_accordion(kernel: Kernel, emu: Emulator) -> None:
    pace(emu, words=300, token_rate=1500)
    ex = kernel.execute("%%respond --new --reasoning-summary auto -o thought\nThink first")
    accordions = ex.comm_opens("AccordionModel")
    assert len(accordions) == 1
    assert accordions[0]["content"]["data"]["state"]["titles"] == ["Reasoning summary"]
    assert accordions[0]["content"]["data"]["state"]["selected_index"] is None  # collapsed
    assert any("Planning turn 1" in v for v in live_values(ex))
    assert "Planning turn 1" in ns(kernel, "thought.reasoning_summary")


def test_truncated_answer_says_incomplete(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond --new --max-output-tokens 16 -o short\nA long story please")
    content = frozen(ex)
    assert content["metadata"]["ipy_responses_ws"]["status"] == "incomplete"
    assert "incomplete (max\\_output\\_tokens)" in content["data"]["text/markdown"]  # escaped Markdown
    assert ns(kernel, "short.status") == "incomplete"


# -- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "needle"),
    [
        ("%%respond --temperature warm\nhi", "temperature"),
        ("%%respond -t pigeon\nhi", "pigeon"),
        ("%%respond --bogus\nhi", "--bogus"),
        ("%%respond -o 1abc\nhi", "1abc"),
        ("%%respond\nWhat about {undefined_thing}?", "undefined_thing"),
        ("%responses frobnicate", "frobnicate"),
        ("%responses transport carrier", "ws or sse"),
        ("%responses config colour=blue", "colour"),
        ("%responses config temperature=hot", "temperature"),
    ],
)
def test_bad_arguments_are_usage_errors(kernel: Kernel, cell: str, needle: str) -> None:
    ex = kernel.execute(cell)
    assert ex.status == "error" and ex.error["ename"] == "UsageError", ex.error
    assert needle in ex.error["evalue"]
    assert not ex.comm_opens(), "no view for a cell that never started"


def test_server_failure_is_shown_in_plain_words_and_stored(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond -o failed_turn\nPlease fail\n!fault failed after=3")
    assert ex.status == "ok"
    content = frozen(ex)
    assert content["metadata"]["ipy_responses_ws"]["status"] == "failed"
    assert "**Error:**" in content["data"]["text/markdown"]
    assert "not added to the conversation" in content["data"]["text/markdown"]
    got = ns(kernel, "[failed_turn.status, str(failed_turn.error)[:200]]")
    assert got[0] == "failed" and got[1]


def test_help_shows_options_and_examples(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond?\n")
    text = json.dumps([m["content"] for m in ex.messages]) + json.dumps(ex.reply["content"])
    for needle in ("--transport", "--no-store", "--background", "--new", "Examples", "%%respond -m gpt-5"):
        assert needle in text


# -- interrupt, background, queued cells ------------------------------------------------------------------


def test_interrupt_stops_the_cell_fast_and_the_chain_does_not_advance(kernel: Kernel) -> None:
    kernel.execute("%responses reset")
    kernel.execute("%%respond\nBefore the interrupt")
    msg_id = kernel.submit("%%respond -o cut\nThis will be cut\n!fault stall seconds=30 after=12")
    ex = kernel._execution(msg_id)
    kernel.read_until(lambda m: any("This will be cut" in v for v in live_values(ex)), what="streamed text")
    t0 = time.monotonic()
    kernel.interrupt()
    ex = kernel.collect(msg_id, timeout=15)
    assert ex.idle_at - t0 < 1.0, f"the cell took {ex.idle_at - t0:.2f} s to stop"
    assert ex.error["ename"] == "KeyboardInterrupt"
    content = frozen(ex)
    assert content["metadata"]["ipy_responses_ws"]["status"] == "cancelled"
    assert "interrupted" in content["data"]["text/markdown"]
    assert "This will be cut" in content["data"]["text/plain"]  # the partial answer stays visible
    assert comm_balance(ex)[0] == comm_balance(ex)[1]
    assert ns(kernel, "cut.status") == "cancelled"
    after = kernel.execute("%%respond\nAfter the interrupt")
    assert frozen(after)["data"]["text/plain"] == reply_for(["Before the interrupt", "After the interrupt"])


def test_cell_queued_behind_a_streaming_cell_gets_its_reply(kernel: Kernel, emu: Emulator) -> None:
    """DESIGN.md §1 regression: with nest-asyncio the queued cell never got a reply."""
    pace(emu, words=300, token_rate=1500)
    first = kernel.submit("%%respond -o q1\nRun all, cell one")
    second = kernel.submit("print('cell two ran', q1.status)")
    third = kernel.submit("%%respond\nRun all, cell three")
    a = kernel.collect(first, timeout=30)
    b = kernel.collect(second, timeout=30)
    c = kernel.collect(third, timeout=30)
    assert a.status == b.status == c.status == "ok"
    assert b.stdout().strip() == "cell two ran completed"
    assert frozen(c)["data"]["text/plain"].startswith("## Turn ")


def test_background_cell_returns_at_once_and_its_stop_button_works(kernel: Kernel, emu: Emulator) -> None:
    t0 = time.monotonic()
    ex = kernel.execute("%%respond --background -o bg\nIn the background\n!fault stall seconds=30 after=12")
    assert ex.status == "ok"
    assert ex.reply_at - t0 < 1.0, "a background cell must return at once"
    buttons = [
        m for m in ex.comm_opens("ButtonModel") if m["content"]["data"]["state"]["description"] == "Stop"
    ]
    assert len(buttons) == 1 and buttons[0]["content"]["data"]["state"]["disabled"] is False
    display_id = next(m for m in ex.of_type("display_data"))["content"]["transient"]["display_id"]
    # Other cells run while it streams.
    other = kernel.execute("print('still responsive')")
    assert other.stdout().strip() == "still responsive"
    kernel.read_until(
        lambda m: (
            m is not None and m["msg_type"] == "comm_msg" and "In the background" in json.dumps(m["content"])
        ),
        what="the background answer to stream",
    )
    # While the server is silent (the stall), the status line keeps counting: a heartbeat on the loop thread.
    statuses: list[str] = []

    def status_update(m: dict[str, Any] | None) -> bool:
        if m is not None and m["msg_type"] == "comm_msg":
            value = m["content"]["data"].get("state", {}).get("value", "")
            if "streaming" in value and ">WS<" in value:
                statuses.append(value)
        return len(set(statuses)) >= 3

    kernel.read_until(status_update, timeout=5, what="the status line to keep moving during a stall")
    t0 = time.monotonic()
    kernel.click(buttons[0]["content"]["comm_id"])
    msg = kernel.read_until(
        lambda m: (
            m is not None
            and m["msg_type"] == "update_display_data"
            and m["content"]["transient"]["display_id"] == display_id
        ),
        timeout=10,
        what="the background view to freeze",
    )
    assert time.monotonic() - t0 < 2.0
    assert msg["content"]["metadata"]["ipy_responses_ws"]["status"] == "cancelled"
    assert "In the background" in msg["content"]["data"]["text/plain"]
    assert ns(kernel, "bg.status") == "cancelled"


def test_background_cell_streams_to_the_end_and_responses_stop_stops_others(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond --background -o bg2 -c side\nA side question")
    display_id = ex.of_type("display_data")[0]["content"]["transient"]["display_id"]
    msg = kernel.read_until(
        lambda m: (
            m is not None
            and m["msg_type"] == "update_display_data"
            and m["content"]["transient"]["display_id"] == display_id
        ),
        timeout=15,
        what="the background answer",
    )
    assert msg["content"]["data"]["text/plain"] == reply_for(["A side question"])
    kernel.execute("%%respond --background -o bg3 -c side2\nStop me\n!fault stall seconds=30 after=12")
    time.sleep(0.3)
    stop = kernel.execute("%responses stop")
    assert "Stopped" in stop.stdout()
    deadline = time.monotonic() + 5
    while ns(kernel, "bg3.status if 'bg3' in globals() else None") != "cancelled":
        assert time.monotonic() < deadline, "%responses stop did not stop the background turn"
        time.sleep(0.2)


# -- traffic, secrets, lifecycle --------------------------------------------------------------------------


def test_iopub_bytes_stay_within_4x_a_200kb_answer(kernel: Kernel, emu: Emulator) -> None:
    pace(emu, words=34_000, token_rate=0)  # as fast as the emulator sends
    ex = kernel.execute("%%respond --new -o big\nA very long answer please", timeout=120)
    assert ex.status == "ok", ex.error
    answer = reply_for(["A very long answer please"], words=34_000)
    assert frozen(ex)["data"]["text/plain"] == answer
    size = len(answer.encode())
    wire = kernel.raw.bytes_for(ex.msg_id)
    assert 190_000 < size < 210_000
    assert wire <= 4 * size + 50_000, f"{wire:,} iopub bytes for a {size:,}-byte answer"
    assert len(live_values(ex)) >= 3


def test_the_key_never_reaches_iopub(kernel: Kernel) -> None:
    kernel.execute("%responses status")
    kernel.execute("%responses config")
    kernel.execute("%responses")
    assert FAKE_KEY not in all_text(kernel.all_messages)
    assert FAKE_KEY[8:] not in all_text(kernel.all_messages)


def test_no_key_gives_a_clear_message(kernel: Kernel) -> None:
    kernel.execute("import os; _saved = os.environ.pop('OPENAI_API_KEY')")
    try:
        ex = kernel.execute("%%respond\nhi")
        assert ex.error["ename"] == "UsageError"
        for needle in ("OPENAI_API_KEY", "python -m ipy_responses_ws.emulator", "OPENAI_BASE_URL"):
            assert needle in ex.error["evalue"]
    finally:
        kernel.execute("os.environ['OPENAI_API_KEY'] = _saved; del _saved")
    assert FAKE_KEY not in all_text(kernel.all_messages)


def test_load_is_idempotent_and_unload_leaves_no_thread_or_socket(kernel: Kernel, emu: Emulator) -> None:
    """No second loop thread on reload, no socket of the extension after unload. The one I/O loop thread stays
    for sessions the user built (``mine`` below) and is closed at exit (README, "Lifecycle"; magics/holder.py)."""
    threads = "sorted(t.name for t in __import__('threading').enumerate())"
    kernel.execute("from ipy_responses_ws import ResponsesSession; mine = ResponsesSession()")
    kernel.execute("%load_ext ipy_responses_ws")
    kernel.execute("%reload_ext ipy_responses_ws")
    ex = kernel.execute("%%respond\nAfter reload")
    assert ex.status == "ok"
    assert ns(kernel, threads).count("ipy_responses_ws-io") == 1
    kernel.execute("%unload_ext ipy_responses_ws")
    assert ns(kernel, threads).count("ipy_responses_ws-io") == 1
    assert ns(kernel, "mine.respond('still mine').status") == "completed"
    kernel.execute("mine.close()")
    time.sleep(0.2)
    open_ws = [c for c in emu.connections if c.transport == "ws" and c.status == 101 and c.closed_at is None]
    assert open_ws == []
    closed = [c for c in emu.connections if c.transport == "ws" and c.status == 101]
    assert closed and closed[-1].close_code == 1000
    ex = kernel.execute("%%respond\nhi")
    assert ex.error["ename"] == "UsageError"  # the magic is gone
    kernel.execute("%load_ext ipy_responses_ws")
    ex = kernel.execute("%%respond\nLoaded again")
    assert ex.status == "ok" and frozen(ex)["metadata"]["ipy_responses_ws"]["status"] == "completed"
