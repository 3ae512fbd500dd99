"""Smoke test in Notebook 7 (``jupyter notebook``, the ``notebook`` package): the same harness drives the
classic-looking front end. It starts its own server (Notebook 7 serves /notebooks/..., not /lab), so it costs
one extra server start; skipped when the ``notebook`` package is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
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


def test_notebook7_plain_cell_streams(nb7_page):
    """Notebook 7 runs a cell and shows its output as it grows (the harness works outside JupyterLab too)."""
    nb = nb7_page(
        ["import time\nfor i in range(8):\n    print(f'row {i}', flush=True)\n    time.sleep(0.15)"]
    )
    nb.run_cell(0)
    samples = nb.sample_output_lengths(0, duration_s=10, interval_ms=40, done_text="row 7")
    nb.screenshot("plain-cell")
    growth = sorted({n for _, n in samples if n > 0})
    assert len(growth) >= 4, f"output did not grow in steps: {samples}"
    assert "row 7" in nb.output_text(0)
