"""``{name}`` interpolation of a ``%%respond`` cell: lookups in the user's namespace, never evaluation.

A field whose value is data (a pandas/polars DataFrame or Series, a numpy array, a long list/tuple/set/dict)
becomes a compact Markdown summary (:func:`ipy_responses_ws.dataview.summarize`) of at most ``data_budget``
characters, on lines of its own; :func:`interpolate_with_report` also says what was summarised, so the status
line can show ``attached df (1.2 KB)``. A conversion or format spec (``{df!r}``, ``{arr:…}``) keeps plain
``str.format``, as does every other value.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

from ..attachments import Attachment
from ..dataview import kind_of, summarize

__all__ = ["DEFAULT_DATA_BUDGET", "interpolate", "interpolate_with_report"]

#: Characters one data summary may take in a prompt.
DEFAULT_DATA_BUDGET = 4000

_FORMATTER = string.Formatter()


def interpolate(
    template: str, namespace: Mapping[str, Any], *, data_budget: int | None = DEFAULT_DATA_BUDGET
) -> str:
    """The prompt text of :func:`interpolate_with_report` (what was summarised is dropped)."""
    return interpolate_with_report(template, namespace, data_budget=data_budget)[0]


def interpolate_with_report(
    template: str, namespace: Mapping[str, Any], *, data_budget: int | None = DEFAULT_DATA_BUDGET
) -> tuple[str, list[Attachment]]:
    """Fill ``{name}``, ``{obj.attr}``, ``{seq[0]}``, ``{mapping[key]}`` from the user's namespace.

    As in jupyter-ai's prompt templates. Only lookups happen (``str.format`` field rules): no expression
    is evaluated. ``{{`` and ``}}`` give literal braces. A format spec / conversion works as in
    ``str.format`` (``{x:.2f}``, ``{df!r}``). An unknown name raises ``UsageError`` naming it.

    A plain ``{field}`` holding data is replaced by its summary in at most *data_budget* characters (each
    field has its own budget; ``None`` turns summaries off), set on lines of its own. Returns the text and one
    :class:`~ipy_responses_ws.attachments.Attachment` per summary, in order: ``Attachment(name="df",
    kind="pandas DataFrame", size=<characters>)``, whose ``.label`` reads ``"df (1.2 KB)"``.
    """
    out: list[str] = []
    report: list[Attachment] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise UsageError(
            f"Cannot read the prompt's {{name}} fields: {exc}. Write {{{{ and }}}} for literal braces, "
            "or use --raw to send the cell as written."
        ) from None
    for i, (literal, field, spec, conversion) in enumerate(parsed):
        out.append(literal)
        if field is None:
            continue
        if field == "" or field[0].isdigit():
            raise UsageError(
                f"The prompt has an empty or numeric field {{{field}}}; name a variable, e.g. {{text}}. "
                "Write {{ and }} for literal braces, or use --raw."
            )
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root not in namespace:
            raise UsageError(
                f"The prompt uses {{{field}}} but no variable {root!r} is defined in the notebook. "
                "Define it first, or write {{ and }} for literal braces (or use --raw)."
            )
        try:
            value, _ = _FORMATTER.get_field(field, (), namespace)
            summary = (
                _summary(value, data_budget) if data_budget is not None and not (conversion or spec) else None
            )
            if summary is not None:
                before = next((piece for piece in reversed(out) if piece), "")
                after = parsed[i + 1][0] if i + 1 < len(parsed) else ""
                out.append(_own_lines(summary, before, after))
                report.append(Attachment(field, kind_of(value) or type(value).__name__, len(summary)))
                continue
            if conversion:
                value = _FORMATTER.convert_field(value, conversion)
            out.append(_FORMATTER.format_field(value, spec or ""))
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise UsageError(f"Cannot fill {{{field}}} in the prompt: {type(exc).__name__}: {exc}") from None
    return "".join(out), report


def _own_lines(summary: str, before: str, after: str) -> str:
    """*summary* with a line break added where the text around it does not already start or end a line."""
    head = "\n" if before and not before.endswith("\n") else ""
    tail = "\n" if after and not after.startswith("\n") else ""
    return head + summary + tail


def _summary(value: Any, budget: int) -> str | None:
    """The data summary of *value*, or None (plain ``str``) when there is none or building it failed."""
    try:
        return summarize(value, budget=budget)
    except Exception:  # a summary is a nicety: an odd dtype must not block the prompt
        return None
