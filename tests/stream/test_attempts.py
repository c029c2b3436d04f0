"""The failed-attempt counts that stop a poison message from crashing the worker in a loop (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.stream.poison import Attempts


def test_attempts_survive_a_restart_and_are_forgotten_when_done(tmp_path: Path) -> None:
    path = tmp_path / "data" / "attempts.json"
    a = Attempts(path, 3)
    assert a.count("t", 0, 5) == 0 and not a.entries
    a.failed([("t", 0, 5), ("t", 1, 7)], "RuntimeError: boom (x.py:1 in f)")
    a = Attempts(path, 3)  # a restart reads them back
    a.failed([("t", 0, 5)], "RuntimeError: again")
    assert (a.count("t", 0, 5), a.count("t", 1, 7), a.error("t", 0, 5)) == (2, 1, "RuntimeError: again")
    a.forget([("t", 1, 7), ("t", 9, 9)])
    assert json.loads(path.read_text()) == {"t:0:5": {"attempts": 2, "error": "RuntimeError: again"}}
    a.forget([("t", 0, 5)])
    assert Attempts(path, 3).entries == {}


def test_an_unreadable_attempts_file_starts_from_none(tmp_path: Path) -> None:
    path = tmp_path / "attempts.json"
    path.write_text("{not json")
    a = Attempts(path, 0)
    assert a.entries == {} and a.limit == 1
    a.failed([("t", 0, 1)], "e")
    assert Attempts(path, 1).count("t", 0, 1) == 1
