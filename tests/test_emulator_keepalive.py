"""Server keepalive pings on idle WebSockets, like uvicorn (``ping_interval`` / ``ping_timeout``).

uvicorn serves WebSockets with the ``websockets`` library: a Ping every 20 s, and a socket whose Pong is 20 s
late is closed with ``1011 keepalive ping timeout``. An aiohttp client answers Pings only while something
reads the socket, so a pooled socket nobody reads dies; these tests show the emulator does the same, fast.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from emulator_fixtures import FAST_PINGS, idle_then_turn, pinging_emulator  # noqa: F401

from ipy_responses_ws.emulator import Emulator, reply_for

IDLE_DEATH = FAST_PINGS["ping_interval"] + FAST_PINGS["ping_timeout"]


async def first_non_ping(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """Read like a pool that finally looks at an idle socket. aiohttp answers each queued Ping as it reads
    it, and that answer fails on the socket the server closed: skip those errors to reach the close frame."""
    for _ in range(20):
        try:
            return await asyncio.wait_for(ws.receive(), 5)
        except aiohttp.ClientConnectionResetError:
            continue
    raise AssertionError("no close frame")


async def test_a_socket_nobody_reads_is_closed_1011_after_interval_plus_timeout(pinging_emulator):  # noqa: F811
    emu = pinging_emulator
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(emu.ws_url)  # autoping on, but nobody calls receive()
        opened = time.monotonic()
        await asyncio.sleep(IDLE_DEATH + 0.6)
        msg = await first_non_ping(ws)  # what the pool sees when it finally reads
        assert (
            msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1011 and msg.extra == "keepalive ping timeout"
        )
        await ws.close()
    entry = emu.connections[-1]
    assert entry.closed_by_ping_timeout and entry.server_close_code == 1011 and entry.pongs_received == 0
    assert emu.ping_timeouts == 1
    lived = entry.closed_at - entry.opened_at
    assert IDLE_DEATH - 0.05 <= lived <= IDLE_DEATH + 0.5, lived
    assert time.monotonic() - opened >= IDLE_DEATH


async def test_a_socket_that_keeps_reading_is_never_closed(pinging_emulator):  # noqa: F811
    emu = pinging_emulator
    async with aiohttp.ClientSession() as session, session.ws_connect(emu.ws_url) as ws:
        event = await idle_then_turn(ws, 3 * IDLE_DEATH, "still here")  # reading answers every Ping
        assert event["response"]["output"][0]["content"][0]["text"] == reply_for(["still here"])
    entry = emu.connections[-1]
    assert entry.pings_sent >= 5 and entry.pongs_received >= 5
    assert emu.ping_timeouts == 0 and not entry.closed_by_ping_timeout


async def test_pings_during_a_slow_stream_are_answered_by_the_reader():
    async with (
        Emulator(token_rate=40, **FAST_PINGS).serve() as emu,
        aiohttp.ClientSession() as session,
        session.ws_connect(emu.ws_url) as ws,
    ):
        await ws.send_str(json.dumps({"type": "response.create", "model": "m", "input": "slow"}))
        started = time.monotonic()
        while True:
            event = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
            if event["type"] == "response.completed":
                break
        assert time.monotonic() - started > IDLE_DEATH  # the stream outlived a ping round
        assert emu.connections[-1].pongs_received >= 1 and emu.ping_timeouts == 0


async def test_pings_are_off_by_default_and_timeout_none_never_closes():
    async with Emulator().serve() as emu, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(emu.ws_url)
        await asyncio.sleep(0.8)
        await ws.close()
        assert emu.connections[-1].pings_sent == 0
    async with Emulator(ping_interval=0.2).serve() as emu, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(emu.ws_url)  # never read: the Pings pile up unanswered
        await asyncio.sleep(1.0)
        assert not ws.closed and emu.connections[-1].pings_sent >= 3
        await ws.close()
        assert emu.ping_timeouts == 0


async def test_the_log_endpoint_reports_ping_timeouts(pinging_emulator):  # noqa: F811
    emu = pinging_emulator
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(emu.ws_url)
        await asyncio.sleep(IDLE_DEATH + 0.6)
        async with session.get(emu.base_url.removesuffix("/v1") + "/_emulator/log") as resp:
            log = (await resp.json())["connections"]
        await ws.close()
    assert [c["closed_by_ping_timeout"] for c in log if c["transport"] == "ws"] == [True]


def test_bad_ping_settings_are_refused():
    with pytest.raises(ValueError):
        Emulator(ping_interval=0)
    with pytest.raises(ValueError):
        Emulator(ping_interval=1, ping_timeout=-1)
