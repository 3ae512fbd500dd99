"""Python functions as tools, through the session (issue 12): the loop, its bounds, and a chain that stays valid
however the turn ends.

Against the emulator's deterministic tool-using model (docs/emulator.md, "Tools"): the prompt names the tools,
``NAME N times`` repeats one, and the final answer quotes every output it was given. What the server was sent is
part of each check: after the first request, only ``function_call_output`` items by ``previous_response_id``.
"""

from __future__ import annotations

import functools
import threading
import time

import pytest
from engine_helpers import new_session as _new_session
from engine_helpers import requests_received

from ipy_responses_ws.emulator import Emulator

KEY = "sk-test-FAKE-tool-turns-0123456789"
new_session = functools.partial(_new_session, key=KEY)


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=KEY).run_in_thread() as e:
        yield e


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}, 21 C"


def convert_units(value: float, unit: str = "C") -> str:
    """Convert a temperature."""
    return f"{value * 9 / 5 + 32:.1f} F" if unit == "C" else f"{(value - 32) * 5 / 9:.1f} C"


COUNTER = {"n": 0}


def step(n: int) -> str:
    """One step of a long rollout."""
    COUNTER["n"] += 1
    return f"step {n} done"


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize("store", [True, False])
def test_a_multi_step_turn_answers_with_every_tools_output(emu, transport, store):
    with new_session(emu, transport=transport, store=store) as s:
        before = len(requests_received(emu))
        r = s.respond(
            'Check get_weather(city="Paris") and then convert_units(value=21, unit="C").',
            tools=[get_weather, convert_units],
        )
        assert r.ok, r.error
        assert r.steps == 3
        assert [(c.name, c.arguments, c.status) for c in r.tool_calls] == [
            ("get_weather", {"city": "Paris"}, "ok"),
            ("convert_units", {"value": 21, "unit": "C"}, "ok"),
        ]
        assert "sunny in Paris, 21 C" in r.text and "69.8 F" in r.text
        sent = requests_received(emu)[before:]
        assert len(sent) == 3
        if transport == "ws" or store:
            # after the first request: only the outputs, by id
            for req in sent[1:]:
                assert req["previous_response_id"]
                assert [it["type"] for it in req["input"]] == ["function_call_output"]
        if transport == "ws":
            conns = {c.id for c in emu.connections for f in c.frames if isinstance(f, dict) and f in sent}
            assert len(conns) == 1, "every step of a tool turn on one socket"
        # the conversation goes on by id after the tool turn
        nxt = s.respond("thanks")
        assert nxt.ok and "Check get_weather" in nxt.text


def test_twenty_steps_on_one_socket_with_only_outputs_sent(emu):
    COUNTER["n"] = 0
    with new_session(emu, transport="ws", store=False) as s:
        before = len(requests_received(emu))
        r = s.respond("call step 20 times", tools=[step], max_steps=25)
        assert r.ok and r.steps == 21 and len(r.tool_calls) == 20 and COUNTER["n"] == 20
        sent = requests_received(emu)[before:]
        assert not any(
            req.get("type") == "response.create" and not req.get("previous_response_id") for req in sent[1:]
        )
        assert all(len(req["input"]) == 1 for req in sent[1:])
        assert not r.resent_transcript


def test_the_step_limit_ends_the_turn_visibly_and_the_chain_stays_valid(emu):
    with new_session(emu) as s:
        r = s.respond("call step 5 times", tools=[step], max_steps=2)
        assert r.status == "incomplete" and r.incomplete_reason == "max_steps"
        assert r.steps == 2
        assert r.tool_calls[-1].status == "error" and "step limit" in r.tool_calls[-1].output
        # the unrun call is answered with the next turn: no 400 "No tool output found", no resend
        nxt = s.respond("go on without tools")
        assert nxt.ok, nxt.error
        assert not nxt.resent_transcript
        assert requests_received(emu)[-1]["input"][0]["type"] == "function_call_output"


def test_an_exception_in_a_tool_goes_back_to_the_model(emu):
    def lookup(key: str) -> str:
        """Look a key up."""
        raise KeyError(key)

    with new_session(emu) as s:
        r = s.respond('Use lookup(key="missing") please', tools=[lookup])
        assert r.ok
        call = r.tool_calls[0]
        assert call.status == "error" and call.error.startswith("KeyError")
        assert "Error: KeyError: 'missing'" in r.text


def test_arguments_that_do_not_fit_are_answered_with_the_reason(emu):
    def count(n: int) -> int:
        """Count."""
        return n

    with new_session(emu) as s:
        r = s.respond('Try count(n="three")', tools=[count])
        assert r.ok
        assert r.tool_calls[0].status == "error"
        assert "invalid arguments for count" in r.tool_calls[0].output
        assert "invalid arguments for count" in r.text


def test_denied_calls_are_answered_denied(emu):
    ran = []

    def delete_everything() -> str:
        """Do something drastic."""
        ran.append(1)
        return "gone"

    with new_session(emu) as s:
        from ipy_responses_ws.tool_loop import ToolLoop
        from ipy_responses_ws.toolbox import ToolBox

        loop = ToolLoop(s, ToolBox([delete_everything]), approve=lambda call: False)
        r = loop.run("please delete_everything")
        assert r.ok and not ran
        assert r.tool_calls[0].status == "denied"
        assert "denied by the user" in r.text


def test_parallel_calls_in_one_response_are_each_answered(emu):
    with new_session(emu) as s:
        r = s.respond("Use get_weather and convert_units in parallel.", tools=[get_weather, convert_units])
        assert r.ok and r.steps == 2
        assert {c.name for c in r.tool_calls} == {"get_weather", "convert_units"}
        assert {c.step for c in r.tool_calls} == {1}


def test_an_interrupt_inside_a_tool_leaves_a_chain_the_next_turn_can_use(emu):
    """livekit #5092: an interrupt during a tool call broke the chain for good (400 "No tool output found")."""
    started = threading.Event()

    def slow_tool(city: str) -> str:
        """Takes a while."""
        started.set()
        time.sleep(5)
        return "never"

    with new_session(emu, transport="ws", store=False) as s:
        main = threading.get_ident()

        def interrupt() -> None:
            started.wait(5)
            import _thread

            _thread.interrupt_main()

        threading.Thread(target=interrupt, daemon=True).start()
        assert threading.get_ident() == main
        with pytest.raises(KeyboardInterrupt):
            s.respond("use slow_tool now", tools=[slow_tool])
        nxt = s.respond("what happened?")
        assert nxt.ok, nxt.error
        assert not nxt.resent_transcript, "answered by id, not by resending"
        first = requests_received(emu)[-1]["input"][0]
        assert first["type"] == "function_call_output" and "cancelled by the user" in first["output"]


def test_start_refuses_python_functions(emu):
    from ipy_responses_ws.errors import ConfigError

    with new_session(emu) as s, pytest.raises(ConfigError, match="respond"):
        s.start("hi", tools=[get_weather])


def test_a_step_refused_by_the_budget_still_answers_the_calls_already_run(emu):
    from ipy_responses_ws.pricing import BudgetExceededError

    with new_session(emu) as s:
        s.configure(model="gpt-5-mini")  # a model with a price
        s.respond("warm up")  # something spent, so a tiny budget is already reached
        spent = s.ledger.spent
        assert spent > 0
        ran = []

        def note(text: str) -> str:
            """Write a note."""
            ran.append(text)
            s.configure(budget=spent / 2)  # the next step is refused before it is sent
            return "noted"

        with pytest.raises(BudgetExceededError):
            s.respond('please note(text="x")', tools=[note])
        assert ran == ["x"]
        s.configure(budget=None)
        nxt = s.respond("and now?")
        assert nxt.ok, nxt.error
        assert not nxt.resent_transcript  # the call's real output went first, by id
        assert requests_received(emu)[-1]["input"][0] == {
            "type": "function_call_output",
            "call_id": requests_received(emu)[-1]["input"][0]["call_id"],
            "output": "noted",
        }
