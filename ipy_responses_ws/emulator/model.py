"""The emulator's deterministic built-in "model".

It answers from the conversation it reconstructs (the parent chain's items plus the new input), so a test
can tell from the answer alone whether the chain was carried: the answer names the turn number (the count
of user messages), quotes the current user message and lists every earlier one.

`reply_for()` is the single source of the answer text; tests call it to know the exact expected text.
Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DIRECTIVE_PREFIX",
    "content_text",
    "count_tokens",
    "normalize_input",
    "reasoning_summary_for",
    "refusal_for",
    "reply_for",
    "split_deltas",
    "strip_directives",
    "user_messages",
]

#: Lines of a user message that start with this are emulator directives (see faults.py), not prose.
DIRECTIVE_PREFIX = "!"

_FILLER = [
    "streaming",
    "keeps",
    "the",
    "notebook",
    "responsive",
    "while",
    "each",
    "token",
    "arrives",
    "over",
    "the",
    "socket",
    "and",
    "the",
    "widget",
    "renders",
    "only",
    "the",
    "live",
    "tail",
    "of",
    "the",
    "answer",
    "so",
    "long",
    "replies",
    "stay",
    "cheap",
    "to",
    "display",
]

_DELTA_RE = re.compile(r"\s*\S{1,5}|\s+")


def strip_directives(text: str) -> str:
    """Remove emulator directive lines (``!fault ...``, ``!refuse``) from a user message."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith(DIRECTIVE_PREFIX)]
    return "\n".join(kept).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: Quotes are clipped so a huge prompt (e.g. a 3 MB frame) does not become a 3 MB answer.
QUOTE_LIMIT = 1000
EARLIER_LIMIT = 200


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def reply_for(
    user_messages: Sequence[str],
    *,
    words: int | None = None,
    instructions: str | None = None,
    tool_results: Sequence[tuple[str, str]] = (),
) -> str:
    """Return the exact answer text the emulator gives for a conversation.

    ``user_messages`` are the conversation's user messages in order (the last is the current prompt).
    ``words`` appends a paragraph of that many filler words (answer length knob). ``instructions`` adds a
    visible ``Instructions: ...`` line. ``tool_results`` are ``(call_id, output)`` pairs, quoted in a
    ``Tool results`` section: the outputs of the tool rollout since the current prompt, then any other
    ``function_call_output`` of the request's input (tools.py ``plan_step``).
    """
    msgs = [strip_directives(m) for m in user_messages]
    turn = len(msgs)
    current = msgs[-1] if msgs else ""
    title = _one_line(current)[:48] or "(empty prompt)"
    lines = [f"## Turn {turn}: {title}", ""]
    if instructions:
        lines += [f"Instructions: {_one_line(instructions)}", ""]
    quoted = _clip(current, QUOTE_LIMIT).splitlines() or [""]
    lines += [f"This is turn {turn} of our conversation. You wrote:", ""]
    lines += [f"> {q}".rstrip() for q in quoted]
    lines.append("")
    if tool_results:
        lines += ["Tool results:", ""]
        lines += [
            f"- `{call_id}` returned `{_clip(_one_line(out), EARLIER_LIMIT)}`"
            for call_id, out in tool_results
        ]
        lines.append("")
    lines += ["Earlier messages:", ""]
    if turn > 1:
        lines += [f"{i}. {_clip(_one_line(m), EARLIER_LIMIT)}" for i, m in enumerate(msgs[:-1], start=1)]
    else:
        lines.append("- none, this is the first turn")
    lines += [
        "",
        "```python",
        f"turn = {turn}",
        f"prompt_chars = {len(current)}",
        "```",
        "",
        "| turn | chars | words |",
        "|---:|---:|---:|",
        f"| {turn} | {len(current)} | {len(current.split())} |",
    ]
    if words:
        filler = [_FILLER[i % len(_FILLER)] for i in range(words)]
        lines += ["", " ".join(filler).capitalize() + "."]
    return "\n".join(lines)


def refusal_for(user_messages: Sequence[str]) -> str:
    """The refusal text for a prompt carrying the ``!refuse`` directive."""
    return f"I'm sorry, but I can't help with that request (turn {len(user_messages)})."


def reasoning_summary_for(user_messages: Sequence[str]) -> str:
    """A short reasoning summary, shown when the request sets ``reasoning.summary``."""
    turn = len(user_messages)
    current = _one_line(strip_directives(user_messages[-1])) if user_messages else ""
    return (
        f"**Planning turn {turn}**\n\nThe user asked: {current[:80]}. "
        f"I will quote it and recall {turn - 1} earlier message(s)."
    )


def split_deltas(text: str) -> list[str]:
    """Cut text into small word-ish pieces (leading whitespace + up to 5 characters), like real deltas."""
    return _DELTA_RE.findall(text)


def count_tokens(text: str) -> int:
    """A rough token count: about 4 characters per token, like English BPE text."""
    return math.ceil(len(text) / 4) if text else 0


def content_text(content: Any) -> str:
    """The text of a message's ``content`` (a string, or the text/refusal of its parts)."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content or ():
        if isinstance(part, dict):
            text = part.get("text") or part.get("refusal")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def normalize_input(raw: Any) -> list[dict[str, Any]]:
    """Turn a request's ``input`` (a string or a list of items) into a list of typed items."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": raw}]}]
    items: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("input items must be objects")
        item = dict(item)
        if "type" not in item and "role" in item:
            item["type"] = "message"
        if item.get("type") == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        items.append(item)
    return items


def user_messages(items: Iterable[dict[str, Any]]) -> list[str]:
    """The text of every user message among the items, in order."""
    return [
        content_text(it.get("content"))
        for it in items
        if it.get("type") == "message" and it.get("role") == "user"
    ]
