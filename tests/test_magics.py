"""The magics in-process: argument parsing, {name} interpolation, traitlets config, terminal streaming.

A plain ``InteractiveShell`` has no kernel, so ``%%respond`` takes the terminal path (plain text deltas on
stdout), which is what terminal IPython users see. The real engine talks to an emulator on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import ipy_responses_ws
from ipy_responses_ws import _extension
from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.magics import NO_KEY_MESSAGE, ResponsesMagics, interpolate
from ipy_responses_ws.runtime import THREAD_NAME

KEY = "sk-test-FAKE-magics-0123456789abcdef"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY).run_in_thread() as server:
        yield server


@pytest.fixture
def ip(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ipy_responses_ws")
    yield shell
    shell.run_line_magic("unload_ext", "ipy_responses_ws")
    # The extension's sockets are closed; the I/O loop stays (one thread at most) for the user's own sessions.
    assert _extension.holder() is None
    assert len([t for t in threading.enumerate() if t.name == THREAD_NAME]) <= 1
    deadline = time.monotonic() + 3
    while open_sockets(emu) and time.monotonic() < deadline:
        time.sleep(0.02)  # the server notes the close frame a moment later
    assert open_sockets(emu) == [], "a socket of the extension stayed open"


def open_sockets(emu: Emulator) -> list[object]:
    return [c for c in emu.connections if c.transport == "ws" and c.status == 101 and c.closed_at is None]


def magics_of(ip: InteractiveShell) -> ResponsesMagics:
    return ip.find_cell_magic("respond").__self__


def usage_error(fn, *args: object) -> str:
    with pytest.raises(UsageError) as info:
        fn(*args)
    assert type(info.value) is UsageError  # IPython prints a subclass with a full traceback
    return str(info.value)


# -- interpolation ---------------------------------------------------------------------------------------


def test_interpolation_fills_names_attributes_and_indexes() -> None:
    ns = {"name": "Ada", "obj": SimpleNamespace(year=1843), "items": ["a", "b"], "d": {"k": 3.14159}}
    text = interpolate("{name} in {obj.year}: {items[1]}, {d[k]:.2f}, {name!r} {{literal}}", ns)
    assert text == "Ada in 1843: b, 3.14, 'Ada' {literal}"


def test_interpolation_names_the_unknown_variable() -> None:
    message = usage_error(interpolate, "Tell me about {missing_var.attr}", {})
    assert "'missing_var'" in message and "{{" in message


@pytest.mark.parametrize(
    "template", ["{}", "{0}", "{__import__('os').system('true')}", "{a b}", "unbalanced {"]
)
def test_interpolation_never_evaluates_code(template: str) -> None:
    calls = []
    ns = {"a": 1, "__import__": lambda *a: calls.append(a)}
    with pytest.raises(UsageError):
        interpolate(template, ns)
    assert calls == []


def test_interpolation_errors_on_a_bad_lookup() -> None:
    assert "IndexError" in usage_error(interpolate, "{items[5]}", {"items": [1]})


# -- %%respond in terminal IPython ---------------------------------------------------------------------------


def test_terminal_ipython_streams_plain_text_and_stores_the_result(ip: InteractiveShell, capsys) -> None:
    ip.user_ns["who"] = "terminal"
    ip.run_cell_magic("respond", "--new -o res", "Hello from the {who}")
    out = capsys.readouterr().out
    expected = reply_for(["Hello from the terminal"])
    assert out.startswith(expected)
    assert "[done · WS · ttft" in out
    res = ip.user_ns["res"]
    assert res.text == expected and res.status == "completed" and res.transport == "ws"


def test_terminal_chain_and_per_cell_transport(ip: InteractiveShell, capsys) -> None:
    ip.run_cell_magic("respond", "--new", "one")
    ip.run_cell_magic("respond", "-t sse -o two", "two")
    assert ip.user_ns["two"].text == reply_for(["one", "two"]) and ip.user_ns["two"].transport == "sse"
    assert "transport = ws" in _run(ip, capsys, "responses", "transport")


def _run(ip: InteractiveShell, capsys, magic: str, line: str) -> str:
    capsys.readouterr()
    ip.run_line_magic(magic, line)
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "line",
    ["--temperature hot", "-t pigeon", "--max-output-tokens 0", "--temperature 5", "-o not-a-name", "--nope"],
)
def test_bad_respond_arguments_are_plain_usage_errors(ip: InteractiveShell, line: str) -> None:
    usage_error(ip.run_cell_magic, "respond", line, "hi")


def test_help_has_options_and_examples(ip: InteractiveShell) -> None:
    doc = ip.find_cell_magic("respond").__doc__
    for needle in (
        "-m MODEL",
        "--transport <{ws,sse}>",
        "--no-store",
        "--new",
        "--background",
        "-o NAME",
        "--reasoning-effort",
        "Examples::",
        "%%respond -m gpt-5 -t sse",
    ):
        assert needle in doc, needle


def test_missing_key_message_says_what_to_do(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    message = usage_error(ip.run_cell_magic, "respond", "", "hi")
    assert message == NO_KEY_MESSAGE
    assert "export OPENAI_API_KEY" in message and "python -m ipy_responses_ws.emulator" in message
    assert "%env OPENAI_API_KEY=" not in message  # that would save the key into the notebook


# -- settings --------------------------------------------------------------------------------------------


def test_config_traits_reach_the_session(ip: InteractiveShell, capsys) -> None:
    assert "api_key" not in ResponsesMagics.class_trait_names()
    ip.run_line_magic("config", "ResponsesMagics.model = 'gpt-test-model'")
    session = _extension.get_session()
    assert session.settings.model == "gpt-test-model"
    out = _run(ip, capsys, "responses", "config store=false max_output_tokens=300 idle_timeout=30")
    assert "store = False" in out
    assert (session.settings.store, session.settings.max_output_tokens, session.settings.idle_timeout) == (
        False,
        300,
        30.0,
    )
    magics = magics_of(ip)
    assert magics.store is False and magics.max_output_tokens == 300
    listing = _run(ip, capsys, "responses", "config")
    assert "model = 'gpt-test-model'" in listing and "max_connection_age = 3300.0" in listing
    ip.run_line_magic("config", "ResponsesMagics.model = 'gpt-5-mini'")
    ip.run_line_magic("responses", "config store=true max_output_tokens=none idle_timeout=120")


def test_traits_set_before_the_session_exists_are_used(ip: InteractiveShell) -> None:
    magics_of(ip).holder.close(keep_conversations=False)
    ip.run_line_magic("config", "ResponsesMagics.temperature = 0.5")
    assert _extension.get_session().settings.temperature == 0.5
    ip.run_line_magic("config", "ResponsesMagics.temperature = None")


def test_a_gateway_key_in_the_base_url_is_masked_in_the_config_listing(
    ip: InteractiveShell, emu: Emulator, capsys
) -> None:
    secret = "gw-FAKE-config-listing-0123456789"
    ip.run_line_magic("config", f"ResponsesMagics.base_url = '{emu.base_url}?api-version=1&api-key={secret}'")
    try:
        listing = _run(ip, capsys, "responses", "config")
        ip.run_cell_magic("respond", "--new -o r", "through the gateway")
        assert ip.user_ns["r"].status == "completed"
    finally:
        ip.run_line_magic("config", "ResponsesMagics.base_url = None")
    assert "api-version=1&api-key=***" in listing and secret not in listing


@pytest.mark.parametrize(
    "line", ["api_key=sk-x", "colour=blue", "store=perhaps", "transport=carrier", "model"]
)
def test_bad_config_is_a_usage_error(ip: InteractiveShell, line: str) -> None:
    usage_error(ip.run_line_magic, "responses", f"config {line}")


def test_transport_switch_updates_trait_and_session(ip: InteractiveShell, capsys) -> None:
    assert "transport = sse" in _run(ip, capsys, "responses", "transport sse")
    assert _extension.get_session().transport == "sse"
    assert magics_of(ip).transport == "sse"
    ip.run_line_magic("config", "ResponsesMagics.transport = 'ws'")
    assert _extension.get_session().transport == "ws"


def test_responses_actions(ip: InteractiveShell, capsys) -> None:
    ip.run_cell_magic("respond", "--new -c notes", "remember this")
    history = _run(ip, capsys, "responses", "history -c notes")
    assert "user: remember this" in history
    assert "reset" in _run(ip, capsys, "responses", "reset notes")
    assert "no completed turns" in _run(ip, capsys, "responses", "history -c notes")
    status = _run(ip, capsys, "responses", "status")
    assert status.startswith("transport: ws") and "connection ws-" in status
    assert "Stopped" in _run(ip, capsys, "responses", "stop")
    assert "closed" in _run(ip, capsys, "responses", "close")
    usage_error(ip.run_line_magic, "responses", "explode")
    usage_error(ip.run_line_magic, "responses", "reset a b")


def test_load_is_idempotent(ip: InteractiveShell) -> None:
    magics = magics_of(ip)
    ipy_responses_ws.load_ipython_extension(ip)
    assert magics_of(ip) is magics and magics.holder is _extension.holder()


def test_failed_turn_is_stored_and_explained(ip: InteractiveShell, capsys) -> None:
    ip.run_cell_magic("respond", "--new -o broken", "Please fail\n!fault failed after=3")
    captured = capsys.readouterr()
    broken = ip.user_ns["broken"]
    assert broken.status == "failed" and broken.error is not None
    assert f"Error: {broken.error}" in captured.err
    assert "failed" in captured.out and "not added to the conversation" in captured.out


# -- the status of a chain with tools ----------------------------------------------------------------------


def test_status_names_function_calls_still_waiting_for_their_output() -> None:
    from ipy_responses_ws.chain import Chain, user_message
    from ipy_responses_ws.widgets import status_html

    c = Chain("tools")
    first = [user_message("use f")]
    call = {"id": "fc_1", "type": "function_call", "call_id": "call_9", "name": "f", "arguments": "{}"}
    c.commit(
        c.plan(first, transport="ws", store=True, same_connection=True),
        first,
        {"id": "resp_1", "status": "completed", "output": [call]},
    )
    shown = status_html({"chains": {"tools": c.snapshot()}, "connections": []})
    assert c.snapshot()["pending_calls"] == ["call_9"]
    assert "1 function call awaiting tool output" in shown
    assert "pending_calls" not in Chain("plain").snapshot()  # no noise for chains without tools


def test_the_panel_shows_each_conversations_estimated_cost() -> None:
    from ipy_responses_ws.widgets import status_html

    shown = status_html(
        {
            "chains": {"default": {"turns": 2, "cost": "$0.0123"}, "side": {"turns": 1, "cost": None}},
            "cost": "estimated cost: $0.0123 this session (budget $1.00)",
            "connections": [],
        }
    )
    assert "≈$0.0123 so far" in shown and shown.count("so far") == 1
    assert "Estimated cost: $0.0123 this session (budget $1.00)" in shown
