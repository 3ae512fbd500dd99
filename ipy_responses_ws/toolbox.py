"""Function tools run in the kernel: the record of one call (:class:`ToolCall`).

Pure core: no I/O, no Jupyter. The tool loop (``tool_loop.py``) creates one record per ``function_call`` item
a response asks for, runs it, and sends ``output`` back as the ``function_call_output``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolCall"]


@dataclass
class ToolCall:
    """One function call the model asked for, and how it went (``-o NAME``'s ``tool_calls`` entries).

    ``status``: ``pending`` (asked for, not run yet) → ``running`` → ``ok`` | ``error`` (the tool raised, or the
    arguments did not fit) | ``denied`` (``--approve`` and the user said no) | ``cancelled`` (Interrupt or Stop).
    Every status but ``pending``/``running`` has an ``output``: the text the model was (or will be) sent.
    """

    name: str
    call_id: str
    arguments: dict[str, Any] = field(default_factory=dict)  # parsed; {} when they were not valid JSON
    arguments_text: str = ""  # as the model sent them
    output: str = ""  # the function_call_output sent back
    error: str | None = None  # "ValueError: ..." | "invalid arguments: ..." | "denied by the user" | ...
    seconds: float = 0.0
    status: str = "pending"
    step: int = 1  # which response of the turn asked for it (1 = the first)

    def output_item(self) -> dict[str, Any]:
        """The ``function_call_output`` input item that answers this call."""
        return {"type": "function_call_output", "call_id": self.call_id, "output": self.output}
