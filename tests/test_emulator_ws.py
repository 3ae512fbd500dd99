"""Wire-level WebSocket tests with raw aiohttp: what the SDK does not expose.

Handshake refusals, drops and close codes, malformed frames, deflate, queueing and stale events, lanes and
their limits, the lifetime cap, frame-size limits, cache eviction and forks. Every JSON event is validated
against the SDK class for its type.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from emulator_fixtures import FAKE_KEY, validate_event

from ipy_responses_ws.emulator import Emulator, Fault, reply_for

AUTH = {"Authorization": f"Bearer {FAKE_KEY}"}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def emu():
    async with Emulator(api_key=FAKE_KEY).serve() as server:
        yield server


def create(input_: Any = "hi", **kw: Any) -> dict[str, Any]:
    return {"type": "response.create", "model": "gpt-5-mini", "input": input_, **kw}


async def recv_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), 10)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    event = json.loads(msg.data)
    validate_event(event, transport="ws")
    return event


async def read_turn(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Events until a terminal event or a request-level error (one without sequence_number)."""
    events = []
    while True:
        event = await recv_event(ws)
        events.append(event)
        if event["type"] in TERMINAL or (event["type"] == "error" and "sequence_number" not in event):
            return events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


@pytest.mark.parametrize("status", [426, 404, 503])
async def test_upgrade_refused_with_status(emu, session, status):
    emu.add_fault(Fault("refuse_upgrade", status=status))
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(emu.ws_url, headers=AUTH)
    assert info.value.status == status
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:  # one-shot: the next upgrade works
        await ws.send_json(create())
        assert (await read_turn(ws))[-1]["type"] == "response.completed"


async def test_bad_key_gets_plain_401_on_upgrade_with_masked_message(emu, session):
    wrong = "sk-test-FAKE-not-the-right-one-4321"
    async with session.get(emu.ws_url.replace("ws", "http", 1), headers={
        "Authorization": f"Bearer {wrong}", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
    }) as resp:  # fmt: skip
        body = await resp.json()
        assert resp.status == 401 and resp.headers["x-request-id"].startswith("req_")
    assert body["error"]["code"] == "invalid_api_key"
    assert wrong not in json.dumps(body) and "sk-tes***...4321" in body["error"]["message"]
    logged = emu.connections[-1]
    assert logged.status == 401 and logged.headers["Authorization"] == "Bearer sk-tes***...4321"


async def test_unauthorized_fault_on_demand(session):
    async with Emulator().serve() as emu:  # no key configured: everything is accepted...
        emu.add_fault(Fault("unauthorized", transport="ws"))
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(emu.ws_url)
        assert info.value.status == 401  # ...except on demand


async def test_drop_after_n_events_is_abrupt(emu, session):
    emu.add_fault(Fault("drop", after=5))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create())
        frames = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), 10)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frames.append(json.loads(msg.data))
    assert len(frames) == 5
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert ws.close_code == 1006  # no close frame arrived
    assert emu.connections[-1].server_close_code == 1006


@pytest.mark.parametrize("code", [1011, 1000, 1001])
async def test_close_with_code_after_n_events(emu, session, code):
    emu.add_fault(Fault("close", code=code, after=3))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create())
        kinds = [(await recv_event(ws))["type"] for _ in range(3)]
        msg = await asyncio.wait_for(ws.receive(), 10)
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added"]
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code


async def test_malformed_frames(emu, session):
    emu.add_fault(Fault("malformed", variant="json", after=2))
    emu.add_fault(Fault("malformed", variant="binary", after=2))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        for expected in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            await ws.send_json(create())
            await recv_event(ws), await recv_event(ws)
            bad = await ws.receive()
            assert bad.type == expected
            if expected == aiohttp.WSMsgType.TEXT:
                with pytest.raises(ValueError):
                    json.loads(bad.data)
            rest = await read_turn(ws)  # the response carries on after the bad frame
            assert rest[-1]["type"] == "response.completed" and rest[0]["sequence_number"] == 2
    emu.add_fault(Fault("malformed", variant="utf8", after=0))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create())
        bad = await ws.receive()
    assert bad.type == aiohttp.WSMsgType.ERROR  # invalid UTF-8 in a text frame: a protocol error
    assert ws.close_code == 1007


async def test_stall_goes_silent_then_carries_on(emu, session):
    emu.add_fault(Fault("stall", seconds=0.5, after=2))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create())
        await recv_event(ws), await recv_event(ws)
        start = time.monotonic()
        third = await recv_event(ws)
        gap = time.monotonic() - start
        rest = await read_turn(ws)
    assert gap >= 0.45 and third["sequence_number"] == 2
    assert rest[-1]["type"] == "response.completed"


async def test_error_mid_stream_then_failed(emu, session):
    emu.add_fault(Fault("error", status=500, after=4))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create(stream_id="s1"))
        events = await read_turn(ws)
    error, failed = events[-2], events[-1]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert error["type"] == "error" and error["status"] == 500 and error["error"]["code"] == "server_error"
    assert failed["type"] == "response.failed" and failed["response"]["error"]["code"] == "server_error"
    assert {e["stream_id"] for e in events} == {"s1"}


async def test_permessage_deflate_is_negotiated_when_offered(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH, compress=15) as ws:
        assert ws.compress == 15
        await ws.send_json(create("compressed please"))
        events = await read_turn(ws)
    assert text_of(events) == reply_for(["compressed please"])
    async with session.ws_connect(emu.ws_url, headers=AUTH, compress=0) as ws:
        assert ws.compress == 0  # and clients without it (SDK 3.54.0) work too
        await ws.send_json(create())
        assert (await read_turn(ws))[-1]["type"] == "response.completed"


async def test_log_records_handshake_frames_and_client_close_code(emu, session):
    async with session.ws_connect(
        emu.ws_url, headers={**AUTH, "OpenAI-Beta": "responses_websockets=2026-02-06"}
    ) as ws:
        await ws.send_json(create("logged"))
        await read_turn(ws)
        await ws.close(code=1000)
    entry = emu.connections[-1]
    assert entry.transport == "ws" and entry.status == 101
    assert entry.headers["Authorization"] == "Bearer sk-tes***...cdef"
    assert entry.headers["OpenAI-Beta"] == "responses_websockets=2026-02-06"
    assert entry.frames[0]["input"] == "logged" and entry.close_code == 1000
    async with session.get(emu.base_url.rsplit("/v1", 1)[0] + "/_emulator/log") as resp:
        text = await resp.text()
    assert FAKE_KEY not in text and '"close_code":1000' in text


async def test_default_lane_queues_a_second_create_behind_an_abandoned_one(emu, session):
    """§1.8 / pitfall 3: the old response's remaining events arrive before the new one's."""
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create("first", metadata={"emulator_token_rate": "400"}))
        early = [await recv_event(ws) for _ in range(6)]  # read a little, then "abandon" it
        await ws.send_json(create("second"))
        rest = await read_turn(ws)
        second = await read_turn(ws)
    first_id = early[0]["response"]["id"]
    assert rest[-1]["type"] == "response.completed" and rest[-1]["response"]["id"] == first_id
    assert text_of(early + rest) == reply_for(["first"])  # stale events of the abandoned response
    assert second[0]["response"]["id"] != first_id and text_of(second) == reply_for(["second"])


async def test_strict_lanes_gateway_mode_rejects_a_busy_lane(session):
    async with Emulator(strict_lanes=True).serve() as emu, session.ws_connect(emu.ws_url) as ws:
        await ws.send_json(create("one", metadata={"emulator_token_rate": "100"}))
        await ws.send_json(create("two"))
        events = []
        while not events or events[-1]["type"] != "response.completed":
            events.append(await recv_event(ws))
    rejected = [e for e in events if e["type"] == "error"]
    assert len(rejected) == 1 and rejected[0]["error"]["code"] == "response_already_in_flight"
    assert text_of(events) == reply_for(["one"])


async def test_stream_id_validation_and_the_32_lane_limit(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        for bad in ("", "has space", "x" * 257, 7):
            await ws.send_json(create(stream_id=bad))
            err = await recv_event(ws)
            assert err["error"]["code"] == "invalid_stream_id" and "stream_id" not in err
        for i in range(32):
            await ws.send_json(create(f"lane {i}", stream_id=f"lane.{i}", generate=False))
        done = 0
        while done < 32:
            done += (await recv_event(ws))["type"] == "response.completed"
        await ws.send_json(create(stream_id="lane-33"))
        err = await recv_event(ws)
        await ws.send_json(create("still fine", stream_id="lane.7"))  # known lanes keep working
        again = await read_turn(ws)
    assert err["error"]["code"] == "websocket_stream_limit_reached" and err["stream_id"] == "lane-33"
    assert text_of(again) == reply_for(["still fine"])


async def test_at_most_16_responses_are_active_per_connection(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        for i in range(20):
            await ws.send_json(create(f"p{i}", stream_id=f"l{i}", metadata={"emulator_token_rate": "100"}))
        active, peak, done = set(), 0, 0
        while done < 20:
            ev = await recv_event(ws)
            if ev["type"] == "response.created":
                active.add(ev["stream_id"])
                peak = max(peak, len(active))
            elif ev["type"] == "response.completed":
                active.discard(ev["stream_id"])
                done += 1
    assert peak == 16  # the rest were queued, not rejected


async def test_connection_age_cap(session):
    async with Emulator(max_connection_age=1.0).serve() as emu, session.ws_connect(emu.ws_url) as ws:
        await ws.send_json(create("before"))
        assert (await read_turn(ws))[-1]["type"] == "response.completed"
        await asyncio.sleep(1.05)
        await ws.send_json(create("after", stream_id="x"))
        err = await recv_event(ws)
        closing = await ws.receive()
    assert err == {
        "type": "error",
        "status": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "websocket_connection_limit_reached",
            "message": "Responses websocket connection limit reached (1 seconds). "
            "Create a new websocket connection to continue.",
            "param": None,
        },
    }
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1000


async def test_bad_client_frames_get_errors_and_the_socket_stays_open(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_str("{not json")
        bad_json = await recv_event(ws)
        await ws.send_json({"type": "response.cancel"})
        unknown = await recv_event(ws)
        await ws.send_json(create(background=True))
        background = await recv_event(ws)
        await ws.send_json(create("fine", stream=True))  # `stream` is accepted and ignored
        ok = await read_turn(ws)
    assert bad_json["status"] == 400 and bad_json["error"]["type"] == "invalid_request_error"
    assert unknown["status"] == 400 and unknown["error"]["param"] == "type"
    assert background["error"]["param"] == "background"
    assert text_of(ok) == reply_for(["fine"])


async def test_inbound_frame_limit_closes_1009_and_big_frames_pass_by_default(session):
    big = "x" * (3 * 1024 * 1024)
    async with Emulator().serve() as emu, session.ws_connect(emu.ws_url, max_msg_size=0) as ws:
        await ws.send_json(create(big))
        events = await read_turn(ws)
    assert events[-1]["type"] == "response.completed"
    assert text_of(events) == reply_for([big]) and f"({len(big) - 1000} more characters)" in text_of(events)
    async with Emulator(max_frame_size=1024).serve() as emu, session.ws_connect(emu.ws_url) as ws:
        await ws.send_json(create("y" * 2048))
        msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009


async def test_failed_same_lane_continuation_evicts_but_a_failed_fork_does_not(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create("root", store=False, stream_id="a"))
        root = (await read_turn(ws))[-1]["response"]["id"]
        # A failed cross-lane fork leaves the parent in place (§1.7).
        emu.add_fault(Fault("error", status=500))
        await ws.send_json(create("fork", store=False, stream_id="b", previous_response_id=root))
        assert (await read_turn(ws))[-1]["status"] == 500
        await ws.send_json(create("fork again", store=False, stream_id="b", previous_response_id=root))
        assert text_of(await read_turn(ws)) == reply_for(["root", "fork again"])
        # A failed same-lane continuation evicts it.
        emu.add_fault(Fault("error", status=500))
        await ws.send_json(create("next", store=False, stream_id="a", previous_response_id=root))
        assert (await read_turn(ws))[-1]["status"] == 500
        await ws.send_json(create("retry", store=False, stream_id="a", previous_response_id=root))
        miss = await read_turn(ws)
    assert miss[-1]["error"]["code"] == "previous_response_not_found" and miss[-1]["stream_id"] == "a"


async def test_fork_fails_once_the_source_lane_advanced(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create("one", store=False, stream_id="src"))
        one = (await read_turn(ws))[-1]["response"]["id"]
        await ws.send_json(create("two", store=False, stream_id="src", previous_response_id=one))
        two = await read_turn(ws)
        await ws.send_json(create("fork", store=False, stream_id="fork", previous_response_id=one))
        fork = await read_turn(ws)
    assert text_of(two) == reply_for(["one", "two"])
    assert fork[-1]["error"]["code"] == "previous_response_not_found"


async def test_steer_is_answered_with_steering_not_supported(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json({"type": "response.steer", "previous_response_id": "resp_x", "input": "faster"})
        event = await recv_event(ws)
    assert event["type"] == "response.steer.failed" and event["error"]["code"] == "steering_not_supported"


async def test_pings_are_answered(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH, autoping=False) as ws:
        await ws.ping(b"are you there")
        pong = await asyncio.wait_for(ws.receive(), 5)
    assert pong.type == aiohttp.WSMsgType.PONG and pong.data == b"are you there"


async def test_incomplete_content_filter_fault(emu, session):
    emu.add_fault(Fault("incomplete", after=5, transport="ws"))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create("filtered", store=False))
        events = await read_turn(ws)
        await ws.send_json(create("next", store=False, previous_response_id=events[0]["response"]["id"]))
        after = await read_turn(ws)
    assert len(events) == 6 and events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "content_filter"}
    assert after[-1]["error"]["code"] == "previous_response_not_found"  # a cut turn is no base to build on


async def test_scripted_mode_sends_exactly_the_script(emu, session):
    done = {"id": "resp_scripted1", "object": "response", "created_at": 1, "model": "m", "status": "completed",
            "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}  # fmt: skip
    emu.add_script(
        [{"type": "response.created", "response": done}, {"type": "response.completed", "response": done}]
    )
    emu.add_script([{"type": "response.done", "response": done}], transport="sse")  # not for WS
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        await ws.send_json(create("ignored by the script", stream_id="s"))
        scripted = await read_turn(ws)
        await ws.send_json(create("continue", stream_id="s", previous_response_id="resp_scripted1"))
        generated = await read_turn(ws)
    assert [(e["type"], e["sequence_number"], e["stream_id"]) for e in scripted] == [
        ("response.created", 0, "s"),
        ("response.completed", 1, "s"),
    ]
    assert text_of(generated) == reply_for(["ignored by the script", "continue"])
    async with session.post(
        emu.base_url + "/responses", json={**create(), "stream": True}, headers=AUTH
    ) as r:
        assert b"event: response.done\n" in await r.read()


async def test_stopping_the_emulator_closes_sockets_with_1001_and_does_not_hang(session):
    emu = Emulator()
    async with emu.serve():
        ws = await session.ws_connect(emu.ws_url)
        emu.add_fault(Fault("stall", seconds=30, transport="sse"))
        stalled = asyncio.create_task(
            session.post(emu.base_url + "/responses", json={"input": "x", "stream": True})
        )
        await asyncio.sleep(0.2)
        start = time.monotonic()
    assert time.monotonic() - start < 3
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    await ws.close()
    with pytest.raises(aiohttp.ClientError):
        resp = await stalled
        await resp.read()
