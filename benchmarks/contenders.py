"""The clients compared in the per-turn latency benchmark (issue item 1).

Every contender has the same synchronous face, so the driver can interleave them turn by turn:

* ``open()`` connects and runs one warm-up turn on a throwaway chain (so the measured turns use a warm connection),
* ``turn(prompt) -> TurnSample`` runs one chained turn and reports its wall time,
* ``new_chain()`` forgets the chain (the next turn starts without ``previous_response_id``),
* ``close()`` releases everything.

Timing: the async contenders (raw floor, SDK) are timed inside their coroutine, from just before the
``response.create`` frame / POST is sent until ``response.completed`` has been parsed. The engine is timed around
``ResponsesSession.respond()``, the blocking call the notebook magic makes, so the engine pays for its thread
hand-off (PROTOCOL-independent; see /work/shared/DESIGN.md §1-2) and that is a real cost a user sees.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
MODEL = "gpt-5-mini"


@dataclass
class TurnSample:
    """One measured turn: wall time, time to the first text delta, and the answer (for cross-checking)."""

    seconds: float
    ttft: float | None
    text: str
    status: str
    cpu: float | None = None  # client process CPU seconds for the turn, filled in by the driver


class Contender(Protocol):
    name: str

    def open(self) -> None: ...

    def turn(self, prompt: str) -> TurnSample: ...

    def new_chain(self) -> None: ...

    def close(self) -> None: ...


def user_message(prompt: str) -> list[dict[str, Any]]:
    """The one new input item of a chained turn (the shape the engine's chain sends too)."""
    return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}]


def output_text(response: dict[str, Any]) -> str:
    """Concatenate the ``output_text`` parts of a Response snapshot (only used off the clock)."""
    parts: list[str] = []
    for item in response.get("output") or []:
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    parts.append(part.get("text", ""))
    return "".join(parts)


class _AsyncContender:
    """Runs an async client on a private event loop owned by the benchmark's main thread."""

    name = "async"

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.previous_response_id: str | None = None
        self._loop = asyncio.new_event_loop()

    def open(self) -> None:
        self._loop.run_until_complete(self._aopen())
        self.turn("warm-up")
        self.new_chain()

    def turn(self, prompt: str) -> TurnSample:
        return self._loop.run_until_complete(self._aturn(prompt))

    def new_chain(self) -> None:
        self.previous_response_id = None

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._aclose())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    async def _aopen(self) -> None:
        raise NotImplementedError

    async def _aturn(self, prompt: str) -> TurnSample:
        raise NotImplementedError

    async def _aclose(self) -> None:
        raise NotImplementedError


class RawFloor(_AsyncContender):
    """The floor: one aiohttp WebSocket, ``json.loads`` per frame and nothing else, until a terminal event."""

    name = "raw aiohttp WS (floor)"

    async def _aopen(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/responses"
        self._ws = await self._session.ws_connect(
            url, headers={"Authorization": f"Bearer {self.api_key}"}, max_msg_size=0
        )

    async def _aturn(self, prompt: str) -> TurnSample:
        body: dict[str, Any] = {"type": "response.create", "model": MODEL, "input": user_message(prompt)}
        if self.previous_response_id:
            body["previous_response_id"] = self.previous_response_id
        ws = self._ws
        loads = json.loads
        ttft = None
        t0 = time.perf_counter()
        await ws.send_str(json.dumps(body))
        while True:
            msg = await ws.receive()
            ev = loads(msg.data)
            kind = ev["type"]
            if ttft is None and kind == "response.output_text.delta":
                ttft = time.perf_counter() - t0
            if kind in TERMINAL or kind == "error":
                break
        elapsed = time.perf_counter() - t0
        if kind == "error":
            raise RuntimeError(f"floor turn failed: {ev.get('error')}")
        response = ev["response"]
        self.previous_response_id = response["id"]
        return TurnSample(elapsed, ttft, output_text(response), response.get("status", kind))

    async def _aclose(self) -> None:
        await self._ws.close()
        await self._session.close()


class SdkWebSocket(_AsyncContender):
    """openai-python over WebSocket: ``AsyncOpenAI().responses.connect()``, chained by ``previous_response_id``."""

    name = "openai SDK WS"

    async def _aopen(self) -> None:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=0)
        self._manager = self._client.responses.connect()
        self._conn = await self._manager.__aenter__()

    async def _aturn(self, prompt: str) -> TurnSample:
        kwargs: dict[str, Any] = {"model": MODEL, "input": user_message(prompt)}
        if self.previous_response_id:
            kwargs["previous_response_id"] = self.previous_response_id
        conn = self._conn
        ttft = None
        t0 = time.perf_counter()
        await conn.response.create(**kwargs)
        while True:
            # recv() rather than ``async for``: breaking out of the SDK's async generator would leave it
            # unfinalised until garbage collection.
            ev = await conn.recv()
            if ttft is None and ev.type == "response.output_text.delta":
                ttft = time.perf_counter() - t0
            if ev.type in TERMINAL or ev.type == "error":
                break
        elapsed = time.perf_counter() - t0
        if ev.type == "error":
            raise RuntimeError(f"SDK WS turn failed: {ev}")
        response = ev.response  # type: ignore[union-attr]
        self.previous_response_id = response.id
        return TurnSample(elapsed, ttft, response.output_text, response.status or ev.type)

    async def _aclose(self) -> None:
        await self._manager.__aexit__(None, None, None)
        await self._client.close()


class SdkSSE(_AsyncContender):
    """openai-python over HTTP SSE: ``responses.create(stream=True)`` with ``previous_response_id``."""

    name = "openai SDK SSE"

    async def _aopen(self) -> None:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(api_key=self.api_key, base_url=self.base_url, max_retries=0)

    async def _aturn(self, prompt: str) -> TurnSample:
        kwargs: dict[str, Any] = {"model": MODEL, "input": user_message(prompt), "stream": True}
        if self.previous_response_id:
            kwargs["previous_response_id"] = self.previous_response_id
        ttft = None
        final = None
        t0 = time.perf_counter()
        stream = await self._client.responses.create(**kwargs)
        async for (
            ev
        ) in stream:  # the server closes after the terminal event (PROTOCOL.md §3), ending the loop
            if ttft is None and ev.type == "response.output_text.delta":
                ttft = time.perf_counter() - t0
            if ev.type in TERMINAL:
                final = ev
        elapsed = time.perf_counter() - t0
        if final is None:
            raise RuntimeError("SDK SSE stream ended without a terminal event")
        response = final.response  # type: ignore[union-attr]
        self.previous_response_id = response.id
        return TurnSample(elapsed, ttft, response.output_text, response.status or final.type)

    async def _aclose(self) -> None:
        await self._client.close()


class Engine:
    """This project's engine: ``ResponsesSession(transport=...).respond(prompt, chain=...)`` (docs/contracts.md)."""

    def __init__(self, base_url: str, api_key: str, transport: str) -> None:
        self.name = f"ipy_responses_ws {transport.upper()}"
        self.base_url = base_url
        self.api_key = api_key
        self.transport = transport
        self._chain = "bench"

    def open(self) -> None:
        from ipy_responses_ws import ResponsesSession

        self.session = ResponsesSession(
            base_url=self.base_url, api_key=self.api_key, transport=self.transport, model=MODEL
        )
        # Warm up on the measured chain itself, then reset it: the pool gives a chain its own idle connection
        # back first (affinity), while a brand-new chain name would open a fresh socket and pay a handshake.
        result = self.session.respond("warm-up", chain=self._chain)
        if result.status != "completed":
            raise RuntimeError(f"engine warm-up did not complete: {result.status} {result.error!r}")
        self.new_chain()

    def new_chain(self) -> None:
        self.session.reset(chain=self._chain)

    def turn(self, prompt: str) -> TurnSample:
        t0 = time.perf_counter()
        result = self.session.respond(prompt, chain=self._chain)
        elapsed = time.perf_counter() - t0
        if result.status != "completed":
            raise RuntimeError(f"engine turn ended {result.status}: {result.error!r}")
        return TurnSample(elapsed, result.ttft, result.text, result.status)

    def close(self) -> None:
        self.session.close()
