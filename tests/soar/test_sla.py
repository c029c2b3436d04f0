"""SLA escalation: due times per priority, tiers, exactly once per level (also with concurrent checkers),
acknowledgement stops it, a raised priority escalates again; notices reach real local servers."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from pipeline.soar import sla
from pipeline.soar.connectors import Channels
from pipeline.soar.sla import Escalator
from pipeline.soar.tickets import TicketStore
from tests.soar.helpers import T0, incident
from tests.soar.servers import RecordingServer

SECRET = "oncall-shared-secret"


@pytest.fixture
def oncall(http_server: Callable[..., RecordingServer]) -> RecordingServer:
    return http_server()


@pytest.fixture
def channels(oncall: RecordingServer, http_server: Callable[..., RecordingServer]) -> Channels:
    soc = http_server()
    return Channels({
        "channels": {"oncall": {"type": "webhook", "url": oncall.url + "/page", "secret": SECRET},
                     "soc": {"type": "slack", "url": soc.url + "/services/T/B/X"}},
        "escalation": {"tiers": [["oncall"], ["oncall", "soc"], ["oncall", "soc"]]},
    })


def test_response_times_follow_the_service_terms() -> None:
    minutes = {p: sla.response_time(p).total_seconds() / 60 for p in ("P1", "P2", "P3", "P4", "P5")}
    assert minutes == {"P1": 15, "P2": 30, "P3": 120, "P4": 240, "P5": 480}


def test_other_terms_are_set_by_configuration() -> None:
    from pipeline.context.priority import SERVICE_TERMS, sla_table

    table = sla_table(" P1=20s, P3=1h,P5=90m")  # MDR_SLA
    assert {p: d.total_seconds() for p, d in table.items()} == {"P1": 20, "P2": 1800, "P3": 3600, "P4": 14400,
                                                                 "P5": 5400}
    assert sla_table("") == SERVICE_TERMS
    for bad in ("P1=0s", "P6=1m", "P1=1.5m", "P1", "P1=5d", "p1=5m"):
        with pytest.raises(ValueError, match=f"MDR_SLA: bad item {bad!r}"):
            sla_table(bad)


def test_tiers_escalate_once_each(store: TicketStore, channels: Channels, oncall: RecordingServer) -> None:
    t = store.upsert_incident(incident(1, priority="P3")).ticket
    esc = Escalator(store, channels)
    c = T0  # the SLA clock starts at the incident's detection (its first alert here)
    assert esc.check(c + timedelta(hours=1, minutes=59)) == []
    first = esc.check(c + timedelta(hours=2, seconds=1))
    assert [(e.ticket_id, e.tier) for e in first] == [(t.id, 1)]
    assert first[0].notices == [{"channel": "oncall", "status": "ok", "detail": "escalation notice sent to oncall"}]
    assert esc.check(c + timedelta(hours=2, seconds=2)) == []  # same level: never twice
    assert [e.tier for e in esc.check(c + timedelta(hours=4, seconds=1))] == [2]
    assert [e.tier for e in esc.check(c + timedelta(hours=9))] == [3]
    assert esc.check(c + timedelta(days=3)) == []
    assert store.unacknowledged_due(c + timedelta(days=3)) == []  # the last tier: no tick reads it again
    got = store.require(t.id)
    assert got.sla_breached and got.escalation_level == 3 and got.escalation_priority == "P3"
    pages = oncall.wait(3)
    assert len(pages) == 3
    body = pages[0].body
    ts = pages[0].headers["x-mdr-timestamp"]
    want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert pages[0].headers["x-mdr-signature"] == want
    assert pages[0].json["kind"] == "escalation" and pages[0].json["ticket_id"] == t.id
    assert [e.kind for e in store.timeline(t.id)].count("escalation") == 3


def test_acknowledged_ticket_is_not_escalated(store: TicketStore, channels: Channels) -> None:
    t = store.upsert_incident(incident(1, priority="P1")).ticket
    store.acknowledge(t.id, "ana")
    assert Escalator(store, channels).check(T0 + timedelta(hours=5)) == []
    assert not store.require(t.id).sla_breached


def test_raised_priority_escalates_again(store: TicketStore, channels: Channels) -> None:
    inc = incident(1, priority="P4")
    store.upsert_incident(inc)
    esc = Escalator(store, channels)
    now = T0 + timedelta(hours=4, minutes=1)
    assert [e.tier for e in esc.check(now)] == [1]
    inc.version, inc.priority = 2, "P1"
    store.upsert_incident(inc)  # the new due time (detection + 15 min) is long past
    again = esc.check(now)
    assert [(e.priority, e.tier) for e in again] == [("P1", 3)]
    assert esc.check(now) == []
    inc.version, inc.priority = 3, "P5"  # a lowered priority is no new level
    store.upsert_incident(inc)
    assert esc.check(now + timedelta(hours=20)) == []


def test_concurrent_checkers_escalate_exactly_once(db_url: str, channels: Channels,
                                                   oncall: RecordingServer) -> None:
    stores = [TicketStore(db_url) for _ in range(4)]
    try:
        tickets = [stores[0].upsert_incident(incident(n, priority="P2")).ticket for n in range(1, 9)]
        now = T0 + timedelta(minutes=31)
        results: list[int] = []
        barrier = threading.Barrier(len(stores))

        def work(s: TicketStore) -> None:
            barrier.wait()
            results.extend(e.ticket_id for e in Escalator(s, channels).check(now))

        threads = [threading.Thread(target=work, args=(s,)) for s in stores]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(results) == sorted(t.id for t in tickets)
        assert len(oncall.wait(len(tickets))) == len(tickets)
    finally:
        for s in stores:
            s.close()


def test_failed_notice_is_recorded(store: TicketStore, http_server: Callable[..., RecordingServer]) -> None:
    from tests.soar.servers import Reply

    down = http_server(lambda s: Reply(503, {"error": "down"}))
    chans = Channels({"channels": {"oncall": {"type": "webhook", "url": down.url, "retry": {"attempts": 2,
                                                                                            "backoff": 0.01}}},
                      "escalation": {"tiers": [["oncall"]]}})
    t = store.upsert_incident(incident(1, priority="P1")).ticket
    [e] = Escalator(store, chans).check(T0 + timedelta(minutes=16))
    assert e.notices[0]["status"] == "failed" and "HTTP 503" in e.notices[0]["detail"]
    assert len(down.requests) == 2  # retried with backoff, then recorded
    assert [x.status for x in store.timeline(t.id) if x.kind == "notify"] == ["failed"]
