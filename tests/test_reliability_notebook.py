"""The fault matrix through the notebook: every row of ``MATRIX`` × {WS, SSE} as ``%%respond`` cells in a kernel.

The session-API matrix (``test_reliability_matrix.py``) checks every cell in depth; this module checks that
the same faults reach the user correctly through the magic: the frozen output says how the turn ended (and
the error, in plain words), the ``-o`` result carries the expected error class, an interrupt stops the cell,
and the next cell of the same chain answers with the exact ``reply_for`` text. Foreground cells only (the
background path is covered on the session API and by the soak).
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


def _run_cancelled(kernel: Kernel, cell: str) -> Execution:
    """Run a cell and press Interrupt as soon as its answer is visibly streaming."""
    msg_id = kernel.submit(cell)
    ex = kernel._execution(msg_id)

    def streaming(_m: Any) -> bool:
        return any(
            "Turn" in json.dumps(m["content"].get("data", {}).get("state", {}))
            for m in ex.messages
            if m["msg_type"] == "comm_msg"
        )

    kernel.read_until(streaming, what="streamed text", timeout=20)
    kernel.interrupt()
    return kernel.collect(msg_id, timeout=20)


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("case", MATRIX, ids=[c.id.replace(" ", "_") for c in MATRIX])
def test_fault_through_the_notebook(kernel: Kernel, emu: Emulator, case: FaultCase, transport: str) -> None:
    emu.clear_faults()
    _config(kernel, {**FAST, **case.settings})
    tag = f"{case.id}/{transport}"
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
    cell = f"%%respond{new} -t {transport} -o nb_b\n{b}"
    t0 = time.monotonic()
    ex = _run_cancelled(kernel, cell) if case.action == "cancel" else kernel.execute(cell)
    took = time.monotonic() - t0
    emu.clear_faults()
    _config(kernel, {"idle_timeout": 120, "first_event_timeout": 300})

    exp = case.expect(transport)
    content = frozen(ex)
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
