"""The docs cite tests by ``tests/test_x.py::test_name``; every citation must name a test that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"(tests/test_\w+\.py)::(test_\w+)")


def test_every_cited_test_exists() -> None:
    missing = []
    for doc in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "CHANGELOG.md"]:
        for path, name in CITATION.findall(doc.read_text(encoding="utf-8")):
            source = ROOT / path
            if not source.exists() or not re.search(rf"def {name}\b", source.read_text(encoding="utf-8")):
                missing.append(f"{doc.name}: {path}::{name}")
    assert not missing, "docs cite tests that do not exist:\n" + "\n".join(missing)
