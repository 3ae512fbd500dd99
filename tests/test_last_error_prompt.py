"""The last error as a prompt: type, message, the user's frames, the failing cell, and never a secret.

Cells run in a real in-process IPython shell, so the filenames, ``In`` history and ``sys.last_*`` are IPython's.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

from ipy_responses_ws.errors import ConfigError
from ipy_responses_ws.last_error import (
    NO_ERROR_MESSAGE,
    NoErrorToExplain,
    error_prompt,
    failing_cell_source,
    last_error_prompt,
    last_exception,
)
from ipy_responses_ws.redact import register_secret

FAKE_KEY = "sk-proj-FAKEkey0123456789abcdefXYZ"
GATEWAY_SECRET = "gw-secret-value-42"


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        monkeypatch.delattr(sys, name, raising=False)  # restored after the test
    yield InteractiveShell.instance()


def run(shell: InteractiveShell, source: str) -> int:
    """Run *source* as the next cell; return its number (its ``In[N]``)."""
    number = shell.execution_count
    shell.run_cell(source, store_history=True)
    return number


def test_the_prompt_has_the_type_the_message_and_the_failing_cell(shell, capsys) -> None:
    run(shell, "def ratio(a, b):\n    return a / b\n")
    n = run(shell, "totals = [3, 0]\nratio(totals[0], totals[1])\n")
    capsys.readouterr()
    text = last_error_prompt(shell)
    assert "**ZeroDivisionError**: division by zero" in text
    assert "## The cell that failed" in text and "totals = [3, 0]\nratio(totals[0], totals[1])" in text
    assert (
        f"Cell In[{n}], line 2, in <module>" in text
    )  # the cell's temporary filename is named as IPython does
    assert "in ratio" in text and "return a / b" in text  # the user's function frame is kept
    assert "interactiveshell.py" not in text and "IPython" not in text  # IPython's own frames are not


def test_secrets_in_the_message_and_the_cell_never_reach_the_prompt(shell, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    n = run(
        shell,
        f"key = '{FAKE_KEY}'\n"
        f"url = 'https://gateway.example/v1?api-version=1&api_key={GATEWAY_SECRET}'\n"
        "raise RuntimeError(f'gateway refused {url} with key {key}')\n",
    )
    capsys.readouterr()
    text = last_error_prompt(shell)
    assert FAKE_KEY not in text and GATEWAY_SECRET not in text
    assert (
        "**RuntimeError**: gateway refused https://gateway.example/v1?api-version=1&api_key=*** with key"
        in text
    )
    assert "[REDACTED]" in text and f"Cell In[{n}]" in text
    assert "raise RuntimeError(f'gateway refused {url} with key {key}')" in text  # the cell is still there


def test_an_unregistered_key_looking_value_is_redacted_by_shape() -> None:
    try:
        raise PermissionError(f"Incorrect API key provided: {FAKE_KEY[:-3]}abc.")
    except PermissionError as exc:
        text = error_prompt(type(exc), exc, exc.__traceback__, None, environ={})
    assert "sk-proj" not in text and "Incorrect API key provided: [REDACTED]." in text


def test_registered_secrets_and_secret_env_values_are_redacted() -> None:
    register_secret("custom-header-value-777")
    try:
        raise ValueError("header custom-header-value-777 token hunter2hunter2")
    except ValueError as exc:
        text = error_prompt(
            type(exc),
            exc,
            exc.__traceback__,
            "x = 'hunter2hunter2'",
            environ={"MY_SERVICE_TOKEN": "hunter2hunter2"},
        )
    assert "custom-header-value-777" not in text and "hunter2hunter2" not in text


def test_a_syntax_error_finds_its_cell(shell, capsys) -> None:
    n = run(shell, "values = [1, 2\n")
    capsys.readouterr()
    text = last_error_prompt(shell)
    assert "**SyntaxError**" in text and "values = [1, 2" in text
    assert f"Cell In[{n}]" in text and "ipython-input" not in text


def test_the_failing_cell_is_the_one_that_ran(shell, capsys) -> None:
    run(shell, "def broken():\n    return {}['missing']\n")
    n = run(shell, "broken()  # the cell that ran\n")
    capsys.readouterr()
    found = last_exception()
    assert found is not None and found[0] is KeyError
    assert failing_cell_source(found[2], shell) == shell.user_ns["In"][n] == "broken()  # the cell that ran"
    assert failing_cell_source(found[2], None) is None


def test_a_deep_traceback_keeps_its_ends() -> None:
    def dive(n: int) -> None:
        if n == 0:
            raise RecursionError("bottom reached")
        dive(n - 1)

    try:
        dive(40)
    except RecursionError as exc:
        text = error_prompt(type(exc), exc, exc.__traceback__, None, limit=6, environ={})
    # 42 frames (this test's, 41 dives): the first 2 and the last 4 are kept
    assert "Traceback (most recent call last; 36 frames in between left out):" in text
    assert "in test_a_deep_traceback_keeps_its_ends" in text
    assert 'raise RecursionError("bottom reached")' in text
    assert "## The cell that failed" not in text


def test_a_long_cell_is_shortened() -> None:
    source = "x = 1\n" * 2000
    text = error_prompt(ValueError, ValueError("v"), None, source, max_source_chars=100, environ={})
    assert "more characters)" in text and len(text) < 1000


def test_no_error_to_explain_is_said_plainly(shell) -> None:
    with pytest.raises(NoErrorToExplain) as info:
        last_error_prompt(shell)
    assert isinstance(info.value, ConfigError)
    assert str(info.value).startswith(NO_ERROR_MESSAGE) and "Run the cell that fails first" in str(info.value)
    assert error_prompt(None, None, None, None) == NO_ERROR_MESSAGE


def test_chained_exceptions_and_module_names() -> None:
    class ParseError(Exception):
        pass

    try:
        try:
            int("x")
        except ValueError as inner:
            raise ParseError("could not read the count") from inner
    except ParseError as exc:
        text = error_prompt(type(exc), exc, exc.__traceback__, None, environ={})
    assert f"**{__name__}.ParseError**: could not read the count" in text
    assert "invalid literal for int()" in text and "direct cause" in text
