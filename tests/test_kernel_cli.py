"""``python -m ipy_responses_ws.cli demo`` runs the quickstart in a real kernel on the emulator, offline."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ipy_responses_ws.emulator import reply_for

pytestmark = pytest.mark.kernel


def _env_without_key() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def test_demo_streams_the_quickstart_and_prints_a_timing_table() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ipy_responses_ws.cli", "demo", "--ttft", "0.05", "--token-rate", "400"],
        env=_env_without_key(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "No OPENAI_API_KEY set: using the local emulator" in out
    q1 = "In two sentences: what is a WebSocket, and why would a notebook use one?"
    q2 = "And how is that different from server-sent events?"
    assert reply_for([q1]) in out and reply_for([q1, q2]) in out  # the answers, chained
    table = out[out.index("turn  transport") :].splitlines()
    rows = [line.split() for line in table[1:4]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert all(r[1] == "ws" and r[2] == "completed" and r[4] == "ms" for r in rows)
    assert "3 turns in" in out
    assert took < 60


def test_lab_runs_jupyter_on_the_notebooks_with_a_live_emulator(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from ipy_responses_ws import cli

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seen: dict[str, object] = {}

    def fake_call(cmd: list[str], env: dict[str, str]) -> int:
        # While jupyter lab would run, the emulator answers at the URL the kernels get.
        import urllib.request

        with urllib.request.urlopen(env["OPENAI_BASE_URL"].rsplit("/v1", 1)[0] + "/_emulator/faults") as resp:
            seen["emulator_status"] = resp.status
        seen.update(cmd=cmd, env=env)
        return 0

    monkeypatch.setattr(cli.subprocess, "call", fake_call)
    assert cli.main(["lab", "--no-browser", "--port", "8899"]) == 0
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "jupyter", "lab"] and cmd[-3:] == ["--no-browser", "--port", "8899"]
    assert f"--ServerApp.root_dir={cli.NOTEBOOKS}" in cmd and (cli.NOTEBOOKS / "quickstart.ipynb").exists()
    assert seen["emulator_status"] == 200
    assert seen["env"]["OPENAI_API_KEY"] == cli.EMULATOR_PLACEHOLDER_KEY
    assert "using the local emulator" in capsys.readouterr().out


def test_bad_command_is_an_argparse_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ipy_responses_ws.cli", "demo", "--frobnicate"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "unrecognized arguments: --frobnicate" in proc.stderr
