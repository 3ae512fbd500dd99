"""Shared helpers for the reliability and security tests, plus self-tests of those helpers.

The helpers here are *hostile peers*: tiny aiohttp servers, bound to 127.0.0.1 on port 0, that misbehave on
purpose in ways the emulator does not (or should not) cover:

* ``echo_auth``  — answers the WebSocket upgrade and ``POST /v1/responses`` with a 401 whose JSON body quotes
  every request header, ``Authorization`` included. Real proxies do this; the client must redact the key
  before the text reaches an exception, a log line or the notebook (DESIGN.md §6, errors.py docstring).
* ``invalid_utf8``, ``binary``, ``malformed_json``, ``not_an_object`` — accept the upgrade (or the POST) and
  answer the first ``response.create`` with garbage instead of Responses events (PROTOCOL.md §1.12, §2).
* ``huge`` — a valid event stream whose single answer is *huge_bytes* long (5 MB by default).
* ``hostile_meta`` — a small valid answer whose model name, response id and item id carry HTML markup
  (:data:`HOSTILE_META`): the client shows those in its status line and footer.
* ``redirect`` — answers everything with ``307 Temporary Redirect`` to *redirect_to* (another origin: the
  client must not carry the key there).

The self-tests at the bottom prove each mode really misbehaves (with a raw aiohttp client), so a green
hostile-input test means the client coped, not that the server was polite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

CANARY_KEY = "sk-test-FAKE-canary-7f3e9a1c5b2d4e6f8a0b"
"""A fake key that is easy to grep for. It must never show up in anything a user or a log can see."""

HOSTILE_MODES = (
    "echo_auth",
    "invalid_utf8",
    "binary",
    "malformed_json",
    "not_an_object",
    "huge",
    "hostile_meta",
    "redirect",
)
#: Markup a hostile server puts into fields the client displays besides the answer (model, ids, usage).
HOSTILE_META = '<img src=x onerror="window.pwn_meta=1">'


@dataclass
class HostileServer:
    """A misbehaving Responses endpoint on 127.0.0.1; see the module docstring for the modes."""

    mode: str
    huge_bytes: int = 5 * 1024 * 1024
    redirect_to: str = ""
    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- handlers ------------------------------------------------------------------------------------

    def _echo_body(self, request: web.Request) -> str:
        # What a careless proxy does: quote the request back, credentials and all.
        headers = dict(request.headers)
        return json.dumps(
            {
                "error": {
                    "message": f"Unauthorized. Received headers: {headers}; "
                    f"Authorization was {request.headers.get('Authorization')!s}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            {"method": request.method, "path": request.path, "headers": dict(request.headers)}
        )
        if self.mode == "echo_auth":
            return web.Response(status=401, text=self._echo_body(request), content_type="application/json")
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        if request.method == "GET":
            return await self._ws(request)
        return await self._sse(request)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            if self.mode == "invalid_utf8":
                # A TEXT frame whose payload is not UTF-8 (RFC 6455 §8.1 says the peer must fail the
                # connection); aiohttp's public API refuses to build one, so write the frame directly.
                await ws._writer.send_frame(b'{"type":"response.created","x":"\xff\xfe\xfd"}', WSMsgType.TEXT)
            elif self.mode == "binary":
                await ws.send_bytes(b'{"type":"response.created","sequence_number":0}')
            elif self.mode == "malformed_json":
                await ws.send_str('{"type": "response.created", "sequence_number": 0, ')
            elif self.mode == "not_an_object":
                await ws.send_str('["response.created", 0]')
            elif self.mode in ("huge", "hostile_meta"):
                for event in self._events():
                    await ws.send_str(json.dumps(event))
        return ws

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        if self.mode == "invalid_utf8":
            await resp.write(b'event: response.created\ndata: {"type":"response.created","x":"\xff\xfe"}\n\n')
        elif self.mode == "binary":
            await resp.write(b"\x00\x01\x02\xff\xfe" * 64)
        elif self.mode == "malformed_json":
            await resp.write(b'event: response.created\ndata: {"type": "response.created", \n\n')
        elif self.mode == "not_an_object":
            await resp.write(b'event: response.created\ndata: ["response.created", 0]\n\n')
        elif self.mode in ("huge", "hostile_meta"):
            for event in self._events():
                await resp.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        await resp.write_eof()
        return resp

    def _events(self) -> Iterator[dict[str, Any]]:
        if self.mode == "hostile_meta":
            return huge_events(64, model=f"gpt-5-mini{HOSTILE_META}", rid=f"resp_{HOSTILE_META}")
        return huge_events(self.huge_bytes)

    # --- lifecycle -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def run_in_thread(self, *, max_seconds: float = 120.0) -> Iterator[HostileServer]:
        """Serve on a private loop thread; always stopped on exit (and after *max_seconds* at most)."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        runner_box: dict[str, web.AppRunner] = {}

        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            runner_box["r"] = runner
            started.set()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(start())
            # The server stops itself even if a test forgets to leave the context.
            loop.call_later(max_seconds, loop.stop)
            loop.run_forever()
            loop.run_until_complete(runner_box["r"].cleanup())
            loop.close()

        thread = threading.Thread(target=main, name=f"hostile-{self.mode}", daemon=True)
        thread.start()
        if not started.wait(10):
            raise RuntimeError("hostile server did not start")
        try:
            yield self
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


def huge_events(
    total_bytes: int, *, chunk: int = 16_384, model: str = "gpt-5-mini", rid: str = "resp_" + "ab" * 24
) -> Iterator[dict[str, Any]]:
    """A valid-looking text response whose answer is *total_bytes* of ``A``s with HTML sprinkled in."""
    mid = "msg_" + "cd" * 24
    snap = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
    }
    seq = 0

    def ev(kind: str, **kw: Any) -> dict[str, Any]:
        nonlocal seq
        out = {"type": kind, "sequence_number": seq, **kw}
        seq += 1
        return out

    yield ev("response.created", response=snap)
    yield ev(
        "response.output_item.added",
        output_index=0,
        item={"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
    )
    yield ev(
        "response.content_part.added",
        item_id=mid,
        output_index=0,
        content_index=0,
        part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
    )
    piece = ("A" * (chunk - 40)) + " <b>x</b>\n\n"
    sent = 0
    parts = []
    while sent < total_bytes:
        text = piece[: total_bytes - sent]
        parts.append(text)
        sent += len(text)
        yield ev(
            "response.output_text.delta",
            item_id=mid,
            output_index=0,
            content_index=0,
            delta=text,
            logprobs=[],
        )
    full = "".join(parts)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": full}
    yield ev(
        "response.output_text.done", item_id=mid, output_index=0, content_index=0, text=full, logprobs=[]
    )
    yield ev("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=part)
    item = {"id": mid, "type": "message", "status": "completed", "content": [part], "role": "assistant"}
    yield ev("response.output_item.done", output_index=0, item=item)
    usage = {
        "input_tokens": 1,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": total_bytes // 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 1 + total_bytes // 4,
    }
    yield ev("response.completed", response={**snap, "status": "completed", "output": [item], "usage": usage})


# --- self-tests: the hostile peers really are hostile ---------------------------------------------------


async def _ws_first_reply(base_url: str) -> aiohttp.WSMessage | int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(
                base_url.replace("http", "ws") + "/responses",
                headers={"Authorization": f"Bearer {CANARY_KEY}"},
                max_msg_size=0,
            ) as ws:
                await ws.send_str(json.dumps({"type": "response.create", "model": "m", "input": "hi"}))
                return await ws.receive(timeout=5)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_echo_server_really_echoes_the_key() -> None:
    """Without redaction the key *would* leak: the server puts it in the 401 body."""
    with HostileServer("echo_auth").run_in_thread() as srv:
        status = await _ws_first_reply(srv.base_url)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                srv.base_url + "/responses", json={}, headers={"Authorization": f"Bearer {CANARY_KEY}"}
            ) as resp,
        ):
            body = await resp.text()
    assert status == 401
    assert CANARY_KEY in body


@pytest.mark.parametrize(
    ("mode", "expect_type"),
    [
        ("invalid_utf8", WSMsgType.ERROR),
        ("binary", WSMsgType.BINARY),
        ("malformed_json", WSMsgType.TEXT),
        ("not_an_object", WSMsgType.TEXT),
    ],
)
async def test_hostile_ws_frames_are_what_they_claim(mode: str, expect_type: WSMsgType) -> None:
    with HostileServer(mode).run_in_thread() as srv:
        msg = await _ws_first_reply(srv.base_url)
    assert not isinstance(msg, int)
    # aiohttp itself fails a TEXT frame with bad UTF-8 (RFC 6455 §8.1); the others arrive as sent.
    assert msg.type == expect_type
    if mode == "malformed_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(msg.data)
