"""A gateway that mints its own response ids refuses an id the other transport issued; the chain recovers.

LiteLLM's proxy issues other ids over HTTP than over WebSocket: after a transport switch, chaining by the other
transport's id is refused before anything streams (404, or 403 "response id was not issued by this proxy"). The
turn resends the conversation once, visibly, and is never reported as a key problem; the session then remembers
that this server's ids do not cross transports and resends at once after the next switch, without the doomed
by-id request in that direction (ids issued over one transport and used over the other; LiteLLM's HTTP route
resolves its WS ids, not the reverse). The emulator's one-shot ``error`` fault plays the refusing gateway.
"""

from __future__ import annotations

import pytest

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import Emulator, Fault
from ipy_responses_ws.emulator.model import reply_for

KEY = "sk-test-FAKE-foreign-0123456789"


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


def _requests(emu: Emulator, since: int) -> list[dict]:
    return [f for c in emu.connections[since:] for f in c.frames if isinstance(f, dict) and "input" in f]


@pytest.mark.parametrize("status", [403, 404])
def test_a_refused_foreign_id_is_resent_once_then_never_tried_again(emu: Emulator, status: int) -> None:
    since = len(emu.connections)
    with ResponsesSession(base_url=emu.base_url, api_key=KEY) as s:
        first = s.respond("one", transport="ws")
        emu.add_fault(Fault("error", status=status, transport="sse"))
        second = s.respond("two", transport="sse")
        third = s.respond("three", transport="ws")
        fourth = s.respond("four", transport="sse")
    reqs = _requests(emu, since)
    assert [r.ok for r in (first, second, third, fourth)] == [True] * 4
    assert second.text == reply_for(["one", "two"]) and second.error is None and second.resent_transcript
    assert (
        third.text == reply_for(["one", "two", "three"]) and not third.resent_transcript
    )  # SSE ids work over WS
    assert fourth.text == reply_for(["one", "two", "three", "four"]) and fourth.resent_transcript
    sent: dict[str, list[bool]] = {}  # the turn's prompt -> by id?, per request, in order
    for r in reqs:
        sent.setdefault(r["input"][-1]["content"][0]["text"], []).append("previous_response_id" in r)
    # two: a WS id over SSE, refused, then resent; three: an SSE id over WS, by id (nothing learnt against that
    # direction); four: a WS id over SSE again, resent at once (learnt: LiteLLM's routes are asymmetric like this)
    assert sent == {"one": [False], "two": [True, False], "three": [True], "four": [False]}


def test_a_key_refused_on_a_request_without_an_id_stays_an_authentication_error(emu: Emulator) -> None:
    from ipy_responses_ws.errors import AuthenticationError

    with ResponsesSession(base_url=emu.base_url, api_key=KEY, max_retries=0) as s:
        emu.add_fault(Fault("error", status=403, transport="sse"))
        r = s.respond("first turn, no id", transport="sse")
    assert isinstance(r.error, AuthenticationError) and not r.resent_transcript
