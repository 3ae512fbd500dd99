"""Gateways: a base URL with a query string (``…/v1?api-version=…``, Azure, LiteLLM-style proxies) works on both
transports and on the fallback from one to the other; a wrong URL says so in words that stand on their own.

In-process, on the public session API, against the emulator on 127.0.0.1 (its connection log shows the path and
the query each request arrived with).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ipy_responses_ws import ResponsesSession, Settings
from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import APIError

KEY = "sk-test-FAKE-gateway-0123456789abcdef"
QUERY = "?api-version=2025-04-01-preview"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(KEY).run_in_thread() as server:
        yield server


@pytest.mark.parametrize(
    ("base", "http", "ws"),
    [
        (
            "https://gw.example/v1?api-version=x",
            "https://gw.example/v1/responses?api-version=x",
            "wss://gw.example/v1/responses?api-version=x",
        ),
        (
            "http://127.0.0.1:8/openai/v1/?api-version=x&deployment=d",
            "http://127.0.0.1:8/openai/v1/responses?api-version=x&deployment=d",
            "ws://127.0.0.1:8/openai/v1/responses?api-version=x&deployment=d",
        ),
        (
            "https://api.openai.com/v1",
            "https://api.openai.com/v1/responses",
            "wss://api.openai.com/v1/responses",
        ),
    ],
)
def test_endpoint_urls_keep_the_query_string(base: str, http: str, ws: str) -> None:
    s = Settings(base_url=base)
    assert (s.http_url(), s.ws_url()) == (http, ws)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_query_string_reaches_the_server_on_both_transports(emu: Emulator, transport: str) -> None:
    before = len(emu.connections)
    with ResponsesSession(base_url=emu.base_url + QUERY, api_key=KEY, transport=transport) as s:
        r = s.respond("through a gateway")
    assert r.status == "completed", r.error
    assert r.text == reply_for(["through a gateway"]) and r.transport == transport
    seen = emu.connections[before:]
    # Over WS the upgrade also names the model (Settings.ws_model_query): gateways route on it.
    query = {
        "api-version": "2025-04-01-preview",
        **({"model": s.settings.model} if transport == "ws" else {}),
    }
    assert [(c.path, c.query) for c in seen] == [("/v1/responses", query)]


def test_the_fallback_to_sse_keeps_the_query_string(emu: Emulator) -> None:
    before = len(emu.connections)
    emu.add_fault(Fault(kind="refuse_upgrade", status=503))
    try:
        with ResponsesSession(base_url=emu.base_url + QUERY, api_key=KEY, transport="ws") as s:
            r = s.respond("refused, then over SSE")
    finally:
        emu.clear_faults()
    assert r.status == "completed", r.error
    assert r.transport == "sse" and r.fallback_reason
    posts = [c for c in emu.connections[before:] if c.transport == "http"]
    assert [(c.path, c.query, c.status) for c in posts] == [
        ("/v1/responses", {"api-version": "2025-04-01-preview"}, 200)
    ]


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_wrong_base_url_error_stands_on_its_own(emu: Emulator, transport: str) -> None:
    """The error is shown alone (the status line, ``result.error``): it names what to fix, not "the message
    above"."""
    wrong = emu.base_url.removesuffix("/v1") + "/nope" + QUERY
    with ResponsesSession(base_url=wrong, api_key=KEY, transport=transport, fallback_to_sse=False) as s:
        r = s.respond("wrong path")
    assert r.status == "failed" and isinstance(r.error, (APIError, Exception))
    text = str(r.error)
    assert "above" not in text, text
    assert "404" in text and "base URL" in text, text
