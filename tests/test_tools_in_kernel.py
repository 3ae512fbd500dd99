"""``%%respond --tools`` in a real kernel (issue 12): the model calls the notebook's own functions, which run in
the kernel's main thread with the user's variables; the server sees only output items after the first request,
on one socket; an interrupt inside a tool leaves a conversation the next cell can use.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kernel_helpers import Kernel, all_text

from ipy_responses_ws.emulator import Emulator

pytestmark = pytest.mark.kernel

KEY = "sk-test-FAKE-tools-kernel-0123456789"

DEFINE = '''
import time
CITY_TEMPS = {"Paris": 21, "Oslo": 4}
def get_weather(city: str) -> str:
    """The weather in a city (from the notebook's own data)."""
    return f"{CITY_TEMPS[city]} C in {city}"
def convert_units(value: float, unit: str = "C") -> str:
    """Convert a temperature between C and F."""
    return f"{value * 9 / 5 + 32:.1f} F"
def slow_tool(city: str) -> str:
    """Takes a minute."""
    time.sleep(60)
    return "never"
'''


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY, ttft=0.01, token_rate=3000).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def kernel(emu: Emulator) -> Iterator[Kernel]:
    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": emu.base_url}
    with Kernel(env) as k:
        ex = k.execute("%load_ext ipy_responses_ws\n" + DEFINE)
        assert ex.status == "ok", ex.error
        yield k


def _requests(emu: Emulator) -> list[tuple[str, dict[str, Any]]]:
    """(connection id, request) for every response.create / POST body the server received."""
    return [
        (c.id, f)
        for c in emu.connections
        for f in c.frames
        if isinstance(f, dict) and f.get("type", "response.create") == "response.create" and "input" in f
    ]


def test_a_multi_step_tool_turn_in_a_kernel_quotes_each_tools_output(kernel: Kernel, emu: Emulator) -> None:
    before = len(_requests(emu))
    ex = kernel.execute(
        "%%respond --new --tools get_weather,convert_units -o r\n"
        'Check get_weather(city="Oslo") and then convert_units(value=4, unit="C").',
        timeout=60,
    )
    assert ex.status == "ok", ex.error
    check = kernel.execute(
        "print(r.status, r.steps, [(c.name, c.arguments, c.output) for c in r.tool_calls])\nprint(r.text)"
    )
    out = check.stdout()
    assert out.startswith("completed 3 [('get_weather', {'city': 'Oslo'}, '4 C in Oslo'), ('convert_units'")
    assert "4 C in Oslo" in out and "39.2 F" in out  # the final answer quotes each output
    sent = _requests(emu)[before:]
    assert len(sent) == 3
    assert {conn for conn, _ in sent} == {sent[0][0]}, "one socket for the whole turn"
    for _, req in sent[1:]:
        assert req["previous_response_id"]
        assert [it["type"] for it in req["input"]] == ["function_call_output"]
    # the frozen output lists the calls above the answer
    md = [m["content"]["data"].get("text/markdown", "") for m in ex.of_type("update_display_data")]
    assert md and "get_weather" in md[-1] and md[-1].index("get_weather") < md[-1].index("4 C in Oslo")
    assert KEY not in all_text(ex.messages)


def test_an_interrupt_in_a_tool_leaves_a_chain_the_next_cell_can_use(kernel: Kernel, emu: Emulator) -> None:
    msg_id = kernel.submit("%%respond --tools slow_tool -o stopped\nplease use slow_tool now")
    deadline = time.monotonic() + 20
    while not any(
        isinstance(f, dict) and f.get("type") == "response.create" and "slow_tool" in str(f.get("input"))
        for c in emu.connections
        for f in c.frames
    ):
        assert time.monotonic() < deadline, "the turn never started"
        time.sleep(0.05)
    time.sleep(0.5)  # the tool is now sleeping in the kernel's main thread
    t0 = time.monotonic()
    kernel.interrupt()
    ex = kernel.collect(msg_id, timeout=30)
    assert time.monotonic() - t0 < 5
    assert ex.status == "error" and ex.error["ename"] == "KeyboardInterrupt"
    stopped = kernel.execute("print(stopped.status, [(c.name, c.status) for c in stopped.tool_calls])")
    assert stopped.stdout().strip() == "cancelled [('slow_tool', 'cancelled')]"
    nxt = kernel.execute("%%respond -o after\nwhat happened?")
    assert nxt.status == "ok", nxt.error
    after = kernel.execute("print(after.status, after.resent_transcript)")
    assert after.stdout().strip() == "completed False"
    first = _requests(emu)[-1][1]["input"][0]
    assert first["type"] == "function_call_output" and "cancelled by the user" in first["output"]


def test_tools_listing_shows_what_the_model_sees(kernel: Kernel) -> None:
    ex = kernel.execute("%responses tools get_weather,convert_units")
    assert ex.status == "ok", ex.error
    assert "get_weather" in ex.stdout() and "The weather in a city" in ex.stdout() and "city" in ex.stdout()
    bad = kernel.execute("%%respond --tools no_such_function\nhi")
    assert bad.status == "error" and bad.error["ename"] == "UsageError"
    assert "no_such_function" in bad.error["evalue"]


def test_approve_without_stdin_denies_and_tells_the_model_why(kernel: Kernel) -> None:
    ex = kernel.execute('%%respond --approve --tools get_weather -o asked\nuse get_weather(city="Paris")')
    assert ex.status == "ok", ex.error
    out = kernel.execute("print(asked.tool_calls[0].status); print(asked.tool_calls[0].output)").stdout()
    assert out.startswith("denied\nnot run: --approve needs a frontend that accepts input")


def test_background_cells_refuse_tools_with_the_reason(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond --background --tools get_weather\nhi")
    assert ex.status == "error" and "main thread" in ex.error["evalue"]


def test_async_tools_run_in_the_kernel(kernel: Kernel) -> None:
    kernel.execute(
        "import asyncio\n"
        "async def fetch_rate(currency: str) -> str:\n"
        "    '''An exchange rate, fetched asynchronously.'''\n"
        "    await asyncio.sleep(0.01)\n"
        "    return f'1 EUR = 11.5 {currency}'\n"
    )
    ex = kernel.execute('%%respond --new --tools fetch_rate -o fx\nUse fetch_rate(currency="NOK")')
    assert ex.status == "ok", ex.error
    out = kernel.execute("print(fx.tool_calls[0].status, fx.tool_calls[0].output)").stdout()
    assert out.strip() == "ok 1 EUR = 11.5 NOK"


def test_a_hosted_tool_is_passed_through_and_its_call_shown(kernel: Kernel, emu: Emulator) -> None:
    ex = kernel.execute("%%respond --new --tool web_search -o found\nsearch the web for jupyter kernels")
    assert ex.status == "ok", ex.error
    assert _requests(emu)[-1][1]["tools"] == [{"type": "web_search"}]
    frozen = [m["content"]["data"]["text/markdown"] for m in ex.of_type("update_display_data")][-1]
    assert "web search" in frozen and "jupyter kernels" in frozen
    bad = kernel.execute("%%respond --tool file_search\nhi")
    assert bad.status == "error" and "vector store" in bad.error["evalue"].lower()


def test_approve_asks_on_stdin_and_a_no_is_sent_as_denied(kernel: Kernel) -> None:
    """What JupyterLab, Notebook 7 and VS Code do with --approve: an input prompt per call, answered y or n."""
    content = {
        "code": "%%respond --new --approve --tools get_weather -o approved\n"
        'use get_weather(city="Paris") and get_weather(city="Oslo") in parallel',
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": True,
        "stop_on_error": True,
    }
    msg = kernel.kc.session.msg("execute_request", content)
    kernel.kc.shell_channel.send(msg)
    prompts = []
    for answer in ("y", "n"):
        request = kernel.kc.stdin_channel.get_msg(timeout=20)
        assert request["msg_type"] == "input_request"
        prompts.append(request["content"]["prompt"])
        kernel.kc.input(answer)
    ex = kernel.collect(msg["header"]["msg_id"], timeout=30)
    assert ex.status == "ok", ex.error
    assert prompts[0].startswith('Run get_weather(city="Paris")') and prompts[0].endswith("[y/N] ")
    out = kernel.execute(
        "print([(c.arguments['city'], c.status, c.output) for c in approved.tool_calls])"
    ).stdout()
    assert out.strip() == "[('Paris', 'ok', '21 C in Paris'), ('Oslo', 'denied', 'denied by the user')]"
