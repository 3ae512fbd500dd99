"""The extension's lifecycle in an IPython shell: ``%load_ext``, ``%responses close``, ``%reload_ext``,
``%unload_ext``, next to sessions the user built with the public API.

What must hold (README, "Lifecycle"; magics/holder.py):

* unload closes only the extension's session (its sockets closed with 1000) and forgets its conversations,
  those kept by ``%responses close`` included;
* the process-wide I/O loop outlives unload: a ``ResponsesSession`` the user owns keeps working, and a reload
  never starts a second loop thread;
* ``%responses close`` closes sockets, not conversations: the next cell continues them, pending function calls
  included (chaining by id past a call without its output is a 400 "No tool output found" on the real API).

In-process (a plain ``InteractiveShell``: the magics take the terminal path) against the emulator on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from ipy_responses_ws import ResponsesSession, _extension
from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.runtime import THREAD_NAME

KEY = "sk-test-FAKE-lifecycle-ext-0123456789"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY).run_in_thread() as server:
        yield server


@pytest.fixture
def ip(emu: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ipy_responses_ws")
    yield shell
    shell.run_line_magic("unload_ext", "ipy_responses_ws")


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME and t.is_alive()]


def open_sockets(emu: Emulator, since: int = 0) -> list[Any]:
    deadline = time.monotonic() + 3
    while True:
        found = [
            c
            for c in emu.connections[since:]
            if c.transport == "ws" and c.status == 101 and c.closed_at is None
        ]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)  # the server notes a close frame a moment after the client sent it


def respond(ip: Any, line: str, prompt: str) -> Any:
    ip.run_cell_magic("respond", f"{line} -o _r", prompt)
    return ip.user_ns.pop("_r")


def test_a_users_own_session_survives_unload_and_reload(ip: Any, emu: Emulator) -> None:
    with ResponsesSession(base_url=emu.base_url, api_key=KEY) as mine:
        assert mine.respond("mine, one").status == "completed"
        assert respond(ip, "--new", "the extension's").status == "completed"
        ip.run_line_magic("reload_ext", "ipy_responses_ws")
        assert respond(ip, "--new", "after the reload").status == "completed"
        ip.run_line_magic("unload_ext", "ipy_responses_ws")
        try:
            after = mine.respond("mine, two")
        finally:
            ip.run_line_magic("load_ext", "ipy_responses_ws")
    assert after.status == "completed", after.error
    assert after.text == reply_for(["mine, one", "mine, two"])


def test_reload_and_unload_leave_one_loop_and_close_the_extensions_sockets(ip: Any, emu: Emulator) -> None:
    since = len(emu.connections)
    assert respond(ip, "--new", "before the reload").status == "completed"
    threads = loop_threads()
    assert len(threads) == 1
    ip.run_line_magic("reload_ext", "ipy_responses_ws")
    assert open_sockets(emu, since) == [], "reload left the old session's socket open"
    assert respond(ip, "--new", "after the reload").status == "completed"
    assert loop_threads() == threads, "a second I/O loop thread appeared"
    ip.run_line_magic("unload_ext", "ipy_responses_ws")
    try:
        assert open_sockets(emu, since) == [], "unload left a socket of the extension open"
        ws = [c for c in emu.connections[since:] if c.transport == "ws" and c.status == 101]
        assert ws and {c.close_code for c in ws} == {1000}
        assert loop_threads() == threads  # the loop stays for sessions the user owns (closed at exit)
    finally:
        ip.run_line_magic("load_ext", "ipy_responses_ws")


def test_unload_forgets_a_conversation_kept_by_close(ip: Any) -> None:
    assert respond(ip, "--new", "remember the number 7").status == "completed"
    ip.run_line_magic("responses", "close")  # keeps the conversation for the next session...
    ip.run_line_magic("unload_ext", "ipy_responses_ws")  # ...which unload must forget
    ip.run_line_magic("load_ext", "ipy_responses_ws")
    fresh = respond(ip, "", "what was the number?")
    assert fresh.status == "completed"
    assert fresh.text == reply_for(["what was the number?"]), "the unloaded conversation came back"


def test_close_keeps_the_conversation(ip: Any) -> None:
    assert respond(ip, "--new", "first").status == "completed"
    ip.run_line_magic("responses", "close")
    second = respond(ip, "", "second")
    assert second.text == reply_for(["first", "second"])


def test_close_keeps_pending_function_calls(
    ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _extension.get_session()
    asked = session.respond("please use get_weather for Paris", new=True, tools=[WEATHER])
    assert asked.status == "completed" and len(asked.function_calls) == 1
    call_id = asked.function_calls[0]["call_id"]
    ip.run_line_magic("responses", "close")
    capsys.readouterr()
    ip.run_line_magic("responses", "status")
    assert call_id in capsys.readouterr().out, "the call still waiting for its output was lost by close"
    since = len(emu.connections)
    moved_on = respond(ip, "", "never mind, thanks")
    assert moved_on.status == "completed", moved_on.error
    # The call got no output: the turn must not chain by id past it (the real API: 400 "No tool output found").
    # It resends the conversation without the call instead, visibly.
    sent = [
        f
        for c in emu.connections[since:]
        for f in c.frames
        if isinstance(f, dict) and "never mind, thanks" in str(f.get("input"))
    ]
    assert sent and all(not f.get("previous_response_id") for f in sent), sent
    assert moved_on.resent_transcript
    assert call_id not in str(sent[-1]["input"])
