"""The plain display bundle that replaces the live view when a turn ends (DESIGN.md §5).

Widget state is not saved in notebooks, so the last display of a turn is ``text/markdown`` (safe, see
:func:`~.markdown.safe_markdown`) plus a real ``text/plain`` with the answer: a saved notebook, nbconvert,
GitHub and VS Code show it without a kernel. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .markdown import escape_inline_markdown, safe_markdown
from .status_text import error_text, footer_text
from .tool_view import HostedCall, calls_markdown

__all__ = ["final_bundle"]


def final_bundle(
    result: Any, *, model: str | None = None, hosted: Sequence[HostedCall] = ()
) -> tuple[dict[str, str], dict[str, Any]]:
    """The plain display bundle that replaces the live view when a turn ends (DESIGN.md §5).

    ``text/markdown`` is the reasoning summary (if any, as a block quote), the tool calls (``result.tool_calls``
    and the server-side calls in ``hosted``, which ``ResponseView.final_bundle`` passes: one collapsed line
    each, see :func:`~.tool_view.calls_markdown`), the answer made safe by :func:`safe_markdown`, and a short
    italic status footer (and the error, if any); ``text/plain`` is the answer alone (or the error when there
    is no answer). The metadata records the response id, model, transport, status, steps and each call's
    name, id, status and seconds, so tools can find them without widgets. No secrets: only fields of the
    result, whose error texts are key-redacted by the engine; a call's arguments and output stay out of the
    metadata (they can be large and are the user's data: ``-o NAME`` keeps them), and are key-redacted in the
    Markdown.
    """
    text = getattr(result, "text", "") or ""
    footer = footer_text(result)
    err = error_text(result)
    md_parts = []
    summary = (getattr(result, "reasoning_summary", "") or "").strip()
    if summary:
        # The live view showed it in an accordion; keep it once the widgets are gone, as a quote above the
        # answer. No <details>: raw HTML is exactly what the frozen bundle must not need (it can carry
        # handlers such as ontoggle, and renderers that strip HTML would show bare tags).
        quoted = "\n".join(
            f"> {line}" if line else ">" for line in safe_markdown(summary).rstrip("\n").split("\n")
        )
        md_parts.append("> *Reasoning summary*\n>\n" + quoted)
    tool_calls = list(getattr(result, "tool_calls", None) or ())
    if tool_calls or hosted:
        md_parts.append(calls_markdown([*tool_calls, *hosted]))
    if text:
        md_parts.append(safe_markdown(text).rstrip("\n"))
    if err:
        md_parts.append("**Error:** " + escape_inline_markdown(err))
    md_parts.append("*" + escape_inline_markdown(footer) + "*")
    data = {
        "text/markdown": "\n\n".join(md_parts) + "\n",
        "text/plain": text if text else (err or footer),
    }
    metadata = {
        "ipy_responses_ws": {
            "response_id": getattr(result, "response_id", None),
            "model": getattr(result, "model", None) or model,
            "transport": getattr(result, "transport", None),
            "status": getattr(result, "status", None),
            "fallback_reason": getattr(result, "fallback_reason", None),
        }
    }
    steps = getattr(result, "steps", 1) or 1
    if tool_calls or steps > 1:  # a plain turn's metadata stays as it was
        metadata["ipy_responses_ws"]["steps"] = steps
        metadata["ipy_responses_ws"]["tool_calls"] = [
            {
                "name": c.name,
                "call_id": c.call_id,
                "status": c.status,
                "seconds": round(c.seconds, 3),
                "step": c.step,
            }
            for c in tool_calls
        ]
    return data, metadata
