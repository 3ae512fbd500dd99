"""The fault matrix through the notebook: every row of ``MATRIX`` × {WS, SSE} as ``%%respond`` cells in a kernel.

The session-API matrix (``test_reliability_matrix.py``) checks every cell in depth; this module checks that
the same faults reach the user correctly through the magic: the frozen output says how the turn ended (and
the error, in plain words), the ``-o`` result carries the expected error class, an interrupt (foreground) or
the view's Stop button (``--background``) stops the turn, and the next cell of the same chain answers with the
exact ``reply_for`` text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_helpers import Execution, Kernel
from test_reliability_matrix import CANCELLED, FAST, MATRIX, RECOVERS, FaultCase

from ipy_responses_ws.emulator import Emulator, Fault, reply_for

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

KEY = "sk-test-FAKE-nbmatrix-0123456789abcdef"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def kernel(emu: Emulator) -> Iterator[Kernel]:
    with Kernel({"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": KEY}) as k:
        assert k.execute("%load_ext ipy_responses_ws").status == "ok"
        yield k


def frozen(ex: Execution) -> dict[str, Any]:
    updates = ex.of_type("update_display_data")
    assert updates, "the live view was not replaced by a plain bundle"
    return updates[-1]["content"]


def _config(kernel: Kernel, settings: dict[str, Any]) -> None:
    pairs = " ".join(f"{k}={v}" for k, v in settings.items())
    assert kernel.execute(f"%responses config {pairs}").status == "ok"


def _streaming(kernel: Kernel, msg_id: str) -> Any:
    """True once a widget update of that cell carries answer text (checks every iopub message read)."""

    def check(_m: Any) -> bool:
        return any(
            "Turn" in json.dumps(m["content"].get("data", {}).get("state", {}))
            for m in kernel.all_messages
            if m["msg_type"] == "comm_msg" and m["parent_header"].get("msg_id") == msg_id
        )

    return check


def _run_background(kernel: Kernel, cell: str, *, cancel: bool) -> tuple[Execution, dict[str, Any]]:
    """Run a ``--background`` cell (it must return at once); optionally press its Stop button mid-stream;
    return the cell and the content of the frozen bundle that later replaces its view."""
    t0 = time.monotonic()
    ex = kernel.execute(cell)
    assert ex.status == "ok", ex.error
    assert ex.reply_at - t0 < 2.0, "a background cell must return at once"
    display_id = next(m for m in ex.of_type("display_data"))["content"]["transient"]["display_id"]
    if cancel:
        kernel.read_until(_streaming(kernel, ex.msg_id), what="streamed text", timeout=20)
        stop = next(
            m for m in ex.comm_opens("ButtonModel") if m["content"]["data"]["state"]["description"] == "Stop"
        )
        kernel.click(stop["content"]["comm_id"])
    seen = [
        m
        for m in kernel.all_messages
        if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
    ]
    msg = seen[-1] if seen else None
    if msg is None:
        msg = kernel.read_until(
            lambda m: (
                m is not None
                and m["msg_type"] == "update_display_data"
                and m["content"]["transient"]["display_id"] == display_id
            ),
            timeout=30,
            what="the background view to freeze",
        )
    # The -o variable is stored right after the freeze, on the loop thread.
    deadline = time.monotonic() + 10
    while kernel.execute("print('nb_b' in globals())").stdout().strip() != "True":
        assert time.monotonic() < deadline, "the -o variable was never set"
        time.sleep(0.05)
    return ex, msg["content"]


def _run_cancelled(kernel: Kernel, cell: str) -> Execution:
    """Run a cell and press Interrupt as soon as its answer is visibly streaming."""
    msg_id = kernel.submit(cell)
    kernel.read_until(_streaming(kernel, msg_id), what="streamed text", timeout=20)
    kernel.interrupt()
    return kernel.collect(msg_id, timeout=20)


@pytest.mark.parametrize("mode", ["foreground", "background"])
@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("case", MATRIX, ids=[c.id.replace(" ", "_") for c in MATRIX])
def test_fault_through_the_notebook(
    kernel: Kernel, emu: Emulator, case: FaultCase, transport: str, mode: str
) -> None:
    emu.clear_faults()
    kernel.execute("for _n in ('nb_a', 'nb_b', 'nb_c'): globals().pop(_n, None)")
    _config(kernel, {**FAST, **case.settings})
    tag = f"{case.id}/{transport}/{mode}"
    a, b, c = f"nb first of {tag}", f"nb faulted {tag}", f"nb after {tag}"
    committed: list[str] = []
    if case.faulted_turn == 1:
        ex = kernel.execute(f"%%respond --new -t {transport} -o nb_a\n{a}")
        assert frozen(ex)["metadata"]["ipy_responses_ws"]["status"] == "completed"
        committed.append(a)
    else:
        kernel.execute("%responses close")  # the upgrade fault needs a fresh connection
    new = " --new" if case.faulted_turn == 0 else ""
    emu.add_fault(Fault(**case.fault))
    cancel = case.action == "cancel"
    t0 = time.monotonic()
    if mode == "background":
        ex, content = _run_background(
            kernel, f"%%respond{new} --background -t {transport} -o nb_b\n{b}", cancel=cancel
        )
    else:
        cell = f"%%respond{new} -t {transport} -o nb_b\n{b}"
        ex = _run_cancelled(kernel, cell) if cancel else kernel.execute(cell)
        content = frozen(ex)
    took = time.monotonic() - t0
    emu.clear_faults()
    _config(kernel, {"idle_timeout": 120, "first_event_timeout": 300})

    exp = case.expect(transport)
    status = content["metadata"]["ipy_responses_ws"]["status"]
    markdown = content["data"]["text/markdown"]
    got = json.loads(
        kernel.execute(
            "import json, ipy_responses_ws.errors as _e\n"
            f"print(json.dumps([nb_b.status, type(nb_b.error).__name__, "
            f"isinstance(nb_b.error, getattr(_e, {exp.outcome!r}, type(None))), nb_b.text]))"
        ).stdout()
    )
    if exp.outcome == RECOVERS:
        assert status == "completed" and got[0] == "completed", (got[:2], markdown[-300:])
        assert content["data"]["text/plain"] == reply_for([*committed, b])
        if exp.served_by:
            assert content["metadata"]["ipy_responses_ws"]["transport"] == exp.served_by
        committed.append(b)
    elif exp.outcome == CANCELLED:
        if mode == "foreground":  # Interrupt re-raises so "Run All" stops; Stop in the background does not
            assert ex.error and ex.error["ename"] == "KeyboardInterrupt"
        assert status == "cancelled" and got[0] == "cancelled"
        assert reply_for([*committed, b]).startswith(got[3])
        assert took < 5, f"the interrupted cell took {took:.1f} s"
    else:
        assert ex.status == "ok", ex.error  # a failed turn is shown, not raised
        assert status == "failed" and got[0] == "failed" and got[2], (got[:2], exp.outcome)
        assert "**Error:**" in markdown and "not added to the conversation" in markdown
        assert KEY not in markdown

    ex = kernel.execute(f"%%respond -t {transport} -o nb_c\n{c}")
    content = frozen(ex)
    assert content["metadata"]["ipy_responses_ws"]["status"] == "completed", content["data"]["text/markdown"][
        -300:
    ]
    assert content["data"]["text/plain"] == reply_for([*committed, c])
