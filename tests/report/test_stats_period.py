"""Alert statistics (record_stats: idempotent per batch, counts equal the replay's) and report periods."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pipeline.report.period import period_of, resolve
from pipeline.report.stats import apportion, record_stats
from pipeline.store.alert_stats import AlertStat, FunnelStat
from tests.report.conftest import Fixture


def _sums(fx: Fixture, tenant: str) -> tuple[int, int, int, int]:
    with Session(fx.store.engine) as s:
        a = s.execute(select(func.sum(AlertStat.alerts), func.sum(AlertStat.raw))
                      .where(AlertStat.tenant_id == tenant)).one()
        f = s.execute(select(func.sum(FunnelStat.records), func.sum(FunnelStat.incidents))
                      .where(FunnelStat.tenant_id == tenant)).one()
    return int(a[0]), int(a[1]), int(f[0]), int(f[1])


def test_stats_equal_the_replays_and_recording_twice_counts_once(report_store: Fixture) -> None:
    res = report_store.results["acme"]
    want = (sum(len(r.alerts) for r in res), sum(a.count for r in res for a in r.alerts),
            sum(r.records for r in res), sum(len(r.open_incidents) for r in res))
    assert _sums(report_store, "acme") == want
    rec = record_stats(report_store.store, "acme", res[0])
    assert rec.days == [date(2026, 11, 24)] and rec.rows > 10
    assert _sums(report_store, "acme") == want


def test_stats_rows_by_rule_source_and_asset(report_store: Fixture) -> None:
    res = report_store.results["shop"][0]  # lab-1
    with Session(report_store.store.engine) as s:
        by_ip = dict(s.execute(select(AlertStat.src_ip, func.sum(AlertStat.alerts))
                               .where(AlertStat.tenant_id == "shop", AlertStat.day == date(2026, 11, 24))
                               .group_by(AlertStat.src_ip)).all())
    want: dict[str | None, int] = {}
    for a in res.alerts:
        want[a.src.ip] = want.get(a.src.ip, 0) + 1
    assert by_ip == want


def test_apportion_keeps_the_total() -> None:
    d1, d2, d3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)
    assert apportion(10, {d1: 1, d2: 1, d3: 1}) == {d1: 4, d2: 3, d3: 3}
    assert sum(apportion(7436, {d1: 1648, d2: 3}).values()) == 7436
    assert apportion(5, {d1: 0}) == {d1: 5}
    assert apportion(3, {}) == {}


@pytest.mark.parametrize(("kind", "anchor", "start", "end", "prev_start"), [
    ("day", date(2026, 11, 24), date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 23)),
    ("week", date(2026, 11, 24), date(2026, 11, 23), date(2026, 11, 30), date(2026, 11, 16)),
    ("week", date(2027, 1, 1), date(2026, 12, 28), date(2027, 1, 4), date(2026, 12, 21)),
    ("month", date(2026, 3, 31), date(2026, 3, 1), date(2026, 4, 1), date(2026, 2, 1)),
    ("month", date(2026, 12, 5), date(2026, 12, 1), date(2027, 1, 1), date(2026, 11, 1)),
])
def test_periods(kind: str, anchor: date, start: date, end: date, prev_start: date) -> None:
    p = period_of(kind, anchor)
    assert (p.start.date(), p.end.date(), p.previous().start.date(), p.previous().end) == (
        start, end, prev_start, p.start)


def test_from_to_window() -> None:
    assert resolve("week", date(2026, 11, 23), date(2026, 11, 29)).kind == "week"
    custom = resolve("week", date(2026, 11, 20), date(2026, 11, 24))
    assert custom.kind == "custom" and len(custom.days) == 5 and custom.previous().end == custom.start
    with pytest.raises(ValueError):
        resolve("week", date(2026, 11, 24), date(2026, 11, 20))
    with pytest.raises(ValueError):
        resolve("year")


@pytest.mark.postgres
def test_the_same_report_on_postgresql(report_store: Fixture, pg_base_url: str) -> None:
    """Stats, tickets and the report's figures on a real PostgreSQL equal those on SQLite."""
    from pipeline.report.data import collect
    from pipeline.soar.tickets import TicketStore
    from tests.pg import new_database
    from tests.report.conftest import NOW, work_tickets
    from tests.report.test_report import WEEK

    pg = TicketStore(new_database(pg_base_url))
    try:
        for res in report_store.results["acme"]:
            work_tickets(pg, res)
            record_stats(pg, "acme", res)
        got = collect(pg, "acme", WEEK, NOW).key_figures()
    finally:
        pg.close()
    assert got == collect(report_store.store, "acme", WEEK, NOW).key_figures()
    assert got["incidents_total"] > 0


def test_mdr_replay_records_stats(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mdr replay --db` writes the alert statistics next to the tickets; a second replay counts once."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.soar.tickets import TicketStore
    from tests.report.conftest import LAB1

    if not LAB1.is_dir():
        pytest.skip("samples/lab-1 not present")
    monkeypatch.setenv("MDR_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path}/soar.db"
    args = ["replay", str(LAB1), "--tenant", "shop", "--host", "web-01", "--out", str(tmp_path / "out"), "--db", url]
    for _ in range(2):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
    store = TicketStore(url)
    try:
        with Session(store.engine) as s:
            rows = s.execute(select(FunnelStat.day, FunnelStat.incidents)).all()
            records = s.scalar(select(FunnelStat.records))
        tickets = [t for t in store.list(tenant="shop", limit=1000) if t.incident_status != "merged"]
    finally:
        store.close()
    assert rows == [(date(2026, 11, 24), len(tickets))] and len(tickets) >= 5
    assert records and records > 1000  # lab-1: some 7,400 records
