"""A real LiteLLM proxy on loopback in front of the TLS emulator (tests/test_gateway_litellm.py).

The proxy runs from its own venv, ``.venv-litellm/`` (``tests/gateway/make_venv.sh`` builds it from the pins in
``tests/gateway/requirements.txt``; ``tests/run.sh`` calls it). Without that venv the fixture skips, and
``IPY_RWS_REQUIRE_GATEWAY=1`` (set by ``.ci/run``) turns the skip into a failure (``tests/conftest.py``).

How it is started (docs/gateways.md has what was learnt):

* **Offline**: the ``LITELLM_LOCAL_*`` switches make LiteLLM read its bundled model cost map, Anthropic beta
  headers, blog posts, policy templates and auto-router presets instead of fetching them from GitHub at start.
  No database (``DATABASE_URL`` removed), so only the master key is accepted.
* **In front of the TLS emulator**: one model entry, ``gpt-5-mini`` → ``openai/gpt-5-mini`` at the emulator's
  ``https://127.0.0.1:PORT/v1`` (LiteLLM's WebSocket route needs an ``https`` upstream). The proxy trusts the
  emulator's throw-away CA through ``SSL_CERT_FILE``, which LiteLLM's HTTP client and its upstream WebSocket
  (``websockets.connect``) both read. The emulator checks the upstream key, so a test can tell the client's key
  from the proxy's.
* **LiteLLM's own retries off** (``router_settings.num_retries: 0``): by default the router retries an upstream
  429 or 5xx over HTTP twice before the client sees anything, which would hide what the engine does. Its
  WebSocket route never retries.
* **Pings at test speed**: ``tests/gateway/serve.py`` runs LiteLLM's CLI with uvicorn's ``ws_ping_interval`` /
  ``ws_ping_timeout`` set to :data:`PING_INTERVAL` / :data:`PING_TIMEOUT` (the CLI's defaults are 20 s / 20 s).
* A free loopback port, a ready-wait on ``/health/liveliness`` (no key needed), and at teardown the proxy's
  whole process group is stopped (SIGTERM, then SIGKILL after 5 s).

Import the fixture into a test module: ``from gateway_fixtures import litellm_proxy  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from emulator_fixtures import running_emulator

from ipy_responses_ws.emulator import Emulator

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "tests" / "gateway" / "requirements.txt"
SERVE = REPO / "tests" / "gateway" / "serve.py"
VENV = Path(os.environ.get("IPY_RWS_LITELLM_VENV", REPO / ".venv-litellm"))

#: The proxy's master key (fake): the only key a proxy without a database accepts.
MASTER_KEY = "sk-test-FAKE-litellm-master-0123456789abcdef"
#: The key the proxy sends upstream; the emulator accepts only this one.
UPSTREAM_KEY = "sk-test-FAKE-litellm-upstream-0123456789"
MODEL = "gpt-5-mini"
#: uvicorn's keepalive on the proxy's client sockets in tests: a ping every second, the socket closed when its
#: pong is 2 s late (LiteLLM's CLI: 20 s / 20 s).
PING_INTERVAL = 1.0
PING_TIMEOUT = 2.0
#: LiteLLM fetches these from GitHub at start unless told to use its bundled copies.
OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
}
#: Removed from the proxy's environment: no database, no HTTP proxy between it and the emulator, no real keys.
_DROPPED_ENV = (
    "DATABASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "LITELLM_MASTER_KEY",
)
STARTUP_TIMEOUT = 90.0  # measured 7-8 s on 2 shared cores; below pytest's 120 s per test


@dataclass
class LiteLLMProxy:
    """A running proxy: point a client at ``base_url`` with ``key``; ``emulator`` is what it forwards to."""

    base_url: str  # http://127.0.0.1:PORT/v1
    key: str
    emulator: Emulator
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_seconds: float

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/responses"

    def log(self) -> str:
        """The proxy's output so far (uvicorn's access log names every request and WebSocket upgrade)."""
        return self.log_path.read_text(errors="replace")


def proxy_python() -> Path:
    """The proxy venv's interpreter; skips the test when the venv is missing or was built from other pins."""
    python = VENV / "bin" / "python"
    installed = VENV / "requirements.installed.txt"
    if not python.exists() or not installed.exists():
        pytest.skip(f"LiteLLM's venv {VENV} is not built: run `bash tests/gateway/make_venv.sh`")
    if installed.read_text() != REQUIREMENTS.read_text():
        pytest.skip(
            f"{VENV} was built from other pins than {REQUIREMENTS}: run `bash tests/gateway/make_venv.sh`"
        )
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(emu: Emulator) -> dict[str, object]:
    # YAML is a superset of JSON, so json.dumps writes LiteLLM's config.yaml without a YAML library here.
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": emu.base_url,
                    "api_key": UPSTREAM_KEY,
                },
            }
        ],
        "general_settings": {"master_key": MASTER_KEY},
        "router_settings": {"num_retries": 0},
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the proxy's process group: SIGTERM, then SIGKILL if it is still there after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start(argv: list[str], env: dict[str, str], workdir: Path, port: int) -> subprocess.Popen[bytes] | None:
    """Start the proxy on *port* and wait for its health endpoint; None if the port was taken meanwhile."""
    log_path = workdir / "proxy.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole by _stop()
        )
    health = f"http://127.0.0.1:{port}/health/liveliness"
    try:
        while True:
            try:
                with urllib.request.urlopen(health, timeout=2) as reply:
                    if reply.status == 200:
                        return process
            except (urllib.error.URLError, OSError):
                pass
            text = log_path.read_text(errors="replace")
            tail = "\n".join(text.splitlines()[-30:])
            if process.poll() is not None:
                if "address already in use" in text.lower():
                    return None  # another server took the free port between _free_port() and the bind
                pytest.fail(f"LiteLLM's proxy exited with {process.returncode} at start:\n{tail}")
            if time.monotonic() - started > STARTUP_TIMEOUT:
                pytest.fail(f"LiteLLM's proxy was not ready within {STARTUP_TIMEOUT:.0f} s:\n{tail}")
            time.sleep(0.2)
    except BaseException:
        _stop(process)
        raise


@contextlib.contextmanager
def running_litellm_proxy(
    python: Path,
    emu: Emulator,
    workdir: Path,
    *,
    ping_interval: float | None = PING_INTERVAL,
    ping_timeout: float | None = PING_TIMEOUT,
) -> Iterator[LiteLLMProxy]:
    """LiteLLM's proxy on 127.0.0.1 in front of *emu* (an ``Emulator(tls=True)``) for the block.

    ``ping_interval`` / ``ping_timeout`` set uvicorn's keepalive; None keeps LiteLLM's (20 s / 20 s).
    """
    config = workdir / "config.yaml"
    config.write_text(json.dumps(_config(emu), indent=2))
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(OFFLINE_ENV)
    env.update(SSL_CERT_FILE=str(emu.ca_path), NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    if ping_interval is not None:
        env["IPY_RWS_GATEWAY_WS_PING_INTERVAL"] = str(ping_interval)
    if ping_timeout is not None:
        env["IPY_RWS_GATEWAY_WS_PING_TIMEOUT"] = str(ping_timeout)
    argv = [str(python), str(SERVE), "--config", str(config), "--host", "127.0.0.1"]
    started = time.monotonic()
    process = None
    for _ in range(3):
        port = _free_port()
        process = _start(argv, env, workdir, port)
        if process is not None:
            break
    if process is None:
        pytest.fail("LiteLLM's proxy found its port taken three times in a row")
    try:
        yield LiteLLMProxy(
            base_url=f"http://127.0.0.1:{port}/v1",
            key=MASTER_KEY,
            emulator=emu,
            process=process,
            log_path=workdir / "proxy.log",
            startup_seconds=time.monotonic() - started,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMProxy]:
    """LiteLLM's proxy (module-wide: it takes ~8 s to start) in front of a TLS emulator, pings at test speed."""
    python = proxy_python()
    with (
        running_emulator(api_key=UPSTREAM_KEY, tls=True) as emu,
        running_litellm_proxy(python, emu, tmp_path_factory.mktemp("litellm")) as proxy,
    ):
        yield proxy
