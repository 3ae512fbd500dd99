"""Reading a notebook executed with nbclient: its cells by their first line, a ``%%respond`` cell's frozen answer,
and a cell's printed output (tests/test_notebooks.py, tests/test_conversation_notebook.py)."""

from __future__ import annotations

from typing import Any

import nbformat


def cell(nb: nbformat.NotebookNode, startswith: str) -> nbformat.NotebookNode:
    """The one code cell whose source starts with *startswith*."""
    matches = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith)]
    assert len(matches) == 1, f"{len(matches)} cells start with {startswith!r}"
    return matches[0]


def answer(c: nbformat.NotebookNode) -> dict[str, Any]:
    """The frozen output of a %%respond cell: markdown, plain text and metadata, no widget view.

    (With ``retry_buttons`` on, a finished turn also shows its Retry/Continue bar, a widget of its own: not part of
    the answer.)
    """
    outs = [o for o in c.outputs if o.output_type == "display_data" and "text/markdown" in o["data"]]
    assert len(outs) == 1, c.outputs
    data = outs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data, "the live view was not frozen"
    return {
        "markdown": data["text/markdown"],
        "text": data["text/plain"],
        **outs[0]["metadata"]["ipy_responses_ws"],
    }


def stdout(c: nbformat.NotebookNode) -> str:
    """Everything the cell printed."""
    return "".join(o.get("text", "") for o in c.outputs if o.output_type == "stream")
