""""Where is my data?" (issue 14, §4): one default store under MDR_HOME shared by replay, tickets and report;
a command that finds no store says where it looked and how to point elsewhere; a report of an empty period
says which days the store holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.helpers import LAB1, mdr


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(MDR_HOME, replay output) after `mdr replay` of the lab day without --db, from an unrelated cwd."""
    base = tmp_path_factory.mktemp("where")
    home = base / "home"
    r = mdr("replay", str(LAB1), "--tenant", "shop", "--host", "web-01", "--out", str(base / "elsewhere"), home=home)
    assert r.code == 0, r.text
    return home, r.text


def test_replay_prints_the_store_it_wrote(replayed: tuple[Path, str]) -> None:
    home, text = replayed
    assert (home / "soar.db").is_file()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("store:"))
    assert f"sqlite:///{home / 'soar.db'}" in line
    assert "mdr report --tenant shop --period day --from 2026-11-24" in line


def test_tickets_and_report_read_the_same_store_without_db(replayed: tuple[Path, str], tmp_path: Path) -> None:
    home, _ = replayed
    r = mdr("tickets", "list", home=home, cwd=tmp_path)
    assert r.code == 0 and "Compromise of" in r.out, r.text
    out = tmp_path / "r.md"
    r = mdr("report", "--tenant", "shop", "--period", "day", "--from", "2026-11-24", "--format", "md",
            "--out", str(out), home=home, cwd=tmp_path)
    assert r.code == 0 and out.is_file(), r.text
    assert re.search(r"\b([1-9]\d*) incidents, \1 SLA breaches", r.err), r.err  # a past day: every SLA breached
    assert not (tmp_path / "out").exists()  # no empty store beside the caller


def test_no_store_says_where_it_looked(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    for args in (("tickets", "list"), ("tickets", "show", "1"), ("report", "--tenant", "shop")):
        r = mdr(*args, home=home)
        line = r.one_error_line()
        assert r.code == 1 and f"no ticket store at {home / 'soar.db'}" in line
        assert "MDR_HOME" in line and "--db" in line and "MDR_DB_URL" in line
    assert not home.exists()  # looking created nothing
    r = mdr("tickets", "list", "--db", str(tmp_path / "typo.db"), home=home)
    assert r.code == 1 and "(--db)" in r.one_error_line() and not (tmp_path / "typo.db").exists()


def test_report_of_an_empty_period_names_the_days_held(replayed: tuple[Path, str], tmp_path: Path) -> None:
    home, _ = replayed
    r = mdr("report", "--tenant", "shop", "--from", "2026-12-01", "--out", str(tmp_path / "w.html"), home=home)
    assert r.code == 0 and "Traceback" not in r.text, r.text
    assert "the store holds 2026-11-24" in r.err and "--period day --from 2026-11-24" in r.err
    r = mdr("report", "--tenant", "shp", "--out", str(tmp_path / "x.html"), home=home)
    assert r.code == 1 and "no data of tenant 'shp'" in r.one_error_line() and "tenants in it: shop" in r.err
