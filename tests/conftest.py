"""Fixtures every test directory may use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import LAB1, LabReplay, replay_lab1
from tests.pg import postgres_or_skip


@pytest.fixture(scope="session")
def lab1_replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabReplay]:
    """`mdr replay` of the lab-1 day, once per session (tests/lab.py); read-only: a test that changed it would
    change what the tests after it see, so the session ends with an error naming it."""
    if not LAB1.is_dir():
        pytest.skip("samples/lab-1 not present")
    lab = replay_lab1(tmp_path_factory.mktemp("lab1-replay"))
    before = lab.digest()
    yield lab
    assert lab.digest() == before, "a test changed the shared lab-1 replay (tests/lab.py): copy what you change"


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the session (tests/pg.py); tests take a fresh database of it
    (`tests.pg.new_database`). Skips the test when PostgreSQL cannot run here."""
    with postgres_or_skip() as url:
        yield url


# environment variables that would point a command at a store or a channel outside the test's MDR_HOME
_STORE_VARIABLES = ("MDR_DB_URL", "MDR_VERDICTS_FILE", "MDR_SOAR_CHANNELS")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MDR_HOME (`tmp_path / "home"`) that the commands run in this process use, and none of the
    variables that would choose another store or channel; returns `tmp_path`."""
    monkeypatch.setenv("MDR_HOME", str(tmp_path / "home"))
    for name in _STORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path
