"""HTTP side of the emulator (SSE and JSON), its control plane, pacing, and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest
from emulator_fixtures import FAKE_KEY, parse_sse, validate_event

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.emulator.model import split_deltas

AUTH = {"Authorization": f"Bearer {FAKE_KEY}"}


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def emu():
    async with Emulator(api_key=FAKE_KEY).serve() as server:
        yield server


def body(input_: Any = "hi", **kw: Any) -> dict[str, Any]:
    return {"model": "gpt-5-mini", "input": input_, "stream": True, **kw}


async def post(session, emu, payload, headers=AUTH) -> tuple[aiohttp.ClientResponse, list[dict[str, Any]]]:
    async with session.post(emu.base_url + "/responses", json=payload, headers=headers) as resp:
        raw = await resp.read()
    if resp.status != 200 or not payload.get("stream"):
        return resp, [json.loads(raw)]
    events = [data for _, data in parse_sse(raw)]
    for event in events:
        validate_event(event, transport="sse")
    return resp, events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


async def test_sse_framing_headers_and_no_done(emu, session):
    resp, events = await post(session, emu, body("Hello there"))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["x-request-id"].startswith("req_") and resp.headers["openai-version"] == "2020-10-01"
    assert int(resp.headers["openai-processing-ms"]) >= 0 and "x-ratelimit-limit-requests" in resp.headers
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed" and text_of(events) == reply_for(["Hello there"])
    assert events[-1]["response"]["completed_at"] >= events[0]["response"]["created_at"]


async def test_non_streaming_post_returns_the_response_json(emu, session):
    resp, (response,) = await post(session, emu, body("plain json", stream=False))
    assert resp.status == 200 and response["status"] == "completed" and response["object"] == "response"
    assert response["output"][0]["content"][0]["text"] == reply_for(["plain json"])
    async with session.get(f"{emu.base_url}/responses/{response['id']}", headers=AUTH) as got:
        assert (await got.json())["id"] == response["id"]


@pytest.mark.parametrize("field", ["generate", "stream_id"])
async def test_ws_only_fields_are_rejected_over_http(emu, session, field):
    resp, (error,) = await post(session, emu, body(**{field: False if field == "generate" else "lane"}))
    assert resp.status == 400 and resp.headers["x-request-id"].startswith("req_")
    assert error["error"] == {
        "message": f"Unknown parameter: '{field}'.",
        "type": "invalid_request_error",
        "param": field,
        "code": "unknown_parameter",
    }


async def test_http_401_is_masked(emu, session):
    wrong = "sk-test-FAKE-wrong-key-99998888"
    resp, (error,) = await post(session, emu, body(), headers={"Authorization": f"Bearer {wrong}"})
    assert resp.status == 401 and error["error"]["code"] == "invalid_api_key"
    assert wrong not in json.dumps(error) and "8888" in error["error"]["message"]
    resp, (error,) = await post(session, emu, body(), headers={})
    assert resp.status == 401 and "didn't provide an API key" in error["error"]["message"]


async def test_429_and_5xx_carry_retry_headers(emu, session):
    emu.add_fault(Fault("error", status=429, transport="sse", headers={"x-should-retry": "false"}))
    resp, (error,) = await post(session, emu, body())
    assert resp.status == 429 and error["error"]["code"] == "rate_limit_exceeded"
    assert resp.headers["retry-after"] == "1" and resp.headers["retry-after-ms"] == "1000"
    assert resp.headers["x-should-retry"] == "false" and resp.headers["x-ratelimit-remaining-requests"] == "0"
    emu.add_fault(Fault("error", status=503, transport="any"))
    resp, (error,) = await post(session, emu, body())
    assert resp.status == 503 and error["error"]["type"] == "server_error"
    assert resp.headers["x-should-retry"] == "true"


async def test_failed_over_sse_has_a_nested_error_first(emu, session):
    emu.add_fault(Fault("failed", after=3, code="server_error"))
    _, events = await post(session, emu, body())
    error, failed = events[-2], events[-1]
    assert error["type"] == "error" and error["error"]["code"] == "server_error"  # nested: real wire shape
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert len(events) == 5


async def test_sse_drop_and_early_close(emu, session):
    emu.add_fault(Fault("drop", after=4, transport="sse"))
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(session, emu, body())
    emu.add_fault(Fault("close", after=4, transport="sse"))
    _, events = await post(session, emu, body())
    assert len(events) == 4 and not any(
        e["type"].endswith(("completed", "failed", "incomplete")) for e in events
    )


async def test_store_false_chain_cannot_be_continued_over_http(emu, session):
    _, events = await post(session, emu, body("forget me", store=False))
    rid = events[-1]["response"]["id"]
    resp, (error,) = await post(session, emu, body("next", previous_response_id=rid))
    assert resp.status == 400 and error["error"]["code"] == "previous_response_not_found"
    assert error["error"]["message"] == f"Previous response with id '{rid}' not found."


async def test_model_features_over_sse(emu, session):
    _, events = await post(session, emu, body("be terse", instructions="Answer like a pirate"))
    assert "Instructions: Answer like a pirate" in text_of(events)
    _, events = await post(session, emu, body("no padding", stream_options={"include_obfuscation": False}))
    assert not any("obfuscation" in e for e in events)
    _, events = await post(session, emu, body("Tell me secrets\n!refuse"))
    refusal = "".join(e["delta"] for e in events if e["type"] == "response.refusal.delta")
    assert refusal == events[-1]["response"]["output"][0]["content"][0]["refusal"] and "can't help" in refusal
    _, events = await post(session, emu, body("long answer please", max_output_tokens=20))
    full = reply_for(["long answer please"])
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert full.startswith(text_of(events)) and 0 < len(text_of(events)) <= 80
    resp, (error,) = await post(session, emu, body("!fault explode"))
    assert resp.status == 400 and "unknown fault kind" in error["error"]["message"]


async def test_prompt_directive_fault_applies_to_that_request_only(emu, session):
    resp, (error,) = await post(session, emu, body("demo\n!fault error status=429"))
    assert resp.status == 429
    _, events = await post(session, emu, body("demo"))
    assert text_of(events) == reply_for(["demo"])  # the directive line is never quoted back


async def test_pacing_ttft_token_rate_and_words(session):
    async with Emulator(ttft=0.3, token_rate=200).serve() as emu:
        start = time.monotonic()
        async with session.post(emu.base_url + "/responses", json=body("paced")) as resp:
            first_delta = None
            async for line in resp.content:
                if first_delta is None and b"output_text.delta" in line:
                    first_delta = time.monotonic() - start
        total = time.monotonic() - start
        deltas = len(split_deltas(reply_for(["paced"])))
        assert first_delta >= 0.3 and total >= 0.3 + (deltas - 1) / 200
        fast = body(
            "fast", metadata={"emulator_ttft": "0", "emulator_token_rate": "0", "emulator_words": "40"}
        )
        start = time.monotonic()
        async with session.post(emu.base_url + "/responses", json=fast) as resp:
            raw = await resp.read()
        assert time.monotonic() - start < total / 2  # the overrides switched pacing off
        events = [data for _, data in parse_sse(raw)]
        assert all(validate_event(e, transport="sse") for e in events)
        assert text_of(events) == reply_for(["fast"], words=40) and len(text_of(events).split()) > 60


async def test_fault_control_endpoint(emu, session):
    origin = emu.base_url.rsplit("/v1", 1)[0]
    spec = {"kind": "error", "status": 500, "transport": "sse", "count": 2}
    async with session.post(origin + "/_emulator/faults", json=spec) as resp:
        assert resp.status == 200 and (await resp.json())["faults"][0]["count"] == 2
    statuses = [(await post(session, emu, body()))[0].status for _ in range(3)]
    assert statuses == [500, 500, 200]
    async with session.post(origin + "/_emulator/faults", json={"kind": "stall", "count": None}) as resp:
        assert (await resp.json())["faults"][0]["count"] is None
    async with session.delete(origin + "/_emulator/faults") as resp:
        assert (await resp.json())["faults"] == []
    async with session.post(origin + "/_emulator/faults", json={"kind": "nope"}) as resp:
        assert resp.status == 400 and "unknown fault kind" in (await resp.json())["error"]


async def test_http_log_records_bodies(emu, session):
    await post(session, emu, body("log me"))
    entry = emu.connections[-1]
    assert entry.transport == "http" and entry.status == 200 and entry.frames[0]["input"] == "log me"
    assert entry.headers["Authorization"] != f"Bearer {FAKE_KEY}" and len(entry.responses) == 1


def test_cli_prints_base_url_first_and_stops_cleanly_on_signals():
    env = {**os.environ, "EMULATOR_API_KEY": FAKE_KEY}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with subprocess.Popen(
            [sys.executable, "-m", "ipy_responses_ws.emulator", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as proc:
            try:
                url = proc.stdout.readline().strip()
                assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")

                async def one_turn(url: str = url) -> str:
                    async with (
                        aiohttp.ClientSession() as s,
                        s.post(url + "/responses", json=body("cli"), headers=AUTH) as r,
                    ):
                        return text_of([d for _, d in parse_sse(await r.read())])

                assert asyncio.run(one_turn()) == reply_for(["cli"])
                proc.send_signal(sig)
                assert proc.wait(timeout=10) == 0
                assert FAKE_KEY not in proc.stderr.read()
            finally:
                if proc.poll() is None:
                    proc.kill()


async def test_models_list_has_the_openai_shape_and_the_same_auth(emu, session):
    from openai.types import Model

    async with session.get(emu.base_url + "/models", headers=AUTH) as resp:
        assert resp.status == 200 and resp.headers["x-request-id"].startswith("req_")
        listing = await resp.json()
    assert listing["object"] == "list" and listing["data"]
    for entry in listing["data"]:
        assert set(entry) == {"id", "object", "created", "owned_by"} and entry["object"] == "model"
        Model.model_validate(entry)
    async with session.get(emu.base_url + "/models/gpt-5-mini", headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["id"] == "gpt-5-mini"
    async with session.get(emu.base_url + "/models/gpt-none", headers=AUTH) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "model_not_found"
    async with session.get(
        emu.base_url + "/models", headers={"Authorization": "Bearer sk-wrong-key-000000"}
    ) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "invalid_api_key"
