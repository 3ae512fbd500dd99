"""Behind a real LiteLLM proxy: the public session API and ``%%respond`` in a real kernel, through LiteLLM's
proxy (pinned in tests/gateway/requirements.txt, run from its own venv) in front of the TLS emulator.

What a user would notice is asserted: answers that quote the whole conversation (the emulator's answers say what
it was sent, ``reply_for``), one WebSocket handshake for a whole chain, no transcript sent again, errors that say
what went wrong without showing the key. The emulator's connection log, on the far side of the proxy, shows what
the proxy forwarded. One proxy and one kernel serve the module (the proxy takes ~8 s to start).
docs/gateways.md says what was learnt about LiteLLM's WebSocket route.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from gateway_fixtures import MODEL, PING_INTERVAL, PING_TIMEOUT, LiteLLMProxy, litellm_proxy  # noqa: F401
from kernel_helpers import Execution, Kernel, all_text

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import ConnectionLog, Fault, reply_for
from ipy_responses_ws.errors import AuthenticationError

pytestmark = pytest.mark.gateway

WRONG_KEY = "sk-test-FAKE-not-this-gateways-key-5550123"
#: Longer than a ping interval plus the proxy's pong deadline, with a margin for a loaded machine.
PAUSE = PING_INTERVAL + PING_TIMEOUT + 2.0


@pytest.fixture
def gw(litellm_proxy: LiteLLMProxy) -> Iterator[LiteLLMProxy]:  # noqa: F811
    yield litellm_proxy
    litellm_proxy.emulator.clear_faults()


def session(gw: LiteLLMProxy, **kw: Any) -> ResponsesSession:
    return ResponsesSession(**{"base_url": gw.base_url, "api_key": gw.key, **kw})


def upstream(gw: LiteLLMProxy, since: int) -> list[ConnectionLog]:
    """What the proxy opened on the emulator since *since* (its health probes of ``/v1/models`` left out)."""
    return [c for c in gw.emulator.connections[since:] if c.path.endswith("/responses")]


def creates(conn: ConnectionLog) -> list[dict[str, Any]]:
    return [f for f in conn.frames if f.get("type", "response.create") == "response.create"]


# -- the proxy itself -------------------------------------------------------------------------------------------


async def test_a_socket_that_leaves_the_proxys_pings_unanswered_is_dropped(gw: LiteLLMProxy) -> None:
    """The control for the pause tests: a client that does not read its idle socket loses it (0.1 did)."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(gw.ws_url, headers={"Authorization": f"Bearer {gw.key}"}) as ws,
    ):
        await asyncio.sleep(PAUSE)  # nobody reads, so aiohttp answers none of the proxy's pings
        try:
            msg = await ws.receive(timeout=5)
        except aiohttp.ClientConnectionResetError:
            return  # aiohttp's late pong to a queued ping met a socket the proxy had already closed
    closed = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert msg.type in closed, f"the proxy kept a socket that answered no ping for {PAUSE} s: {msg}"


# -- chains ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_chain_goes_by_id_and_every_answer_quotes_the_conversation(
    gw: LiteLLMProxy, transport: str
) -> None:
    mark = len(gw.emulator.connections)
    prompts = ["Which gateway is this?", "What did I just ask?", "And what came first?"]
    with session(gw, transport=transport) as s:
        results = [s.respond(p) for p in prompts]
        handshakes = s.status()["handshakes"]
    for n, r in enumerate(results, 1):
        assert r.ok, r.error
        assert r.text == reply_for(prompts[:n])
        assert r.transport == transport and not r.resent_transcript and not r.fallback_reason
    assert handshakes == (1 if transport == "ws" else 0)
    if transport == "ws":  # the model is on the upgrade URL: LiteLLM 1.88 refuses the upgrade without it
        assert f'"WebSocket /v1/responses?model={MODEL}" [accepted]' in gw.log()
    # Upstream: each turn went by the previous response's id, with only the new message (nothing resent).
    requests = [q for c in upstream(gw, mark) for q in c.requests]
    assert [q["previous_response_id"] for q in requests] == [None, *(q["response_id"] for q in requests[:-1])]
    assert not any(q["duplicated_context"] for q in requests)
    # LiteLLM mints its own ids: the ones the user sees are not the upstream's (docs/gateways.md).
    assert {r.response_id for r in results}.isdisjoint(q["response_id"] for q in requests)


def test_store_false_chains_by_id_on_one_socket(gw: LiteLLMProxy) -> None:
    mark = len(gw.emulator.connections)
    prompts = ["Nothing is stored", "Still on the same socket?", "Third by id"]
    with session(gw, transport="ws", store=False) as s:
        results = [s.respond(p) for p in prompts]
        handshakes = s.status()["handshakes"]
    for n, r in enumerate(results, 1):
        assert r.ok, r.error
        assert r.text == reply_for(prompts[:n]) and not r.resent_transcript
    assert handshakes == 1
    # LiteLLM keeps one upstream socket per client socket, so the upstream's connection cache serves the chain.
    (conn,) = upstream(gw, mark)
    assert conn.transport == "ws"
    frames = creates(conn)
    assert [f["store"] for f in frames] == [False] * 3
    assert [len(f["input"]) for f in frames] == [1, 1, 1]  # only the new message: no transcript
    assert [f.get("previous_response_id") for f in frames] == [None, *conn.responses[:2]]


def test_a_pause_longer_than_the_proxys_ping_timeout_keeps_the_socket(gw: LiteLLMProxy) -> None:
    mark = len(gw.emulator.connections)
    with session(gw, transport="ws", store=False) as s:
        first = s.respond("Before the pause")
        time.sleep(PAUSE)
        second = s.respond("After the pause")
        handshakes = s.status()["handshakes"]
    assert first.ok and second.ok, (first.error, second.error)
    assert second.text == reply_for(["Before the pause", "After the pause"])
    assert not (second.resent_transcript or second.retried or second.reconnected)
    assert handshakes == 1  # no reconnect: the socket answered the proxy's pings while idle
    (conn,) = upstream(gw, mark)
    assert [f.get("previous_response_id") for f in creates(conn)] == [None, conn.responses[0]]


@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
def test_switching_transport_mid_chain_keeps_the_conversation(gw: LiteLLMProxy, store: bool) -> None:
    mark = len(gw.emulator.connections)
    turns = [
        ("ws", "Start on WebSocket"),
        ("sse", "Now over SSE"),
        ("ws", "Back to WebSocket"),
        ("sse", "SSE again"),
    ]
    with session(gw, store=store) as s:
        results = [s.respond(prompt, transport=transport) for transport, prompt in turns]
    prompts = [p for _, p in turns]
    for n, (r, (transport, _)) in enumerate(zip(results, turns, strict=True), 1):
        assert r.ok, (n, r.error)
        assert r.text == reply_for(prompts[:n]), n
        assert r.transport == transport
    assert not [q for c in upstream(gw, mark) for q in c.requests if q["duplicated_context"]]


SWITCHES = ["ws", "sse", "ws", "sse", "ws"]


def switching_chain(gw: LiteLLMProxy) -> tuple[list[Any], list[ConnectionLog]]:
    """Five stored turns alternating WS and SSE; the results and the upstream connections they used."""
    mark = len(gw.emulator.connections)
    with session(gw) as s:
        results = [s.respond(f"Turn {n} over {t}", transport=t) for n, t in enumerate(SWITCHES, 1)]
    for n, r in enumerate(results, 1):
        assert r.ok and r.text == reply_for([f"Turn {i} over {t}" for i, t in enumerate(SWITCHES[:n], 1)]), n
    return results, upstream(gw, mark)


def test_sse_turns_after_websocket_turns_go_by_id(gw: LiteLLMProxy) -> None:
    """LiteLLM's HTTP route resolves the ids its WebSocket route minted: nothing needs resending."""
    results, conns = switching_chain(gw)
    sse = [r for r, t in zip(results, SWITCHES, strict=True) if t == "sse"]
    assert not [r.turn for r in sse if r.resent_transcript]  # the footer would say "transcript resent"
    posts = [c for c in conns if c.transport == "http"]
    assert all(f.get("previous_response_id") for c in posts for f in c.frames)


def test_the_chain_stops_sending_ids_the_websocket_route_cannot_resolve(gw: LiteLLMProxy) -> None:
    _, conns = switching_chain(gw)
    issued = {rid for c in gw.emulator.connections for rid in c.responses}
    doomed = [
        f["previous_response_id"]
        for c in conns
        for f in c.frames
        if f.get("previous_response_id") and f["previous_response_id"] not in issued
    ]
    assert len(doomed) <= 1, f"{len(doomed)} requests went by ids the upstream never issued"


# -- failures ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_429_from_upstream_is_retried(gw: LiteLLMProxy, transport: str) -> None:
    mark = len(gw.emulator.connections)
    gw.emulator.add_fault(Fault("error", status=429, after=0))
    with session(gw, transport=transport) as s:
        r = s.respond("Busy upstream")
    assert r.ok, r.error
    assert r.text == reply_for(["Busy upstream"]) and r.transport == transport
    conns = upstream(gw, mark)
    if transport == "ws":  # LiteLLM forwards the upstream's 429 `error` frame as it is
        assert sum(len(creates(c)) for c in conns) == 2
    else:  # the HTTP route answers 429 itself (its own retries are off in these tests)
        assert [c.status for c in conns] == [429, 200]


def test_a_wrong_key_fails_the_turn_and_is_never_shown(gw: LiteLLMProxy) -> None:
    mark = len(gw.emulator.connections)
    with session(gw, api_key=WRONG_KEY, transport="ws") as s:
        r = s.respond("Let me in")
    assert r.status == "failed" and r.error is not None and not r.text
    for shown in (str(r.error), repr(r), repr(r.error)):
        assert WRONG_KEY not in shown and WRONG_KEY[8:] not in shown
    assert not upstream(gw, mark)  # the proxy refused it: nothing reached the model


def test_a_wrong_key_is_reported_as_a_key_problem(gw: LiteLLMProxy) -> None:
    with session(gw, api_key=WRONG_KEY, transport="ws") as s:
        r = s.respond("Let me in")
    assert isinstance(r.error, AuthenticationError), repr(r.error)
    assert "OPENAI_API_KEY" in str(r.error)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_model_the_proxy_does_not_serve_is_named_in_the_error(gw: LiteLLMProxy, transport: str) -> None:
    with session(gw, transport=transport) as s:
        r = s.respond("Which model?", model="gpt-not-on-this-gateway")
    assert r.status == "failed" and not r.text
    assert "gpt-not-on-this-gateway" in str(r.error)
    assert not isinstance(r.error, AuthenticationError)  # the key is fine: the model is not there
    assert r.transport == transport and not r.fallback_reason


def test_an_error_from_the_proxy_says_its_status_once(gw: LiteLLMProxy) -> None:
    with session(gw, transport="sse") as s:
        r = s.respond("Which model?", model="gpt-not-on-this-gateway")
    assert r.status == "failed"
    assert "(HTTP 400)" in str(r.error) and "400, 400" not in str(r.error)


# -- %%respond in a real kernel --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(litellm_proxy: LiteLLMProxy) -> Iterator[Kernel]:  # noqa: F811
    env = {
        "OPENAI_BASE_URL": litellm_proxy.base_url,
        "OPENAI_API_KEY": litellm_proxy.key,
        "NO_PROXY": "127.0.0.1,localhost",
        "WRONG_KEY_FOR_TESTS": WRONG_KEY,  # so no cell's source (echoed on iopub) holds it
    }
    with Kernel(env) as k:
        ex = k.execute("%load_ext ipy_responses_ws")
        assert ex.status == "ok", ex.error
        yield k


def frozen(ex: Execution) -> dict[str, Any]:
    """The plain bundle that replaced the live view at the end of the cell."""
    updates = ex.of_type("update_display_data")
    assert updates, f"the live view was not replaced by a plain bundle: {ex.error or ex.stderr()}"
    return updates[-1]["content"]


def test_respond_chains_through_the_proxy_across_transports(kernel: Kernel) -> None:
    kernel.execute("%responses reset")
    cells = [
        ("", "First through the gateway"),
        ("-t sse ", "Second, over SSE"),
        ("", "Third, WebSocket again"),
    ]
    prompts = [p for _, p in cells]
    for n, (flags, prompt) in enumerate(cells, 1):
        ex = kernel.execute(f"%%respond {flags}\n{prompt}")
        assert ex.status == "ok", ex.error
        content = frozen(ex)
        assert content["data"]["text/plain"] == reply_for(prompts[:n])
        meta = content["metadata"]["ipy_responses_ws"]
        assert meta["status"] == "completed"
        assert meta["transport"] == ("sse" if "sse" in flags else "ws")
    assert "Second, over SSE" in kernel.execute("%responses history").stdout()


def test_respond_without_store_keeps_its_socket_through_a_pause(kernel: Kernel, gw: LiteLLMProxy) -> None:
    kernel.execute("%responses close")  # a socket of its own (closing keeps the conversation: reset it too)
    kernel.execute("%responses reset")
    mark = len(gw.emulator.connections)
    a = kernel.execute("%%respond --no-store\nRemember me without storing")
    kernel.execute(f"import time; time.sleep({PAUSE})")
    b = kernel.execute("%%respond --no-store\nStill there after the pause?")
    assert frozen(a)["metadata"]["ipy_responses_ws"]["status"] == "completed"
    content = frozen(b)
    assert content["data"]["text/plain"] == reply_for(
        ["Remember me without storing", "Still there after the pause?"]
    )
    assert "transcript resent" not in content["data"]["text/markdown"]
    (conn,) = upstream(gw, mark)  # one socket for both cells, the second by id
    assert [f.get("previous_response_id") for f in creates(conn)] == [None, conn.responses[0]]


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_respond_shows_the_retry_of_an_upstream_429_then_the_answer(
    kernel: Kernel, gw: LiteLLMProxy, transport: str
) -> None:
    gw.emulator.add_fault(Fault("error", status=429, after=0))
    ex = kernel.execute(f"%%respond --new -t {transport}\nBusy upstream, seen from a cell")
    content = frozen(ex)
    assert content["data"]["text/plain"] == reply_for(["Busy upstream, seen from a cell"])
    assert content["metadata"]["ipy_responses_ws"]["status"] == "completed"
    live = json.dumps([m["content"] for m in ex.of_type("comm_open", "comm_msg")])
    assert "retrying in" in live and "429" in live  # the status line said why it was waiting


@pytest.fixture(scope="module")
def wrong_key_cell(kernel: Kernel) -> Execution:
    """``%%respond`` run once with a key the proxy does not know (the real one restored afterwards)."""
    ex = kernel.execute(
        "import os; _key = os.environ['OPENAI_API_KEY']; os.environ['OPENAI_API_KEY'] = os.environ['WRONG_KEY_FOR_TESTS']"
    )
    assert ex.status == "ok", ex.error
    try:
        return kernel.execute("%%respond -o denied\nA wrong key")
    finally:
        kernel.execute("os.environ['OPENAI_API_KEY'] = _key; del _key")


def shown_error(ex: Execution) -> str:
    """What the user reads about a failed cell: the traceback's message, or the frozen bundle's plain text (the
    error; its Markdown twin escapes ``OPENAI\\_API\\_KEY``)."""
    if ex.error:
        return f"{ex.error['ename']}: {ex.error['evalue']}"
    return frozen(ex)["data"]["text/plain"]


def test_respond_with_a_wrong_key_fails_and_the_key_is_nowhere_in_iopub(
    kernel: Kernel,
    wrong_key_cell: Execution,
    gw: LiteLLMProxy,
) -> None:
    content = frozen(wrong_key_cell)
    assert content["metadata"]["ipy_responses_ws"]["status"] == "failed"
    assert "**Error:**" in content["data"]["text/markdown"]
    wire = all_text(kernel.all_messages)
    assert WRONG_KEY not in wire and WRONG_KEY[8:] not in wire
    assert gw.key not in wire


def test_respond_with_a_wrong_key_names_the_key_variable(wrong_key_cell: Execution) -> None:
    text = shown_error(wrong_key_cell)
    assert "OPENAI_API_KEY" in text and "Fix the request" not in text, text


def test_the_result_of_a_refused_cell_is_stored(kernel: Kernel, wrong_key_cell: Execution) -> None:
    ex = kernel.execute("import json; print(json.dumps([denied.status, denied.text, bool(denied.error)]))")
    assert json.loads(ex.stdout().strip().splitlines()[-1]) == ["failed", "", True]


def test_the_footer_shows_a_short_id_and_the_metadata_the_full_one(kernel: Kernel) -> None:
    ex = kernel.execute("%%respond -t sse -o with_id\nWhich id did this get?")
    content = frozen(ex)
    full = content["metadata"]["ipy_responses_ws"]["response_id"]
    assert len(full) > 300  # LiteLLM's HTTP route wraps the upstream id in its own encrypted one
    got = kernel.execute(f"print(with_id.response_id == {full!r})")
    assert got.stdout().strip() == "True"  # -o keeps the full id
    footer = content["data"]["text/markdown"].rstrip().splitlines()[-1].replace("\\", "")
    assert full not in footer and len(footer) < 200, footer
