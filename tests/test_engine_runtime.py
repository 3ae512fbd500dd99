"""The I/O loop thread, shutdown at exit, key hygiene against hostile peers, and settings guards.

Code that runs on the loop (an ``on_event`` or done callback) may stop turns without freezing the loop.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from aiohttp import WSMsgType, web
from engine_helpers import new_session

from ipy_responses_ws import runtime as runtime_mod
from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.errors import (
    InsecureTransportError,
    MissingAPIKeyError,
)
from ipy_responses_ws.runtime import THREAD_NAME, get_runtime
from ipy_responses_ws.session import ResponsesSession

KEY = "sk-test-FAKE-engine-runtime-0123456789"


def test_one_daemon_loop_thread_survives_reload():
    rt = get_runtime()
    assert rt is get_runtime()
    assert rt.thread.daemon and rt.thread.name == THREAD_NAME and rt.loop.is_running()
    reloaded = importlib.reload(runtime_mod)
    try:
        assert reloaded.get_runtime() is rt  # found through its thread, not the fresh module global
        assert [t.name for t in threading.enumerate()].count(THREAD_NAME) == 1
    finally:
        importlib.reload(runtime_mod)


def test_submit_and_run_from_sync_code():
    rt = get_runtime()

    async def where():
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert rt.run(where(), timeout=5) == THREAD_NAME
    fut = rt.submit(asyncio.sleep(10))
    fut.cancel()
    with pytest.raises(Exception):  # noqa: B017 - cancelled future: CancelledError
        fut.result(timeout=2)


def test_atexit_closes_sockets_with_1000():
    # A separate interpreter runs a turn and exits without close(): the atexit hook must close the socket
    # with 1000 (not a 1006 drop) and the process must exit promptly (the loop thread is a daemon).
    with Emulator(api_key=KEY).run_in_thread() as emu:
        code = textwrap.dedent(
            f"""
            from ipy_responses_ws.session import ResponsesSession
            s = ResponsesSession(base_url={emu.base_url!r}, api_key={KEY!r})
            r = s.respond("bye")
            print(r.status, flush=True)
            """
        )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONWARNINGS": "error"},
        )
        took = time.perf_counter() - t0
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "completed"
        assert "Unclosed" not in proc.stderr and "Traceback" not in proc.stderr
        (log,) = [c for c in emu.connections if c.transport == "ws"]
        for _ in range(100):
            if log.close_code is not None:
                break
            time.sleep(0.02)
        assert log.close_code == 1000
        assert took < 20


def test_key_over_cleartext_to_remote_host_is_refused():
    s = ResponsesSession(base_url="http://example.invalid/v1", api_key=KEY)
    try:
        for transport in ("ws", "sse"):
            r = s.respond("hi", transport=transport)
            assert isinstance(r.error, InsecureTransportError) and r.fallback_reason is None
            assert "allow_insecure" in str(r.error) and KEY not in str(r.error)
    finally:
        s.close()


def test_missing_key_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    s = ResponsesSession(base_url="http://127.0.0.1:9/v1")
    try:
        r = s.respond("hi")
        assert isinstance(r.error, MissingAPIKeyError) and "OPENAI_API_KEY" in str(r.error)
    finally:
        s.close()


def test_key_read_from_env_at_call_time(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with Emulator(api_key=KEY).run_in_thread() as emu:
        monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)
        s = ResponsesSession()  # nothing resolved yet
        try:
            assert isinstance(s.respond("too early").error, MissingAPIKeyError)
            monkeypatch.setenv("OPENAI_API_KEY", KEY)
            assert s.respond("now").text == reply_for(["now"])
        finally:
            s.close()


# --- a hostile peer that echoes the key back ------------------------------------------------------------


@pytest.fixture
async def echo_server():
    """A loopback server that echoes the Authorization header in every error it can produce."""
    mode = {"sse": "401", "ws": "error"}

    async def post(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if mode["sse"] == "json":
            return web.json_response({"id": "resp_plain", "object": "response", "status": "completed"})
        if mode["sse"] == "401":
            body = {
                "error": {"message": f"Bad header {auth}; key={auth.split()[-1]}", "code": "invalid_api_key"}
            }
            return web.json_response(body, status=401)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        err = {"type": "error", "sequence_number": 0, "error": {"message": f"echo {auth}", "code": "x"}}
        await resp.write(f"data: {json.dumps(err)}\n\n".encode())
        return resp

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            if mode["ws"] == "error":
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "error",
                            "status": 400,
                            "error": {"message": f"you sent {auth}", "code": "bad"},
                        }
                    )
                )
            elif mode["ws"] == "custom":
                await ws.send_str("")  # an empty keep-alive frame: skipped, not an error
                await ws.send_str(" \n")
                await ws.send_str(json.dumps({"type": "codex.rate_limits", "primary": {"used_percent": 5}}))
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "response.completed",
                            "sequence_number": 1,
                            "response": {
                                "id": "resp_x",
                                "status": "completed",
                                "output": [
                                    {
                                        "type": "message",
                                        "role": "assistant",
                                        "content": [{"type": "output_text", "text": "ok"}],
                                    }
                                ],
                            },
                        }
                    )
                )
            elif mode["ws"] == "v1":  # the obsolete v1 terminal (PROTOCOL.md §1.2)
                await ws.send_str(json.dumps({"type": "response.output_text.delta", "delta": "old"}))
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "response.done",
                            "response": {
                                "id": "resp_v1",
                                "status": "completed",
                                "output": [
                                    {
                                        "type": "message",
                                        "role": "assistant",
                                        "content": [{"type": "output_text", "text": "old"}],
                                    }
                                ],
                            },
                        }
                    )
                )
            elif mode["ws"] == "close_reason":
                await ws.close(code=1011, message=f"bye {auth}".encode())
                break
        return ws

    app = web.Application()
    app.router.add_post("/v1/responses", post)
    app.router.add_get("/v1/responses", ws_handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1", mode
    finally:
        await runner.cleanup()


async def test_echoed_key_is_redacted_everywhere(echo_server):
    base, mode = echo_server
    secret = "sk-test-FAKE-echoed-secret-77777777"
    s = ResponsesSession(base_url=base, api_key=secret)
    try:
        outcomes = []
        r = await s.arespond("hi", transport="sse")
        outcomes.append(r)
        mode["sse"] = "stream"
        outcomes.append(await s.arespond("hi", transport="sse"))
        outcomes.append(await s.arespond("hi", transport="ws"))
        mode["ws"] = "close_reason"
        outcomes.append(await s.arespond("hi", transport="ws"))
        for r in outcomes:
            assert r.error is not None
            text = " ".join([str(r.error), repr(r.error), str(r.error.args), str(vars(r.error)), repr(r)])
            assert secret not in text, text
            assert "[REDACTED]" in text or "1011" in text
        assert outcomes[0].error.status == 401 and "OPENAI_API_KEY" in str(outcomes[0].error)
        assert outcomes[3].error.code == 1011
    finally:
        await s.aclose()


async def test_unknown_event_types_and_empty_frames_pass(echo_server):
    base, mode = echo_server
    mode["ws"] = "custom"
    s = ResponsesSession(base_url=base, api_key=KEY)
    try:
        seen = []
        r = await s.arespond("hi", transport="ws", on_event=lambda ev: seen.append(ev.type))
        assert r.ok and r.text == "ok"
        assert "codex.rate_limits" in seen
    finally:
        await s.aclose()


# --- a peer that goes silent (no pongs) -----------------------------------------------------------------


@pytest.fixture
async def silent_server():
    """Accepts the upgrade, answers the first create, then never reads again: pings go unanswered."""
    state = {"serve_first": True}

    async def ws_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        if state["serve_first"]:
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT
            done = {
                "type": "response.completed",
                "sequence_number": 0,
                "response": {"id": "resp_silent", "status": "completed", "output": []},
            }
            await ws.send_str(json.dumps(done))
        await asyncio.sleep(30)  # never reads: aiohttp answers pings only while someone reads
        return ws

    app = web.Application()
    app.router.add_get("/v1/responses", ws_handler)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1", state
    finally:
        await runner.cleanup()


async def test_heartbeat_detects_a_dead_peer_mid_turn(silent_server):
    base, state = silent_server
    state["serve_first"] = False
    s = ResponsesSession(base_url=base, api_key=KEY, heartbeat=0.2, first_event_timeout=20)
    try:
        t0 = time.perf_counter()
        r = await s.arespond("anyone?")
        took = time.perf_counter() - t0
        # the missing pong closes the socket long before the 20 s first-event timeout
        assert r.status == "failed" and took < 3, (r.error, took)
        assert "1006" in str(r.error) or "PONG" in str(r.error)
    finally:
        await s.aclose()


async def test_heartbeat_retires_a_dead_idle_connection(silent_server):
    base, state = silent_server
    s = ResponsesSession(base_url=base, api_key=KEY, heartbeat=0.2, first_event_timeout=20)
    try:
        assert (await s.arespond("one")).ok
        await asyncio.sleep(0.8)  # idle; pings unanswered -> aiohttp closes it
        conns = await asyncio.to_thread(lambda: s.status()["connections"])
        assert conns == [] or all(not c["busy"] for c in conns)
        handshakes = s.status()["handshakes"]
        state["serve_first"] = True
        assert (await s.arespond("two")).ok  # a fresh connection, no error shown to the user
        assert s.status()["handshakes"] == handshakes + 1
    finally:
        await s.aclose()


async def test_legacy_response_done_ends_the_turn(echo_server):
    base, mode = echo_server
    mode["ws"] = "v1"
    s = ResponsesSession(base_url=base, api_key=KEY, first_event_timeout=5, idle_timeout=5)
    try:
        t0 = time.perf_counter()
        r = await s.arespond("hi", transport="ws")
        assert r.ok and r.text == "old" and r.response_id == "resp_v1"
        assert time.perf_counter() - t0 < 3  # ended at response.done, not at the idle timeout
        assert s.chain().previous_response_id == "resp_v1"
    finally:
        await s.aclose()


def test_runtime_close_is_idempotent_and_a_new_one_can_start():
    # What %unload_ext / %reload_ext do: stop the loop thread; the next session starts exactly one new one.
    with Emulator(api_key=KEY).run_in_thread() as emu:
        rt1 = get_runtime()
        s1 = ResponsesSession(base_url=emu.base_url, api_key=KEY)
        assert s1.respond("before").ok
        rt1.close()
        rt1.close()
        assert not rt1.thread.is_alive() and rt1.loop.is_closed()
        (log,) = [c for c in emu.connections if c.transport == "ws"]
        for _ in range(100):
            if log.close_code is not None:
                break
            time.sleep(0.02)
        assert log.close_code == 1000  # the runtime closed the session's socket normally
        with pytest.raises(Exception, match="shut down"):
            s1.start("after")
        s1.close()  # still safe
        s2 = ResponsesSession(base_url=emu.base_url, api_key=KEY)
        try:
            assert get_runtime() is not rt1
            assert [t.name for t in threading.enumerate()].count(THREAD_NAME) == 1
            assert s2.respond("after").text == reply_for(["after"])
        finally:
            s2.close()


@pytest.fixture
async def mute_server():
    """Accepts TCP connections and reads, but never answers: a hung proxy."""
    writers = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


async def test_hung_handshake_is_a_connect_timeout(mute_server):
    s = ResponsesSession(base_url=mute_server, api_key=KEY, connect_timeout=0.4, first_event_timeout=0.6)
    try:
        t0 = time.perf_counter()
        r = await s.arespond("hello?", transport="ws")
        assert r.error.__class__.__name__ == "StreamTimeoutError" and r.error.phase == "connect"
        assert r.fallback_reason is None  # a timeout is not a refusal: no SSE attempt that would hang too
        assert "connect_timeout" in str(r.error) and time.perf_counter() - t0 < 3
        r = await s.arespond("hello?", transport="sse")
        assert r.error.__class__.__name__ == "StreamTimeoutError" and r.error.phase == "first_event"
    finally:
        await s.aclose()


async def test_sse_answer_that_is_not_an_event_stream(echo_server):
    base, mode = echo_server
    mode["sse"] = "json"
    s = ResponsesSession(base_url=base, api_key=KEY)
    try:
        r = await s.arespond("hi", transport="sse")
        assert r.error.__class__.__name__ == "ProtocolError" and "event stream" in str(r.error)
    finally:
        await s.aclose()


# --- §3.4 / §5 Stop: stopping from code that runs on the I/O loop (an on_event or done callback) --------------
# Once a bug (fixed in 4084bb5): ResponsesSession.stop_all() called on the I/O loop thread (from an on_event
# callback) blocked that loop in TurnHandle._done.wait(1.0) for every in-flight turn; the turns can only end on
# that loop, so every stream of the process froze for 1 s per turn. On the loop thread it does not wait.


def _slow_emulator() -> Emulator:
    return Emulator(api_key=KEY, token_rate=300.0, answer_words=80)  # ~150 deltas: time to stop mid-stream


def _bounded_session(emu: Emulator) -> ResponsesSession:
    return new_session(emu, KEY)


def test_stop_all_from_an_event_callback_does_not_freeze_the_loop():
    with _slow_emulator().run_in_thread() as slow_emu:
        s = _bounded_session(slow_emu)
        took: list[float] = []

        def on_event(item) -> None:
            if getattr(item, "type", "") == "response.output_text.delta" and not took:
                t0 = time.perf_counter()
                s.stop_all()
                took.append(time.perf_counter() - t0)

        try:
            r = s.start("stop me from the callback", on_event=on_event).result(timeout=10)
            assert r.status == "cancelled" and r.error is None
            assert took[0] < 0.25
        finally:
            s.close()


def test_cancel_from_a_callback_returns_at_once() -> None:
    with _slow_emulator().run_in_thread() as slow, _bounded_session(slow) as s:
        took: list[float] = []
        box: dict = {}
        ready = threading.Event()

        def on_event(item) -> None:
            ready.wait(5)
            if getattr(item, "delta", None) and not took:
                t0 = time.perf_counter()
                box["confirmed"] = box["h"].cancel(wait=5.0)
                took.append(time.perf_counter() - t0)

        box["h"] = s.start("stop me", on_event=on_event)
        ready.set()
        r = box["h"].result(timeout=10)
    assert r.status == "cancelled" and took[0] < 0.25 and box["confirmed"] is False


# --- §3.3 / §3.6: the defaults keep every wait bounded and rotate before the server's 60-minute cap ----------


def test_defaults_bound_every_wait_and_rotate_before_the_cap():
    from ipy_responses_ws.config import Settings

    d = Settings()
    assert d.max_connection_age <= 3600 - 60  # livekit's 3600 s equals the cap; ours leaves a margin
    for name in ("connect_timeout", "first_event_timeout", "idle_timeout"):
        assert 0 < getattr(d, name) <= 600, name  # nothing can hang a cell for ever
    assert d.heartbeat is not None and d.heartbeat < d.idle_timeout  # a dead peer is noticed mid-turn
    assert d.fallback_to_sse and d.transport == "ws" and d.store is True
