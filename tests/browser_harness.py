"""Drive a real JupyterLab in headless Chromium, for the end-to-end browser tests.

What lives here:

* :func:`browser_skip_reason` — why the browser tests cannot run on this machine (``None`` if they can).
* :class:`JupyterServer` — one ``jupyter lab`` (or ``jupyter notebook``) process on 127.0.0.1 with isolated
  config/runtime/settings/workspace/data dirs, a tmp ``root_dir``, and extra environment for the kernels
  (kernels inherit the server's environment, so ``OPENAI_BASE_URL`` and a fake ``OPENAI_API_KEY`` set here
  reach every ``%%respond`` cell). Stopped by pid, bounded in time.
* :class:`NotebookPage` — one notebook open in one browser page: run cells, read outputs, sample how the
  output grows over time, click buttons inside outputs, interrupt, save, shut the kernel down, reopen, and
  save a screenshot at each step into the artifacts folder.
* The pytest fixtures ``browser_env`` (session-wide server + browser context + emulator, started once per
  pytest session even when several modules import it), ``browser_context`` (closes the test's pages) and
  ``new_notebook`` (a factory of fresh, open, idle notebooks; their kernels are shut down after the test).
  Test modules import them: ``from browser_harness import browser_env, browser_context, new_notebook``.

Every wait is bounded by a timeout; the server, the emulator and the browser are stopped in finalizers.
Selectors follow what JupyterLab 4.6 renders (``.jp-Cell``, ``.jp-OutputArea``, the status bar text
``Python 3 (ipykernel) | Idle``); see docs/browser-tests.md for the pitfalls they avoid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

#: Debian's Chromium; ``IPY_RWS_CHROMIUM`` points elsewhere (e.g. /usr/bin/chromium-browser on Ubuntu).
CHROMIUM = os.environ.get("IPY_RWS_CHROMIUM", "/usr/bin/chromium")
#: Flags from /work/shared/TESTING.md, plus no QUIC and no sync: the machine has no internet, and a headless
#: Chromium should not try to reach Google services while a test measures timings.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
#: A fake key: tests must never need a real one, and it must never show up in an output (see test asserts).
FAKE_API_KEY = "sk-test-FAKE-browser-0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent
IDLE_TEXT = "| Idle"
DEFAULT_TIMEOUT_MS = 30_000


def artifacts_dir() -> Path:
    """Where screenshots and server logs go: ``$IPY_RWS_ARTIFACTS`` or ``<repo>/artifacts/browser`` (gitignored)."""
    path = Path(os.environ.get("IPY_RWS_ARTIFACTS") or REPO / "artifacts" / "browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


def browser_skip_reason() -> str | None:
    """Return why the browser tests must skip here, or None when Chromium and Playwright are both present."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[browser]')"
    if not _has_module("jupyterlab"):
        return "jupyterlab is not installed (pip install -e '.[browser]')"
    return None


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (tiny race between closing and the server binding it; fine for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


# --------------------------------------------------------------------------------------------------------------
# The Jupyter server
# --------------------------------------------------------------------------------------------------------------


@dataclass
class JupyterServer:
    """A ``jupyter lab`` / ``jupyter notebook`` process bound to 127.0.0.1, isolated under ``workdir``.

    ``kernel_env`` is added to the server's environment; kernels inherit it. ``app`` is ``"jupyterlab"`` or
    ``"notebook"`` (Notebook 7, same server, different front end).
    """

    workdir: Path
    kernel_env: dict[str, str] = field(default_factory=dict)
    app: str = "jupyterlab"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    startup_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def root_dir(self) -> Path:
        return self.workdir / "nb"

    def start(self, timeout: float = 60.0) -> JupyterServer:
        """Start the server and wait (bounded) until ``/api/status`` answers."""
        self.port = self.port or free_port()
        dirs = {
            name: self.workdir / name for name in ("cfg", "rt", "settings", "ws", "data", "ipython", "nb")
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        # No news/update toast: it steals focus from the cell editor (TESTING.md pitfall).
        _write_json(
            dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
            {"fetchNews": "false", "checkForUpdates": False},
        )
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(dirs["cfg"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["rt"]),
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["ws"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "IPYTHONDIR": str(dirs["ipython"]),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONUNBUFFERED": "1",
            **self.kernel_env,
        }
        cmd = [
            sys.executable,
            "-m",
            self.app,
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            # A loopback server driven by a test; the REST helpers below post without a browser cookie.
            "--ServerApp.disable_check_xsrf=True",
            f"--ServerApp.root_dir={dirs['nb']}",
        ]
        # Named by port: two pytest sessions on one machine must not write into each other's log.
        self.log_path = artifacts_dir() / f"server-{self.app}-{self.port}.log"
        log = self.log_path.open("wb")
        t0 = time.monotonic()
        # A new session (process group) so the finalizer can also end kernels the server leaves behind.
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        self.startup_seconds = time.monotonic() - t0
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(
            f"{self.app} did not answer /api/status within {timeout:.0f}s; see {self.log_path}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server (it shuts its kernels down), then SIGKILL its process group if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        # The group id is the server's pid (start_new_session); it holds only what this harness started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    # --- REST helpers (contents and sessions API) ---------------------------------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Call the server's REST API and return the decoded JSON (None for an empty body)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def create_notebook(self, name: str, cells: list[str]) -> str:
        """Create ``name`` (under root_dir) with one code cell per source; return its path."""
        path = name if name.endswith(".ipynb") else f"{name}.ipynb"
        nb = {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {
                    "name": "python3",
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                },
                "language_info": {"name": "python"},
            },
            "cells": [
                {
                    "cell_type": "code",
                    "id": f"cell-{i}",
                    "metadata": {},
                    "source": src,
                    "outputs": [],
                    "execution_count": None,
                }
                for i, src in enumerate(cells or [""])
            ],
        }
        self.api("PUT", f"/api/contents/{path}", {"type": "notebook", "format": "json", "content": nb})
        return path

    def read_notebook(self, path: str) -> dict[str, Any]:
        """The saved notebook JSON as the server has it on disk."""
        return self.api("GET", f"/api/contents/{path}?content=1")["content"]

    def shutdown_kernels_of(self, path: str) -> int:
        """Delete the sessions (and so shut down the kernels) of the notebook at ``path``; return how many."""
        sessions = [s for s in self.api("GET", "/api/sessions") if s.get("path") == path]
        for s in sessions:
            self.api("DELETE", f"/api/sessions/{s['id']}")
        return len(sessions)

    def wait_kernel_ready(self, path: str, timeout: float = 60.0) -> None:
        """Wait until the kernel of the notebook at ``path`` is idle and has a client (the page) attached."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for s in self.api("GET", "/api/sessions"):
                if s.get("path") == path and s.get("kernel"):
                    last = s["kernel"]
                    if last.get("execution_state") == "idle" and last.get("connections", 0) >= 1:
                        return
            time.sleep(0.2)
        raise TimeoutError(f"the kernel of {path} was not idle and connected within {timeout:.0f}s: {last}")


# --------------------------------------------------------------------------------------------------------------
# One notebook in one page
# --------------------------------------------------------------------------------------------------------------

# Collects the text length of one cell's output area every `interval` ms, in the page itself (no Python
# round-trip per sample), until `duration` ms pass or `doneText` appears in that output.
_SAMPLER_JS = """
async ([index, duration, interval, doneText]) => {
  const cell = () => document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
  const text = () => { const o = cell()?.querySelector('.jp-OutputArea'); return o ? o.innerText : ''; };
  const t0 = performance.now(); const out = [];
  while (performance.now() - t0 < duration) {
    const t = text();
    out.push([(performance.now() - t0) / 1000, t.length]);
    if (doneText && t.includes(doneText)) break;
    await new Promise(r => setTimeout(r, interval));
  }
  return out;
}
"""

# The same sampling, but in the background (setInterval) so the test can act (screenshot, click) meanwhile;
# each sample is [seconds, text length, whether `doneSelector` matches inside the output yet, whether the
# output text matched the `watch` regex at that moment] (to catch transient text such as a live badge).
_SAMPLER_START_JS = """
([index, interval, doneSelector, watch]) => {
  if (window.__rwsSampler) clearInterval(window.__rwsSampler.id);
  const s = {t0: performance.now(), samples: []};
  const re = watch ? new RegExp(watch) : null;
  s.id = setInterval(() => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const o = cell && cell.querySelector('.jp-OutputArea');
    const text = o ? o.innerText : '';
    const done = !!(o && doneSelector && o.querySelector(doneSelector));
    s.samples.push([(performance.now() - s.t0) / 1000, text.length, done, !!(re && re.test(text))]);
  }, interval);
  window.__rwsSampler = s;
}
"""
_SAMPLER_STOP_JS = """
() => { const s = window.__rwsSampler; if (!s) return []; clearInterval(s.id); window.__rwsSampler = null;
        return s.samples; }
"""


class Sample(NamedTuple):
    """One in-page sample of an output area."""

    seconds: float
    length: int  # characters of the output's visible text
    done: bool  # the sampler's done_selector matched (e.g. the frozen Markdown answer is there)
    watched: bool  # the sampler's watch regex matched the output text


class NotebookPage:
    """A notebook opened in a Playwright page. Cells are addressed by index (0 = first cell)."""

    def __init__(self, server: JupyterServer, page: Any, path: str, shot_prefix: str) -> None:
        self.server = server
        self.page = page
        self.path = path
        self.shot_prefix = shot_prefix
        self._shots = 0
        self.timings: dict[str, float] = {}
        self._t0 = time.monotonic()

    def mark(self, label: str) -> float:
        """Record how many seconds after this page was created ``label`` happened (kept in timings.jsonl)."""
        self.timings[label] = round(time.monotonic() - self._t0, 3)
        return self.timings[label]

    # --- opening ----------------------------------------------------------------------------------------

    def open(self, *, wait_idle: bool = True, timeout_ms: int = 90_000) -> NotebookPage:
        """Load the notebook with ``?reset`` (no restored workspace) and wait for the kernel to be idle.

        The toolbar's idle dot appears before the kernel is connected, so this waits for the status-bar text
        ``| Idle`` instead (otherwise the first Shift+Enter is lost; TESTING.md).
        """
        t0 = time.monotonic()
        url = f"{self.server.url}/lab/tree/{self.path}?reset"
        if self.server.app == "notebook":
            url = f"{self.server.url}/notebooks/{self.path}"
        self.page.goto(url, timeout=timeout_ms)
        self.page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
        if wait_idle:
            self.wait_idle(timeout_ms=timeout_ms)
        self.timings["open_to_idle" if wait_idle else "open_to_cells"] = round(time.monotonic() - t0, 3)
        return self

    def wait_idle(self, timeout_ms: int = 60_000) -> None:
        """Wait until the kernel is really ready for a Shift+Enter.

        Two signals, both bounded: the server reports this notebook's kernel ``idle`` with at least one
        WebSocket connection (the page is attached to it), and the page says so too: the status-bar text
        ``| Idle`` in JupyterLab (the toolbar's idle dot appears earlier, before the kernel is connected;
        TESTING.md), the toolbar's kernel name and idle indicator in Notebook 7 (it has no status bar).
        """
        self.server.wait_kernel_ready(self.path, timeout=timeout_ms / 1000)
        if self.server.app == "notebook":
            self.page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
                state="attached", timeout=timeout_ms
            )
            self.page.locator(".jp-Toolbar-kernelName", has_text="Python 3").first.wait_for(
                timeout=timeout_ms
            )
            return
        self.page.get_by_text(IDLE_TEXT, exact=False).first.wait_for(timeout=timeout_ms)

    # --- cells -------------------------------------------------------------------------------------------

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def output(self, index: int) -> Any:
        """The output area of cell ``index`` (never ``cell.inner_text()``: that includes the source)."""
        return self.cell(index).locator(".jp-OutputArea").first

    def output_text(self, index: int) -> str:
        out = self.output(index)
        return out.inner_text(timeout=5_000) if out.count() else ""

    def focus_cell(self, index: int) -> None:
        """Click into the cell's editor (a toast can steal focus; clicking first makes key presses land)."""
        editor = self.cell(index).locator(".jp-InputArea-editor").first
        editor.click(timeout=DEFAULT_TIMEOUT_MS)

    def prompt_text(self, index: int) -> str:
        """The execution prompt of cell ``index``: ``"[ ]:"``, ``"[*]:"`` or ``"[n]:"``."""
        return self.cell(index).locator(".jp-InputArea-prompt").first.inner_text(timeout=5_000)

    def run_cell(self, index: int) -> None:
        """Select cell ``index`` and press Shift+Enter, making sure the key press reached the notebook.

        Under heavy CPU load a key press can land before the editor has focus and be lost. JupyterLab
        marks a cell ``[*]`` as soon as it is queued, so if the prompt neither shows ``*`` nor a new number
        within a few seconds, the press was lost and is repeated once (safe: nothing was queued).
        """
        before = self.prompt_text(index)
        for _attempt in range(2):
            self.focus_cell(index)
            self.page.keyboard.press("Shift+Enter")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                now = self.prompt_text(index)
                if "*" in now or (now != before and re.search(r"\d", now)):
                    return
                time.sleep(0.05)
        raise AssertionError(f"cell {index} was not queued by Shift+Enter (prompt still {before!r})")

    def run_all(self) -> None:
        """Run → Run All Cells from the menu bar (every cell is queued at once, as a user's "Run All")."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).first.click()
        self.page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).first.click()

    def type_and_run(self, index: int, code: str) -> None:
        """Replace the source of cell ``index`` with ``code`` (inserted as text, so the editor's auto-indent
        and bracket closing do not alter it) and press Shift+Enter."""
        self.focus_cell(index)
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Shift+Enter")

    def wait_for_output(
        self, index: int, text: str | re.Pattern[str], timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> str:
        """Wait until cell ``index``'s output contains ``text`` (a string or regex); return the output text."""
        pattern = text if isinstance(text, re.Pattern) else re.compile(re.escape(text))
        deadline = time.monotonic() + timeout_ms / 1000
        last = ""
        while time.monotonic() < deadline:
            last = self.output_text(index)
            if pattern.search(last):
                return last
            time.sleep(0.1)
        raise AssertionError(
            f"cell {index} output never matched {pattern.pattern!r}; last output:\n{last[-2000:]}"
        )

    def wait_execution_count(self, index: int, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> int:
        """Wait until cell ``index`` shows ``[n]:`` (it finished) and return n."""
        prompt = self.cell(index).locator(".jp-InputArea-prompt").first
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            m = re.search(r"\[(\d+)\]", prompt.inner_text(timeout=5_000))
            if m:
                return int(m.group(1))
            time.sleep(0.1)
        raise AssertionError(f"cell {index} never finished (prompt still {prompt.inner_text()!r})")

    def sample_output_lengths(
        self, index: int, duration_s: float, interval_ms: int = 50, done_text: str | None = None
    ) -> list[tuple[float, int]]:
        """Sample the text length of cell ``index``'s output every ``interval_ms`` for at most ``duration_s``
        (stopping early once ``done_text`` shows up); return ``[(seconds, length), ...]``."""
        samples = self.page.evaluate(_SAMPLER_JS, [index, int(duration_s * 1000), interval_ms, done_text])
        return [(float(t), int(n)) for t, n in samples]

    def start_sampling(
        self,
        index: int,
        interval_ms: int = 50,
        done_selector: str | None = None,
        watch: str | None = None,
    ) -> None:
        """Start sampling cell ``index``'s output in the page every ``interval_ms`` (see :meth:`stop_sampling`).

        ``done_selector`` marks samples taken once it matches inside the output; ``watch`` is a JavaScript
        regex whose matches are recorded per sample (text that shows only for a moment, like a live badge).
        """
        self.page.evaluate(_SAMPLER_START_JS, [index, interval_ms, done_selector, watch])

    def stop_sampling(self) -> list[Sample]:
        """Stop the sampler and return its samples."""
        return [
            Sample(float(t), int(n), bool(d), bool(w)) for t, n, d, w in self.page.evaluate(_SAMPLER_STOP_JS)
        ]

    def click_in_output(
        self, index: int, name: str | re.Pattern[str], timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> None:
        """Click the button named ``name`` inside cell ``index``'s output (widget buttons and toggles)."""
        button = self.output(index).get_by_role("button", name=name).first
        button.click(timeout=timeout_ms)

    # --- kernel and file -----------------------------------------------------------------------------------

    def interrupt(self, how: str = "toolbar") -> None:
        """Interrupt the kernel: the toolbar's ■ button (``"toolbar"``), Kernel → Interrupt Kernel (``"menu"``)
        or ``I,I`` in command mode (``"keys"``)."""
        if how == "toolbar":
            self.page.locator("jp-button[data-command='notebook:interrupt-kernel']").first.click()
        elif how == "menu":
            self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).first.click()
            self.page.get_by_role("menuitem", name=re.compile(r"^Interrupt Kernel")).first.click()
        elif how == "keys":
            self.page.keyboard.press("Escape")  # leave the editor: command mode
            self.page.keyboard.press("i")
            self.page.keyboard.press("i")
        else:
            raise ValueError(f"unknown interrupt method {how!r}")

    def save(self, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        """Ctrl+S, then wait (bounded) until the tab no longer shows unsaved changes."""
        self.page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")
        dirty = self.page.locator(".jp-mod-dirty")
        deadline = time.monotonic() + timeout_ms / 1000
        time.sleep(0.2)
        while time.monotonic() < deadline and dirty.count():
            time.sleep(0.1)
        if dirty.count():
            raise AssertionError("the notebook still has unsaved changes after Ctrl+S")

    def shutdown_kernel(self) -> int:
        """Shut the notebook's kernel down through the sessions API; return how many sessions were deleted."""
        return self.server.shutdown_kernels_of(self.path)

    def reopen(self, context: Any, *, wait_idle: bool = False) -> NotebookPage:
        """Close this page and open the same notebook in a new page of ``context``."""
        self.page.close()
        other = NotebookPage(self.server, context.new_page(), self.path, self.shot_prefix)
        other._shots = self._shots
        other._t0 = self._t0
        other.timings = self.timings
        other.open(wait_idle=wait_idle)
        return other

    # --- evidence --------------------------------------------------------------------------------------------

    def screenshot(self, step: str, *, full_page: bool = False) -> Path:
        """Save ``<prefix>-NN-<step>.png`` into the artifacts folder and return its path."""
        self._shots += 1
        path = artifacts_dir() / f"{self.shot_prefix}-{self._shots:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def output_screenshot(self, index: int, step: str) -> Path:
        """Screenshot just cell ``index`` (input and output), for close-up evidence."""
        self._shots += 1
        path = artifacts_dir() / f"{self.shot_prefix}-{self._shots:02d}-{step}.png"
        self.cell(index).screenshot(path=str(path))
        return path


# --------------------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------------------


@dataclass
class BrowserEnv:
    """What a browser test gets from the session: the server, the browser, and the emulator (if any)."""

    server: JupyterServer
    browser: Any
    context: Any
    emulator: Any | None
    base_url: str | None
    emulator_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def require_emulator(self) -> Any:
        if self.emulator is None:
            pytest.skip(f"the emulator is not available yet: {self.emulator_error}")
        return self.emulator


def start_emulator(stack: contextlib.ExitStack) -> tuple[Any | None, str | None, str | None]:
    """Start the package's emulator in a thread with a visible streaming pace (ttft 0.2 s, ~60 tokens/s).

    Returns ``(emulator, base_url, error)``; the emulator is ``None`` (with the reason) if it cannot be imported,
    so the plain-cell harness tests still run while the emulator is being written.
    """
    try:
        from ipy_responses_ws.emulator import Emulator
    except Exception as exc:  # ImportError while the module does not exist yet; anything else is reported too
        return None, None, f"{type(exc).__name__}: {exc}"
    emu = stack.enter_context(
        Emulator(api_key=FAKE_API_KEY, ttft=0.2, token_rate=60.0, answer_words=40).run_in_thread()
    )
    return emu, emu.base_url, None


def _session_browser_env(config: pytest.Config, tmp_root: Path) -> BrowserEnv:
    """Start (once per pytest session) the emulator, JupyterLab and Chromium; stop them at session end."""
    key = _ENV_KEY
    if key in config.stash:
        return config.stash[key]
    from playwright.sync_api import sync_playwright

    stack = contextlib.ExitStack()
    try:
        t0 = time.monotonic()
        emulator, base_url, emu_error = start_emulator(stack)
        kernel_env = {"OPENAI_API_KEY": FAKE_API_KEY}
        if base_url:
            kernel_env["OPENAI_BASE_URL"] = base_url
        server = JupyterServer(tmp_root / "lab", kernel_env=kernel_env).start()
        stack.callback(server.stop)
        t1 = time.monotonic()
        pw = sync_playwright().start()
        stack.callback(pw.stop)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        stack.callback(browser.close)
        # One context for the session: its HTTP cache keeps JupyterLab's ~10 MB of JavaScript warm, so each
        # test's page load is cheaper on this 2-core machine. Tests get fresh pages and fresh notebooks.
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        stack.callback(context.close)
        env = BrowserEnv(
            server=server,
            browser=browser,
            context=context,
            emulator=emulator,
            base_url=base_url,
            emulator_error=emu_error,
            timings={"server_ready": server.startup_seconds, "browser_launch": time.monotonic() - t1},
        )
        env.timings["session_setup"] = time.monotonic() - t0
        record_timings({"session": {k: round(v, 3) for k, v in env.timings.items()}})
    except BaseException:
        stack.close()
        raise
    config.stash[key] = env
    config.add_cleanup(stack.close)
    return env


_ENV_KEY = pytest.StashKey[BrowserEnv]()


@pytest.fixture(scope="session")
def browser_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> BrowserEnv:
    """The session's JupyterLab + Chromium (+ emulator). Skips cleanly when Chromium or Playwright is missing.

    Shared through ``config.stash`` so it is started once even if several test modules import this fixture.
    """
    reason = browser_skip_reason()
    if reason:
        pytest.skip(reason)
    return _session_browser_env(request.config, tmp_path_factory.mktemp("browser"))


@pytest.fixture
def browser_context(browser_env: BrowserEnv) -> Iterator[Any]:
    """The session's browser context; every page a test opens in it is closed when the test ends."""
    context = browser_env.context
    before = set(context.pages)
    try:
        yield context
    finally:
        for page in context.pages:
            if page not in before:
                with contextlib.suppress(Exception):
                    page.close()


@pytest.fixture
def new_notebook(browser_env: BrowserEnv, browser_context: Any, request: pytest.FixtureRequest) -> Any:
    """Factory: ``new_notebook(cells) -> NotebookPage``, a fresh notebook (named after the test) opened and idle.

    The notebook's kernel is shut down when the test ends, so kernels do not pile up on the 2-core machine.
    """
    opened: list[NotebookPage] = []
    test_name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:60]

    def factory(cells: list[str], *, suffix: str = "", wait_idle: bool = True) -> NotebookPage:
        name = f"{test_name}{suffix}_{int(time.time() * 1000) % 100000}.ipynb"
        path = browser_env.server.create_notebook(name, cells)
        page = NotebookPage(browser_env.server, browser_context.new_page(), path, test_name + suffix)
        opened.append(page)
        return page.open(wait_idle=wait_idle)

    t0 = time.monotonic()
    yield factory
    record_timings(
        {
            "test": request.node.nodeid,
            "seconds": round(time.monotonic() - t0, 3),
            "pages": {nbp.path: nbp.timings for nbp in opened},
        }
    )
    for nbp in opened:
        with contextlib.suppress(Exception):
            browser_env.server.shutdown_kernels_of(nbp.path)


def record_timings(entry: dict[str, Any]) -> None:
    """Append one JSON line to ``<artifacts>/timings.jsonl`` (what docs/browser-tests.md quotes)."""
    entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}
    with (artifacts_dir() / "timings.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")
