"""SLA figures agree (issue 14, §8; docs/priority.md "One clock"): the incident, its ticket and the report
measure the deadline from the incident's detection (event time) and judge it with one rule; MTTD is first alert
-> detection, never the moment a replay happened to write the ticket."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.context.priority import prioritize
from pipeline.report.data import collect
from pipeline.report.period import resolve
from pipeline.soar.sla import sla_state
from pipeline.soar.tickets import TicketStore
from tests.soar.helpers import incident

FIRST = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
DETECTED = FIRST + timedelta(minutes=4)  # the correlation fired on the 4th minute
WRITTEN = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)  # a replay wrote the ticket eleven days later


def _store(tmp_path: Path) -> TicketStore:
    return TicketStore(f"sqlite:///{tmp_path}/soar.db")


def _incident(n: int, priority: str = "P2"):
    inc = incident(n, priority=priority, first_seen=FIRST, last_seen=DETECTED, detected_at=DETECTED)
    inc.base_priority = priority
    return inc


@pytest.mark.parametrize(("now", "state"), [(DETECTED + timedelta(minutes=29), "pending"), (WRITTEN, "breached")])
def test_incident_ticket_and_report_agree(tmp_path: Path, now: datetime, state: str) -> None:
    inc = _incident(1)
    prioritize(inc, None, None, now)
    assert inc.sla_due == DETECTED + timedelta(minutes=30)
    store = _store(tmp_path)
    try:
        t = store.upsert_incident(inc, now=WRITTEN).ticket
        assert t.sla_due == inc.sla_due  # not the time the ticket was written
        assert inc.sla_breached == (state == "breached") and sla_state(t, now) == state
        d = collect(store, "shop", resolve("day", date(2026, 11, 24)), now)
        [row] = d.incidents
        assert row.sla == state and d.key_figures()["sla_breached"] == (state == "breached")
        assert row.mttd == 4.0  # minutes from the first alert to the detection
        assert store.export(t)["sla_breached"]  # tickets.jsonl judges at the wall clock: long past the deadline
    finally:
        store.close()


def test_acknowledged_in_time_is_met_everywhere_and_mtta_counts_from_detection(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        for n, ack in ((1, DETECTED + timedelta(minutes=10)), (2, DETECTED + timedelta(minutes=40))):
            store.upsert_incident(_incident(n), now=WRITTEN)
            store.acknowledge(n, "ana", now=ack)
        d = collect(store, "shop", resolve("day", date(2026, 11, 24)), WRITTEN)
        assert [(r.sla, r.mtta) for r in sorted(d.incidents, key=lambda r: r.ticket_id)] == [("met", 10.0),
                                                                                          ("breached", 40.0)]
        assert [sla_state(store.require(n), WRITTEN) for n in (1, 2)] == ["met", "breached"]
        assert d.key_figures()["mttd_min"] == 4.0
    finally:
        store.close()


def test_a_replayed_past_day_is_breached_but_pages_nobody(tmp_path: Path) -> None:
    from pipeline.soar.connectors import Channels
    from pipeline.soar.sla import Escalator

    store = _store(tmp_path)
    try:
        old = store.upsert_incident(_incident(1), now=WRITTEN).ticket  # opened eleven days after detection
        fresh_inc = _incident(2)
        fresh_inc.detected_at = WRITTEN - timedelta(hours=1)  # a worker catching up an hour late
        fresh = store.upsert_incident(fresh_inc, now=WRITTEN).ticket
        done = Escalator(store, Channels({})).check(WRITTEN)
        assert [e.ticket_id for e in done] == [fresh.id]
        assert sla_state(store.require(old.id), WRITTEN) == "breached"
    finally:
        store.close()
