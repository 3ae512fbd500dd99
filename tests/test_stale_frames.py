"""A frame that arrives after its response's terminal event is stale: it is never read as the next answer.

Real gateways do this: some send both ``response.completed`` and a v1 ``response.done`` (PROTOCOL.md §1.2),
or a late ``error`` after the terminal. In 0.1 the next turn on the pooled socket read the stray frame first,
showed the previous answer and committed the wrong id to the chain. The server here is a small aiohttp app on
loopback that answers every ``response.create`` and then sends such strays on the same socket.

A cancelled turn's socket is the other source: the server keeps streaming the abandoned answer into it (there
is no cancel event), so it is closed, never leased again.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from engine_helpers import new_session, wait_for
from inline_server import serve

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.events import ServerEvent

KEY = "sk-test-FAKE-stale-0123456789"
WORDS = 80  # filler words on the slow emulator: ~150 deltas, long enough to interrupt mid-stream


def _events(rid: str, text: str, stream_id: str | None) -> list[dict[str, Any]]:
    resp = {"id": rid, "object": "response", "status": "in_progress", "model": "m", "output": []}
    msg = {"id": f"msg_{rid}", "type": "message", "role": "assistant", "status": "completed"}
    done_resp = {
        **resp,
        "status": "completed",
        "output": [{**msg, "content": [{"type": "output_text", "text": text, "annotations": []}]}],
    }
    evs = [
        {"type": "response.created", "response": resp},
        {"type": "response.in_progress", "response": resp},
        {"type": "response.output_item.added", "output_index": 0, "item": {**msg, "content": []}},
        {"type": "response.output_text.delta", "item_id": msg["id"], "delta": text},
        {"type": "response.completed", "response": done_resp},
    ]
    for i, ev in enumerate(evs):
        ev["sequence_number"] = i
        if stream_id is not None:
            ev["stream_id"] = stream_id
    return evs


def _strays(rid: str, stream_id: str | None, kind: str) -> list[dict[str, Any]]:
    if kind == "legacy_done":
        stray = {"type": "response.done", "response": {"id": rid, "status": "completed", "output": []}}
    else:
        # An error emitted inside the finished response's stream: it carries that stream's next sequence number.
        stray = {"type": "error", "sequence_number": 5, "error": {"type": "server_error", "message": "late"}}
    if stream_id is not None:
        stray["stream_id"] = stream_id
    return [stray]


@contextlib.contextmanager
def straying_server(kind: str) -> Iterator[str]:
    """A WS-mode server that follows every terminal event with a stray frame of *kind*; yields its base URL."""
    counter = itertools.count(1)

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            req = json.loads(msg.data)
            n = next(counter)
            rid = f"resp_{n}"
            sid = req.get("stream_id")
            for ev in _events(rid, f"answer {n}", sid) + _strays(rid, sid, kind):
                await ws.send_str(json.dumps(ev))
        return ws

    app = web.Application()
    app.router.add_get("/v1/responses", ws_handler)
    with serve(app) as base_url:
        yield base_url


@pytest.mark.parametrize("lanes", [False, True], ids=["plain", "lanes"])
@pytest.mark.parametrize("kind", ["legacy_done", "late_error"])
def test_a_stray_frame_after_the_terminal_is_never_the_next_answer(kind: str, lanes: bool) -> None:
    with (
        straying_server(kind) as base_url,
        ResponsesSession(base_url=base_url, api_key=KEY, use_stream_lanes=lanes, pool_size=1) as s,
    ):
        results = [s.respond(f"question {i}") for i in range(1, 4)]
        status = s.status()
    assert [r.text for r in results] == ["answer 1", "answer 2", "answer 3"]
    assert [r.response_id for r in results] == ["resp_1", "resp_2", "resp_3"]
    assert all(r.ok and r.transport == "ws" for r in results)
    assert status["handshakes"] == 1  # one socket served every turn: the strays did not make it dirty
    assert status["chains"]["default"]["previous_response_id"] == "resp_3"


# --- §3.4 / rows 14, 15: a cancelled exchange discards its socket; stale frames are never read -----------


def test_no_stale_frames_after_cancel_even_when_the_pool_is_full() -> None:
    with Emulator(api_key=KEY, token_rate=300.0, answer_words=WORDS).run_in_thread() as slow_emu:
        s = new_session(slow_emu, KEY, pool_size=1)
        try:
            h = s.start("interrupt me", chain="a")
            seen = 0
            while seen < 3:
                item = h.get(timeout=5)
                assert item is not None
                seen += isinstance(item, ServerEvent) and item.type == "response.output_text.delta"
            assert h.cancel(wait=1.0)
            cancelled = h.result(timeout=1)
            assert cancelled.status == "cancelled" and cancelled.error is None and cancelled.text
            # The server keeps streaming the old answer into that socket (there is no cancel event, §1.6).
            # Another chain's turn right away must not read a single frame of it.
            h2 = s.start("fresh question", chain="b")
            items = list(h2.events())
            r = h2.result(timeout=10)
            events = [i for i in items if isinstance(i, ServerEvent)]
            assert r.ok and r.text == reply_for(["fresh question"], words=WORDS)
            assert [e.sequence_number for e in events] == list(range(len(events)))
            ids = {e.response["id"] for e in events if e.response}
            assert ids == {r.response_id} and cancelled.response_id not in ids
            ws = [c for c in slow_emu.connections if c.transport == "ws"]
            dirty = next(c for c in ws if "interrupt me" in json.dumps(c.frames))
            fresh = next(c for c in ws if "fresh question" in json.dumps(c.frames))
            assert fresh is not dirty and len(dirty.frames) == 1  # the dirty socket carried nothing else
            assert wait_for(lambda: dirty.close_code == 1000)  # and it was closed by us, normally
            assert s.chain("a").turns == 0 and s.chain("b").turns == 1
        finally:
            s.close()
