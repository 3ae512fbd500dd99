"""What a turn cost: a dated price table, estimates from a Responses API ``usage``, and a budget (pure, no I/O).

:func:`estimate` prices one response's ``usage``::

    input_tokens - cached_tokens   at the input rate
    cached_tokens                  at the cached-input rate (the input rate if the model has none)
    output_tokens                  at the output rate; reasoning_tokens are already inside output_tokens

Prices are USD per 1M tokens, standard tier, short context. Not modelled, so the estimate can be low: the
long-context tiers (OpenAI gpt-5.4 and later above 272k input tokens, xAI above 200k), priority processing,
server-side tool calls (web search, code interpreter) and image/audio tokens; Batch and Flex cost less.
An estimate, never the bill: the provider's usage page is the authority.

Model names resolve to a table key (:func:`resolve`): the exact name, else the longest key that the name
extends by a snapshot tag only (``gpt-5-2025-08-07`` → ``gpt-5``, ``grok-4-0709`` → ``grok-4``,
``grok-4.3-latest`` → ``grok-4.3``). A name that extends a key in any other way gets no price rather than a
guess: ``gpt-5-pro`` costs twelve times ``gpt-5``, so plain longest-prefix matching would under-report it
badly. A user's table (:func:`parse_prices`, ``%responses config prices=...``) fills such gaps.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any

from .errors import ConfigError, ResponsesError

__all__ = [
    "PRICES_AS_OF",
    "PRICES_SOURCE",
    "DEFAULT_PRICES",
    "add_usage",
    "Price",
    "Cost",
    "PriceTableError",
    "BudgetExceededError",
    "BudgetTracker",
    "resolve",
    "estimate",
    "parse_prices",
    "format_usd",
]

PRICES_AS_OF = "2026-12-07"
PRICES_SOURCE = (
    "LiteLLM 1.108.7 model_prices_and_context_window_backup.json (OpenAI and current xAI rows, which follow "
    "openai.com/api/pricing and docs.x.ai/developers/models); grok-4-0709, grok-3-mini and the grok-4 fast "
    "models, retired by xAI and gone from that file, at xAI's published list prices"
)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens. ``cached_input`` None: no cached-input discount (cached tokens cost ``input``)."""

    input: float
    output: float
    cached_input: float | None = None


# Dated snapshots of these names resolve here (module docstring); so do "-latest" aliases.
_TABLE: dict[str, Price] = {
    # OpenAI GPT-5 family
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-pro": Price(15.00, 120.00),
    "gpt-5-codex": Price(1.25, 10.00, 0.125),
    "gpt-5-chat-latest": Price(1.25, 10.00, 0.125),
    "gpt-5.1": Price(1.25, 10.00, 0.125),
    "gpt-5.1-codex": Price(1.25, 10.00, 0.125),
    "gpt-5.1-chat-latest": Price(1.25, 10.00, 0.125),
    "gpt-5.2": Price(1.75, 14.00, 0.175),
    "gpt-5.2-pro": Price(21.00, 168.00),
    "gpt-5.2-chat-latest": Price(1.75, 14.00, 0.175),
    "gpt-5.4": Price(2.50, 15.00, 0.25),
    "gpt-5.4-mini": Price(0.75, 4.50, 0.075),
    "gpt-5.4-nano": Price(0.20, 1.25, 0.02),
    "gpt-5.4-pro": Price(30.00, 180.00),
    "gpt-5.5": Price(5.00, 30.00, 0.50),
    "gpt-5.5-pro": Price(30.00, 180.00),
    "gpt-5.6": Price(4.00, 20.00, 0.40),
    # OpenAI GPT-4.1 and GPT-4o
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-2024-05-13": Price(5.00, 15.00),  # the first gpt-4o snapshot kept its launch price
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    # OpenAI o-series
    "o1": Price(15.00, 60.00, 7.50),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-pro": Price(20.00, 80.00),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    # xAI
    "grok-4": Price(3.00, 15.00, 0.75),  # grok-4-0709 (retired)
    "grok-4-fast-reasoning": Price(0.20, 0.50, 0.05),
    "grok-4-fast-non-reasoning": Price(0.20, 0.50, 0.05),
    "grok-4-1-fast-reasoning": Price(0.20, 0.50, 0.05),
    "grok-4-1-fast-non-reasoning": Price(0.20, 0.50, 0.05),
    "grok-3-mini": Price(0.30, 0.50, 0.075),  # retired
    "grok-4.20": Price(1.25, 2.50, 0.20),
    "grok-4.3": Price(1.25, 2.50, 0.20),
    "grok-4.5": Price(2.00, 6.00, 0.30),
    "grok-4.6": Price(2.00, 6.00, 0.50),
    "grok-4.7": Price(2.00, 6.00, 0.50),
}
DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(_TABLE)
"""The built-in table (as of :data:`PRICES_AS_OF`), read-only: pass your own to :func:`estimate` instead."""

# What may follow a key in a model name and still be that model: a snapshot date (-2025-08-07, -20250807,
# xAI's -0709) or the "-latest" alias, optionally both (grok-4-0709-latest does not exist, but is harmless).
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4})?(-latest)?")
# Gateways and LiteLLM spell names with the provider in front; the price is the provider's.
_PROVIDERS = ("openai/", "xai/", "x-ai/")


def resolve(model: str | None, table: Mapping[str, Price] | None = None) -> str | None:
    """The key of *table* (default :data:`DEFAULT_PRICES`) that prices *model*, or None (no guess)."""
    if not model:
        return None
    prices = DEFAULT_PRICES if table is None else table
    name = model.strip().lower()
    for provider in _PROVIDERS:
        name = name.removeprefix(provider)
    keys = {key.lower(): key for key in prices}
    if name in keys:
        return keys[name]
    # The longest key wins: a user's "grok-4-0709" prices grok-4-0709-latest, not the built-in "grok-4".
    matches = [low for low in keys if name.startswith(low) and _SNAPSHOT.fullmatch(name[len(low) :])]
    return keys[max(matches, key=len)] if matches else None


@dataclass(frozen=True, slots=True)
class Cost:
    """The estimated price of one response, USD. ``usd`` is the sum of the three parts."""

    usd: float
    input_usd: float
    cached_usd: float
    output_usd: float
    model_key: str

    def format(self) -> str:
        """``"$0.0123"``, ``"$1.23"``, ``"<$0.0001"`` (see :func:`format_usd`)."""
        return format_usd(self.usd)

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        key = self.model_key if self.model_key == other.model_key else "mixed"
        return Cost(
            self.usd + other.usd,
            self.input_usd + other.input_usd,
            self.cached_usd + other.cached_usd,
            self.output_usd + other.output_usd,
            key,
        )


def format_usd(usd: float) -> str:
    """A dollar amount for a status line: 4 decimals under $1, cents from $1, ``<$0.0001`` when tiny."""
    if usd <= 0:
        return "$0.00"
    if usd < 0.0001:
        return "<$0.0001"
    # Half-up on the sum cut to 12 digits: 0.04275 (a float sum 0.042749999...) shows as $0.0428, as by hand.
    exact = Decimal(f"{usd:.12g}")
    shown = exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    if shown >= 1:  # $0.99996 is "$1.00", not "$1.0000"
        shown = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"${shown:,}"


def _count(usage: Mapping[str, Any], key: str, detail: str | None = None) -> int:
    """A token count from *usage* (``usage[key]`` or ``usage[key][detail]``); 0 when absent or not a count."""
    value: Any = usage.get(key)
    if detail is not None:
        value = value.get(detail) if isinstance(value, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def estimate(
    usage: Mapping[str, Any] | None, model: str | None, table: Mapping[str, Price] | None = None
) -> Cost | None:
    """The cost of one response from its ``usage`` dict, or None when *model* has no price in *table*.

    *table* defaults to :data:`DEFAULT_PRICES`; a user's table from :func:`parse_prices` already includes
    the defaults it did not override. No usage (a gateway that sends none) is None too: unknown, not free.
    """
    prices = DEFAULT_PRICES if table is None else table
    key = resolve(model, prices)
    if key is None or not usage:
        return None
    price = prices[key]
    inputs = _count(usage, "input_tokens")
    cached = min(_count(usage, "input_tokens_details", "cached_tokens"), inputs)
    # output_tokens already counts the reasoning tokens (output_tokens_details.reasoning_tokens is a part
    # of it, billed at the output rate): adding them again would double-count.
    outputs = _count(usage, "output_tokens")
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    input_usd = (inputs - cached) * price.input / 1_000_000
    cached_usd = cached * cached_rate / 1_000_000
    output_usd = outputs * price.output / 1_000_000
    return Cost(input_usd + cached_usd + output_usd, input_usd, cached_usd, output_usd, key)


def add_usage(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Two responses' ``usage`` summed field by field, nested ``*_details`` too (a tool turn's steps, its live view)."""
    if not a or not b:
        return dict(a or b) if (a or b) else None
    out: dict[str, Any] = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(value, int | float) and isinstance(mine, int | float):
            out[key] = mine + value
        elif isinstance(value, Mapping) and isinstance(mine, Mapping):
            out[key] = add_usage(mine, value)
        elif key not in out:
            out[key] = value
    return out


# --- a user's price table -------------------------------------------------------------------------------


class PriceTableError(ConfigError):
    """A user's price table (``%responses config prices=...``) is malformed; ``.key`` names the bad entry."""

    def __init__(self, message: str = "", *, key: str | None = None, hint: str | None = None) -> None:
        self.key = key
        if hint is None:
            hint = (
                'Give USD per 1M tokens per model, e.g. {"my-model": {"input": 1.25, "output": 10, '
                '"cached_input": 0.125}} (cached_input is optional).'
            )
        super().__init__(message, hint=hint)


_FIELDS = ("input", "output", "cached_input")


def _rate(model: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PriceTableError(f"prices[{model!r}][{field!r}] is {value!r}, not a number.", key=model)
    if not math.isfinite(value) or value < 0:
        raise PriceTableError(f"prices[{model!r}][{field!r}] is {value!r}: a price is 0 or more.", key=model)
    return float(value)


def _entry(model: Any, spec: Any) -> Price:
    if not isinstance(model, str) or not model.strip():
        raise PriceTableError(
            f"A model name in the price table is {model!r}: use the model's name.", key=None
        )
    if isinstance(spec, Price):
        return spec
    if not isinstance(spec, Mapping):
        raise PriceTableError(
            f"prices[{model!r}] is {spec!r}: give a mapping with 'input' and 'output'.", key=model
        )
    unknown = sorted(str(k) for k in spec if k not in _FIELDS)
    if unknown:
        raise PriceTableError(
            f"prices[{model!r}] has unknown field(s) {', '.join(map(repr, unknown))}: "
            f"the fields are {', '.join(map(repr, _FIELDS))}.",
            key=model,
        )
    missing = [f for f in ("input", "output") if f not in spec]
    if missing:
        raise PriceTableError(f"prices[{model!r}] lacks {' and '.join(map(repr, missing))}.", key=model)
    cached = spec.get("cached_input")
    return Price(
        _rate(model, "input", spec["input"]),
        _rate(model, "output", spec["output"]),
        None if cached is None else _rate(model, "cached_input", cached),
    )


def parse_prices(
    value: str | Mapping[str, Any], *, base: Mapping[str, Price] | None = DEFAULT_PRICES
) -> dict[str, Price]:
    """A price table from a user: a mapping ``{model: {"input", "output", "cached_input"?}}`` or its JSON text.

    USD per 1M tokens. The result is *base* (the defaults) with the user's entries over it, so a user can
    correct one model without losing the rest; ``base=None`` keeps only the user's entries. Raises
    :class:`PriceTableError` naming the bad entry.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PriceTableError(
                f"The price table is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
            ) from None
    if not isinstance(value, Mapping):
        raise PriceTableError(f"The price table must map model names to prices, not {type(value).__name__}.")
    user = {str(model).strip(): _entry(model, spec) for model, spec in value.items()}
    table = dict(base or {})
    # A user's "GPT-5" replaces the built-in "gpt-5" rather than sitting beside it (resolve ignores case).
    lowered = {k.lower() for k in user}
    table = {k: v for k, v in table.items() if k.lower() not in lowered}
    table.update(user)
    return table


# --- a budget --------------------------------------------------------------------------------------------


class BudgetExceededError(ResponsesError):
    """The estimated spending of this session reached its budget (``%responses config budget=USD``).

    A :class:`ResponsesError`, not a :class:`ConfigError`: no setting is wrong (the budget did its job), and
    code that reports bad input by catching ConfigError should not swallow it. ``.spent_usd``,
    ``.limit_usd``, ``.unpriced_turns`` and ``.unpriced_models`` hold the figures.
    """

    def __init__(
        self,
        *,
        spent_usd: float,
        limit_usd: float,
        unpriced_turns: int = 0,
        unpriced_models: tuple[str, ...] = (),
    ) -> None:
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.unpriced_turns = unpriced_turns
        self.unpriced_models = unpriced_models
        hint = f"To go on, raise it: `%responses config budget={_suggest(limit_usd)}` (USD)."
        super().__init__(hint=hint)

    def _default_message(self) -> str:
        msg = (
            f"Budget reached: about {format_usd(self.spent_usd)} spent this session, "
            f"budget {format_usd(self.limit_usd)}."
        )
        return msg + _unpriced_note(self.unpriced_turns, self.unpriced_models)


def _suggest(limit: float) -> str:
    """A round figure above *limit* for the hint (double it)."""
    doubled = limit * 2 if limit > 0 else 1.0
    return f"{doubled:g}" if doubled >= 0.01 else f"{doubled:.4f}"


def _unpriced_note(turns: int, models: tuple[str, ...]) -> str:
    if not turns:
        return ""
    names = ", ".join(models) if models else "model unknown"
    turns_text = f"{turns} turn" if turns == 1 else f"{turns} turns"
    return (
        f" Not counted: {turns_text} with no known price ({names}); "
        "give their prices with `%responses config prices=...`."
    )


class BudgetTracker:
    """Adds up estimated costs against a limit in USD; :meth:`check` raises once the limit is reached.

    Turns whose cost is unknown (a model with no price, no usage) are counted apart and named in every
    message, never treated as free.
    """

    def __init__(self, limit_usd: float) -> None:
        if isinstance(limit_usd, bool) or not isinstance(limit_usd, int | float):
            raise ConfigError(f"budget must be a number of US dollars, not {limit_usd!r}.")
        if not math.isfinite(limit_usd) or limit_usd <= 0:
            raise ConfigError(
                f"budget must be more than 0 US dollars, not {limit_usd!r}.",
                hint="Set it in US dollars, e.g. `%responses config budget=5`.",
            )
        self.limit_usd = float(limit_usd)
        self.turns = 0
        self.unpriced_turns = 0
        self._unpriced_models: list[str] = []
        self._spent = 0.0

    @property
    def spent(self) -> float:
        """Estimated USD spent by the priced turns."""
        return self._spent

    @property
    def remaining(self) -> float:
        """USD left before :meth:`check` raises (0 when reached)."""
        return max(0.0, self.limit_usd - self._spent)

    @property
    def unpriced_models(self) -> tuple[str, ...]:
        """The models of the unpriced turns, each once, in the order seen."""
        return tuple(self._unpriced_models)

    def add(self, cost: Cost | None, *, model: str | None = None) -> None:
        """Count one turn: its :class:`Cost`, or None when it could not be priced (*model* names it)."""
        self.turns += 1
        if cost is None:
            self.unpriced_turns += 1
            name = model or "unknown model"
            if name not in self._unpriced_models:
                self._unpriced_models.append(name)
            return
        self._spent += cost.usd

    def exceeded(self) -> bool:
        """Whether the priced spending has reached the limit."""
        return self._spent >= self.limit_usd

    def check(self) -> None:
        """Raise :class:`BudgetExceededError` if the spending has reached the limit (call before a turn)."""
        if self.exceeded():
            raise BudgetExceededError(
                spent_usd=self._spent,
                limit_usd=self.limit_usd,
                unpriced_turns=self.unpriced_turns,
                unpriced_models=self.unpriced_models,
            )

    def summary(self) -> str:
        """One line for a status display: ``"$0.0123 of $1.00 budget spent"`` plus the unpriced turns."""
        head = f"{format_usd(self._spent)} of {format_usd(self.limit_usd)} budget spent"
        return head + (
            "." + _unpriced_note(self.unpriced_turns, self.unpriced_models) if self.unpriced_turns else ""
        )

    def __repr__(self) -> str:
        return (
            f"BudgetTracker(limit_usd={self.limit_usd!r}, spent={self._spent!r}, "
            f"unpriced_turns={self.unpriced_turns})"
        )
