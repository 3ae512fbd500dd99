"""The CI-sized soak: ``benchmarks/soak.py`` with 150 turns on 4 chains, the same invariants as the full run.

The full run (1,000 turns, 6 chains) is ``python benchmarks/soak.py``; its results are in docs/reliability.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SOAK_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def _load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ipy_rws_soak", SOAK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(240)
def test_soak_150_turns_keeps_every_chain_intact() -> None:
    soak = _load_soak()
    report = soak.run(turns=150, chains=4, pool_size=3, seed=11, trace_memory=True, max_seconds=200)
    print(report.table())  # visible with -s; the numbers a reviewer wants when this fails

    # The invariants: nothing lost, nothing corrupted, every error clear, connections within the pool.
    assert report.violations == []
    assert sum(report.outcomes.values()) == 150
    assert report.committed_turns == report.outcomes["completed"]
    assert report.max_client_ws <= 3

    # The run really was hostile: faults fired and failed turns, interrupts, and toggles all happened.
    assert report.faults_armed - report.faults_unfired >= 5
    assert report.outcomes["failed"] >= 3
    assert report.cancels_requested >= 1
    assert report.switches >= 1
    assert report.flags["resent_transcript"] >= 1  # store=false chains were rebuilt from the transcript

    # Memory: live Python allocations made during the run are the transcript plus a small constant (the
    # loop's buffers, one-time caches); nothing grows per turn beyond the history itself.
    assert report.traced_growth is not None
    assert report.traced_growth < 3 * report.transcript_bytes + 3_000_000, report.table()
