"""Key hygiene: a canary key goes through every flow, and nothing a user, a log or a saved notebook holds
ever contains it. A key over plain ws:// or http:// to a host that is not this machine is refused before any
connection is attempted.

Flows (each on both transports where it applies): a normal turn; a 401 from a server with another key; the
emulator's ``unauthorized`` fault; a refused handshake (503) with and without fallback; a server that echoes
every request header, ``Authorization`` included, in its 401 body (``HostileServer("echo_auth")``; the emulator
has no such fault, see docs/reliability.md); garbage frames; a stall that times out; the insecure-URL refusal.

Where the key could surface, and what is scanned:

* in-process: ``str``/``repr``/formatted traceback of every error, ``repr`` of results and the session,
  ``session.status()``, and every log record at DEBUG (``caplog``, all loggers, aiohttp included);
* a real kernel: every iopub message of every cell (outputs, widget comm traffic, errors, tracebacks, also
  with ``%xmode Verbose``, which prints local variables of each frame);
* a saved notebook executed by nbclient (outputs and the widget state nbclient stores in its metadata).

"Contains" means the whole key or any 8 characters of its random part (OpenAI-style masks that keep the
last 4 characters are fine).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import time
import traceback
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from test_reliability_support import CANARY_KEY, HostileServer

from ipy_responses_ws.emulator import Emulator, Fault, reply_for
from ipy_responses_ws.errors import (
    AuthenticationError,
    HandshakeError,
    InsecureTransportError,
    ResponsesError,
)
from ipy_responses_ws.session import ResponsesSession

SECRET_PART = CANARY_KEY.rsplit("-", 1)[-1]  # the random tail
OTHER_KEY = "sk-test-FAKE-other-key-99887766554433221100"


def leaks(text: str) -> list[str]:
    """The pieces of the canary found in *text* (empty = clean)."""
    found = [CANARY_KEY] if CANARY_KEY in text else []
    for i in range(len(SECRET_PART) - 7):
        window = SECRET_PART[i : i + 8]
        if window in text:
            found.append(window)
    return found


def test_the_leak_detector_detects() -> None:
    assert leaks(f"Authorization: Bearer {CANARY_KEY}")
    assert leaks(f"...{SECRET_PART[3:14]}...")
    assert not leaks(f"sk-tes***...{CANARY_KEY[-4:]}")


def exception_texts(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    parts += [repr(v) for v in vars(exc).values()]
    return "\n".join(parts)


# --- in-process flows ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(CANARY_KEY).run_in_thread() as server:
        yield server


@pytest.fixture(scope="module")
def other_emu() -> Iterator[Emulator]:
    """A server that expects another key: the canary gets a genuine 401."""
    with Emulator(OTHER_KEY).run_in_thread() as server:
        yield server


def _flows(
    emu: Emulator, other: Emulator, echo: HostileServer, garbage: HostileServer
) -> list[dict[str, Any]]:
    return [
        {"name": "ok", "base_url": emu.base_url},
        {"name": "wrong key (401)", "base_url": other.base_url, "expect": AuthenticationError},
        # count=2: the WS upgrade's 401 is tried once over SSE; refused there too, it is an authentication error.
        {
            "name": "unauthorized fault",
            "base_url": emu.base_url,
            "fault": Fault(kind="unauthorized", count=2),
        },
        {
            "name": "handshake refused, no fallback",
            "base_url": emu.base_url,
            "fault": Fault(kind="refuse_upgrade", status=503),
            "settings": {"fallback_to_sse": False, "max_retries": 0},
            "ws_expect": HandshakeError,
        },
        {
            "name": "handshake refused, fallback",
            "base_url": emu.base_url,
            "fault": Fault(kind="refuse_upgrade", status=503),
        },
        {"name": "header echo (401)", "base_url": echo.base_url, "expect": AuthenticationError},
        {"name": "garbage frames", "base_url": garbage.base_url, "expect": ResponsesError},
        {
            "name": "stall timeout",
            "base_url": emu.base_url,
            "fault": Fault(kind="stall", after=4, seconds=1.0),
            "settings": {"idle_timeout": 0.3},
            "expect": ResponsesError,
        },
        {
            "name": "failed",
            "base_url": emu.base_url,
            "fault": Fault(kind="failed", after=4),
            "expect": ResponsesError,
        },
    ]


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_no_flow_leaks_the_key_in_process(
    emu: Emulator, other_emu: Emulator, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with (
        HostileServer("echo_auth").run_in_thread() as echo,
        HostileServer("malformed_json").run_in_thread() as garbage,
    ):
        for flow in _flows(emu, other_emu, echo, garbage):
            emu.clear_faults()
            if flow.get("fault"):
                emu.add_fault(flow["fault"])
            s = ResponsesSession(
                base_url=flow["base_url"], api_key=CANARY_KEY, transport=transport, **flow.get("settings", {})
            )
            try:
                r = s.respond(f"flow {flow['name']}")
                expect = flow.get(f"{transport}_expect") or flow.get("expect")
                if expect is None and flow.get("fault") and flow["fault"].kind == "unauthorized":
                    expect = AuthenticationError
                if expect is None:
                    assert r.status == "completed", (flow["name"], r.error)
                    assert r.text == reply_for([f"flow {flow['name']}"])
                else:
                    assert isinstance(r.error, expect), (flow["name"], r.error)
                seen += [exception_texts(r.error), repr(r), repr(s), json.dumps(s.status(), default=str)]
                seen.append(f"{flow['name']}: {r.error}")
            finally:
                s.close()
        emu.clear_faults()
        # The echo server really did receive (and echo) the key: redaction, not luck, kept it out.
        assert any(CANARY_KEY in str(req["headers"].get("Authorization")) for req in echo.requests)
    seen.append(caplog.text)
    seen += [exception_texts(rec.exc_info[1]) for rec in caplog.records if rec.exc_info]
    everything = "\n".join(seen)
    if transport == "sse":  # the echoed body did reach the error text (aiohttp drops WS handshake bodies)
        assert "Unauthorized. Received headers" in everything
    assert leaks(everything) == []


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_tracebacks_with_locals_hold_no_key(other_emu: Emulator, transport: str) -> None:
    """Renderers that show locals (rich, Sentry, ``%xmode Verbose``) must not find the key in the frames of a
    stored error. Found here: the headers dict and an echoed raw body sat in the loop-side frames' locals;
    fixed in 4084bb5 (stored errors drop their traceback)."""
    with HostileServer("echo_auth").run_in_thread() as echo:
        for base_url in (other_emu.base_url, echo.base_url):
            with ResponsesSession(base_url=base_url, api_key=CANARY_KEY, transport=transport) as s:
                r = s.respond("who am I")
            assert isinstance(r.error, AuthenticationError)
            shown = traceback.TracebackException.from_exception(r.error, capture_locals=True)
            assert leaks("".join(shown.format())) == []


@pytest.mark.parametrize("transport", ["ws", "sse"])
@pytest.mark.parametrize(
    "url",
    [
        "http://203.0.113.1:9/v1",  # TEST-NET-3 (RFC 5737): never routed
        "ws://203.0.113.1/v1",
        "http://[2001:db8::1]:9/v1",  # IPv6 documentation prefix (RFC 3849)
        "http://localhost.example.com:9/v1",  # a name that merely looks local
        "http://127.0.0.1.nip.io:9/v1",  # resolves to loopback, but a name: the key would go over the network
    ],
)
def test_key_over_cleartext_to_a_remote_host_is_refused_before_connecting(
    transport: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Any] = []
    real_create, real_getaddrinfo = (
        asyncio.base_events.BaseEventLoop.create_connection,
        asyncio.base_events.BaseEventLoop.getaddrinfo,
    )

    async def spy_create(self: Any, *args: Any, **kw: Any) -> Any:
        attempts.append(("connect", args[1:3]))
        return await real_create(self, *args, **kw)

    async def spy_getaddrinfo(self: Any, host: Any, *args: Any, **kw: Any) -> Any:
        attempts.append(("resolve", host))
        return await real_getaddrinfo(self, host, *args, **kw)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_connection", spy_create)
    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", spy_getaddrinfo)
    s = ResponsesSession(base_url=url, api_key=CANARY_KEY, transport=transport, connect_timeout=5.0)
    try:
        t0 = time.monotonic()
        r = s.respond("is this safe?")
        took = time.monotonic() - t0
        status = s.status()
    finally:
        s.close()
    assert isinstance(r.error, InsecureTransportError), r.error
    assert took < 1.0, f"{took:.2f} s: something was tried before refusing (connect_timeout is 5 s)"
    assert attempts == [], f"a connection was attempted: {attempts}"
    assert status["handshakes"] == 0 and r.fallback_reason is None  # no silent retry over SSE
    assert "allow_insecure" in str(r.error) and leaks(exception_texts(r.error)) == []


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_redirect_to_another_origin_never_carries_the_key(transport: str) -> None:
    """127.0.0.1 answers 307 to localhost (another origin, both loopback): the key must stay behind."""
    with HostileServer("echo_auth").run_in_thread() as sink:
        target = f"http://localhost:{sink.port}/v1/responses"
        with HostileServer("redirect", redirect_to=target).run_in_thread() as hop:
            with ResponsesSession(
                base_url=hop.base_url, api_key=CANARY_KEY, transport=transport, fallback_to_sse=False
            ) as s:
                r = s.respond("follow me")
            assert hop.requests and CANARY_KEY in str(hop.requests[0]["headers"].get("Authorization"))
    assert r.status == "failed"
    assert sink.requests, "the redirect was followed"
    assert all(CANARY_KEY not in json.dumps(req["headers"]) for req in sink.requests)
    assert leaks(exception_texts(r.error)) == []


def test_loopback_cleartext_is_allowed(emu: Emulator) -> None:
    for url in (emu.base_url, emu.base_url.replace("127.0.0.1", "localhost")):
        with ResponsesSession(base_url=url, api_key=CANARY_KEY) as s:
            assert s.respond("local").status == "completed"


# --- a real kernel: every iopub message ----------------------------------------------------------------------


def test_no_notebook_flow_leaks_the_key_on_iopub(emu: Emulator, other_emu: Emulator) -> None:
    from kernel_helpers import Kernel, all_text

    with (
        HostileServer("echo_auth").run_in_thread() as echo,
        Kernel({"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": CANARY_KEY}) as k,
    ):
        emu.clear_faults()
        cells: list[str | Fault] = [
            "%load_ext ipy_responses_ws",
            "%%respond -o ok_ws\nhello",
            "%%respond -t sse -o ok_sse\nhello again",
            "%%respond --background -o bg\nin the background",
            "import time\nfor _ in range(200):\n    if 'bg' in globals(): break\n    time.sleep(0.05)",
            "%responses history",
            "%responses transport sse",
            "%responses transport ws",
            "%%respond -o failed_turn\nplease fail\n!fault failed after=3",
            "%%respond -o stalled\nstall\n!fault stall after=4 seconds=1",  # with idle_timeout below
            "%responses close",  # fresh connections, so the upgrade faults below can strike
            Fault(kind="unauthorized", count=2),  # the upgrade, then the SSE try
            "%%respond -o fault_401\nunauthorized by fault",
            Fault(kind="refuse_upgrade", status=503),
            "%%respond -o refused\nrefused handshake, falls back to SSE",
            f"%responses config base_url={other_emu.base_url}",
            "%%respond --new -o wrong_key\nwho am I",
            "%%respond --new -t sse -o wrong_key_sse\nwho am I",
            f"%responses config base_url={echo.base_url}",
            "%%respond --new -o echoed\necho my headers",
            "%%respond --new -t sse -o echoed_sse\necho my headers",
            "%responses config base_url=http://203.0.113.1:9/v1",
            "%%respond --new -o insecure\nshould be refused",
            f"%responses config base_url={emu.base_url}",
            "%responses status",
            "%responses config",
            "%responses",
            "ok_ws, wrong_key, echoed, echoed_sse, insecure",
            "print(repr(echoed.error)); print(echoed.error.__dict__)",
            "raise echoed.error",
            "raise echoed_sse.error",
            "raise insecure.error",
        ]
        for cell in cells:
            if isinstance(cell, Fault):
                emu.add_fault(cell)
                continue
            if cell.startswith("%%respond -o stalled"):
                k.execute("%responses config idle_timeout=0.4")
            ex = k.execute(cell, timeout=60)
            if cell.startswith("%%respond -o stalled"):
                k.execute("%responses config idle_timeout=120")
            if cell.startswith("raise"):
                assert ex.status == "error"
            elif not cell.startswith("%%respond"):
                assert ex.status == "ok", (cell, ex.error)
        statuses = json.loads(
            k.execute(
                "import json; print(json.dumps([ok_ws.status, ok_sse.status, bg.status, failed_turn.status, stalled.status,"
                " type(fault_401.error).__name__, refused.status, refused.transport,"
                " type(wrong_key.error).__name__, type(echoed.error).__name__, type(insecure.error).__name__]))"
            ).stdout()
        )
        text = all_text(k.all_messages)
    assert statuses == [
        "completed",
        "completed",
        "completed",
        "failed",
        "failed",
        "AuthenticationError",
        "completed",
        "sse",
        "AuthenticationError",
        "AuthenticationError",
        "InsecureTransportError",
    ]
    assert any(CANARY_KEY in str(req["headers"].get("Authorization")) for req in echo.requests)
    assert leaks(text) == []


def test_xmode_verbose_traceback_of_a_stored_error_holds_no_key() -> None:
    from kernel_helpers import Kernel, all_text

    with (
        HostileServer("echo_auth").run_in_thread() as echo,
        Kernel({"OPENAI_BASE_URL": echo.base_url, "OPENAI_API_KEY": CANARY_KEY}) as k,
    ):
        for cell in [
            "%load_ext ipy_responses_ws",
            "%%respond -t sse -o r\nhi",
            "%xmode Verbose",
            "raise r.error",
        ]:
            k.execute(cell)
        text = all_text(k.all_messages)
    assert "AuthenticationError" in text
    assert leaks(text) == []


# --- a saved notebook (nbclient) ------------------------------------------------------------------------------


def test_a_saved_notebook_holds_no_key(
    emu: Emulator, other_emu: Emulator, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    with HostileServer("echo_auth").run_in_thread() as echo:
        monkeypatch.setenv("OPENAI_BASE_URL", emu.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
        sources = [
            "%load_ext ipy_responses_ws",
            "%%respond -o a\nA saved answer",
            "%%respond -t sse\nAnd over SSE",
            f"%responses config base_url={other_emu.base_url}",
            "%%respond --new -o b\nwrong key",
            f"%responses config base_url={echo.base_url}",
            "%%respond --new -o c\necho",
            "raise c.error",
            f"%responses config base_url={emu.base_url}",
            "%responses status",
            "a",
        ]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in sources])
        client = NotebookClient(
            nb,
            timeout=60,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()
    saved = nbformat.writes(nb)
    (tmp_path / "saved.ipynb").write_text(saved)
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert any("A saved answer" in json.dumps(o) for o in outputs), "the answer should be in the notebook"
    assert any("AuthenticationError" in json.dumps(o) or "rejected" in json.dumps(o) for o in outputs)
    assert leaks(saved) == []


def test_the_ws_auth_error_reads_cleanly(other_emu: Emulator) -> None:
    with ResponsesSession(base_url=other_emu.base_url, api_key=CANARY_KEY) as s:
        err = s.respond("who am I").error
    assert isinstance(err, AuthenticationError) and "OPENAI_API_KEY" in str(err)
    assert str(err).count("HTTP 401") == 1, str(err)


def test_error_hints_never_suggest_typing_the_key_into_a_cell() -> None:
    """``%env OPENAI_API_KEY=...`` would echo the key into the output (found here, fixed in f9fffca)."""
    from ipy_responses_ws.errors import MissingAPIKeyError

    for err in (AuthenticationError(status=401), MissingAPIKeyError()):
        assert "%env OPENAI_API_KEY" not in str(err), str(err)


def test_env_magic_really_echoes_the_value() -> None:
    """Why the hint matters: ``%env NAME=value`` prints the value, and outputs are saved with the notebook."""
    from IPython.core.magics.osm import OSMagics  # the class behind %env; no global shell needed

    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            OSMagics(shell=None).env("IPY_RWS_DEMO_SECRET=sk-test-FAKE-echo-me-123456")
    finally:
        os.environ.pop("IPY_RWS_DEMO_SECRET", None)
    assert "sk-test-FAKE-echo-me-123456" in out.getvalue()


# --- gateway secrets: a key in the base URL's query, a custom header value --------------------------------------

QUERY_CANARY = "gwq-FAKE-5c1d8e2f9a7b3c4d6e0f1a2b"
HEADER_CANARY = "hdr-FAKE-9e8d7c6b5a4f3e2d1c0b9a8f"
GATEWAY_QUERY = f"?api-version=2025-04-01&api-key={QUERY_CANARY}"


def gateway_leaks(text: str) -> list[str]:
    """Pieces of the query or header canary (or of the API key) found in *text*."""
    found = leaks(text)
    for canary in (QUERY_CANARY, HEADER_CANARY):
        tail = canary.rsplit("-", 1)[-1]
        found += [tail[i : i + 8] for i in range(len(tail) - 7) if tail[i : i + 8] in text]
    return found


def _dead_base_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more: connection refused


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_gateway_secrets_never_leak_in_process(emu: Emulator, transport: str) -> None:
    """The query key and the header value reach the server, and nothing the user can see holds them."""
    headers = {"api-key": HEADER_CANARY}
    seen: list[str] = []
    with HostileServer("echo_auth").run_in_thread() as echo:
        flows: list[tuple[str, dict[str, Any], type[BaseException] | None]] = [
            ("ok", {"base_url": emu.base_url + GATEWAY_QUERY}, None),
            ("refused connection", {"base_url": _dead_base_url() + GATEWAY_QUERY}, ResponsesError),
            (
                "handshake refused, no fallback",
                {"base_url": emu.base_url + GATEWAY_QUERY, "fallback_to_sse": False, "max_retries": 0},
                HandshakeError if transport == "ws" else None,
            ),
            ("headers echoed (401)", {"base_url": echo.base_url + GATEWAY_QUERY}, AuthenticationError),
        ]
        for name, settings, expect in flows:
            emu.clear_faults()
            if name.startswith("handshake"):
                emu.add_fault(Fault(kind="refuse_upgrade", status=503))
            with ResponsesSession(
                api_key=CANARY_KEY,
                transport=transport,
                extra_headers=headers,
                connect_timeout=3.0,
                **settings,
            ) as s:
                r = s.respond(f"flow {name}")
                seen += [exception_texts(r.error), repr(r), repr(s), repr(s.settings), str(s.settings)]
                seen.append(json.dumps(s.status(), default=str))
            if expect is None:
                assert r.status == "completed", (name, r.error)
            else:
                assert isinstance(r.error, expect), (name, r.error)
        emu.clear_faults()
        echoed = [req for req in echo.requests if req["headers"].get("api-key") == HEADER_CANARY]
    assert echoed, "the header really was sent (and echoed back): redaction, not luck, keeps it out"
    everything = "\n".join(seen)
    assert "api-version=2025-04-01" in everything  # the URL is still shown, only its secret is masked
    assert "Could not connect to" in everything
    assert gateway_leaks(everything) == []


def test_debug_logs_hold_no_gateway_key(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ResponsesSession(
        base_url=emu.base_url + GATEWAY_QUERY, api_key=CANARY_KEY, extra_headers={"api-key": HEADER_CANARY}
    ) as s:
        assert s.respond("logged").status == "completed"
    assert gateway_leaks(caplog.text) == []


def test_gateway_secrets_never_reach_iopub_or_the_saved_notebook(tmp_path) -> None:
    """A kernel whose OPENAI_BASE_URL carries a gateway key, and whose server is down: the connect errors name
    the URL (in the live view, the frozen output, ``raise``, ``%responses``) with the key masked."""
    from kernel_helpers import Kernel, all_text

    base_url = _dead_base_url() + GATEWAY_QUERY
    cells = [
        "%load_ext ipy_responses_ws",
        "%%respond -o a\nhello",
        "%%respond -t sse -o b\nhello again",
        "%%respond --background -o c\nin the background",
        "import time\nfor _ in range(100):\n    if 'c' in globals(): break\n    time.sleep(0.05)",
        "print(a.error); print(repr(b.error)); print(vars(a.error))",
        "%responses status",
        "%responses config",
        "%responses",
        "raise b.error",
    ]
    with Kernel({"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": CANARY_KEY}) as k:
        for cell in cells:
            k.execute(cell, timeout=60)
        kinds = k.execute("print(type(a.error).__name__, type(b.error).__name__, c.status)").stdout().split()
        text = all_text(k.all_messages)
    assert kinds[:2] == ["ConnectError", "ConnectError"] and kinds[2] == "failed", kinds
    assert "api-key=***" in text
    assert gateway_leaks(text) == []

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in cells[:3] + cells[5:]])
    env_before = {k: os.environ.get(k) for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    os.environ.update({"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": CANARY_KEY})
    try:
        NotebookClient(
            nb,
            timeout=60,
            kernel_name="python3",
            allow_errors=True,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()
    finally:
        for name, value in env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    saved = nbformat.writes(nb)
    assert "Could not connect to" in saved
    assert gateway_leaks(saved) == []
