"""Small statistics and table helpers shared by the benchmark scripts.

Ratios are always computed pair by pair inside one run (``ours[i] / theirs[i]`` for the same turn index of the
same round), then summarised by their median, so machine drift during a run affects both sides equally.
Absolute times from different runs are never divided by each other.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def median(values: Sequence[float]) -> float:
    """The median, or NaN for an empty sequence (a missing contender must not crash a whole report)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def p90(values: Sequence[float]) -> float:
    return percentile(values, 90.0)


def pairwise_ratios(ours: Sequence[float], theirs: Sequence[float]) -> list[float]:
    """``ours[i] / theirs[i]`` for every index both sides measured (same round, same turn)."""
    if len(ours) != len(theirs):
        raise ValueError(f"pairwise ratio needs equal lengths, got {len(ours)} and {len(theirs)}")
    return [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``y = slope * x + intercept``; returns ``(slope, intercept, r_squared)``."""
    n = len(xs)
    if n < 2:
        return (math.nan, math.nan, math.nan)
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0:
        return (math.nan, math.nan, math.nan)
    slope = sxy / sxx
    intercept = my - slope * mx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 1.0
    return (slope, intercept, r2)


def fmt(value: float | int | str | None, digits: int = 3) -> str:
    """Format a table cell: numbers to ``digits`` significant places, NaN/None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "—"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells go through :func:`fmt`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        cells = [fmt(c) if not isinstance(c, str) else c for c in row]  # type: ignore[arg-type]
        if len(cells) != len(headers):
            raise ValueError(f"row has {len(cells)} cells, table has {len(headers)} columns")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: missing measurements are written as null."""
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
