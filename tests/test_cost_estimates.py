"""Cost estimates: what a turn cost by the dated price table, a user's own table, and the budget guard."""

from __future__ import annotations

import json
import re

import pytest

from ipy_responses_ws.errors import ConfigError, ResponsesError
from ipy_responses_ws.pricing import (
    DEFAULT_PRICES,
    PRICES_AS_OF,
    BudgetExceededError,
    BudgetTracker,
    Cost,
    Price,
    PriceTableError,
    estimate,
    format_usd,
    parse_prices,
    resolve,
)


def usage(inp=12_000, cached=0, out=3_000, reasoning=2_000):
    """A Responses API usage object as the server sends it."""
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def test_table_is_dated_and_covers_the_common_models() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", PRICES_AS_OF)
    for model in ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "gpt-5.2", "gpt-4.1", "gpt-4.1-mini",
                  "gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "grok-4", "grok-3-mini"):  # fmt: skip
        assert model in DEFAULT_PRICES, model


def test_gpt5_turn_costs_the_hand_computed_figure() -> None:
    # gpt-5: $1.25 in, $0.125 cached, $10 out per 1M. 10,000 fresh + 2,000 cached in, 3,000 out (2,000 of them
    # reasoning, already inside output_tokens): 0.0125 + 0.00025 + 0.03 = 0.04275.
    cost = estimate(usage(inp=12_000, cached=2_000, out=3_000, reasoning=2_000), "gpt-5")
    assert cost is not None
    assert cost.model_key == "gpt-5"
    assert cost.input_usd == pytest.approx(0.0125)
    assert cost.cached_usd == pytest.approx(0.00025)
    assert cost.output_usd == pytest.approx(0.03)
    assert cost.usd == pytest.approx(0.04275)
    assert cost.format() == "$0.0428"


def test_dated_snapshot_is_priced_as_its_family() -> None:
    # The model field of a response names the snapshot, e.g. gpt-5-2025-08-07 or grok-4-0709.
    snap = estimate(usage(), "gpt-5-2025-08-07")
    assert snap == estimate(usage(), "gpt-5")
    assert snap is not None and snap.model_key == "gpt-5"
    mini = estimate(usage(inp=1_000_000, cached=0, out=1_000_000), "gpt-5-mini-2025-08-07")
    assert mini is not None and mini.model_key == "gpt-5-mini"
    assert mini.usd == pytest.approx(0.25 + 2.00)
    assert resolve("grok-4-0709") == "grok-4"
    assert resolve("gpt-4o-mini-2024-07-18") == "gpt-4o-mini"
    assert resolve("openai/gpt-4.1-2025-04-14") == "gpt-4.1"
    assert resolve("GPT-5.2-2025-12-11") == "gpt-5.2"


def test_an_older_snapshot_with_its_own_price_is_not_priced_as_the_family() -> None:
    cost = estimate(usage(inp=1_000_000, out=0, reasoning=0), "gpt-4o-2024-05-13")
    assert cost is not None and cost.usd == pytest.approx(5.00)


def test_cached_tokens_are_cheaper() -> None:
    fresh = estimate(usage(inp=100_000, cached=0), "gpt-4.1")
    warm = estimate(usage(inp=100_000, cached=80_000), "gpt-4.1")
    assert fresh is not None and warm is not None
    assert warm.usd < fresh.usd
    # 20,000 at $2 + 80,000 at $0.50 per 1M
    assert warm.input_usd + warm.cached_usd == pytest.approx(0.04 + 0.04)


def test_reasoning_tokens_are_not_counted_twice() -> None:
    with_reasoning = estimate(usage(out=5_000, reasoning=4_500), "o3")
    without = estimate(usage(out=5_000, reasoning=0), "o3")
    assert with_reasoning == without


@pytest.mark.parametrize("model", ["gpt-9-ultra", "gpt-5-pro-max", "gpt-5-turbo", "llama-3", "", None])
def test_unknown_model_has_no_price(model) -> None:
    # gpt-5-turbo merely starts with gpt-5: a guess at gpt-5's price would be wrong by an unknown factor.
    assert estimate(usage(), model) is None


def test_no_usage_is_unknown_not_free() -> None:
    assert estimate(None, "gpt-5") is None
    assert estimate({}, "gpt-5") is None


def test_format_small_large_and_tiny_sums() -> None:
    assert format_usd(0.0123) == "$0.0123"
    assert format_usd(0.00004) == "<$0.0001"
    assert format_usd(0) == "$0.00"
    assert format_usd(12.345) == "$12.35"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0.99996) == "$1.00"
    tiny = estimate(usage(inp=10, cached=0, out=10, reasoning=0), "gpt-5-nano")
    assert tiny is not None and tiny.format() == "<$0.0001"


def test_user_table_overrides_and_extends_the_defaults() -> None:
    table = parse_prices(
        {
            "gpt-5": {"input": 1.0, "output": 8.0, "cached_input": 0.1},
            "my-local-model": {"input": 0, "output": 0},
        }
    )
    cost = estimate(usage(inp=1_000_000, cached=0, out=1_000_000, reasoning=0), "gpt-5-2025-08-07", table)
    assert cost is not None and cost.usd == pytest.approx(9.0)
    assert estimate(usage(), "my-local-model", table) == Cost(0.0, 0.0, 0.0, 0.0, "my-local-model")
    # the rest of the defaults are still there
    assert estimate(usage(), "gpt-4o", table) == estimate(usage(), "gpt-4o")
    assert "gpt-5" in DEFAULT_PRICES and DEFAULT_PRICES["gpt-5"] == Price(1.25, 10.0, 0.125)  # not mutated


def test_user_table_as_json_text_and_without_defaults() -> None:
    text = json.dumps({"GPT-5": {"input": 2, "output": 20}})
    table = parse_prices(text, base=None)
    assert list(table) == ["GPT-5"]
    cost = estimate(usage(inp=1_000_000, cached=500_000, out=0, reasoning=0), "gpt-5", table)
    # no cached rate given: cached tokens cost the input rate
    assert cost is not None and cost.usd == pytest.approx(2.0)
    assert estimate(usage(), "gpt-4o", table) is None


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ({"gpt-5": {"input": 1, "ouput": 2}}, ["gpt-5", "ouput"]),
        ({"gpt-5": {"input": 1}}, ["gpt-5", "output"]),
        ({"gpt-5": {"input": "cheap", "output": 2}}, ["gpt-5", "input", "cheap"]),
        ({"gpt-5": {"input": -1, "output": 2}}, ["gpt-5", "-1"]),
        ({"gpt-5": 1.25}, ["gpt-5"]),
        ('{"gpt-5": {"input": 1,', ["not valid JSON", "line 1"]),
        ("[1, 2]", ["map model names"]),
    ],
)
def test_bad_table_names_the_bad_entry(value, names) -> None:
    with pytest.raises(PriceTableError) as info:
        parse_prices(value)
    assert isinstance(info.value, ConfigError)
    for name in names:
        assert name in str(info.value)
    assert "per 1M tokens" in str(info.value)  # says what a good table looks like


def test_budget_exceeded_message_says_spent_budget_and_how_to_raise_it() -> None:
    budget = BudgetTracker(0.05)
    budget.add(estimate(usage(inp=12_000, cached=2_000, out=3_000), "gpt-5"))
    budget.check()  # $0.04275 of $0.05: still under
    assert budget.remaining == pytest.approx(0.05 - 0.04275)
    budget.add(estimate(usage(), "gpt-5-2025-08-07"))
    budget.add(None, model="mystery-model")
    with pytest.raises(BudgetExceededError) as info:
        budget.check()
    err = info.value
    assert isinstance(err, ResponsesError) and not isinstance(err, ConfigError)
    text = str(err)
    # 0.04275 + 0.045 (12,000 fresh in, 3,000 out)
    assert err.spent_usd == pytest.approx(0.08775)
    assert "$0.0878 spent" in text and "budget $0.0500" in text
    assert "%responses config budget=" in text
    assert "1 turn" in text and "mystery-model" in text  # the unpriced turn is reported, not taken as free
    assert err.limit_usd == 0.05 and err.unpriced_turns == 1 and err.unpriced_models == ("mystery-model",)


def test_unpriced_turns_are_counted_apart() -> None:
    budget = BudgetTracker(1)
    budget.add(None, model="llama-3")
    budget.add(None, model="llama-3")
    assert budget.spent == 0 and budget.unpriced_turns == 2 and budget.unpriced_models == ("llama-3",)
    budget.check()
    assert "2 turns with no known price (llama-3)" in budget.summary()


@pytest.mark.parametrize("limit", [0, -1, float("nan"), "5", True])
def test_budget_must_be_a_positive_amount(limit) -> None:
    with pytest.raises(ConfigError, match="budget"):
        BudgetTracker(limit)
