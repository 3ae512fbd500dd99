"""Lifecycle faults: the server restarts between cells, goes away, stops answering mid-stream, and the kernel
shuts down while an answer streams.

Session-level tests run in-process on both transports with store on and off; the notebook flows run in a real
kernel. What the server saw (close codes) is read from the emulator's connection log.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.errors import ConnectError, StreamTimeoutError
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-lifecycle-0123456789abcdef"


@contextlib.contextmanager
def emulator_on(port: int = 0, **kw: Any) -> Iterator[Emulator]:
    with Emulator(KEY, port=port, **kw).run_in_thread() as emu:
        yield emu


def _port(emu: Emulator) -> int:
    return int(emu.base_url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.mark.parametrize("store", [True, False], ids=["store_on", "store_off"])
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_server_restart_between_cells_keeps_the_chain(transport: str, store: bool) -> None:
    with emulator_on() as first:
        port = _port(first)
        s = ResponsesSession(base_url=first.base_url, api_key=KEY, transport=transport, store=store)
        a = s.respond("before the restart")
        assert a.status == "completed"
    # The first server is gone (its sockets were closed with 1001); a new one with an empty store takes
    # the same port, as when a local server or a proxy restarts between two cells.
    try:
        with emulator_on(port) as second:
            b = s.respond("after the restart")
            status = s.status()
            conns_after = [c for c in second.connections if c.transport == "ws"]
    finally:
        s.close()
    assert b.status == "completed", b.error
    assert b.text == reply_for(["before the restart", "after the restart"])
    # The new server knows nothing: history came back from the client's transcript.
    assert b.resent_transcript
    assert len(status["connections"]) <= 1
    if transport == "ws":
        # One fresh connection: with store on, the by-id create gets previous_response_not_found and the
        # resend goes over the same (still clean) socket (9545003; before it, a second handshake).
        assert len(conns_after) == 1, conns_after


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_server_down_is_a_clear_error_then_recovery(transport: str) -> None:
    with emulator_on() as first:
        port = _port(first)
        s = ResponsesSession(base_url=first.base_url, api_key=KEY, transport=transport, connect_timeout=2.0)
        assert s.respond("one").status == "completed"
    try:
        t0 = time.monotonic()
        down = s.respond("while the server is down")
        took = time.monotonic() - t0
        with emulator_on(port):
            back = s.respond("two")
    finally:
        s.close()
    assert down.status == "failed" and isinstance(down.error, ConnectError), down.error
    assert took < 2.0, f"{took:.2f} s to notice a refused connection"
    assert "127.0.0.1" in str(down.error)
    assert back.status == "completed" and back.text == reply_for(["one", "two"])


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_server_that_stops_answering_mid_stream_times_out(transport: str) -> None:
    with emulator_on() as emu:
        s = ResponsesSession(base_url=emu.base_url, api_key=KEY, transport=transport, idle_timeout=0.5)
        try:
            assert s.respond("warm").status == "completed"
            r = s.respond("then silence\n!fault stall after=8 seconds=5")
            after = s.respond("still there?")
        finally:
            s.close()
    assert isinstance(r.error, StreamTimeoutError) and r.error.phase == "idle"
    assert 0.5 <= r.elapsed < 3.0, r.elapsed
    assert r.text, "the text streamed before the silence stays visible"
    assert after.status == "completed" and after.text == reply_for(["warm", "still there?"])


# --- the kernel shuts down during a stream ----------------------------------------------------------------


def _ws_logs(emu: Emulator) -> list[Any]:
    return [c for c in emu.connections if c.transport == "ws" and c.status == 101]


@pytest.mark.kernel
@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_kernel_shutdown_mid_stream_closes_the_socket_with_1000(background: bool) -> None:
    from kernel_helpers import Kernel

    with emulator_on(token_rate=40, answer_words=400) as emu:  # ~15 s of streaming
        k = Kernel({"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": KEY})
        try:
            assert k.execute("%load_ext ipy_responses_ws").status == "ok"
            flag = " --background" if background else ""
            msg_id = k.submit(f"%%respond{flag}\nA long answer, please")
            ex = k._execution(msg_id)
            k.read_until(
                lambda m: sum(x["msg_type"] == "comm_msg" for x in ex.messages) >= 3, what="streaming"
            )
            assert _ws_logs(emu) and _ws_logs(emu)[-1].closed_at is None, "the answer should be streaming"
            t0 = time.monotonic()
        finally:
            k.shutdown()  # graceful: shutdown_request, then the process exits (atexit closes the pool)
        took = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while _ws_logs(emu)[-1].closed_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        log = _ws_logs(emu)[-1]
    assert log.closed_at is not None, "the server still holds the socket"
    assert log.close_code == 1000, f"the server saw {log.close_code} / {log.server_close_code}"
    assert took < 10, f"shutdown took {took:.1f} s"


@pytest.mark.kernel
def test_kernel_killed_mid_stream_is_seen_as_1006() -> None:
    """A hard kill (the kernel dies, no atexit) cannot send a close frame: the server sees 1006."""
    from kernel_helpers import Kernel

    with emulator_on(token_rate=40, answer_words=400) as emu:
        k = Kernel({"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": KEY})
        try:
            assert k.execute("%load_ext ipy_responses_ws").status == "ok"
            msg_id = k.submit("%%respond --background\nA long answer, please")
            ex = k._execution(msg_id)
            k.read_until(
                lambda m: sum(x["msg_type"] == "comm_msg" for x in ex.messages) >= 3, what="streaming"
            )
            k.km.shutdown_kernel(now=True)
        finally:
            k.shutdown()
        deadline = time.monotonic() + 5
        while _ws_logs(emu)[-1].closed_at is None and time.monotonic() < deadline:
            time.sleep(0.05)
        log = _ws_logs(emu)[-1]
    assert log.closed_at is not None, "the server never noticed the dead client"
    assert log.close_code is None, f"a close frame ({log.close_code}) cannot come from a killed process"


@pytest.mark.kernel
def test_notebook_flow_survives_a_restart_and_a_stall() -> None:
    """In a kernel: a cell, the server restarts, a cell (same chain), the server goes silent, a cell."""
    from kernel_helpers import Kernel

    with emulator_on() as first:
        port = _port(first)
        k = Kernel({"OPENAI_BASE_URL": first.base_url, "OPENAI_API_KEY": KEY})
    try:
        assert k.execute("%load_ext ipy_responses_ws").status == "ok"
        k.execute("%%respond -o a\nbefore")  # the emulator above is already gone: a clear error
        first_status = k.execute("print(a.status, type(a.error).__name__)").stdout().split()
        with emulator_on(port):
            k.execute("%responses reset")
            assert k.execute("%%respond -o b\nbefore").status == "ok"
            assert k.execute("print(b.status)").stdout().strip() == "completed"
        with emulator_on(port) as emu:
            k.execute("%responses config idle_timeout=0.5")
            t0 = time.monotonic()
            k.execute("%%respond -o c\nafter the restart\n!fault stall after=8 seconds=5")
            stall_took = time.monotonic() - t0
            k.execute("%responses config idle_timeout=120")
            k.execute("%%respond -o d\nafter the restart")
            out = json.loads(
                k.execute(
                    "import json; print(json.dumps([c.status, type(c.error).__name__, d.status, d.text]))"
                ).stdout()
            )
            assert emu.connections, "the new server was used"
    finally:
        k.shutdown()
    assert first_status == ["failed", "ConnectError"]
    assert out[:3] == ["failed", "StreamTimeoutError", "completed"]
    assert stall_took < 4.0, f"the silent server held the cell for {stall_took:.1f} s"
    assert out[3] == reply_for(["before", "after the restart"])
