"""What a ``%%respond`` cell knows about the notebook cell it runs in.

JupyterLab, Notebook 7 and VS Code send each cell's id as ``metadata.cellId`` in its ``execute_request``.
Terminal IPython, nbclient 0.11 (``nbconvert --execute``, papermill) and some frontends send none: then a turn
always continues the conversation from its tail.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cell_id"]


def cell_id(shell: Any) -> str | None:
    """The id of the cell being executed, or None when the frontend sent none."""
    kernel = getattr(shell, "kernel", None)
    parent: Any = None
    if kernel is not None:
        try:
            parent = kernel.get_parent("shell")  # ipykernel >= 6.18
        except TypeError:
            parent = kernel.get_parent()
        except Exception:
            parent = None
    if not parent:
        parent = getattr(shell, "parent_header", None)
    metadata = parent.get("metadata") if isinstance(parent, dict) else None
    value = metadata.get("cellId") if isinstance(metadata, dict) else None
    return str(value) if value else None
