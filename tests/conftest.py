"""Shared pytest configuration.

Fixtures that belong to one concern live in that concern's test module or helper module
(``tests/kernel_helpers.py``, ``tests/browser_harness.py``); this file holds only suite-wide policy.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last; slow soak tests run only when asked for (``-m slow`` or ``IPY_RWS_SLOW=1``).

    Playwright's sync API keeps an event loop running on the main thread while it is alive, and
    pytest-asyncio refuses to start a test loop inside a running one; running the browser tests last
    keeps them from poisoning the async tests collected after them.
    """
    items.sort(key=lambda item: "browser" in item.keywords)  # stable: keeps the order within each group
    if os.environ.get("IPY_RWS_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip_slow = pytest.mark.skip(reason="slow soak test: run with -m slow or IPY_RWS_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI (``IPY_RWS_REQUIRE_BROWSER=1``) a browser test that skips is a failure.

    The browser tests skip on a developer machine without Chromium; CI installs it, so a skip there
    means the proof did not run and must not pass silently.
    """
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("IPY_RWS_REQUIRE_BROWSER") == "1"
        and "browser" in item.keywords
        and report.skipped
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"browser test skipped in CI: {report.longrepr}"
    # The same for the LiteLLM gateway tests (``IPY_RWS_REQUIRE_GATEWAY=1``): they skip without the proxy's venv
    # (tests/gateway/make_venv.sh), which CI builds, so a skip there means the venv could not be built.
    if (
        os.environ.get("IPY_RWS_REQUIRE_GATEWAY") == "1"
        and "gateway" in item.keywords
        and report.skipped
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        report.longrepr = f"gateway test skipped in CI: {report.longrepr}"
