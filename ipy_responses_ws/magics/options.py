"""The options of ``%%respond`` (one list, read by ``commands.ResponsesMagics.respond``).

Kept apart from the magic so the list of flags, which grows with every feature, stays readable in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.magic_arguments import argument, magic_arguments

__all__ = ["respond_options"]

_TRANSPORTS = ("ws", "sse")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_SUMMARIES = ("auto", "concise", "detailed")

_OPTIONS = [
    argument(
        "-p",
        "--profile",
        metavar="NAME",
        help="Endpoint profile for this cell: openai, azure, xai or your own (%%responses config shows them).",
    ),
    argument("-m", "--model", help="Model for this cell (default: %%config ResponsesMagics.model)."),
    argument("-t", "--transport", choices=_TRANSPORTS, help="Transport for this cell only: ws or sse."),
    argument(
        "--store", dest="store", action="store_const", const=True, default=None, help="Store the response."
    ),
    argument("--no-store", dest="store", action="store_const", const=False, help="Do not store it (ZDR)."),
    argument("--new", action="store_true", help="Start a fresh conversation from this cell."),
    argument(
        "--continue",
        dest="tail",
        action="store_true",
        help="Continue from the conversation's latest turn even when re-running this cell (no fork).",
    ),
    argument("-c", "--chain", metavar="NAME", help="Conversation to continue (default: 'default')."),
    argument("-i", "--instructions", help="System instructions for this cell (quote them)."),
    argument("--max-output-tokens", type=int, metavar="N", help="Cap on output tokens."),
    argument("--temperature", type=float, metavar="T", help="Sampling temperature (0-2)."),
    argument("--reasoning-effort", choices=_EFFORTS, help="Reasoning effort for reasoning models."),
    argument("--reasoning-summary", choices=_SUMMARIES, help="Ask for a reasoning summary."),
    argument("-o", "--out", metavar="NAME", help="Store the TurnResult in this variable, however it ends."),
    argument("--background", action="store_true", help="Return at once; stream in the background."),
    argument("--raw", action="store_true", help="Send the cell as written (no {name} interpolation)."),
    argument(
        "--image",
        action="append",
        metavar="NAME|PATH",
        help="Attach an image: a matplotlib figure or PIL image by variable name, or an image file (repeatable).",
    ),
    argument("--file", action="append", metavar="PATH", help="Attach a file, e.g. a PDF (repeatable)."),
    argument(
        "--error",
        action="store_true",
        help="Add the last error (type, message, traceback, the failing cell) to the prompt; an empty cell does too.",
    ),
    argument(
        "--continue-answer",
        action="store_true",
        help="Ask the model to go on from where the last answer was cut off (an incomplete one).",
    ),
    argument(
        "--retry",
        action="store_true",
        help="Run the last %%%%respond again from the same point of the conversation (replacing its turn).",
    ),
    argument(
        "--code",
        nargs="?",
        type=int,
        const=1,
        metavar="N",
        help="Put the answer's code block (the first, or the N-th) into a new cell below.",
    ),
    argument(
        "--tools",
        metavar="NAMES",
        help="Python functions the model may call, by name, comma-separated (default: %%responses config tools=).",
    ),
    argument(
        "--tool",
        dest="hosted",
        action="append",
        metavar="SPEC",
        help="A hosted tool: web_search, file_search:VECTOR_STORE_ID, code_interpreter, image_generation or an "
        "MCP server URL (repeatable).",
    ),
    argument("--max-steps", type=int, metavar="N", help="Most responses in a tool turn (default 10)."),
    argument("--approve", action="store_true", help="Ask before each tool call runs."),
    argument("--parallel-tools", action="store_true", help="Run one response's calls at once, in threads."),
]


def respond_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Apply ``%%respond``'s ``@argument`` list (the first option listed is shown first in ``%%respond?``)."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return magic_arguments()(func)
