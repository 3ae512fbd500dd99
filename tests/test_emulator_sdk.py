"""Conformance: the official openai SDK (>= 3.54) as an independent client of the emulator.

Every event the SDK receives is validated strictly against its SDK class chosen by ``type``
(tests/emulator_fixtures.py). SSE events are checked through ``to_dict()`` of what the SDK parsed; WS
frames are checked raw (``recv_bytes``) before the SDK parses them.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
import websockets
from emulator_fixtures import FAKE_KEY, validate_event

from ipy_responses_ws.emulator import Emulator, Fault, reply_for

TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@pytest.fixture(scope="module")
def emu():
    with Emulator(api_key=FAKE_KEY).run_in_thread() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_leftover_faults(emu):
    emu.clear_faults()
    yield
    emu.clear_faults()


@pytest.fixture
def client(emu):
    with openai.OpenAI(base_url=emu.base_url, api_key=FAKE_KEY, max_retries=0) as c:
        yield c


def _text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def _sse_turn(client: openai.OpenAI, **kw: Any) -> list[dict[str, Any]]:
    events = []
    with client.responses.create(stream=True, model="gpt-5-mini", **kw) as stream:
        for ev in stream:
            payload = ev.to_dict()
            validate_event(payload, transport="sse")
            events.append(payload)
    return events


def _ws_turn(conn: Any, **kw: Any) -> list[dict[str, Any]]:
    conn.response.create(model="gpt-5-mini", **kw)
    events = []
    while True:
        payload = json.loads(conn.recv_bytes())
        validate_event(payload, transport="ws")
        assert conn.parse_event(json.dumps(payload)).type == payload["type"]
        events.append(payload)
        if payload["type"] in TERMINAL or payload["type"] == "error":
            return events


def test_sse_multi_turn_answers_reflect_the_chain(client):
    first = _sse_turn(client, input="What is a WebSocket?")
    assert [e["sequence_number"] for e in first] == list(range(len(first)))
    assert first[-1]["type"] == "response.completed"
    assert _text_of(first) == reply_for(["What is a WebSocket?"])
    deltas = [e for e in first if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 20 and all(len(d["delta"]) + len(d["obfuscation"]) == 16 for d in deltas)

    second = _sse_turn(client, input="And SSE?", previous_response_id=first[-1]["response"]["id"])
    text = _text_of(second)
    assert text == reply_for(["What is a WebSocket?", "And SSE?"])
    assert "Turn 2" in text and "1. What is a WebSocket?" in text
    assert second[-1]["response"]["previous_response_id"] == first[-1]["response"]["id"]


def test_ws_multi_turn_on_one_connection_uses_the_cache(client, emu):
    with client.responses.connect() as conn:
        first = _ws_turn(conn, input="hello", store=False)
        second = _ws_turn(conn, input="again", store=False, previous_response_id=first[-1]["response"]["id"])
    assert _text_of(first) == reply_for(["hello"])
    assert _text_of(second) == reply_for(["hello", "again"])
    assert all("stream_id" not in e for e in first + second)  # default lane: never tagged
    usage = second[-1]["response"]["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == first[-1]["response"]["usage"]["total_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] < usage["input_tokens"]
    log = emu.connections[-1]
    assert log.transport == "ws" and log.close_code == 1000  # the SDK closes normally
    assert [f["input"] for f in log.frames] == ["hello", "again"]


def test_ws_store_false_chain_does_not_survive_a_new_connection(client):
    with client.responses.connect() as conn:
        first = _ws_turn(conn, input="secret plan", store=False)
    with client.responses.connect() as conn:
        err = _ws_turn(conn, input="next", store=False, previous_response_id=first[-1]["response"]["id"])
    assert len(err) == 1 and err[0]["type"] == "error" and err[0]["status"] == 400
    assert err[0]["error"]["code"] == "previous_response_not_found"
    assert (
        err[0]["error"]["message"] == f"Previous response with id '{first[-1]['response']['id']}' not found."
    )


def test_store_true_chain_crosses_transports(client):
    with client.responses.connect() as conn:
        first = _ws_turn(conn, input="over ws")
    second = _sse_turn(client, input="over sse", previous_response_id=first[-1]["response"]["id"])
    assert _text_of(second) == reply_for(["over ws", "over sse"])
    assert (
        second[-1]["response"]["usage"]["input_tokens_details"]["cached_tokens"] == 0
    )  # hydrated, not cached


def test_sse_previous_response_not_found_is_http_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        _sse_turn(client, input="x", previous_response_id="resp_missing")
    assert info.value.status_code == 400
    assert info.value.code == "previous_response_not_found"
    assert info.value.param == "previous_response_id"


def test_wrong_key_is_401_on_both_transports_and_never_echoed(emu):
    wrong = "sk-test-FAKE-WRONGKEY-777777777"
    with openai.OpenAI(base_url=emu.base_url, api_key=wrong, max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            _sse_turn(bad, input="x")
        assert info.value.code == "invalid_api_key"
        assert wrong not in str(info.value) and "sk-tes***...7777" in str(info.value)
        with pytest.raises(websockets.exceptions.InvalidStatus) as ws_info, bad.responses.connect() as conn:
            _ws_turn(conn, input="x")
    assert ws_info.value.response.status_code == 401
    assert wrong not in ws_info.value.response.body.decode()
    assert all(wrong not in json.dumps(c.to_dict()) for c in emu.connections)


def test_rate_limit_429_over_sse_and_ws(client, emu):
    emu.add_fault(Fault("error", status=429, transport="sse"))
    with pytest.raises(openai.RateLimitError) as info:
        _sse_turn(client, input="x")
    assert info.value.response.headers["retry-after-ms"] == "1000"
    assert info.value.response.headers["x-request-id"].startswith("req_")
    emu.add_fault(Fault("error", status=429, transport="ws"))
    with client.responses.connect() as conn:
        events = _ws_turn(conn, input="x", stream_id="lane-1")
        after = _ws_turn(conn, input="retry", stream_id="lane-1")  # the socket stays usable
    assert events[0]["status"] == 429 and events[0]["error"]["code"] == "rate_limit_exceeded"
    assert events[0]["error"]["headers"]["retry-after"] == "1"
    assert events[0]["stream_id"] == "lane-1"
    assert _text_of(after) == reply_for(["retry"])


def test_connection_limit_error_then_normal_close(client, emu):
    emu.add_fault(Fault("cap", responses=1))
    with client.responses.connect() as conn:
        ok = _ws_turn(conn, input="one")
        capped = _ws_turn(conn, input="two")
        with pytest.raises(websockets.exceptions.ConnectionClosedOK):
            conn.recv_bytes()
    assert ok[-1]["type"] == "response.completed"
    assert capped[0]["error"]["code"] == "websocket_connection_limit_reached"
    assert "stream_id" not in capped[0]
    assert emu.connections[-1].server_close_code == 1000


def test_generate_false_warmup_then_chain(client):
    with client.responses.connect() as conn:
        warm = _ws_turn(
            conn, input="Background: we talk about sockets.", generate=False, instructions="Be brief"
        )
        reply = _ws_turn(conn, input="Go on", previous_response_id=warm[-1]["response"]["id"])
    assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
    assert warm[-1]["response"]["output"] == [] and warm[-1]["response"]["usage"]["output_tokens"] == 0
    assert _text_of(reply) == reply_for(["Background: we talk about sockets.", "Go on"])


def test_function_call_round_trip(client):
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    with client.responses.connect() as conn:
        call_turn = _ws_turn(conn, input="Use get_weather for Paris", tools=tools)
        call = call_turn[-1]["response"]["output"][0]
        assert call["type"] == "function_call" and call["name"] == "get_weather"
        assert json.loads(call["arguments"]) == {"city": "Use get_weather for Paris"}
        output = [{"type": "function_call_output", "call_id": call["call_id"], "output": "18 C, sunny"}]
        answer = _ws_turn(
            conn, input=output, tools=tools, previous_response_id=call_turn[-1]["response"]["id"]
        )
    text = _text_of(answer)
    assert text == reply_for(["Use get_weather for Paris"], tool_results=[(call["call_id"], "18 C, sunny")])
    assert "18 C, sunny" in text


async def test_async_sdk_lanes_interleave_and_are_tagged(emu):
    async with (
        openai.AsyncOpenAI(base_url=emu.base_url, api_key=FAKE_KEY, max_retries=0) as client,
        client.responses.connect() as conn,
    ):
        slow = {"emulator_token_rate": "200"}  # ~0.3 s per lane: overlap is certain
        await conn.response.create(model="m", input="lane A", stream_id="a", metadata=slow)
        await conn.response.create(model="m", input="lane B", stream_id="b", metadata=slow)
        events: list[dict[str, Any]] = []
        done = set()
        while len(done) < 2:
            payload = json.loads(await conn.recv_bytes())
            validate_event(payload, transport="ws")
            events.append(payload)
            if payload["type"] in TERMINAL:
                done.add(payload["stream_id"])
    lanes = [e["stream_id"] for e in events]
    assert set(lanes) == {"a", "b"}
    first_b, last_a = lanes.index("b"), len(lanes) - 1 - lanes[::-1].index("a")
    assert first_b < last_a, lanes  # the two lanes really ran at the same time
    for lane, prompt in (("a", "lane A"), ("b", "lane B")):
        mine = [e for e in events if e["stream_id"] == lane]
        assert [e["sequence_number"] for e in mine] == list(range(len(mine)))
        assert _text_of(mine) == reply_for([prompt])


async def test_async_sdk_sse_stream(emu):
    async with openai.AsyncOpenAI(base_url=emu.base_url, api_key=FAKE_KEY, max_retries=0) as client:
        stream = await client.responses.create(
            model="m", input="async hello", stream=True, reasoning={"effort": "low", "summary": "auto"}
        )
        events = []
        async for ev in stream:
            payload = ev.to_dict()
            validate_event(payload, transport="sse")
            events.append(payload)
    kinds = [e["type"] for e in events]
    assert "response.reasoning_summary_text.delta" in kinds
    assert kinds.index("response.reasoning_summary_part.done") < kinds.index("response.content_part.added")
    usage = events[-1]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0
    assert _text_of(events) == reply_for(["async hello"])
