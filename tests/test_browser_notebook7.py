"""Smoke test in Notebook 7 (``jupyter notebook``, the ``notebook`` package): the same harness drives the
classic-looking front end. It starts its own server (Notebook 7 serves /notebooks/..., not /lab), so it costs
one extra server start; skipped when the ``notebook`` package is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from collections.abc import Iterator

import pytest
from browser_harness import (  # noqa: F401
    FAKE_API_KEY,
    BrowserEnv,
    JupyterServer,
    NotebookPage,
    browser_env,
    start_emulator,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def nb7_server(browser_env: BrowserEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:  # noqa: F811
    """A Notebook 7 server whose kernels talk to the session's emulator (when there is one)."""
    if importlib.util.find_spec("notebook") is None:
        pytest.skip("the notebook package (Notebook 7) is not installed")
    kernel_env = {"OPENAI_API_KEY": FAKE_API_KEY}
    if browser_env.base_url:
        kernel_env["OPENAI_BASE_URL"] = browser_env.base_url
    server = JupyterServer(tmp_path_factory.mktemp("nb7"), kernel_env=kernel_env, app="notebook").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nb7_page(browser_env: BrowserEnv, nb7_server: JupyterServer, request) -> Iterator:  # noqa: F811
    context = browser_env.browser.new_context(viewport={"width": 1280, "height": 900})
    opened: list[NotebookPage] = []

    def factory(cells: list[str]) -> NotebookPage:
        path = nb7_server.create_notebook(
            f"nb7_{request.node.name}_{int(time.time() * 1000) % 100000}", cells
        )
        nbp = NotebookPage(nb7_server, context.new_page(), path, "nb7-" + request.node.name)
        opened.append(nbp)
        return nbp.open()

    try:
        yield factory
    finally:
        for nbp in opened:
            with contextlib.suppress(Exception):
                nb7_server.shutdown_kernels_of(nbp.path)
        context.close()


def test_notebook7_respond_streams_and_renders(nb7_page, browser_env: BrowserEnv):  # noqa: F811
    """Flow 1 in Notebook 7: ``%%respond`` grows visibly while it streams and ends as rendered Markdown."""
    browser_env.require_emulator()
    nb = nb7_page(["%load_ext ipy_responses_ws", "%%respond\nStream into Notebook 7"])
    nb.run_cell(0)
    nb.wait_execution_count(0)
    nb.start_sampling(1, interval_ms=40, done_selector=".jp-RenderedMarkdown")
    nb.run_cell(1)
    nb.wait_for_output(1, "Turn 1", timeout_ms=20_000)
    nb.screenshot("mid-stream")
    final = nb.output(1).locator(".jp-RenderedMarkdown").filter(has_text=re.compile(r"done · WS"))
    final.first.wait_for(timeout=30_000)
    samples = nb.stop_sampling()
    nb.screenshot("finished")
    streaming = [s.length for s in samples if not s.done and s.length > 0]
    rises = sum(1 for a, b in zip(streaming, streaming[1:], strict=False) if b > a)
    assert rises >= 4, f"the answer did not visibly grow while streaming: {samples}"
    out = nb.output(1)
    assert "Turn 1: Stream into Notebook 7" in out.locator("h2").first.inner_text()
    for selector in ("li", "pre code", "table"):
        assert out.locator(selector).first.is_visible(), f"no visible <{selector}> in the final answer"
    assert FAKE_API_KEY not in nb.page.content()
