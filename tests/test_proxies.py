"""Behind a corporate proxy: HTTPS_PROXY / NO_PROXY on both transports, the WebSocket upgrade included, and the CA
from SSL_CERT_FILE, through a real HTTP CONNECT proxy (proxy.py, pinned in the ``test`` extra) on loopback in front
of the TLS emulator.

What a user would notice is asserted: answers that quote the conversation (the emulator's ``reply_for``), the
proxy's own count of the tunnels it opened (so a turn that silently went direct fails), errors that name the proxy's
variable and never its password, and a certificate that is not trusted reported as such, quickly. Each test sets
the variables it needs with ``monkeypatch`` (all proxy variables are cleared first) and they are restored after it.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from emulator_fixtures import running_emulator
from kernel_helpers import Kernel, all_text

from ipy_responses_ws import ResponsesSession
from ipy_responses_ws.emulator import Emulator, reply_for
from ipy_responses_ws.errors import ConfigError, ConnectError, ProxyError
from ipy_responses_ws.recovery import Action, decide
from ipy_responses_ws.transports.network import env_proxy

KEY = "sk-test-FAKE-proxies-0123456789abcdef"
USER = "proxy-user"
PASSWORD = "pr0xy-S3cret-pw"  # long enough to be registered for redaction too; must appear nowhere
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")

# proxy.py run as a script, with a plugin that writes one line per tunnel it opens (before it connects upstream),
# so the count is there at once, not when the connection closes (its access log).
_LAUNCHER = """
import os
from proxy import main
from proxy.http.proxy import HttpProxyBasePlugin

class CountTunnels(HttpProxyBasePlugin):
    def before_upstream_connection(self, request):
        with open(os.environ["TUNNEL_LOG"], "a") as f:
            f.write(f"{request.method.decode()} {request.host.decode()}:{request.port}\\n")
        return request

main(plugins=[CountTunnels])
"""


class ConnectProxy:
    """proxy.py on ``127.0.0.1`` (a free port), in its own process, stopped by :meth:`stop`."""

    def __init__(self, basic_auth: str | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="ipy-rws-proxy-")
        d = Path(self._dir.name)
        self.tunnel_log, self.log, port_file = d / "tunnels", d / "proxy.log", d / "port"
        args = ["--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file)]
        args += ["--num-workers", "1", "--num-acceptors", "1", "--timeout", "60", "--log-file", str(self.log)]
        if basic_auth:
            args += ["--basic-auth", basic_auth]
        env = {
            **os.environ,
            "HOME": str(d),
            "TUNNEL_LOG": str(self.tunnel_log),
        }  # HOME: proxy.py writes ~/.proxy
        for name in (*PROXY_VARIABLES, *NO_PROXY_VARIABLES):
            env.pop(name, None)
        with open(d / "stderr", "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = (d / "stderr").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"proxy.py did not start: {err}")
            time.sleep(0.05)
        self.port = int(port_file.read_text().split()[0])

    def url(self, credentials: str | None = None) -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def tunnels(self, emu: Emulator) -> int:
        """How many CONNECT tunnels to the emulator the proxy opened so far."""
        if not self.tunnel_log.exists():
            return 0
        target = f"CONNECT 127.0.0.1:{_port(emu)}"
        return sum(line == target for line in self.tunnel_log.read_text().splitlines())

    def refused(self) -> int:
        """How many requests it refused for want of (right) credentials: each is logged at once."""
        return self.log.read_text().count("ProxyAuthenticationFailed") if self.log.exists() else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._dir.cleanup()


def _port(emu: Emulator) -> int:
    return int(emu.base_url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with running_emulator(tls=True) as e:
        yield e


# One proxy per test: aiohttp keeps an idle tunnel for reuse (its key includes the proxy's URL), and a WebSocket
# upgrade may ride a tunnel an earlier SSE request opened, which would blur the counts.
@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy()
    yield p
    p.stop()


@pytest.fixture
def auth_proxy() -> Iterator[ConnectProxy]:
    """A proxy that wants a user name and password (answers 407 Proxy Authentication Required otherwise)."""
    p = ConnectProxy(basic_auth=f"{USER}:{PASSWORD}")
    yield p
    p.stop()


@pytest.fixture(scope="module")
def kernel_proxies() -> Iterator[tuple[ConnectProxy, ConnectProxy]]:
    """An open proxy and one that wants credentials, for the kernel's cells."""
    open_proxy, auth = ConnectProxy(), ConnectProxy(basic_auth=f"{USER}:{PASSWORD}")
    yield open_proxy, auth
    open_proxy.stop()
    auth.stop()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, emu: Emulator) -> pytest.MonkeyPatch:
    """No proxy variable set; the emulator's CA trusted through SSL_CERT_FILE (restored after the test)."""
    for name in (*PROXY_VARIABLES, *NO_PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(emu.ca_path))
    return monkeypatch


def session(emu: Emulator, **kw: Any) -> ResponsesSession:
    return ResponsesSession(**{"base_url": emu.base_url, "api_key": KEY, **kw})


def wait_for(count: Any, expected: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (n := count()) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


# -- which proxy applies (no sockets) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://p:1"}, "wss://api.example.com/v1/responses", ("http://p:1", "HTTPS_PROXY")),
        (
            {"HTTPS_PROXY": "http://p:1"},
            "https://api.example.com/v1/responses",
            ("http://p:1", "HTTPS_PROXY"),
        ),
        (
            {"HTTPS_PROXY": "http://P:1", "https_proxy": "http://p:2"},
            "wss://h/v1",
            ("http://p:2", "https_proxy"),
        ),
        ({"HTTP_PROXY": "p:3"}, "ws://h:8/v1/responses", ("http://p:3", "HTTP_PROXY")),
        ({"HTTPS_PROXY": "http://p:1"}, "ws://h:8/v1/responses", None),
        ({"ALL_PROXY": "http://a:4"}, "wss://h/v1", ("http://a:4", "ALL_PROXY")),
        ({"ALL_PROXY": "socks5://a:4"}, "wss://h/v1", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "h"}, "wss://h/v1", None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": ".example.com"}, "wss://api.example.com/v1", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "wss://api.example.com/v1", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.com"}, "wss://h/v1", ("http://p:1", "HTTPS_PROXY")),
    ],
)
def test_which_proxy_variable_applies_to_a_url(
    env: pytest.MonkeyPatch, variables: dict[str, str], url: str, expected: tuple[str, str] | None
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    found = env_proxy(url)
    assert (tuple(found) if found else None) == expected


@pytest.mark.parametrize(
    ("status", "transport", "action"),
    [
        (407, "ws", Action.FALLBACK),
        (407, "sse", Action.FAIL),
        (403, "ws", Action.FALLBACK),
        (403, "sse", Action.FAIL),
        (502, "ws", Action.FALLBACK),
        (502, "sse", Action.BACKOFF),
    ],
)
def test_what_the_turn_does_after_a_refused_tunnel(status: int, transport: str, action: Action) -> None:
    """The recovery policy as it applies to ProxyError: SSE once from WebSocket mode; only a 5xx is retried."""
    err = ProxyError(status=status, proxy="http://u:p@proxy:3128", variable="HTTPS_PROXY", url="wss://h/v1")
    if transport == "ws":
        err.phase = "handshake"  # type: ignore[attr-defined]  # as the WebSocket transport marks it
    decision = decide(
        err,
        transport=transport,
        received=False,
        reused=False,
        by_id=True,
        fallback_allowed=True,
        max_retries=2,
    )
    assert decision.action is action
    assert "OPENAI_API_KEY" not in str(err) and "API key" not in str(err)


def test_a_socks_proxy_in_https_proxy_is_a_clear_error(env: pytest.MonkeyPatch, emu: Emulator) -> None:
    env.setenv("HTTPS_PROXY", f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080")
    with session(emu, transport="sse") as s:
        r = s.respond("Through SOCKS?")
    assert isinstance(r.error, ConfigError)
    assert "HTTPS_PROXY" in str(r.error) and "socks5://" in str(r.error)
    assert PASSWORD not in str(r.error) and USER not in str(r.error)


# -- chains through the proxy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_chain_goes_through_the_proxy(
    env: pytest.MonkeyPatch, emu: Emulator, proxy: ConnectProxy, transport: str
) -> None:
    env.setenv("HTTPS_PROXY", proxy.url())
    before = proxy.tunnels(emu)
    prompts = ["Which proxy is this?", "What did I just ask?", "And what came first?"]
    with session(emu, transport=transport) as s:
        for n in range(1, len(prompts) + 1):
            r = s.respond(prompts[n - 1])
            assert r.status == "completed", r.error
            assert r.text == reply_for(prompts[:n])
            assert r.transport == transport and r.fallback_reason is None
    tunnels = wait_for(lambda: proxy.tunnels(emu), before + 1) - before
    if transport == "ws":
        assert tunnels == 1  # the upgrade went through a CONNECT tunnel, and the chain kept its socket
    else:
        assert 1 <= tunnels <= len(prompts)  # keep-alive may carry several POSTs through one tunnel


def test_store_false_chains_by_id_on_one_socket_through_the_proxy(
    env: pytest.MonkeyPatch, emu: Emulator, proxy: ConnectProxy
) -> None:
    env.setenv("HTTPS_PROXY", proxy.url())
    before, mark = proxy.tunnels(emu), len(emu.connections)
    prompts = ["Remember me without storing", "Still there?", "And now?"]
    with session(emu, transport="ws", store=False) as s:
        for n in range(1, len(prompts) + 1):
            r = s.respond(prompts[n - 1])
            assert r.text == reply_for(prompts[:n]) and not r.resent_transcript
    (conn,) = [c for c in emu.connections[mark:] if c.path.endswith("/responses")]
    creates = [f for f in conn.frames if f.get("type") == "response.create"]
    assert [f.get("previous_response_id") for f in creates] == [None, *conn.responses[:2]]
    assert wait_for(lambda: proxy.tunnels(emu), before + 1) - before == 1


@pytest.mark.parametrize("names", [("HTTPS_PROXY", "NO_PROXY"), ("https_proxy", "no_proxy")])
def test_no_proxy_bypasses_the_proxy(
    env: pytest.MonkeyPatch, emu: Emulator, proxy: ConnectProxy, names: tuple[str, str]
) -> None:
    """Set between two cells of one session: the variables are read at each connect, not once at start."""
    proxy_var, no_proxy_var = names
    env.setenv(proxy_var, proxy.url())
    before = proxy.tunnels(emu)
    with session(emu, transport="sse") as s:
        assert s.respond("Through the proxy").status == "completed"
        through = wait_for(lambda: proxy.tunnels(emu), before + 1)
        assert through == before + 1
        env.setenv(no_proxy_var, "localhost,127.0.0.1")
        for transport in ("sse", "ws"):
            r = s.respond(f"Direct, over {transport}", transport=transport)
            assert r.status == "completed", r.error
    time.sleep(0.3)
    assert proxy.tunnels(emu) == through


def test_all_proxy_is_the_fallback(env: pytest.MonkeyPatch, emu: Emulator, proxy: ConnectProxy) -> None:
    env.setenv("ALL_PROXY", proxy.url())
    before = proxy.tunnels(emu)
    with session(emu, transport="ws") as s:
        assert s.respond("Through ALL_PROXY").status == "completed"
    assert wait_for(lambda: proxy.tunnels(emu), before + 1) == before + 1


# -- a proxy that wants credentials -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_credentials_in_the_proxy_url_open_the_tunnel(
    env: pytest.MonkeyPatch, emu: Emulator, auth_proxy: ConnectProxy, transport: str
) -> None:
    env.setenv("HTTPS_PROXY", auth_proxy.url(f"{USER}:{PASSWORD}"))
    before, refused = auth_proxy.tunnels(emu), auth_proxy.refused()
    with session(emu, transport=transport) as s:
        r = s.respond("With credentials")
    assert r.status == "completed" and r.transport == transport, r.error
    assert wait_for(lambda: auth_proxy.tunnels(emu), before + 1) == before + 1
    assert auth_proxy.refused() == refused


@pytest.mark.parametrize("credentials", [None, f"{USER}:{PASSWORD}-wrong"], ids=["none", "wrong"])
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_407_names_the_proxy_variable_and_never_its_password(
    env: pytest.MonkeyPatch,
    emu: Emulator,
    auth_proxy: ConnectProxy,
    caplog: pytest.LogCaptureFixture,
    transport: str,
    credentials: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    env.setenv("HTTPS_PROXY", auth_proxy.url(credentials))
    refused, mark = auth_proxy.refused(), len(emu.connections)
    started = time.monotonic()
    with session(emu, transport=transport) as s:
        r = s.respond("Without the right credentials")
    assert r.status == "failed" and isinstance(r.error, ProxyError)
    err = r.error
    text = str(err)
    assert err.status == 407 and err.variable == "HTTPS_PROXY"
    assert (
        f"The proxy http://{'***@' if credentials else ''}127.0.0.1:{auth_proxy.port} (from HTTPS_PROXY)"
        in text
    )
    assert "(HTTP 407)" in text and text.count("407") == 1
    assert (
        "refused the user name and password in HTTPS_PROXY" if credentials else "put them in HTTPS_PROXY"
    ) in text
    assert "API key" not in text and "OPENAI_API_KEY" not in text  # the request never reached the server
    if transport == "ws":
        # The recovery policy: an upgrade refused before any event is tried once over SSE, through the same proxy.
        assert r.transport == "sse" and "407" in (r.fallback_reason or "")
        assert wait_for(auth_proxy.refused, refused + 2) == refused + 2
    else:
        assert r.transport == "sse" and r.fallback_reason is None
        assert wait_for(auth_proxy.refused, refused + 1) == refused + 1
    assert r.retries == 0 and time.monotonic() - started < 10  # a 407 is not retried with backoff
    assert len(emu.connections) == mark  # nothing reached the server
    assert (
        err.__context__ is None and err.__cause__ is None
    )  # aiohttp's exception (with the credentials) is not kept
    shown = [text, repr(err), repr(r), str(vars(err)), caplog.text]
    assert not [t for t in shown if PASSWORD in t or USER in t]


def test_an_unreachable_proxy_names_its_variable(env: pytest.MonkeyPatch, emu: Emulator) -> None:
    with socket.socket() as sock:  # a port nobody listens on (bound, then closed)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env.setenv("https_proxy", f"http://{USER}:{PASSWORD}@127.0.0.1:{port}")
    with session(emu, transport="ws", max_retries=0) as s:
        r = s.respond("Is the proxy there?")
    assert isinstance(r.error, ConnectError) and r.transport == "sse"  # WS failed, then SSE once
    text = str(r.error)
    assert f"Could not connect to the proxy http://***@127.0.0.1:{port} (from https_proxy)" in text
    assert "Check https_proxy" in text and PASSWORD not in text and USER not in text


# -- the CA ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_wrong_ca_is_a_clear_tls_error_not_a_hang(
    env: pytest.MonkeyPatch, emu: Emulator, proxy: ConnectProxy, transport: str, tmp_path: Path
) -> None:
    """SSL_CERT_FILE names a CA that did not sign the server's certificate (a corporate proxy's CA missing)."""
    wrong = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong))
    env.setenv("SSL_CERT_FILE", str(wrong))
    env.setenv("HTTPS_PROXY", proxy.url())
    started = time.monotonic()
    with session(emu, transport=transport) as s:
        r = s.respond("Is this server trusted?")
    assert r.status == "failed" and isinstance(r.error, ConnectError)
    text = str(r.error)
    assert "TLS certificate of 127.0.0.1 (reached through the proxy from HTTPS_PROXY) is not trusted" in text
    assert f"trusted: the CA file {wrong} (from SSL_CERT_FILE)" in text and "set SSL_CERT_FILE" in text
    assert time.monotonic() - started < 15  # fails at the TLS handshake (two short backoffs), never hangs


def test_ssl_cert_dir_set_before_start_is_trusted(emu: Emulator, tmp_path: Path) -> None:
    """SSL_CERT_DIR is OpenSSL's own: honoured for the default trust store when set before the process starts."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to hash the CA directory")
    shutil.copy(emu.ca_path, tmp_path / "emulator-ca.pem")
    subprocess.run(["openssl", "rehash", str(tmp_path)], check=True, capture_output=True)
    code = (
        "from ipy_responses_ws import ResponsesSession\n"
        f"with ResponsesSession(base_url={emu.base_url!r}, api_key={KEY!r}) as s:\n"
        "    for t in ('ws', 'sse'):\n"
        "        r = s.respond('Trusted through SSL_CERT_DIR?', transport=t)\n"
        "        print(t, r.status, r.transport, r.error)\n"
    )
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES + ("ssl_cert_file",)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "SSL_CERT_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert out.stdout.splitlines() == ["ws completed ws None", "sse completed sse None"], out.stderr[-2000:]


# -- %%respond in a real kernel --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(emu: Emulator, kernel_proxies: tuple[ConnectProxy, ConnectProxy]) -> Iterator[Kernel]:
    """A kernel started with no proxy variable; the cells set HTTPS_PROXY as a notebook would."""
    auth_proxy = kernel_proxies[1]
    env = {"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": KEY, "SSL_CERT_FILE": str(emu.ca_path)}
    env |= {name: "" for name in (*PROXY_VARIABLES, *NO_PROXY_VARIABLES)}  # empty counts as unset
    # In the environment so that no cell's source (echoed on iopub) holds the password.
    env["WRONG_PROXY_FOR_TESTS"] = auth_proxy.url(f"{USER}:{PASSWORD}-wrong")
    with Kernel(env) as k:
        ex = k.execute("%load_ext ipy_responses_ws")
        assert ex.status == "ok", ex.error
        yield k


def test_respond_goes_through_a_proxy_set_in_the_notebook(
    kernel: Kernel, emu: Emulator, kernel_proxies: tuple[ConnectProxy, ConnectProxy]
) -> None:
    proxy = kernel_proxies[0]
    before = proxy.tunnels(emu)
    ex = kernel.execute(f"import os; os.environ['HTTPS_PROXY'] = {proxy.url()!r}")
    assert ex.status == "ok", ex.error
    try:
        prompts = ["First cell behind the proxy", "Second cell, same socket"]
        for n in range(1, 3):
            ex = kernel.execute(f"%%respond\n{prompts[n - 1]}")
            assert ex.status == "ok", ex.error
            content = ex.of_type("update_display_data")[-1]["content"]
            assert content["data"]["text/plain"] == reply_for(prompts[:n])
            assert content["metadata"]["ipy_responses_ws"]["transport"] == "ws"
        assert wait_for(lambda: proxy.tunnels(emu), before + 1) - before == 1
    finally:
        kernel.execute("os.environ.pop('HTTPS_PROXY', None)")


def test_respond_behind_a_refusing_proxy_names_it_and_hides_its_password(
    kernel: Kernel, kernel_proxies: tuple[ConnectProxy, ConnectProxy]
) -> None:
    auth_proxy = kernel_proxies[1]
    kernel.execute("%responses close")  # no pooled socket from an earlier cell: the next one connects anew
    refused = auth_proxy.refused()
    ex = kernel.execute("import os; os.environ['HTTPS_PROXY'] = os.environ['WRONG_PROXY_FOR_TESTS']")
    assert ex.status == "ok", ex.error
    try:
        ex = kernel.execute("%%respond --new\nBehind a proxy that wants other credentials")
    finally:
        kernel.execute("os.environ.pop('HTTPS_PROXY', None)")
    assert ex.status == "ok", ex.error  # a failed turn is shown in the cell's output, not raised
    content = ex.of_type("update_display_data")[-1]["content"]
    shown = content["data"]["text/plain"]
    assert shown.startswith(f"The proxy http://***@127.0.0.1:{auth_proxy.port} (from HTTPS_PROXY) refused")
    assert "(HTTP 407)" in shown and "refused the user name and password in HTTPS_PROXY" in shown
    meta = content["metadata"]["ipy_responses_ws"]
    assert meta["status"] == "failed" and meta["transport"] == "sse"  # WebSocket first, then SSE once
    assert wait_for(auth_proxy.refused, refused + 2) == refused + 2
    seen = all_text(ex.messages) + str(ex.reply)
    assert "OPENAI_API_KEY" not in seen and "API key" not in seen
    assert PASSWORD not in seen and USER not in seen
