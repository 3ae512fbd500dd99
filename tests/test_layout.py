"""The house rules of the package, checked on its source: imports flow one way, no circles, small modules.

Layers (STYLE.md): pure core → I/O → session → notebook face → entry points. A module imports only from its own
layer or below; the core imports neither aiohttp, IPython nor ipywidgets; only the notebook face imports IPython
or ipywidgets; the emulator runs without Jupyter (it may use the pure SSE encoder). A new module must be given a
layer here, so this test also fails when one is added without thinking about where it belongs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ipy_responses_ws"

CORE, IO, SESSION, FACE, ENTRY = range(5)
LAYER = {
    # pure core: no I/O, no Jupyter
    "redact": CORE,
    "errors": CORE,
    "config": CORE,
    "profiles": CORE,
    "events": CORE,
    "sse": CORE,
    "stream": CORE,
    "recovery": CORE,
    "retry_after": CORE,
    "chain": CORE,
    "tool_schema": CORE,
    "toolbox": CORE,
    "dataview": CORE,
    "attachments": CORE,
    "last_error": CORE,
    "pricing": CORE,
    "export": CORE,
    # I/O
    "runtime": IO,
    "transports": IO,
    "transports.pool": IO,
    "transports.ws": IO,
    "transports.sse": IO,
    "transports.network": IO,
    # the session
    "results": SESSION,
    "turn": SESSION,
    "session": SESSION,
    "tool_loop": SESSION,
    "ledger": SESSION,
    # the notebook face (the rendering modules among them are pure: see PURE_VIEW)
    "markdown": FACE,
    "pacing": FACE,
    "status_text": FACE,
    "blocks": FACE,
    "bundle": FACE,
    "view_state": FACE,
    "render": FACE,
    "tool_view": FACE,
    "view_widgets": FACE,
    "live_view": FACE,
    "panel": FACE,
    "widgets": FACE,
    "magics": FACE,
    "magics.commands": FACE,
    "magics.control": FACE,
    "magics.holder": FACE,
    "magics.prompt": FACE,
    "magics.options": FACE,
    "magics.tool_cells": FACE,
    "magics.notebook_cell": FACE,
    "magics.cell_request": FACE,
    "magics.actions": FACE,
    "magics.turns": FACE,
    # entry points
    "_extension": ENTRY,
    "cli": ENTRY,
    "__main__": ENTRY,
    "": ENTRY,  # the package's __init__
}
PURE_VIEW = {"markdown", "pacing", "status_text", "blocks", "bundle", "view_state", "render", "tool_view"}
JUPYTER = ("IPython", "ipywidgets", "ipykernel", "traitlets")
MAX_LINES = 500


def _name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(package modules imported, top-level third-party packages imported) by one module, TYPE_CHECKING included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if name else []
    base_parts = here if is_pkg else here[:-1]
    internal: set[str] = set()
    external: set[str] = set()
    modules = _modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "ipy_responses_ws":
                    internal.add(alias.name.removeprefix("ipy_responses_ws").lstrip("."))
                else:
                    external.add(top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base_parts[: len(base_parts) - (node.level - 1)] if node.level > 1 else base_parts
                target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.split(".")[0] == "ipy_responses_ws":
                target = node.module.removeprefix("ipy_responses_ws").lstrip(".")
            else:
                external.add((node.module or "").split(".")[0])
                continue
            for alias in node.names:  # `from . import x` may import the submodule x
                sub = f"{target}.{alias.name}" if target else alias.name
                internal.add(sub if sub in modules else target)
    internal.discard(name)
    return internal, external


def _package_modules() -> dict[str, Path]:
    return {n: p for n, p in _modules().items() if not n.startswith("emulator")}


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(_package_modules()) - set(LAYER))
    assert not missing, f"give these modules a layer in tests/test_layout.py: {missing}"


@pytest.mark.parametrize("name", sorted(_package_modules()))
def test_imports_flow_one_way(name: str) -> None:
    internal, external = _imports(name, _package_modules()[name])
    upward = sorted(
        m for m in internal if not m.startswith("emulator") and LAYER.get(m, ENTRY) > LAYER.get(name, ENTRY)
    )
    assert not upward, f"{name or '__init__'} imports from a higher layer: {upward}"
    if LAYER[name] == CORE or name in PURE_VIEW:
        assert not external & {"aiohttp", *JUPYTER}, (
            f"{name} must stay pure: {external & {'aiohttp', *JUPYTER}}"
        )
    if LAYER[name] < FACE:
        assert not external & set(JUPYTER), f"{name} imports Jupyter below the notebook face"


def test_no_import_cycles() -> None:
    mods = _modules()
    graph = {n: {m for m in _imports(n, p)[0] if m in mods} for n, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if m == "" or n.startswith(f"{m}.") or (m and n == m):
                continue  # a submodule importing its own package's __init__ is how packages work
            if state.get(m) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*stack[stack.index(m) :], m])}")
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_the_emulator_runs_without_jupyter() -> None:
    for name, path in _modules().items():
        if not name.startswith("emulator"):
            continue
        internal, external = _imports(name, path)
        assert not external & set(JUPYTER), f"{name} imports Jupyter"
        assert all(m.startswith("emulator") or m == "sse" for m in internal), f"{name} imports {internal}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name: str) -> None:
    lines = _modules()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concern"
