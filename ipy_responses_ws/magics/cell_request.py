"""From a ``%%respond`` cell to what the turn sends: the prompt, its attachments, and the notes for the status line.

* ``{df}`` of a DataFrame, an array or a long sequence becomes a compact Markdown view (``dataview.py``);
* ``--image NAME|PATH`` / ``--file PATH`` attach ``input_image`` / ``input_file`` parts (``attachments.py``);
* ``--error`` (or an empty cell) adds the last exception, its traceback and the failing cell (``last_error.py``);
* ``--continue-answer`` asks the model to go on from where the last answer stopped (an ``incomplete`` one).

And after the turn, ``--code [N]`` puts the answer's code block into a new cell below (:func:`put_code`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError

from ..attachments import file_item, format_size, image_item, resolve
from ..errors import ConfigError
from ..last_error import NoErrorToExplain, last_error_prompt
from .prompt import interpolate_with_report

__all__ = ["CellTurn", "build_cell_turn", "code_blocks", "continue_prompt", "put_code", "CONTINUE_PROMPT"]

#: What ``--continue-answer`` (and the Continue button) asks, with the text the model already wrote.
CONTINUE_PROMPT = (
    "Your previous answer was cut off ({reason}). This is what you wrote so far:\n\n"
    "<partial_answer>\n{partial}\n</partial_answer>\n\n"
    "The question was:\n\n{question}\n\n"
    "Continue exactly where it stops, without repeating what is already there."
)
EXPLAIN_PROMPT = "Explain this error and how to fix it."


@dataclass
class CellTurn:
    """What one cell sends: the prompt text, content parts after it, and what the status line should mention."""

    prompt: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_cell_turn(args: Any, cell: str, shell: Any, last_result: Any = None) -> CellTurn:
    """Read the cell and its options into a :class:`CellTurn` (every problem is a short ``UsageError``)."""
    namespace = shell.user_ns if shell is not None else {}
    if args.continue_answer:
        return _continue_turn(last_result)
    if args.raw:
        text, data = cell, []
    else:
        text, data = interpolate_with_report(cell, namespace)
    turn = CellTurn(text.strip() and text)
    if data:
        turn.notes.append("attached " + ", ".join(d.label for d in data))
    if args.error or not (cell.strip() or args.image or args.file):
        try:
            error = last_error_prompt(shell)
        except NoErrorToExplain as exc:
            if args.error:
                raise UsageError(str(exc)) from None
            raise UsageError(
                "The cell is empty: write the prompt on the lines below %%respond "
                "(an empty cell explains the last error, and no cell has raised one yet)."
            ) from None
        turn.prompt = (
            f"{turn.prompt.rstrip()}\n\n{error}" if turn.prompt.strip() else f"{EXPLAIN_PROMPT}\n\n{error}"
        )
        turn.notes.append("with the last error")
    for spec in args.image or ():
        turn.attachments.append(_attach(spec, namespace, image_item, turn.notes))
    for spec in args.file or ():
        turn.attachments.append(_attach(spec, namespace, file_item, turn.notes))
    return turn


def _attach(spec: str, namespace: dict[str, Any], make: Any, notes: list[str]) -> dict[str, Any]:
    try:
        value = resolve(spec, namespace)
        item, label, size = make(value)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    notes.append(
        f"attached {spec} ({format_size(size)})"
        if label in (spec, None)
        else f"attached {spec}: {label} ({format_size(size)})"
    )
    return item


def _continue_turn(last: Any) -> CellTurn:
    if last is None or getattr(last, "status", None) != "incomplete":
        state = "nothing ran yet" if last is None else f"the last answer is {getattr(last, 'status', '?')}"
        raise UsageError(
            f"--continue-answer goes on from an answer that was cut off (incomplete), but {state}. "
            "Raise --max-output-tokens and run the cell again, or ask a new question."
        )
    return CellTurn(continue_prompt(last, last.text, last.prompt), notes=["continuing the cut-off answer"])


def continue_prompt(cut: Any, partial: str, question: str) -> str:
    """What Continue sends after the cut-off result *cut*: the question and the answer *partial* so far."""
    reason = getattr(cut, "incomplete_reason", None) or "the output limit"
    return CONTINUE_PROMPT.format(reason=reason, partial=partial, question=question)


_FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of each fenced code block of a Markdown answer, in order."""
    return [(m.group("lang").strip(), m.group("body").rstrip("\n")) for m in _FENCE.finditer(text or "")]


def put_code(shell: Any, result: Any, which: int) -> str:
    """``--code N``: the answer's N-th code block (1-based) into a new cell below; returns what to print.

    IPython's ``set_next_input`` payload: JupyterLab and Notebook 7 insert a cell below, terminal IPython fills
    the next prompt. Frontends that ignore the payload (some headless runners) show nothing: the printed line
    says where the code was meant to go, and the code stays in the answer above.
    """
    blocks = code_blocks(getattr(result, "text", "") or "")
    if not blocks:
        return "--code: the answer has no code block to put into a cell."
    if which < 1 or which > len(blocks):
        return f"--code {which}: the answer has {len(blocks)} code block(s); nothing was put into a cell."
    lang, code = blocks[which - 1]
    if shell is not None:
        shell.set_next_input(code, replace=False)
    what = f"{lang} code" if lang else "code"
    lines = code.count("\n") + 1
    return (
        f"--code: block {which} of {len(blocks)} ({what}, {lines} line{'s' if lines != 1 else ''}) put into a new "
        "cell below (JupyterLab, Notebook 7, terminal IPython); if none appeared, this frontend ignores "
        "next-input payloads: copy it from the answer above."
    )
