"""``{name}`` interpolation of a ``%%respond`` cell: lookups in the user's namespace, never evaluation."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

__all__ = ["interpolate"]

_FORMATTER = string.Formatter()


def interpolate(template: str, namespace: Mapping[str, Any]) -> str:
    """Fill ``{name}``, ``{obj.attr}``, ``{seq[0]}``, ``{mapping[key]}`` from the user's namespace.

    As in jupyter-ai's prompt templates. Only lookups happen (``str.format`` field rules): no expression
    is evaluated. ``{{`` and ``}}`` give literal braces. A format spec / conversion works as in
    ``str.format`` (``{x:.2f}``, ``{df!r}``). An unknown name raises ``UsageError`` naming it.
    """
    out: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise UsageError(
            f"Cannot read the prompt's {{name}} fields: {exc}. Write {{{{ and }}}} for literal braces, "
            "or use --raw to send the cell as written."
        ) from None
    for literal, field, spec, conversion in parsed:
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
            if conversion:
                value = _FORMATTER.convert_field(value, conversion)
            out.append(_FORMATTER.format_field(value, spec or ""))
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise UsageError(f"Cannot fill {{{field}}} in the prompt: {type(exc).__name__}: {exc}") from None
    return "".join(out)
