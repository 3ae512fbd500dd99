"""The emulator over HTTPS/WSS (``Emulator(tls=True)``, ``--tls``): a throw-away CA made at start.

What a client notices: an ``https://`` base URL and a ``wss://`` WebSocket URL on loopback, a certificate
that verifies only against ``emu.ca_path``, and the same answers as over plain HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import httpx
import openai
import pytest
from emulator_fixtures import (  # noqa: F401
    FAKE_KEY,
    idle_then_turn,
    parse_sse,
    tls_emulator,
    tls_pinging_emulator,
    tls_settled,
)

from ipy_responses_ws.emulator import Emulator, reply_for


def _create(text: str, **kw):
    return {"type": "response.create", "model": "gpt-5-mini", "input": text, **kw}


async def test_https_sse_and_wss_answer_on_loopback(tls_emulator):  # noqa: F811
    emu = tls_emulator
    assert emu.base_url.startswith("https://127.0.0.1:") and emu.ws_url.startswith("wss://127.0.0.1:")
    assert Path(emu.ca_path).read_text().startswith("-----BEGIN CERTIFICATE-----")
    ctx = ssl.create_default_context(cafile=emu.ca_path)
    async with aiohttp.ClientSession() as session:
        body = {"model": "gpt-5-mini", "input": "over tls", "stream": True}
        async with session.post(emu.base_url + "/responses", json=body, ssl=ctx) as resp:
            assert resp.status == 200
            events = parse_sse(await resp.read())
        assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == reply_for(["over tls"])
        async with session.ws_connect(emu.ws_url, ssl=emu.client_ssl_context()) as ws:
            await ws.send_str(json.dumps(_create("over wss")))
            while True:
                event = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                if event["type"] == "response.completed":
                    break
        assert event["response"]["output"][0]["content"][0]["text"] == reply_for(["over wss"])
    await tls_settled()


async def test_certificate_is_not_trusted_without_the_ca(tls_emulator):  # noqa: F811
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(tls_emulator.base_url + "/models", ssl=ssl.create_default_context())
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.ws_connect(tls_emulator.ws_url, ssl=ssl.create_default_context())
    await tls_settled()


def test_openai_sdk_over_https_and_wss(tls_emulator, monkeypatch):  # noqa: F811
    emu = tls_emulator
    with httpx.Client(verify=emu.client_ssl_context()) as http:
        client = openai.OpenAI(base_url=emu.base_url, api_key=FAKE_KEY, http_client=http, max_retries=0)
        assert "gpt-5-mini" in [m.id for m in client.models.list()]
        with client.responses.create(model="gpt-5-mini", input="sdk over tls", stream=True) as stream:
            done = [e for e in stream if e.type == "response.completed"]
        assert done[0].response.output_text == reply_for(["sdk over tls"])
        # The SDK's WebSocket (the websockets library) uses the default trust store: SSL_CERT_FILE.
        monkeypatch.setenv("SSL_CERT_FILE", emu.ca_path)
        with client.responses.connect() as conn:
            conn.response.create(model="gpt-5-mini", input="sdk over wss")
            for event in conn:
                if event.type == "response.completed":
                    break
        assert event.response.output_text == reply_for(["sdk over wss"])


def test_ca_file_is_removed_at_stop_and_plain_emulators_have_none():
    with Emulator(tls=True).run_in_thread() as emu:
        path = emu.ca_path
        assert os.path.exists(path)
    assert not os.path.exists(path)
    with Emulator().run_in_thread() as plain:
        assert plain.ca_path is None and plain.base_url.startswith("http://")
        with pytest.raises(RuntimeError):
            plain.client_ssl_context()


def test_cli_tls_prints_https_url_then_the_ca_path():
    args = ["--tls", "--ping-interval", "5", "--ping-timeout", "5"]
    with subprocess.Popen(
        [sys.executable, "-m", "ipy_responses_ws.emulator", *args], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            url, ca = proc.stdout.readline().strip(), proc.stdout.readline().strip()
            assert url.startswith("https://127.0.0.1:") and url.endswith("/v1")
            ctx = ssl.create_default_context(cafile=ca)
            with httpx.Client(verify=ctx) as http:
                assert http.get(url + "/models").json()["object"] == "list"
            proc.terminate()
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not os.path.exists(ca)


async def test_tls_and_pings_together(tls_pinging_emulator):  # noqa: F811
    emu = tls_pinging_emulator
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emu.ws_url, ssl=emu.client_ssl_context()) as ws,
    ):
        done = await idle_then_turn(ws, 2.5, "after a pause")  # reading: the server's pings are answered
        assert done["response"]["output"][0]["content"][0]["text"] == reply_for(["after a pause"])
    await tls_settled()
    entry = emu.connections[-1]
    assert entry.pings_sent >= 3 and entry.pongs_received >= 3 and emu.ping_timeouts == 0
