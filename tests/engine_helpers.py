"""Small helpers shared by the engine tests (session API against the emulator): waiting, collecting a turn's
events, a scripted answer. Fixtures stay in the test modules that use them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import Emulator
from ipy_responses_ws.events import Notice

#: Short waits so a hang shows as a failure in seconds, not minutes.
FAST_TIMEOUTS = {"connect_timeout": 5.0, "first_event_timeout": 5.0, "idle_timeout": 5.0}


def new_session(emu: Emulator, key: str, **kw: Any) -> ResponsesSession:
    """A session on *emu* with the test model and short timeouts (overridable)."""
    return ResponsesSession(base_url=emu.base_url, api_key=key, model="gpt-test", **{**FAST_TIMEOUTS, **kw})


def session_fixture(key: str) -> Any:
    """A function-scoped ``session`` fixture on the test module's ``emu`` fixture: a :func:`new_session` with *key*,
    with the emulator's faults cleared before and after (``session = session_fixture(KEY)`` in the module)."""

    @pytest.fixture
    def session(emu: Emulator) -> Iterator[ResponsesSession]:
        emu.clear_faults()
        s = new_session(emu, key)
        yield s
        s.close()
        emu.clear_faults()

    return session


def requests_received(emu: Emulator) -> list[dict[str, Any]]:
    """Every ``response.create`` frame / POST body the emulator received, by connection, then in order."""
    return [
        f
        for c in emu.connections
        for f in c.frames
        if isinstance(f, dict) and f.get("type", "response.create") == "response.create" and "input" in f
    ]


def wait_for(pred: Callable[[], Any], timeout: float = 3.0) -> bool:
    """Poll *pred* until it is true or *timeout* seconds passed; its last answer, as a bool."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


def collect(handle: Any) -> tuple[Any, list[Any]]:
    """Every event and notice of a started turn, then its result."""
    items = list(handle.events())
    return handle.result(timeout=10), items


def notice_kinds(items: list[Any]) -> list[str]:
    return [i.kind for i in items if isinstance(i, Notice)]


def scripted_no_delta_answer(rid: str, text: str) -> list[dict[str, Any]]:
    """A complete answer with no text deltas (some gateways send only the items): created, item added/done,
    completed. For ``Emulator.add_script``."""
    msg = {
        "id": f"msg_{rid[5:]}",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
    }
    base = {
        "id": rid,
        "object": "response",
        "created_at": 1,
        "model": "gpt-test",
        "status": "in_progress",
        "output": [],
        "store": True,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }
    done = dict(base, status="completed", output=[msg])
    return [
        {"type": "response.created", "response": base},
        {"type": "response.output_item.added", "output_index": 0, "item": dict(msg, content=[])},
        {"type": "response.output_item.done", "output_index": 0, "item": msg},
        {"type": "response.completed", "response": done},
    ]
