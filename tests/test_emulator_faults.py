"""Fault behaviour a client can see: directives from the latest user message only, one-shot faults that
stay armed until a response is long enough, and the ``think`` fault (a reasoning model's long silence)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from emulator_fixtures import FAKE_KEY, parse_sse, validate_event

from ipy_responses_ws.emulator import Emulator, Fault, reply_for

AUTH = {"Authorization": f"Bearer {FAKE_KEY}"}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@pytest.fixture
async def emu():
    async with Emulator(api_key=FAKE_KEY).serve() as server:
        yield server


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def create(input_: Any, **kw: Any) -> dict[str, Any]:
    return {"type": "response.create", "model": "gpt-5-mini", "input": input_, **kw}


async def ws_turn(ws: aiohttp.ClientWebSocketResponse, req: dict[str, Any]) -> list[tuple[float, dict]]:
    """Send a create; return (arrival time, event) until a terminal event, or until the socket ends."""
    await ws.send_json(req)
    out = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return out
        event = json.loads(msg.data)
        validate_event(event, transport="ws")
        out.append((time.monotonic(), event))
        if event["type"] in TERMINAL or (event["type"] == "error" and "sequence_number" not in event):
            return out


async def sse_turn(session, emu, payload: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    async with session.post(emu.base_url + "/responses", json=payload, headers=AUTH) as resp:
        raw = await resp.read()
    if resp.status != 200:
        return resp.status, [json.loads(raw)]
    return 200, [data for _, data in parse_sse(raw)]


def transcript(*turns: str) -> list[dict[str, Any]]:
    """A full resend: every user turn with the emulator's answer in between, the last one unanswered."""
    items: list[dict[str, Any]] = []
    for i, text in enumerate(turns):
        items.append({"role": "user", "content": text})
        if i < len(turns) - 1:
            items.append({"role": "assistant", "content": reply_for(list(turns[: i + 1]))})
    return items


async def test_a_resent_transcript_does_not_fire_old_directives(emu, session):
    old = "first\n!fault drop after=3"
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        events = [e for _, e in await ws_turn(ws, create(transcript(old, "second")))]
        assert events[-1]["type"] == "response.completed"
        status, sse = await sse_turn(
            session, emu, {"model": "m", "input": transcript(old, "third"), "stream": True}
        )
        assert status == 200 and sse[-1]["type"] == "response.completed"
        assert sse[-1]["response"]["output"][0]["content"][0]["text"] == reply_for([old, "third"])
        # The directive in the latest user message still fires.
        dropped = await ws_turn(ws, create(transcript("fine", "now\n!fault drop after=3")))
    assert len(dropped) == 3 and emu.connections[0].server_close_code == 1006


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_a_one_shot_fault_beyond_a_short_response_waits_for_a_long_one(emu, session, transport):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        short = len(await ws_turn(ws, create("hi")))
    after = short + 10
    emu.add_fault(Fault("drop", after=after, transport=transport))
    long_metadata = {"emulator_words": "300"}
    if transport == "ws":
        async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
            first = await ws_turn(ws, create("hi"))
            assert first[-1][1]["type"] == "response.completed"  # too short: the fault did not strike...
            assert [f.kind for f in emu.faults.snapshot()] == ["drop"]  # ...and is still armed
            second = await ws_turn(ws, create("hi", metadata=long_metadata))
        assert len(second) == after and second[-1][1]["type"] != "response.completed"
    else:
        status, first = await sse_turn(session, emu, {"model": "m", "input": "hi", "stream": True})
        assert status == 200 and first[-1]["type"] == "response.completed"
        assert [f.kind for f in emu.faults.snapshot()] == ["drop"]
        with pytest.raises(aiohttp.ClientPayloadError):
            await sse_turn(
                session, emu, {"model": "m", "input": "hi", "stream": True, "metadata": long_metadata}
            )
    assert emu.faults.snapshot() == []  # used up once it struck


async def test_a_counted_fault_that_did_not_strike_keeps_its_count(emu, session):
    emu.add_fault(Fault("drop", after=10_000, count=2, transport="ws"))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        for _ in range(3):
            assert (await ws_turn(ws, create("hi")))[-1][1]["type"] == "response.completed"
    assert [(f.kind, f.count) for f in emu.faults.snapshot()] == [("drop", 2)]


def _think_gap(events: list[tuple[float, dict]]) -> tuple[list[str], float]:
    kinds = [e["type"] for _, e in events]
    i = kinds.index("response.output_item.added")
    assert events[i][1]["item"]["type"] == "reasoning"
    return kinds[: i + 2], events[i + 1][0] - events[i][0]


async def test_think_fault_is_silence_after_the_reasoning_item_starts(emu, session):
    emu.add_fault(Fault("think", seconds=0.8, transport="ws"))
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        events = await ws_turn(ws, create("ponder"))
    kinds, gap = _think_gap(events)
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",  # the reasoning item ends only after the silence
    ]
    assert gap >= 0.75 and events[1][0] - events[0][0] < 0.3
    text = "".join(e["delta"] for _, e in events if e["type"] == "response.output_text.delta")
    assert text == reply_for(["ponder"]) and events[-1][1]["type"] == "response.completed"


async def test_think_directive_and_control_plane_over_sse(emu, session):
    started = time.monotonic()
    status, events = await sse_turn(
        session, emu, {"model": "m", "input": "hmm\n!fault think 0.6", "stream": True}
    )
    assert status == 200 and time.monotonic() - started >= 0.55
    assert events[2]["type"] == "response.output_item.added" and events[2]["item"]["type"] == "reasoning"
    root = emu.base_url.removesuffix("/v1")
    async with session.post(root + "/_emulator/faults", json={"kind": "think", "seconds": 0.6}) as resp:
        assert (await resp.json())["faults"][0]["kind"] == "think"
    started = time.monotonic()
    status, events = await sse_turn(session, emu, {"model": "m", "input": "again", "stream": True})
    assert status == 200 and time.monotonic() - started >= 0.55 and events[-1]["type"] == "response.completed"
