"""The notebook's last error as a prompt section: "explain this" without pasting a traceback by hand (pure).

:func:`error_prompt` writes the exception type and message, the traceback trimmed to the user's frames
(IPython's and ipykernel's own frames are dropped, a long stack keeps its first and last frames) and the
failing cell's source, as Markdown. Everything passes through :func:`ipy_responses_ws.redact.redact`
(registered keys, keys in URL queries, custom header values, ``Bearer`` tokens) plus two shapes a traceback
often shows and ``redact`` alone does not know: an OpenAI-style ``sk-…`` key, and the value of a
secret-looking environment variable (``OPENAI_API_KEY``, ``*_TOKEN``…) of this process. No frame locals are
ever read.

:func:`failing_cell_source` finds that cell in an IPython shell's history from the traceback's filenames
(``<ipython-input-N-…>``, or ipykernel's temporary file names through ``shell.compile._filename_map``), and
:func:`last_error_prompt` puts both together for the last error IPython recorded (``sys.last_value`` /
``sys.last_exc``), raising :class:`NoErrorToExplain` when there is none. The shell is duck-typed: nothing
here imports IPython.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
import types
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError
from .redact import REDACTED, environment_secrets, redact

__all__ = [
    "NO_ERROR_MESSAGE",
    "NoErrorToExplain",
    "error_prompt",
    "failing_cell_source",
    "last_error_prompt",
    "last_exception",
]

NO_ERROR_MESSAGE = "No error to explain: no cell has raised an exception in this kernel yet."

# Frames from these packages are the notebook's machinery, not the user's code.
_INTERNAL = re.compile(r"[\\/](IPython|ipykernel|traitlets|tornado|zmq|jupyter_client)[\\/]|<frozen runpy>")
_INPUT_NAME = re.compile(r"<ipython-input-(\d+)-[0-9a-f]*>")
_CELL_LABEL = re.compile(r"Cell In\[(\d+)\]")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")


class NoErrorToExplain(ConfigError):
    """Asked to explain the last error, but there is none."""

    default_hint = "Run the cell that fails first, then ask again."

    def __init__(self, message: str = NO_ERROR_MESSAGE, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)


def _clean(text: str, secrets: Iterable[str]) -> str:
    return _SK_KEY.sub(REDACTED, redact(text, secrets))


def _user_tb(tb: types.TracebackType | None) -> types.TracebackType | None:
    """*tb* without the frames of IPython, ipykernel and their kin (a new chain; *tb* is left as it was)."""
    kept: list[types.TracebackType] = []
    while tb is not None:
        if not _INTERNAL.search(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    out: types.TracebackType | None = None
    for t in reversed(kept):
        out = types.TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out


def _cell_number(filename: str, shell: Any) -> int | None:
    """The execution count of the cell compiled under *filename*, or None when it is not a cell."""
    m = _INPUT_NAME.search(filename) or _CELL_LABEL.search(filename)
    if m:
        return int(m.group(1))
    mapping = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if isinstance(mapping, Mapping) and filename in mapping:
        try:
            return int(mapping[filename])
        except (TypeError, ValueError):
            return None
    return None


def _filenames(tb: types.TracebackType | None, value: BaseException | None) -> list[str]:
    """The code filenames of *tb*'s frames, outermost first, then a ``SyntaxError``'s own file (it has no frame)."""
    filenames: list[str] = []
    while tb is not None:
        filenames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    if isinstance(value, SyntaxError) and value.filename:
        filenames.append(value.filename)
    return filenames


def _cell_names(tb: types.TracebackType | None, shell: Any, value: BaseException) -> dict[str, str]:
    """``{compiled filename: "Cell In[N]"}`` for the cells in *tb* (for a readable traceback)."""
    names: dict[str, str] = {}
    for filename in _filenames(tb, value):
        number = _cell_number(filename, shell)
        if number is not None:
            names[filename] = f"Cell In[{number}]"
    return names


def failing_cell_source(
    tb: types.TracebackType | None, shell: Any, value: BaseException | None = None
) -> str | None:
    """The source of the cell that was running when *tb* was raised, from ``shell.user_ns['In']``.

    The outermost cell frame counts (a function defined in cell 3 and called from cell 5 fails in cell 5). A
    ``SyntaxError`` has no cell frame: its ``filename`` is used. None when no cell is found or ``In`` lacks
    it.
    """
    history = getattr(shell, "user_ns", {}).get("In") if shell is not None else None
    if not history:
        return None
    for filename in _filenames(tb, value):
        number = _cell_number(filename, shell)
        if number is not None and 0 <= number < len(history):
            return str(history[number])
    return None


def _trim_frames(tb: types.TracebackType | None, limit: int) -> tuple[types.TracebackType | None, int]:
    """At most *limit* frames: the first two (the user's call) and the last ones (where it broke)."""
    frames: list[types.TracebackType] = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    if len(frames) <= limit:
        return (frames[0] if frames else None), 0
    head = min(2, limit // 2)
    kept = frames[:head] + frames[len(frames) - (limit - head) :]
    out: types.TracebackType | None = None
    for t in reversed(kept):
        out = types.TracebackType(out, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return out, len(frames) - len(kept)


def error_prompt(
    etype: type[BaseException] | None,
    value: BaseException | None,
    tb: types.TracebackType | None,
    cell_source: str | None,
    *,
    limit: int = 12,
    max_source_chars: int = 4000,
    shell: Any = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """A Markdown prompt section about one exception: type and message, traceback, failing cell's source.

    *limit* caps the traceback's frames (first two and last ones kept, the number left out said);
    *max_source_chars* caps the cell source. With *shell*, cell filenames read ``Cell In[N]``. All text is
    redacted (see the module docstring); *environ* (default ``os.environ``) gives the secret-looking
    variables whose values must not appear. No exception (*value* None) gives :data:`NO_ERROR_MESSAGE`.
    """
    if value is None and etype is None:
        return NO_ERROR_MESSAGE
    if value is None:
        try:
            value = etype()  # type: ignore[misc]
        except Exception:
            value = Exception(getattr(etype, "__name__", str(etype)))
    secrets = environment_secrets(os.environ if environ is None else environ)
    qualname = type(value).__qualname__
    name = type(value).__name__ if "<locals>" in qualname else qualname
    module = type(value).__module__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    message = str(value)
    lines = ["## The error", "", f"**{name}**: {message}" if message else f"**{name}**", ""]

    user_tb = _user_tb(tb)
    user_tb, omitted = _trim_frames(user_tb, max(limit, 1))
    text = "".join(traceback.format_exception(type(value), value, user_tb, limit=None, chain=True))
    if omitted:
        text = text.replace(
            "Traceback (most recent call last):\n",
            f"Traceback (most recent call last; {omitted} frames in between left out):\n",
            1,
        )
    lines += ["Traceback (notebook machinery frames left out):", "", "```", text.rstrip(), "```"]

    if cell_source:
        source = cell_source.rstrip()
        if len(source) > max_source_chars:
            source = (
                source[:max_source_chars].rstrip()
                + f"\n# … ({len(cell_source) - max_source_chars:,} more characters)"
            )
        lines += ["", "## The cell that failed", "", "```python", source, "```"]
    out = "\n".join(lines)
    for filename, label in _cell_names(tb, shell, value).items():
        out = out.replace(f'File "{filename}"', label).replace(filename, label)
    return _clean(out, secrets) + "\n"


def last_exception(
    sys_module: Any = sys,
) -> tuple[type[BaseException], BaseException, types.TracebackType | None] | None:
    """The last exception IPython recorded (``sys.last_exc``, else ``sys.last_value`` and
    ``sys.last_traceback``), or None."""
    exc = getattr(sys_module, "last_exc", None)
    if exc is None:
        exc = getattr(sys_module, "last_value", None)
    if not isinstance(exc, BaseException):
        return None
    tb = (
        getattr(sys_module, "last_traceback", None)
        if getattr(sys_module, "last_value", None) is exc
        else None
    )
    return type(exc), exc, tb if tb is not None else exc.__traceback__


def last_error_prompt(shell: Any, *, sys_module: Any = sys, **options: Any) -> str:
    """:func:`error_prompt` for the last error of *shell*'s kernel, with its failing cell.

    Raises :class:`NoErrorToExplain` (message :data:`NO_ERROR_MESSAGE`) when no error was recorded.
    *options* go to :func:`error_prompt` (``limit``, ``max_source_chars``, ``environ``).
    """
    found = last_exception(sys_module)
    if found is None:
        raise NoErrorToExplain()
    etype, value, tb = found
    source = failing_cell_source(tb, shell, value)
    return error_prompt(etype, value, tb, source, shell=shell, **options)
