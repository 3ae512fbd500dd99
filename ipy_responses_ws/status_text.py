"""The words and numbers a user reads about a turn: durations, token counts, rates and the footer line.

Pure presentation shared by the widget view, the terminal printer and the final bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["call_counts", "error_text", "footer_text", "format_seconds", "format_usage", "tokens_per_second"]


def format_seconds(seconds: float | None) -> str:
    """``0.213`` → ``"213 ms"``, ``2.5`` → ``"2.5 s"``, ``None`` → ``"–"``."""
    if seconds is None:
        return "–"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:.0f} s"


def _get(mapping: Mapping[str, Any] | None, *keys: str) -> Any:
    value: Any = mapping
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def format_usage(usage: Mapping[str, Any] | None) -> str:
    """Usage as one line: input (cached), output (reasoning), total (PROTOCOL.md §2.8)."""
    if not usage:
        return ""
    parts = []
    inp = usage.get("input_tokens")
    if inp is not None:
        cached = _get(usage, "input_tokens_details", "cached_tokens")
        parts.append(f"in {inp:,}" + (f" ({cached:,} cached)" if cached else ""))
    out = usage.get("output_tokens")
    if out is not None:
        reasoning = _get(usage, "output_tokens_details", "reasoning_tokens")
        parts.append(f"out {out:,}" + (f" ({reasoning:,} reasoning)" if reasoning else ""))
    total = usage.get("total_tokens")
    if total is not None:
        parts.append(f"total {total:,}")
    return " · ".join(parts)


_STATUS_WORDS = {
    "completed": "done",
    "incomplete": "incomplete",
    "failed": "failed",
    "cancelled": "interrupted",
}


def tokens_per_second(output_tokens: int | None, ttft: float | None, elapsed: float | None) -> float | None:
    """Output tokens per second of streaming (after the first token)."""
    if not output_tokens or elapsed is None:
        return None
    span = elapsed - (ttft or 0.0)
    if span <= 0.005:
        return None
    return output_tokens / span


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def call_counts(calls: Any, steps: int = 1) -> list[str]:
    """The function tool calls in words: ``["3 calls in 2 steps", "1 failed"]`` (``[]`` when none).

    ``calls`` are :class:`~.toolbox.ToolCall` records (duck-typed: ``.status``). Failed, denied and cancelled
    calls are counted apart, since each is something the user may want to look at.
    """
    calls = list(calls or ())
    if not calls:
        return []
    head = _plural(len(calls), "call") + (f" in {steps} steps" if steps > 1 else "")
    counts = {
        s: sum(1 for c in calls if getattr(c, "status", None) == s) for s in ("error", "denied", "cancelled")
    }
    words = {"error": "failed", "denied": "denied", "cancelled": "cancelled"}
    return [head, *(f"{n} {words[s]}" for s, n in counts.items() if n)]


def footer_text(result: Any) -> str:
    """One plain line summarising how a turn ended; ``result`` is a ``TurnResult`` (duck-typed).

    Example: ``done · WS · ttft 213 ms · 2.3 s · 48 tok/s · in 12 · out 110 · resp_0a1b…``; a turn with
    Python tools adds ``3 calls in 2 steps`` (and ``1 failed``) after the state.
    """
    status = getattr(result, "status", None) or "failed"
    word = _STATUS_WORDS.get(status, status)
    if status == "incomplete" and getattr(result, "incomplete_reason", None):
        word = f"incomplete ({result.incomplete_reason})"
    parts = [word]
    transport = getattr(result, "transport", None)
    if transport:
        badge = transport.upper()
        if getattr(result, "fallback_reason", None):
            badge += " (fell back from WS)"
        elif getattr(result, "reconnected", False):
            badge += " (reconnected)"
        parts.append(badge)
    parts += call_counts(getattr(result, "tool_calls", None), getattr(result, "steps", 1) or 1)
    profile = getattr(result, "profile", None)
    if profile:  # the endpoint profile (-p NAME), so cells comparing providers say which answered
        parts.append(profile)
    ttft = getattr(result, "ttft", None)
    if ttft is not None:
        parts.append(f"ttft {format_seconds(ttft)}")
    elapsed = getattr(result, "elapsed", None)
    if elapsed is not None:
        parts.append(format_seconds(elapsed))
    usage = getattr(result, "usage", None) or {}
    rate = tokens_per_second(usage.get("output_tokens"), ttft, elapsed)
    if rate is not None:
        parts.append(f"{rate:,.0f} tok/s")
    usage_line = format_usage(usage)
    if usage_line:
        parts.append(usage_line)
    if getattr(result, "resent_transcript", False):
        parts.append("transcript resent")
    retries = getattr(result, "retries", 0)
    if retries:
        parts.append(f"retried {retries}×")
    parts += getattr(result, "notes", None) or []  # "attached df (1.2 KB)", "with the last error"
    cost = getattr(result, "cost", None)
    if cost is not None:
        parts.append(f"≈{cost.format()}")
    forked = getattr(result, "forked_from", None)
    if forked:
        parts.append(f"re-run: replaced turn {forked}")
    rid = getattr(result, "response_id", None)
    if rid:
        parts.append(short_id(rid))
    if status != "completed":
        # DESIGN.md §4: the chain advances only on response.completed.
        parts.append("not added to the conversation")
    return " · ".join(parts)


#: Ids longer than this are shortened in status lines (the full id stays in the result, ``-o`` and the bundle's
#: metadata). OpenAI's are ~50 characters; a gateway's (LiteLLM over HTTP) ~470.
SHORT_ID = 24


def short_id(rid: str) -> str:
    """``resp_0a1b2c3d…e6f7`` for a long id; short ids unchanged."""
    if len(rid) <= SHORT_ID:
        return rid
    return f"{rid[:14]}…{rid[-6:]}"


def error_text(result: Any) -> str:
    """The turn's error in plain words ("" when there is none)."""
    error = getattr(result, "error", None)
    if error is None:
        return ""
    return str(error)
