"""The ticket store on SQLite and PostgreSQL: one ticket per incident, lifecycle, timeline, merges,
concurrent writers, and the Alembic schema matching the models."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select

from pipeline.schema import Entities
from pipeline.soar.db import MIGRATIONS, migrate
from pipeline.soar.models import Base, Ticket, TimelineEvent
from pipeline.soar.tickets import TicketError, TicketStore
from tests.soar.helpers import T0, incident


def kinds(store: TicketStore, ticket_id: int) -> list[str]:
    return [e.kind for e in store.timeline(ticket_id)]


def test_schema_matches_models(store: TicketStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrations_are_one_chain_that_downgrades_and_upgrades(store: TicketStore) -> None:
    """One head; each revision's downgrade undoes its upgrade (the alert verdicts of 0005 and the SOAR clock's
    tables of 0004 come off before the console's evidence tables of 0003), down to no table and back up to the
    models' schema."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    assert script.get_heads() == ["0005_alert_verdicts"]
    assert [r.revision for r in script.walk_revisions()] == [
        "0005_alert_verdicts", "0004_soar_clock", "0003_console", "0002_alert_stats", "0001"]
    migrate(store.engine, "0003_console", down=True)
    tables = set(inspect(store.engine).get_table_names())
    assert "alerts" in tables and not {"alert_verdicts", "noise_drift", "notices", "leases"} & tables
    migrate(store.engine, "base", down=True)
    assert set(inspect(store.engine).get_table_names()) <= {"alembic_version"}
    migrate(store.engine)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_upgrade_of_a_console_era_store_carries_its_verdicts_over(store: TicketStore) -> None:
    """A store at 0003_console (main before the alert verdicts) holds verdicts as closed tickets and console
    audit entries; 0005 turns them into alert verdicts: an alert's own verdict outranks its incident's, at the
    same level the latest counts, a refused action counts for nothing."""
    from pipeline.console.audit import log
    from pipeline.soar.verdicts import list_verdicts

    migrate(store.engine, "0003_console", down=True)
    t1 = store.upsert_incident(incident(1)).ticket
    t2 = store.upsert_incident(incident(2)).ticket
    store.close_ticket(t1.id, "false_positive", "ana", "scanner noise")
    store.close_ticket(t2.id, "duplicate", "bob")
    log(store, "carl", "alert_verdict", tenant="shop", target="alert:a1-2", detail={"verdict": "benign"})
    log(store, "carl", "alert_verdict", tenant="shop", target="alert:a1-2", detail={"verdict": "true_positive"})
    log(store, "dan", "alert_verdict", "denied", tenant="shop", target="alert:a1-3", detail={"verdict": "benign"})
    log(store, "eve", "unsuppress", tenant="shop", target="alert:s-9", detail={"score": 0.1})
    migrate(store.engine)
    got = {(v.tenant_id, v.alert_id): (v.verdict, v.label, v.analyst, v.source, v.incident_id)
           for v, _ in list_verdicts(store)}
    assert got == {
        ("shop", "a1-1"): ("false_positive", 0, "ana", "ticket", "inc0001"),
        ("shop", "a1-2"): ("true_positive", 1, "carl", "console", None),
        ("shop", "a1-3"): ("false_positive", 0, "ana", "ticket", "inc0001"),
        **{("shop", f"a2-{i}"): ("duplicate", None, "bob", "ticket", "inc0002") for i in (1, 2, 3)},
        ("shop", "s-9"): ("true_positive", 1, "eve", "unsuppress", None),
    }
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_one_ticket_per_incident_idempotent(store: TicketStore) -> None:
    inc = incident(1)
    first = store.upsert_incident(inc)
    assert first.created and first.ticket.status == "new"
    for _ in range(3):  # replay / restart / duplicate update
        again = store.upsert_incident(inc)
        assert not again.created and again.changes == [] and again.ticket.id == first.ticket.id
    assert store.count() == 1
    assert kinds(store, first.ticket.id) == ["created"]
    reopened = TicketStore(store.url)  # a restart: the schema is already at head
    try:
        assert not reopened.upsert_incident(inc).created
        assert reopened.count() == 1
    finally:
        reopened.close()


def test_update_changes_priority_and_sla(store: TicketStore) -> None:
    inc = incident(1, priority="P4")
    t = store.upsert_incident(inc).ticket
    assert t.sla_due - T0 == timedelta(hours=4)  # from the incident's detection (one clock rule)
    inc.version, inc.priority, inc.alert_count = 2, "P1", 9
    up = store.upsert_incident(inc)
    assert up.changes == ["priority P4 -> P1"]
    assert up.ticket.priority == "P1" and up.ticket.sla_due - T0 == timedelta(minutes=15)
    assert up.ticket.incident["alert_count"] == 9
    inc.version = 1  # a stale (older) update changes nothing
    inc.priority = "P5"
    assert store.upsert_incident(inc).changes == []
    assert store.require(up.ticket.id).priority == "P1"


def test_lifecycle_and_invalid_transitions(store: TicketStore) -> None:
    t = store.upsert_incident(incident(1)).ticket
    with pytest.raises(TicketError, match="new -> resolved is not allowed"):
        store.transition(t.id, "resolved", actor="ana")
    with pytest.raises(TicketError, match="verdict"):
        store.close_ticket(t.id, "maybe", "ana")
    store.acknowledge(t.id, "ana")
    store.transition(t.id, "investigating", actor="ana")
    store.transition(t.id, "resolved", actor="ana")
    store.transition(t.id, "investigating", actor="bob")  # reopened
    assert store.require(t.id).resolved_at is None
    store.transition(t.id, "resolved", actor="bob")
    closed = store.close_ticket(t.incident_id, "true_positive", "bob", "contained")
    assert closed.status == "closed" and closed.verdict == "true_positive" and closed.assignee == "ana"
    assert closed.acknowledged_at <= closed.resolved_at <= closed.closed_at
    with pytest.raises(TicketError, match="closed -> investigating"):
        store.transition(t.id, "investigating", actor="bob")
    statuses = [e.text for e in store.timeline(t.id) if e.kind == "status"]
    assert statuses[0] == "new -> acknowledged" and statuses[-1] == "resolved -> closed (true_positive): contained"
    with pytest.raises(TicketError, match="no ticket"):
        store.acknowledge(99999, "ana")


def test_close_from_new_counts_as_response(store: TicketStore) -> None:
    t = store.upsert_incident(incident(1)).ticket
    c = store.close_ticket(t.id, "false_positive", "ana")
    assert c.acknowledged_at == c.resolved_at == c.closed_at


def test_related_tickets_share_entities(store: TicketStore) -> None:
    a = store.upsert_incident(incident(1, src=["198.51.100.9"], hosts=["web-01"])).ticket
    b = store.upsert_incident(incident(2, category="brute_force", src=["198.51.100.9"], hosts=["db-01"])).ticket
    store.upsert_incident(incident(3, src=["192.0.2.1"], hosts=["mail-01"]))
    store.upsert_incident(incident(4, tenant="other", src=["198.51.100.9"], hosts=["web-01"]))
    rel = store.related(a)
    assert [r["id"] for r in rel] == [b.id]
    assert rel[0]["shared"] == ["198.51.100.9"]


def test_merged_incident_notes_survivor(store: TicketStore) -> None:
    survivor = incident(1, category="webshell")
    part = incident(2, category="defacement", status="merged", merged_into=survivor.incident_id)
    # the merged part arrives before its survivor has a ticket: remembered, noted when the ticket opens
    assert store.merge_incident(part) is None
    t = store.upsert_incident(survivor).ticket
    notes = [e for e in store.timeline(t.id) if e.kind == "merged"]
    assert len(notes) == 1 and part.incident_id in notes[0].text
    # an incident that had its own ticket before fusion: closed as a duplicate, survivor noted once
    late = incident(3, category="malware")
    own = store.upsert_incident(late).ticket
    late.status, late.merged_into, late.version = "merged", survivor.incident_id, 2
    assert store.merge_incident(late).id == t.id
    assert store.merge_incident(late).id == t.id  # idempotent
    assert store.require(own.id).status == "closed" and store.require(own.id).verdict == "duplicate"
    assert len([e for e in store.timeline(t.id) if e.kind == "merged"]) == 2
    assert store.count() == 2


def test_concurrent_writers_one_ticket_each(db_url: str) -> None:
    """Eight store instances (separate engines and connections) upsert the same incidents at once."""
    incs = [incident(n, entities=Entities(src_ips=[f"192.0.2.{n}"])) for n in range(1, 16)]
    stores = [TicketStore(db_url) for _ in range(8)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(stores))

    def work(s: TicketStore) -> None:
        try:
            barrier.wait()
            for inc in incs:
                s.upsert_incident(inc, playbooks=["default"])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert errors == []
        s = stores[0]
        assert s.count() == len(incs)
        with s.tx() as sess:
            created = sess.scalar(select(func.count()).select_from(TimelineEvent)
                                  .where(TimelineEvent.kind == "created"))
            started = sess.scalar(select(func.count()).select_from(TimelineEvent)
                                  .where(TimelineEvent.kind == "playbook"))
            ids = sess.scalars(select(Ticket.incident_id)).all()
        assert created == len(incs) and started == len(incs)
        assert sorted(ids) == sorted(i.incident_id for i in incs)
    finally:
        for st in stores:
            st.close()


def test_export_is_json_ready(store: TicketStore) -> None:
    import json

    t = store.upsert_incident(incident(1), playbooks=["web-attack"]).ticket
    store.note(t.id, "looked at the WAF logs", "ana")
    d = json.loads(json.dumps(store.export(store.require(t.id))))
    assert d["incident_id"] == "inc0001" and d["playbooks"] == [{"name": "web-attack", "status": "pending",
                                                                "step": 0}]
    assert [e["kind"] for e in d["timeline"]] == ["created", "playbook", "note"]
