"""What the commands leave in a checkout is ignored by git and removed by `make clean` (issue 14, §6)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.helpers import ROOT

LEFT = [".mdr-kafka/broker.log", ".mdr-worker/state/x", "out/incidents.jsonl", "report-shop-2026-11-24.html",
        "report-shop-2026-11-24.md", "report-shop-2026-11-24_charts/funnel.png", "verdicts.jsonl"]


def test_leftovers_are_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run(["git", "check-ignore", "--no-index", *LEFT], cwd=ROOT, capture_output=True, text=True,
                       check=False)
    assert sorted(r.stdout.split()) == sorted(LEFT), r.stdout + r.stderr


def test_make_clean_removes_them(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    for rel in LEFT:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    (tmp_path / "keep.txt").write_text("mine")
    r = subprocess.run(["make", "-f", str(ROOT / "Makefile"), "clean"], cwd=tmp_path, capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
