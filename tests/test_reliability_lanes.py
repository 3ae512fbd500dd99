"""Faults with ``use_stream_lanes=True`` (one shared socket, one ``stream_id`` lane per chain, PROTOCOL.md §1.5).

A one-off run of the session-API matrix in lanes mode failed only the first-event-timeout row: its next turn
timed out too. The cause, isolated here: an abandoned response (interrupted, or timed out) keeps running on
the server, and a lane is FIFO, so the chain's next create on the *same* lane waited behind it (1.7-2.0 s for
a 2 s stall). Fixed in f43cbae (a fresh ``stream_id`` generation after an abandoned turn); these tests keep it
fixed. Without lanes the dirty socket is closed and the next turn starts at once (the control test).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import StreamTimeoutError
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-lanes-0123456789abcdef"
STALL = 2.0  # how long the abandoned response keeps the server busy


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(KEY).run_in_thread() as server:
        yield server


def _abandon(session: ResponsesSession, emu: Emulator, how: str) -> None:
    if how == "cancel":
        emu.add_fault(Fault(kind="stall", after=6, seconds=STALL))
        h = session.start("abandoned")
        while not getattr(h.get(0.05), "delta", None):
            assert not h.done()
        assert h.cancel(wait=1.0)
    else:
        emu.add_fault(Fault(kind="stall", after=0, seconds=STALL))
        session.configure(first_event_timeout=0.3)
        r = session.respond("abandoned")
        session.configure(first_event_timeout=5.0)
        assert isinstance(r.error, StreamTimeoutError)


def _next_turn_after_abandoning(emu: Emulator, how: str, *, lanes: bool) -> float:
    with ResponsesSession(base_url=emu.base_url, api_key=KEY, use_stream_lanes=lanes) as s:
        assert s.respond("first").status == "completed"
        _abandon(s, emu, how)
        t0 = time.monotonic()
        r = s.respond("next")
        took = time.monotonic() - t0
    assert r.status == "completed" and r.text == reply_for(["first", "next"])
    return took


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_without_lanes_the_next_turn_does_not_wait(emu: Emulator, how: str) -> None:
    assert _next_turn_after_abandoning(emu, how, lanes=False) < 0.5


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_with_lanes_the_next_turn_does_not_wait_for_the_abandoned_one(emu: Emulator, how: str) -> None:
    assert _next_turn_after_abandoning(emu, how, lanes=True) < 0.5
