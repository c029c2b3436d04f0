"""Fixtures every test directory may use."""

from __future__ import annotations

import pytest

from tests.lab import LAB1, LabReplay, replay_lab1


@pytest.fixture(scope="session")
def lab1_replay(tmp_path_factory: pytest.TempPathFactory) -> LabReplay:
    """`mdr replay` of the lab-1 day, once per session (tests/lab.py); read-only."""
    if not LAB1.is_dir():
        pytest.skip("samples/lab-1 not present")
    return replay_lab1(tmp_path_factory.mktemp("lab1-replay"))
