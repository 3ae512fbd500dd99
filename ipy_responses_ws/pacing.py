"""When a coalesced view update is due: at most one per interval, on a steady beat.

Per-token widget updates are quadratic in traffic and jam the browser; one update per ~50-100 ms cut comm
traffic about 20x and kept JupyterLab responsive (DESIGN.md §5). Text that arrives faster than anyone reads
is redrawn less often (:class:`TextRate`, :func:`adaptive_interval`; docs/live-view.md). Pure: the standard
library only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["CoalescingClock", "PacedClock", "TextRate", "adaptive_interval"]


class CoalescingClock:
    """Decide when a coalesced view update is due: at most one per ``interval`` seconds.

    ``due()`` is true when an update may be sent now; call ``mark()`` after sending it.
    """

    def __init__(self, interval: float = 0.06, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last = float("-inf")

    def due(self) -> bool:
        return self._clock() - self._last >= self.interval

    def mark(self) -> None:
        self._last = self._clock()

    def remaining(self) -> float:
        """Seconds until the next update is due (0 when due now)."""
        return max(0.0, self.interval - (self._clock() - self._last))


class PacedClock(CoalescingClock):
    """A :class:`CoalescingClock` that keeps a steady beat: a redraw that came late (the writer polls its
    queue every 50 ms) moves the next one earlier, by up to half an interval, so the mean rate stays at
    ``1 / interval`` instead of dropping to ``1 / (interval + lateness)``."""

    def mark(self) -> None:
        now = self._clock()
        if now - self._last > 1.5 * self.interval:  # after a pause: a new beat starts now
            self._last = now
        else:
            self._last = max(self._last + self.interval, now - self.interval / 2)


class TextRate:
    """The rate at which text arrives (characters a second), smoothed over about ``tau`` seconds.

    ``observe(now, total)`` is given the number of characters received so far; each call folds in the rate
    since the previous one with weight ``1 - exp(-dt / tau)`` (an exponential moving average in time, so it
    does not depend on how often it is called). A steady stream of ``r`` characters a second reads ``r``; a
    single burst of ``n`` characters adds about ``n / tau`` and fades with time constant ``tau``.
    """

    def __init__(self, tau: float = 0.5) -> None:
        self.tau = tau
        self.rate = 0.0
        self._at: float | None = None
        self._total = 0

    def observe(self, now: float, total: int) -> float:
        """Fold in what arrived since the last call; return the current estimate."""
        if self._at is None:  # the first call only sets the origin
            self._at, self._total = now, total
            return self.rate
        dt = now - self._at
        if dt <= 0:
            return self.rate
        weight = -math.expm1(-dt / self.tau)  # 1 - exp(-dt / tau), exact for small dt
        self.rate += weight * (max(0, total - self._total) / dt - self.rate)
        self._at, self._total = now, total
        return self.rate


def adaptive_interval(rate: float, *, base: float, knee: float, longest: float) -> float:
    """The redraw interval for text arriving at ``rate`` characters a second.

    ``base`` up to ``knee`` (text a reader can follow as it is typed: each redraw adds a few words); faster,
    the interval grows in proportion to the rate (``base * rate / knee``), up to ``longest``: a redraw then
    carries more new text than it costs to send (docs/live-view.md).
    """
    if rate <= knee:
        return base
    return min(longest, base * rate / knee)
