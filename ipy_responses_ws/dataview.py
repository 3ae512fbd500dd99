"""Compact Markdown views of the user's data for a prompt: ``{df}`` becomes a summary, not 40 MB of repr.

:func:`summarize` knows five kinds of value, recognised by their type's module and name (duck typing: none of
pandas, polars or numpy is imported here, and none needs to be installed):

* a pandas or polars **DataFrame / Series**: the shape, the columns with their dtypes, the head as a Markdown
  table (wide cells shortened) and ``describe()`` of the numeric columns;
* a numpy **ndarray**: shape, dtype, min / max / mean for numbers, a short head;
* a **list, tuple, set or dict** over :data:`LONG_SEQUENCE` items, or whose ``str`` exceeds the budget: the
  length, the element types and the first items.

The result always fits *budget* characters. To get there it drops, in order, the ``describe()`` table, rows,
then columns, and says so in a note such as ``(showing 5 of 1,000 rows, 8 of 40 columns)``; only as a last
resort is the text cut. Everything else (strings, numbers, short lists…) gets ``None``: the caller keeps
``str.format``.
"""

from __future__ import annotations

import reprlib
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

__all__ = ["LONG_SEQUENCE", "summarize", "kind_of"]

#: A list/tuple/set/dict with more items than this is summarised even when its ``str`` is short.
LONG_SEQUENCE = 50

_CELL_WIDTH = 24  # characters of one table cell before it is shortened with "…"
_HEAD_ROWS = 5  # rows of the head table (all rows when the frame has at most _SMALL_FRAME)
_SMALL_FRAME = 10
_TABLE_COLS = 12  # columns of the head table before any trimming
_DTYPE_COLS = 60  # columns named in the dtype line before any trimming
_SEQ_ITEMS = 10  # first items of a long sequence
_TYPE_SAMPLE = 10_000  # items whose types are counted
_CUT = "\n… (cut to fit the budget)"


def kind_of(obj: Any) -> str | None:
    """``"pandas DataFrame"``, ``"polars Series"``, ``"numpy ndarray"``, ``"list"``…; else None."""
    cls = type(obj)
    top = cls.__module__.split(".", 1)[0]
    if top in ("pandas", "polars") and cls.__name__ in ("DataFrame", "Series"):
        return f"{top} {cls.__name__}"
    if top == "numpy" and cls.__name__ == "ndarray":
        return "numpy ndarray"
    if isinstance(obj, list | tuple | set | frozenset | dict):
        return cls.__name__
    return None


def summarize(obj: Any, budget: int = 4000) -> str | None:
    """A Markdown view of *obj* in at most *budget* characters, or None when plain ``str`` is the right view.

    >>> summarize(list(range(100)), budget=200).splitlines()[0]
    'list of 100 items; element types: int ×100'
    >>> summarize("text") is None
    True
    """
    kind = kind_of(obj)
    if kind is None:
        return None
    if kind in ("list", "tuple", "set", "frozenset", "dict"):
        if len(obj) <= LONG_SEQUENCE and len(str(obj)) <= budget:
            return None
        return _fit(_sequence_views(obj, kind), budget)
    if kind == "numpy ndarray":
        if obj.ndim == 0:
            return None
        return _fit(_array_views(obj), budget)
    frame = obj.to_frame() if kind.endswith("Series") else obj
    return _fit(_frame_views(frame, kind, obj), budget)


# -- fitting -------------------------------------------------------------------------------------------------


def _fit(views: Iterator[str], budget: int) -> str:
    """The first view that fits *budget* (views go from the richest to the barest); else the last one, cut."""
    last = ""
    for view in views:
        if len(view) <= budget:
            return view
        last = view
    if budget <= len(_CUT):
        return last[:budget]
    return last[: budget - len(_CUT)].rstrip() + _CUT


def _count(n: int) -> str:
    return f"{n:,}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _note(parts: Sequence[str]) -> str:
    return f"({', '.join(parts)})" if parts else ""


def _cell(value: Any, width: int = _CELL_WIDTH) -> str:
    """One Markdown table cell: numbers short, one line, ``|`` escaped, at most *width* characters."""
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        try:
            text = f"{float(value):.6g}"
        except (TypeError, ValueError):
            text = str(value)
    else:
        text = str(value)
    text = " ".join(text.split())
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("|", "\\|")


def _table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# -- data frames ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FrameShape:
    """How much of a frame one view shows."""

    rows: int
    table_cols: int
    dtype_cols: int
    describe: bool


@dataclass
class _Frame:
    """What the views need from a pandas or polars frame, read lazily."""

    names: list[str]
    dtypes: list[str]
    n_rows: int
    head: Callable[[int, int], tuple[list[str], list[Sequence[Any]]]]  # (rows, cols) -> header, rows
    describe: Callable[[int], tuple[list[str], list[Sequence[Any]]] | None]  # cols -> table or None


def _pandas_frame(df: Any) -> _Frame:
    index = df.index
    default_index = type(index).__name__ == "RangeIndex" and index.start == 0 and index.step == 1

    def head(rows: int, cols: int) -> tuple[list[str], list[Sequence[Any]]]:
        part = df.iloc[:rows, :cols]
        header = [str(c) for c in part.columns]
        body = [list(r) for r in part.itertuples(index=not default_index, name=None)]
        if not default_index:
            header.insert(0, str(index.name) if index.name is not None else "")
        return header, body

    def describe(cols: int) -> tuple[list[str], list[Sequence[Any]]] | None:
        numeric = df.iloc[:, :cols].select_dtypes("number")
        if numeric.shape[1] == 0 or len(df) == 0:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = numeric.describe()
        header = ["", *(str(c) for c in stats.columns)]
        return header, [
            [name, *row] for name, row in zip(stats.index, stats.itertuples(index=False), strict=True)
        ]

    return _Frame([str(c) for c in df.columns], [str(t) for t in df.dtypes], int(df.shape[0]), head, describe)


def _polars_frame(df: Any) -> _Frame:
    names = list(df.columns)
    dtypes = list(df.dtypes)

    def head(rows: int, cols: int) -> tuple[list[str], list[Sequence[Any]]]:
        part = df.select(names[:cols]).head(rows)
        return list(part.columns), [list(r) for r in part.rows()]

    def describe(cols: int) -> tuple[list[str], list[Sequence[Any]]] | None:
        numeric = [n for n, t in zip(names[:cols], dtypes[:cols], strict=True) if t.is_numeric()]
        if not numeric or df.height == 0:
            return None
        stats = df.select(numeric).describe()
        return list(stats.columns), [list(r) for r in stats.rows()]

    return _Frame(names, [str(t) for t in dtypes], int(df.height), head, describe)


def _frame_views(frame: Any, kind: str, original: Any) -> Iterator[str]:
    data = _pandas_frame(frame) if kind.startswith("pandas") else _polars_frame(frame)
    n_rows, n_cols = data.n_rows, len(data.names)
    first = _FrameShape(
        rows=n_rows if n_rows <= _SMALL_FRAME else _HEAD_ROWS,
        table_cols=min(n_cols, _TABLE_COLS),
        dtype_cols=min(n_cols, _DTYPE_COLS),
        describe=True,
    )
    if kind.endswith("Series"):
        name = getattr(original, "name", None)
        title = f"{kind}" + (f" `{name}`" if name not in (None, "") else "")
        title += f", {_plural(n_rows, 'value')}, dtype {data.dtypes[0] if data.dtypes else '?'}"
    else:
        title = f"{kind}, shape ({n_rows}, {n_cols}): {_plural(n_rows, 'row')} × {_plural(n_cols, 'column')}"
    series = kind.endswith("Series")
    for shape in _frame_shapes(first):
        yield _frame_view(data, title, shape, series=series)


def _frame_shapes(first: _FrameShape) -> Iterator[_FrameShape]:
    """From the full view down: drop describe, then rows (to 3, then 1), then halve the columns, then the
    table."""
    shape = first
    yield shape
    if shape.describe:
        shape = replace(shape, describe=False)
        yield shape
    for rows in (3, 1):
        if shape.rows > rows:
            shape = replace(shape, rows=rows)
            yield shape
    while shape.table_cols > 1 or shape.dtype_cols > 1:
        shape = replace(
            shape, table_cols=max(1, shape.table_cols // 2), dtype_cols=max(1, shape.dtype_cols // 2)
        )
        yield shape
    if shape.rows:
        yield replace(shape, rows=0)


def _frame_view(data: _Frame, title: str, shape: _FrameShape, *, series: bool = False) -> str:
    n_rows, n_cols = data.n_rows, len(data.names)
    shown = min(shape.dtype_cols, n_cols)
    dtype_line = "Columns (dtype): " + ", ".join(
        f"{_cell(n, 40)} ({t})" for n, t in zip(data.names[:shown], data.dtypes[:shown], strict=True)
    )
    if shown < n_cols:
        dtype_line += f", … and {_count(n_cols - shown)} more"
    if not n_cols:
        dtype_line = "Columns: none"
    lines = [title] if series else [title, dtype_line]
    trimmed: list[str] = []
    rows = min(shape.rows, n_rows)
    cols = min(shape.table_cols, n_cols)
    if rows < n_rows or cols < n_cols:
        trimmed.append(f"showing {_count(rows)} of {_count(n_rows)} rows")
        if cols < n_cols:
            trimmed.append(f"{_count(cols)} of {_count(n_cols)} columns")
    stats = data.describe(cols) if shape.describe else None
    if not shape.describe and n_rows and any(_is_numeric(t) for t in data.dtypes[:cols]):
        trimmed.append("describe() left out to fit the budget")
    if trimmed:
        lines.append(_note(trimmed))
    if rows and cols:
        header, body = data.head(rows, cols)
        lines += ["", _table(header, body)]
    if stats is not None:
        lines += ["", "describe() of the numeric columns:", "", _table(*stats)]
    return "\n".join(lines)


def _is_numeric(dtype: str) -> bool:
    low = dtype.lower()
    return low.startswith(("int", "uint", "float", "decimal")) or low in ("i64", "f64")


# -- numpy arrays --------------------------------------------------------------------------------------------


def _array_views(arr: Any) -> Iterator[str]:
    import numpy as np  # the value is a numpy array, so numpy is installed and imported

    n = int(arr.shape[0])
    title = f"numpy ndarray, shape {tuple(int(s) for s in arr.shape)}, dtype {arr.dtype}"
    stats = ""
    if arr.size and (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            low, high, mean = np.nanmin(arr), np.nanmax(arr), np.nanmean(arr)
        stats = f"min {_cell(low)}, max {_cell(high)}, mean {_cell(mean)}"
        nans = int(np.isnan(arr).sum()) if np.issubdtype(arr.dtype, np.floating) else 0
        if nans:
            stats += f" ({_count(nans)} NaN ignored)"
    unit = "items" if arr.ndim == 1 else "rows"
    first = min(n, 20 if arr.ndim == 1 else (n if n <= _SMALL_FRAME else _HEAD_ROWS))
    for rows in dict.fromkeys((first, min(first, 3), min(first, 1), 0)):
        lines = [title] + ([stats] if stats else [])
        if rows < n:
            lines.append(_note([f"showing {_count(rows)} of {_count(n)} {unit}"]))
        if rows:
            body = np.array2string(arr[:rows], threshold=60, edgeitems=3, precision=6, max_line_width=100)
            lines += ["", "```", body, "```"]
        yield "\n".join(lines)


# -- long sequences ------------------------------------------------------------------------------------------


def _type_counts(values: Any, total: int) -> str:
    counts = Counter(type(v).__name__ for v in islice(values, _TYPE_SAMPLE))
    text = ", ".join(f"{name} ×{_count(k)}" for name, k in counts.most_common(8))
    if len(counts) > 8:
        text += f", … {len(counts) - 8} more types"
    if total > _TYPE_SAMPLE:
        text += f" (in the first {_count(_TYPE_SAMPLE)})"
    return text


def _sequence_views(obj: Any, kind: str) -> Iterator[str]:
    n = len(obj)
    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlist, short.maxdict = 80, 80, 6, 4
    if isinstance(obj, dict):
        title = (
            f"dict of {_plural(n, 'item')}; key types: {_type_counts(obj.keys(), n)}; "
            f"value types: {_type_counts(obj.values(), n)}"
        )
        first = [f"- {short.repr(k)}: {short.repr(v)}" for k, v in islice(obj.items(), _SEQ_ITEMS)]
    else:
        title = f"{kind} of {_plural(n, 'item')}; element types: {_type_counts(obj, n)}"
        first = [f"- {short.repr(v)}" for v in islice(obj, _SEQ_ITEMS)]
    order = ", in iteration order" if kind in ("set", "frozenset") else ""
    for k in dict.fromkeys((len(first), min(len(first), 5), min(len(first), 3), min(len(first), 1), 0)):
        lines = [title]
        if k < n:
            lines.append(_note([f"showing the first {_count(k)} of {_count(n)} items{order}"]))
        yield "\n".join(lines + first[:k])
