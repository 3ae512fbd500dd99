"""A reasoning model may think silently for longer than ``idle_timeout``: that wait is ``first_event_timeout``.

``response.created`` / ``in_progress`` and the reasoning item's ``output_item.added`` arrive at once; then
nothing until the first output. 0.1 switched to ``idle_timeout`` at the first event and killed the turn (the
server kept generating, and billing). The emulator's ``think`` fault reproduces the silence.
"""

from __future__ import annotations

import pytest

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import Emulator, Fault
from ipy_responses_ws.emulator.model import reply_for
from ipy_responses_ws.errors import StreamTimeoutError

KEY = "sk-test-FAKE-think-0123456789"


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_thinking_longer_than_the_idle_timeout_completes(emu: Emulator, transport: str) -> None:
    emu.add_fault(Fault("think", seconds=1.2, transport=transport))
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, idle_timeout=0.4, first_event_timeout=10) as s:
        r = s.respond("think hard", transport=transport)
    assert r.ok, r.error
    assert r.text == reply_for(["think hard"])
    assert r.ttft is not None and r.ttft >= 1.2


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_thinking_past_the_first_event_timeout_fails_naming_that_wait(emu: Emulator, transport: str) -> None:
    emu.add_fault(Fault("think", seconds=3.0, transport=transport))
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, idle_timeout=5, first_event_timeout=0.6) as s:
        r = s.respond("think forever", transport=transport)
        assert isinstance(r.error, StreamTimeoutError)
        assert r.error.phase == "first_event" and r.error.seconds == 0.6
        assert "first_event_timeout" in str(r.error) or "first" in str(r.error)
        emu.clear_faults()
        again = s.respond("quick", transport=transport)  # the abandoned response never leaks into this one
    assert again.ok and again.text == reply_for(["quick"])


def test_after_the_first_output_the_idle_timeout_applies(emu: Emulator) -> None:
    emu.add_fault(Fault("stall", after=6, seconds=2.0, transport="ws"))
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, idle_timeout=0.4, first_event_timeout=30) as s:
        r = s.respond("stall mid-answer")
    emu.clear_faults()
    assert isinstance(r.error, StreamTimeoutError) and r.error.phase == "idle"
    assert r.text  # the text shown before the stall stays in the result
