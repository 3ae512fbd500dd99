"""What a session's turns cost: estimates per response, per conversation and in all, and the budget.

Each completed, incomplete or failed response with a ``usage`` is priced with :func:`~.pricing.estimate`
against the session's price table (the dated defaults, or the user's, ``%responses config prices=...``). A model
without a price is counted apart, never as free. ``Settings.budget`` is checked before a turn starts.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .pricing import DEFAULT_PRICES, BudgetExceededError, Cost, Price, estimate, format_usd, parse_prices

__all__ = ["Ledger"]


class Ledger:
    """The session's running costs (thread-safe: responses end on the loop thread, checks run on the caller's)."""

    def __init__(self) -> None:
        self.prices: Mapping[str, Price] = DEFAULT_PRICES
        self._lock = threading.Lock()
        self.spent = 0.0
        self.by_chain: dict[str, float] = {}
        self.unpriced_turns = 0
        self.unpriced_models: list[str] = []

    def set_prices(self, table: Any) -> None:
        """Use a user's table (a mapping or JSON text, laid over the defaults); None restores the defaults."""
        self.prices = DEFAULT_PRICES if table is None else parse_prices(table)

    def price(self, usage: dict[str, Any] | None, model: str | None) -> Cost | None:
        return estimate(usage, model, self.prices)

    def record(self, chain: str, result: Any) -> None:
        """Price one response's result (sets ``result.cost``) and add it to the totals."""
        if result.usage is None and result.status == "cancelled":
            return  # nothing was billed that we can know of
        cost = self.price(result.usage, result.model)
        result.cost = cost
        with self._lock:
            if cost is None:
                if result.usage is not None:
                    self.unpriced_turns += 1
                    name = result.model or "unknown model"
                    if name not in self.unpriced_models:
                        self.unpriced_models.append(name)
                return
            self.spent += cost.usd
            self.by_chain[chain] = self.by_chain.get(chain, 0.0) + cost.usd

    def check(self, budget: float | None) -> None:
        """Refuse the next turn once the session's estimate reached *budget* (USD)."""
        if budget is None:
            return
        with self._lock:
            if self.spent >= budget:
                raise BudgetExceededError(
                    spent_usd=self.spent,
                    limit_usd=budget,
                    unpriced_turns=self.unpriced_turns,
                    unpriced_models=tuple(self.unpriced_models),
                )

    def chain_cost(self, chain: str) -> str | None:
        """The conversation's estimate so far (``"$0.0123"``), or None before any priced turn."""
        with self._lock:
            spent = self.by_chain.get(chain)
        return format_usd(spent) if spent is not None else None

    def summary(self, budget: float | None = None) -> str:
        """One line for ``%responses status``."""
        with self._lock:
            line = f"estimated cost: {format_usd(self.spent)} this session"
            if budget is not None:
                line += f" (budget {format_usd(budget)})"
            if self.unpriced_turns:
                line += (
                    f"; {self.unpriced_turns} turn(s) of unpriced models: {', '.join(self.unpriced_models)}"
                )
        return line
