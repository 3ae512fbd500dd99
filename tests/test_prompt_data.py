"""Data in a prompt: ``{df}`` sends a compact Markdown summary (shape, dtypes, head, describe) within a budget.

Real pandas, polars and numpy objects; the assertions are what a user reading the sent prompt would notice.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ipy_responses_ws.attachments import Attachment
from ipy_responses_ws.dataview import summarize
from ipy_responses_ws.magics.prompt import interpolate, interpolate_with_report

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")


@pytest.fixture
def wide() -> object:
    """1,000 rows × 40 columns: 39 numeric, one text column with long values and a pipe."""
    rng = np.random.default_rng(7)
    data = {f"col{i}": rng.normal(size=1000) for i in range(39)}
    data["label"] = [f"row {i} | a long free-text value that keeps going" for i in range(1000)]
    return pd.DataFrame(data)


def test_a_small_pandas_frame_is_shown_whole_with_dtypes_and_describe() -> None:
    df = pd.DataFrame({"city": ["Paris", "Lyon", "Nice"], "pop": [2_100_000, 520_000, 340_000]})
    text = summarize(df)
    assert text is not None
    assert text.splitlines()[0] == "pandas DataFrame, shape (3, 2): 3 rows × 2 columns"
    assert "city (" in text and "pop (int64)" in text
    assert "| city | pop |" in text and "| Paris | 2100000 |" in text
    assert "describe() of the numeric columns" in text and "| mean |" in text
    assert "showing" not in text  # nothing trimmed, no note


def test_a_wide_frame_shows_its_head_and_says_what_it_left_out(wide) -> None:
    text = summarize(wide)
    assert text is not None and len(text) <= 4000
    assert "shape (1000, 40): 1,000 rows × 40 columns" in text
    assert "col0 (float64)" in text and "label (" in text  # every column named with its dtype
    assert "(showing 5 of 1,000 rows, 12 of 40 columns)" in text
    first = wide.iloc[0]
    assert f"| {first['col0']:.6g} | {first['col1']:.6g} |" in text
    assert "| mean |" in text


@pytest.mark.parametrize("budget", [2500, 1200, 600, 250, 60])
def test_the_budget_always_holds_and_the_trim_is_visible(wide, budget: int) -> None:
    text = summarize(wide, budget=budget)
    assert text is not None and len(text) <= budget
    assert text.startswith("pandas DataFrame, shape (1000, 40)")  # the shape line survives every cut
    if budget >= 250:
        assert "describe() left out to fit the budget" in text
        assert "of 1,000 rows" in text
    else:
        assert "cut to fit the budget" in text


def test_trimming_drops_describe_then_rows_then_columns(wide) -> None:
    sizes = {}
    for budget in (4000, 2500, 1200, 700):
        text = summarize(wide, budget=budget)
        assert text is not None
        sizes[budget] = text
    assert "| mean |" in sizes[4000]
    assert "| mean |" not in sizes[2500] and "12 of 40 columns" in sizes[2500]
    assert "showing 1 of 1,000 rows" in sizes[1200] or "showing 3 of 1,000 rows" in sizes[1200]
    assert "12 of 40 columns" not in sizes[700]  # columns go last


def test_wide_cells_are_shortened_and_pipes_escaped(wide) -> None:
    text = summarize(wide[["label"]])
    assert text is not None
    assert "| row 0 \\| a long free-tex… |" in text  # 24 characters at most, then "…"
    assert "keeps going" not in text


def test_pandas_series_and_a_named_index() -> None:
    s = pd.Series([1.5, 2.5, 3.5], name="price", index=pd.Index(["a", "b", "c"], name="sku"))
    text = summarize(s)
    assert text is not None
    assert text.startswith("pandas Series `price`, 3 values, dtype float64")
    assert "| sku | price |" in text and "| a | 1.5 |" in text


def test_polars_frame_has_shape_dtypes_and_first_row() -> None:
    df = pl.DataFrame({"id": list(range(200)), "name": [f"user{i}" for i in range(200)]})
    text = summarize(df)
    assert text is not None
    assert "polars DataFrame, shape (200, 2): 200 rows × 2 columns" in text
    assert "id (Int64)" in text and "name (String)" in text
    assert "| 0 | user0 |" in text
    assert "(showing 5 of 200 rows)" in text
    assert "| mean |" in text  # polars' describe of the numeric column


def test_numpy_array_has_shape_dtype_stats_and_a_head() -> None:
    arr = np.arange(3000, dtype=np.float64).reshape(1000, 3)
    text = summarize(arr)
    assert text is not None
    assert text.startswith("numpy ndarray, shape (1000, 3), dtype float64")
    assert "min 0, max 2999, mean 1499.5" in text
    assert "(showing 5 of 1,000 rows)" in text
    assert "[[ 0.  1.  2.]" in text


def test_long_sequences_are_summarised_short_ones_are_not() -> None:
    text = summarize([1, "two", 3.0] * 100)
    assert text is not None
    assert text.startswith("list of 300 items; element types: int ×100, str ×100, float ×100")
    assert "(showing the first 10 of 300 items)" in text and "- 'two'" in text
    mapping = summarize({f"k{i}": i for i in range(80)})
    assert mapping is not None and "dict of 80 items" in mapping and "- 'k0': 0" in mapping
    for plain in ([1, 2, 3], "text", 42, {"a": 1}, None, np.float64(2.0)):
        assert summarize(plain) is None


def test_dataview_imports_without_pandas_polars_or_numpy() -> None:
    code = (
        "import sys\n"
        "for name in ('pandas', 'polars', 'numpy'): sys.modules[name] = None\n"
        "from ipy_responses_ws.dataview import summarize\n"
        "print(summarize(list(range(100))).splitlines()[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "list of 100 items; element types: int ×100"


# -- {df} in a %%respond cell ------------------------------------------------------------------------------


def test_a_data_field_becomes_its_summary_on_lines_of_its_own(wide) -> None:
    text, report = interpolate_with_report("Explain {df} please, {who}.", {"df": wide, "who": "Ada"})
    assert text.startswith("Explain \npandas DataFrame, shape (1000, 40)")
    assert text.endswith("\n please, Ada.")
    assert report == [Attachment("df", "pandas DataFrame", len(summarize(wide)))]
    assert report[0].label.startswith("df (") and report[0].label.endswith(" KB)")


def test_attributes_and_items_of_data_are_summarised_too(wide) -> None:
    text, report = interpolate_with_report("{df.col3}\n{frames[0]}", {"df": wide, "frames": [wide]})
    assert "pandas Series `col3`, 1,000 values, dtype float64" in text
    assert [a.name for a in report] == ["df.col3", "frames[0]"]


def test_the_budget_is_the_interpolations_keyword(wide) -> None:
    text, report = interpolate_with_report("{df}", {"df": wide}, data_budget=500)
    assert len(text) <= 500 and report[0].size == len(text)
    assert interpolate("{df}", {"df": wide}, data_budget=500) == text


def test_conversions_specs_and_plain_values_keep_str_format() -> None:
    arr = np.arange(100)
    ns = {"arr": arr, "n": 3.14159, "few": [1, 2]}
    text, report = interpolate_with_report("{arr!r} {n:.2f} {few}", ns)
    assert text == f"{arr!r} 3.14 [1, 2]" and report == []
    assert interpolate("{arr}", ns, data_budget=None) == str(arr)


def test_a_summary_that_fails_falls_back_to_str() -> None:
    class Odd(list):
        def __len__(self) -> int:  # breaks the summary, not str()
            raise RuntimeError("boom")

        def __str__(self) -> str:
            return "odd"

    assert interpolate("{x}", {"x": Odd()}) == "odd"
