"""Everyday mistakes of a new user print one line that names the problem and the fix (issue 14, §1-§2):
exit code 2 for usage errors, 1 for runtime failures, outputs checked before the work starts, never a traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.stream.broker import free_port
from tests.cli.helpers import LAB1, ROOT, mdr

HOST_LOG = str(LAB1 / "host" / "sshd_auth.log")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the tickets of a small replay, as a plain SQLite file path."""
    base = tmp_path_factory.mktemp("store")
    db = base / "tickets.db"
    r = mdr("replay", str(LAB1 / "host"), "--tenant", "shop", "--host", "web-01", "--out", str(base / "out"),
            "--db", str(db), home=base / "home")
    assert r.code == 0, r.text
    return db


# ---- §1: one line instead of a traceback ------------------------------------------------------------------
def test_db_as_a_plain_path_is_a_sqlite_store(store: Path, home: Path) -> None:
    r = mdr("tickets", "list", "--db", str(store), home=home)
    assert r.code == 0 and "Traceback" not in r.text and "brute_force" in r.out, r.text
    assert mdr("tickets", "list", "--db", f"sqlite:///{store}", home=home).out == r.out


def test_db_that_is_no_url_says_the_format(home: Path) -> None:
    line = mdr("tickets", "list", "--db", "nosuchdb+driver://x/y", home=home).one_error_line()
    assert "is not a store URL" in line and "sqlite:///" in line and "postgresql://" in line


def test_unreachable_postgresql(home: Path) -> None:
    port = free_port()  # nothing listens there
    r = mdr("tickets", "list", "--db", f"postgresql://mdr:s3cret@127.0.0.1:{port}/mdr", home=home)
    line = r.one_error_line()
    assert r.code == 1 and f"127.0.0.1:{port}" in line and "Connection refused" in line
    assert "s3cret" not in line and "MDR_DB_URL" in line  # the password is not echoed; the fix is named


def test_replay_out_is_checked_before_the_work(tmp_path: Path, home: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, says in ((a_file, "is a file, not a directory"), (a_file / "sub", "cannot write to --out")):
        t0 = time.monotonic()
        r = mdr("replay", str(LAB1), "--tenant", "shop", "--out", str(out), home=home)
        assert r.code == 2 and says in r.one_error_line()
        assert time.monotonic() - t0 < 20  # refused at once, not after replaying the day
    assert not (home / "soar.db").exists()  # nothing was written anywhere


def test_unreachable_store_stops_replay_before_the_work(tmp_path: Path, home: Path) -> None:
    r = mdr("replay", str(LAB1), "--tenant", "shop", "--out", str(tmp_path / "out"),
            "--db", f"postgresql://mdr:x@127.0.0.1:{free_port()}/mdr", home=home)
    assert r.code == 1 and "cannot open the ticket store" in r.one_error_line()
    assert not (tmp_path / "out" / "incidents.jsonl").exists()


def test_report_out_unwritable(store: Path, tmp_path: Path, home: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, says in ((a_file / "r.html", "cannot write --out"), (tmp_path, "is a directory")):
        r = mdr("report", "--tenant", "shop", "--db", str(store), "--out", str(out), home=home)
        assert r.code == 2 and says in r.one_error_line()


def test_produce_without_a_broker(home: Path) -> None:
    port = free_port()
    r = mdr("produce", HOST_LOG, "--topic", "host", "--tenant", "shop", home=home,
            MDR_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    line = r.one_error_line()
    assert r.code == 1 and f"127.0.0.1:{port} [MDR_KAFKA_BOOTSTRAP]" in line and "mdr broker start" in line


def test_worker_without_a_broker_says_where_it_knocks(tmp_path: Path, home: Path) -> None:
    port = free_port()
    r = mdr("worker", "--no-tickets", "--broker-wait", "12", "--data-dir", str(tmp_path / "w"), home=home,
            MDR_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}", timeout=120)
    assert r.code == 1 and "Traceback" not in r.text, r.text
    lines = r.text.strip().splitlines()
    assert len(lines) <= 3, r.text  # once per interval, not once per retry
    assert f"127.0.0.1:{port} not reachable" in lines[0] and "[MDR_KAFKA_BOOTSTRAP]" in lines[0], r.text
    assert lines[-1].startswith(f"error: no Kafka broker answers at 127.0.0.1:{port} [MDR_KAFKA_BOOTSTRAP]")


# ---- §2: nonsense values are refused ---------------------------------------------------------------------
@pytest.mark.parametrize("args", [("--priority", "P9"), ("--status", "bogus")])
def test_ticket_filters_are_choices(store: Path, home: Path, args: tuple[str, str]) -> None:
    r = mdr("tickets", "list", "--db", str(store), *args, home=home)
    assert r.code == 2 and f"'{args[1]}' is not one of" in r.text and "Traceback" not in r.text


def test_report_options_are_choices(store: Path, home: Path) -> None:
    for args in (("--period", "year"), ("--format", "docx")):
        r = mdr("report", "--tenant", "shop", "--db", str(store), *args, home=home)
        assert r.code == 2 and "is not one of" in r.text


@pytest.mark.parametrize("args", [
    ("worker", "--max-attempts", "0"), ("worker", "--partitions", "0"), ("worker", "--shutdown-grace", "-1"),
    ("worker", "--metrics-port", "70000"), ("produce", HOST_LOG, "--topic", "host", "--per-message", "0"),
    ("demo", "--console-port", "0"), ("broker", "start", "--port", "0"), ("console", "--port", "99999")])
def test_numbers_out_of_range_are_refused_before_anything_starts(home: Path, args: tuple[str, ...]) -> None:
    r = mdr(*args, home=home, MDR_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}")
    assert r.code == 2 and f"Invalid value for '{args[-2]}'" in r.text and "Traceback" not in r.text, r.text


@pytest.mark.parametrize("command", ["test", "validate"])
def test_rules_on_an_empty_folder(tmp_path: Path, home: Path, command: str) -> None:
    r = mdr("rules", command, str(tmp_path), home=home)
    assert r.code == 1 and "no use-case files" in r.one_error_line()
    r = mdr("rules", command, str(tmp_path / "missing"), home=home)
    assert r.code == 2 and "no such file or directory" in r.one_error_line()


def test_model_evaluate_on_an_empty_folder(tmp_path: Path, home: Path) -> None:
    r = mdr("model", "evaluate", "--model", str(ROOT / "models" / "noise-default"), "--data", str(tmp_path),
            "--usecases", "none", home=home)
    assert r.code == 1 and "no labeled alerts" in r.one_error_line()
