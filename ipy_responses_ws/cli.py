"""``ipy-responses-ws`` / ``python -m ipy_responses_ws.cli``: try the package without writing a line.

Commands:

``demo``   Run the quickstart conversation in a real, headless kernel and print the answers as they stream,
           then a per-turn timing table. Without ``OPENAI_API_KEY`` it first starts the local emulator (an
           in-process thread with a realistic time to first token and token rate) and points the kernel at
           it, so it works offline. Finishes in seconds on the emulator.
``lab``    Open JupyterLab on the ``notebooks/`` folder, with the emulator running when no key is set (the
           kernels inherit ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``).
``serve``  Run the emulator in the foreground (same as ``python -m ipy_responses_ws.emulator``).

The key itself is never printed: the CLI says only whether one was found.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Any non-empty value works with the emulator (it accepts every key when started without one). It is not
# a secret; it only satisfies the engine's "a key must be set" check.
EMULATOR_PLACEHOLDER_KEY = "sk-emulator-local"
_RESULT_MARK = "@@ipy_responses_ws result@@ "
# What the demo asks the kernel to run after each %%respond cell to report that turn's numbers.
_REPORT_CELL = (
    "from ipy_responses_ws import _extension as _irw_ext\n"
    "_irw_r = _irw_ext.last_result()\n"
    "if _irw_r is not None:\n"
    f"    print({_RESULT_MARK!r} + __import__('json').dumps(dict(status=_irw_r.status, transport=_irw_r.transport,"
    " ttft=_irw_r.ttft, elapsed=_irw_r.elapsed, tokens=(_irw_r.usage or {}).get('output_tokens'),"
    " fallback=_irw_r.fallback_reason)))\n"
    "del _irw_r, _irw_ext"
)


@contextlib.contextmanager
def _backend(ttft: float, token_rate: float, out: TextIO) -> Iterator[dict[str, str]]:
    """Yield the environment for kernels: the real API when a key is set, else a local emulator."""
    if os.environ.get("OPENAI_API_KEY"):
        where = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        print(f"Using OPENAI_API_KEY from the environment (base URL {where}).", file=out)
        yield {}
        return
    from .emulator import Emulator

    with Emulator(ttft=ttft, token_rate=token_rate).run_in_thread() as emu:
        print(
            f"No OPENAI_API_KEY set: using the local emulator at {emu.base_url} "
            f"(ttft {ttft:.2f} s, {token_rate:.0f} tokens/s).",
            file=out,
        )
        yield {"OPENAI_BASE_URL": emu.base_url, "OPENAI_API_KEY": EMULATOR_PLACEHOLDER_KEY}


def _code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            cells.append("".join(source) if isinstance(source, list) else source)
    return cells


class _DemoKernel:
    """A headless kernel (jupyter_client) that prints what a cell streams, as it arrives on iopub."""

    def __init__(self, env: dict[str, str], out: TextIO) -> None:
        try:
            from jupyter_client.manager import KernelManager
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise SystemExit(
                "The demo needs jupyter_client and ipykernel: pip install 'ipy_responses_ws[test]'"
            ) from exc
        self.out = out
        self.km = KernelManager(kernel_name="python3")
        self.km.kernel_spec.argv[0] = sys.executable  # this interpreter, whatever "python" is on PATH
        self.km.start_kernel(env={**os.environ, **env})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, *, echo: bool = True, timeout: float = 120) -> tuple[str, list[str]]:
        """Execute ``code``; print its streamed stdout (if ``echo``); return (status, result lines)."""
        msg_id = self.kc.execute(code, store_history=False)
        results: list[str] = []
        deadline = time.monotonic() + timeout
        status = "ok"
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty as exc:
                raise TimeoutError(f"the kernel did not finish a cell in {timeout:.0f} s") from exc
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                for line in content["text"].splitlines(keepends=True):
                    if line.startswith(_RESULT_MARK):
                        results.append(line[len(_RESULT_MARK) :])
                    elif echo:
                        self.out.write(line)
                        self.out.flush()
            elif kind == "error":
                status = "error"
                self.out.write(f"\n{content['ename']}: {content['evalue']}\n")
            elif kind == "status" and content["execution_state"] == "idle":
                return status, results

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            self.km.shutdown_kernel(now=False)


def _fmt_ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the quickstart notebook's cells headlessly and print answers and a timing table."""
    notebook = Path(args.notebook) if args.notebook else NOTEBOOKS / "quickstart.ipynb"
    if not notebook.exists():
        print(f"Cannot find {notebook}.", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with _backend(args.ttft, args.token_rate, out) as env:
        kernel = _DemoKernel(env, out)
        try:
            print(f"Kernel ready in {time.monotonic() - started:.1f} s. Running {notebook.name}:\n", file=out)
            # The demo prints the answers as plain text; the notebook itself shows live widgets.
            kernel.run("%load_ext ipy_responses_ws\n%config ResponsesMagics.view = 'text'", echo=False)
            for code in _code_cells(notebook):
                if code.strip().startswith("%load_ext"):
                    continue
                is_turn = code.lstrip().startswith("%%respond")
                print(f"In: {code.strip()}\n", file=out)
                status, _ = kernel.run(code)
                if status != "ok":
                    print("The cell failed; stopping the demo.", file=sys.stderr)
                    return 1
                if is_turn:
                    _, lines = kernel.run(_REPORT_CELL, echo=False)
                    if lines:
                        rows.append(json.loads(lines[-1]))
                print(file=out)
        finally:
            kernel.close()
    print("turn  transport  status      ttft      total  output tokens", file=out)
    for i, row in enumerate(rows, start=1):
        transport = (row["transport"] or "–") + (" (fallback)" if row.get("fallback") else "")
        print(
            f"{i:>4}  {transport:<9}  {row['status']:<9} {_fmt_ms(row['ttft']):>8} {_fmt_ms(row['elapsed']):>9}"
            f"  {row['tokens'] if row['tokens'] is not None else '–':>13}",
            file=out,
        )
    print(f"\n{len(rows)} turns in {time.monotonic() - started:.1f} s.", file=out)
    return 0 if rows and all(r["status"] == "completed" for r in rows) else 1


def lab(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Open JupyterLab on notebooks/ with the emulator running when no key is set."""
    with _backend(args.ttft, args.token_rate, out) as env:
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            f"--ServerApp.root_dir={NOTEBOOKS}",
            *args.jupyter_args,
        ]
        print("Starting:", " ".join(cmd), file=out)
        try:
            return subprocess.call(cmd, env={**os.environ, **env})
        except KeyboardInterrupt:
            return 0


def serve(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from .emulator.__main__ import main as emulator_main

    return emulator_main(args.emulator_args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipy-responses-ws", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("demo", "run the quickstart conversation headlessly and print answers and timings"),
        ("lab", "open JupyterLab on notebooks/ (with the emulator when no key is set)"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--ttft", type=float, default=0.3, help="emulator: seconds to the first token (0.3)")
        p.add_argument("--token-rate", type=float, default=120.0, help="emulator: tokens per second (120)")
        if name == "demo":
            p.add_argument("--notebook", help="run this notebook instead of notebooks/quickstart.ipynb")
        else:
            p.epilog = "Other arguments are passed on to jupyter lab (e.g. --no-browser --port 8888)."
    sub.add_parser(
        "serve", help="run the emulator in the foreground (its options: serve --help)", add_help=False
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "lab":
        args.jupyter_args = [a for a in extra if a != "--"]
    elif args.command == "serve":
        args.emulator_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return {"demo": demo, "lab": lab, "serve": serve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
