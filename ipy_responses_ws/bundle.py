"""The plain display bundle that replaces the live view when a turn ends (DESIGN.md §5).

Widget state is not saved in notebooks, so the last display of a turn is ``text/markdown`` (safe, see
:func:`~.markdown.safe_markdown`) plus a real ``text/plain`` with the answer: a saved notebook, nbconvert,
GitHub and VS Code show it without a kernel. Pure.
"""

from __future__ import annotations

from typing import Any

from .markdown import escape_inline_markdown, safe_markdown
from .status_text import error_text, footer_text

__all__ = ["final_bundle"]


def final_bundle(result: Any, *, model: str | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """The plain display bundle that replaces the live view when a turn ends (DESIGN.md §5).

    ``text/markdown`` is the reasoning summary (if any, as a block quote), the answer made safe
    by :func:`safe_markdown`, and a short italic status footer (and the error, if any); ``text/plain`` is the answer alone (or the error when there is no answer). The metadata records the
    response id, model, transport and status so tools can find them without widgets. No secrets: only
    fields of the result, whose error texts are key-redacted by the engine.
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
    return data, metadata
