"""How long a server asks a client to wait, read from its response headers (no I/O).

One reader for every place that needs it: :class:`~.errors.RateLimitError` fills ``retry_after`` from it, and
the recovery policy waits that long before a retry (``recovery.retry_delay``).
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import re
from collections.abc import Mapping

__all__ = ["parse_retry_after", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait: ``retry-after-ms``, then ``retry-after`` (seconds or an HTTP date), then the reset time
    of an exhausted ``x-ratelimit-*`` budget (``x-ratelimit-remaining-requests: 0`` with
    ``x-ratelimit-reset-requests: 1.5s``); None when the headers say nothing usable.

    ``retry-after-ms`` wins as in openai-python (PROTOCOL.md §3). LiteLLM's proxy renames the upstream's headers
    to ``llm_provider-retry-after(-ms)``: both spellings are read.
    """
    if not headers:
        return None
    low = {str(k).lower().removeprefix("llm_provider-"): str(v) for k, v in headers.items()}
    if "retry-after-ms" in low:
        with contextlib.suppress(ValueError):
            return float(low["retry-after-ms"]) / 1000.0
    if "retry-after" in low:
        raw = low["retry-after"]
        with contextlib.suppress(ValueError):
            return float(raw)
        with contextlib.suppress(TypeError, ValueError, IndexError):
            when = email.utils.parsedate_to_datetime(raw)
            return max(0.0, (when - datetime.datetime.now(when.tzinfo)).total_seconds())
    for kind in ("requests", "tokens"):
        if low.get(f"x-ratelimit-remaining-{kind}") == "0" and f"x-ratelimit-reset-{kind}" in low:
            seconds = parse_duration(low[f"x-ratelimit-reset-{kind}"])
            if seconds is not None:
                return seconds
    return None


def parse_duration(text: str) -> float | None:
    """OpenAI's rate-limit reset format: ``20ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)
