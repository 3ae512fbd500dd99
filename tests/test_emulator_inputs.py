"""What the emulator does with input items a client sends back: encrypted reasoning, items it cannot find,
and context that repeats its parent's output (the ``duplicated_context`` log flag)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from emulator_fixtures import FAKE_KEY, parse_sse, validate_event

from ipy_responses_ws.emulator import Emulator, reply_for

AUTH = {"Authorization": f"Bearer {FAKE_KEY}"}
ENC = ["reasoning.encrypted_content"]
REASONING = {"effort": "low", "summary": "auto"}
TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]


@pytest.fixture
async def emu():
    async with Emulator(api_key=FAKE_KEY).serve() as server:
        yield server


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def post(session, emu, **body: Any) -> tuple[int, Any]:
    """A streamed POST: (200, events) or (status, error body)."""
    body = {"model": "gpt-5-mini", "stream": True, **body}
    async with session.post(emu.base_url + "/responses", json=body, headers=AUTH) as resp:
        raw = await resp.read()
    if resp.status != 200:
        return resp.status, json.loads(raw)
    events = [data for _, data in parse_sse(raw)]
    for event in events:
        validate_event(event, transport="sse")
    return 200, events


async def ws_request(ws: aiohttp.ClientWebSocketResponse, **body: Any) -> list[dict[str, Any]]:
    await ws.send_json({"type": "response.create", "model": "gpt-5-mini", **body})
    events = []
    while True:
        event = json.loads((await ws.receive()).data)
        validate_event(event, transport="ws")
        events.append(event)
        if event["type"] in ("response.completed", "error"):
            return events


def reasoning_items(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e["item"]
        for e in events
        if e["type"].startswith("response.output_item.") and e["item"]["type"] == "reasoning"
    ]


def replay(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items as a stateless client sends them back (reasoning without id, the text as content)."""
    out = []
    for item in output:
        if item["type"] == "reasoning":
            out.append(
                {
                    "type": "reasoning",
                    "summary": item["summary"],
                    "encrypted_content": item["encrypted_content"],
                }
            )
        elif item["type"] == "message":
            out.append({"role": "assistant", "content": item["content"][0]["text"]})
    return out


async def test_include_encrypted_content_marks_every_reasoning_item(emu, session):
    status, events = await post(session, emu, input="think", reasoning=REASONING, include=ENC, store=False)
    items = reasoning_items(events) + [
        i for i in events[-1]["response"]["output"] if i["type"] == "reasoning"
    ]
    assert status == 200 and len(items) == 3  # added, done, and the final output
    assert len({i["encrypted_content"] for i in items}) == 1 and items[0]["encrypted_content"].startswith(
        "gAAAAA"
    )
    _, plain = await post(session, emu, input="think", reasoning=REASONING)
    assert all("encrypted_content" not in i for i in reasoning_items(plain))


async def test_stateless_round_trip_with_encrypted_reasoning_works(emu, session):
    _, first = await post(session, emu, input="one", reasoning=REASONING, include=ENC, store=False)
    items = [{"role": "user", "content": "one"}, *replay(first[-1]["response"]["output"])]
    status, second = await post(
        session,
        emu,
        input=[*items, {"role": "user", "content": "two"}],
        include=ENC,
        store=False,
        reasoning=REASONING,
    )
    assert status == 200
    assert second[-1]["response"]["output"][-1]["content"][0]["text"] == reply_for(["one", "two"])


async def test_forged_encrypted_content_gets_invalid_encrypted_content(emu, session):
    _, first = await post(session, emu, input="one", reasoning=REASONING, include=ENC, store=False)
    token = first[-1]["response"]["output"][0]["encrypted_content"]
    forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
    async with Emulator(api_key=FAKE_KEY).serve() as other:  # another server's key cannot verify it either
        for server, content in ((emu, forged), (other, token)):
            item = {"type": "reasoning", "summary": [], "encrypted_content": content}
            status, body = await post(
                session, server, input=[item, {"role": "user", "content": "x"}], store=False
            )
            assert status == 400 and body["error"]["code"] == "invalid_encrypted_content"
            assert body["error"]["message"] == (
                f"The encrypted content {content[:4]}...{content[-4:]} could not be verified. "
                "Reason: Encrypted content could not be decrypted or parsed."
            )


async def test_reasoning_by_id_without_encrypted_content_under_store_false_is_404(emu, session):
    _, first = await post(session, emu, input="one", reasoning=REASONING, store=False)
    rs_id = first[-1]["response"]["output"][0]["id"]
    item = {"type": "reasoning", "id": rs_id, "summary": []}
    status, body = await post(session, emu, input=[item, {"role": "user", "content": "two"}], store=False)
    assert status == 404
    assert body["error"] == {
        "message": f"Item with id '{rs_id}' not found. Items are not persisted when `store` is set to false. "
        "Try again with `store` set to true, or remove this item from your input.",
        "type": "invalid_request_error",
        "param": "input",
        "code": None,
    }
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:  # the same over WebSocket, wrapped
        (error,) = await ws_request(ws, input=[item, {"role": "user", "content": "two"}], store=False)
    assert error["status"] == 404 and error["error"]["message"].startswith(
        f"Item with id '{rs_id}' not found."
    )


async def test_stored_items_resolve_by_reference_and_unknown_ones_do_not(emu, session):
    _, first = await post(session, emu, input="one", reasoning=REASONING)  # store defaults to true
    rs_id = first[-1]["response"]["output"][0]["id"]
    ref = {"type": "item_reference", "id": rs_id}
    status, _ = await post(
        session, emu, input=[{"role": "user", "content": "one"}, ref, {"role": "user", "content": "2"}]
    )
    assert status == 200
    status, body = await post(session, emu, input=[{"type": "item_reference", "id": "rs_nope"}])
    assert status == 404 and body["error"]["message"] == "Item with id 'rs_nope' not found."


async def test_duplicated_context_is_flagged_in_the_request_log(emu, session):
    async with session.ws_connect(emu.ws_url, headers=AUTH) as ws:
        first = await ws_request(ws, input="call it", tools=TOOLS, tool_choice="required")
        call = first[-1]["response"]["output"][0]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "42"}
        good = await ws_request(
            ws, input=[output], previous_response_id=first[-1]["response"]["id"], tools=TOOLS
        )
        answer = good[-1]["response"]["output"][0]
        # The livekit/agents bug: the assistant message goes out again with previous_response_id.
        resent = {"role": "assistant", "content": answer["content"][0]["text"]}
        dup = await ws_request(
            ws,
            input=[resent, {"role": "user", "content": "more"}],
            previous_response_id=good[-1]["response"]["id"],
        )
        # ...and the function_call item together with its output.
        fc = {"type": "function_call", "call_id": call["call_id"], "name": "lookup", "arguments": "{}"}
        dup2 = await ws_request(
            ws, input=[fc, output], previous_response_id=first[-1]["response"]["id"], tools=TOOLS
        )
    requests = emu.connections[-1].requests
    assert [r["duplicated_context"] for r in requests] == [False, False, True, True]
    assert requests[2]["duplicated_items"] == [answer["id"]] and requests[3]["duplicated_items"] == [
        call["call_id"]
    ]
    assert requests[2]["response_id"] == dup[-1]["response"]["id"]
    assert [r["response_id"] for r in emu.duplicated_context] == [
        dup[-1]["response"]["id"],
        dup2[-1]["response"]["id"],
    ]


async def test_clean_chains_never_flag_duplicated_context(emu, session):
    _, first = await post(session, emu, input="a")
    status, _ = await post(session, emu, input="b", previous_response_id=first[-1]["response"]["id"])
    assert status == 200 and emu.duplicated_context == []
    assert emu.connections[-1].requests[0]["previous_response_id"] == first[-1]["response"]["id"]
