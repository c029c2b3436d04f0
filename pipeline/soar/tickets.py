"""The ticket store: one ticket per incident, its lifecycle, timeline and SLA bookkeeping.

`TicketStore(url)` opens SQLite (default, a file) or PostgreSQL and upgrades the schema (Alembic). Tickets
are keyed by incident id under a unique constraint. `apply_batch` (and `upsert_incident`, a batch of one)
locks the existing rows, inserts the missing ones with INSERT ... ON CONFLICT DO NOTHING RETURNING, and
applies the updates, all in one transaction: a replay, a restart, a duplicate update or two concurrent
writers all land on one ticket. Updates older than (or equal to) the stored incident version change nothing.
Lifecycle: new -> acknowledged -> investigating -> resolved -> closed (with a verdict); other moves are refused.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from pipeline.schema import Incident, to_builtins
from pipeline.soar import db, sla
from pipeline.soar.models import (
    STATUSES,
    TRANSITIONS,
    VERDICTS,
    Notice,
    PendingMerge,
    PlaybookRun,
    Ticket,
    TicketEntity,
    TimelineEvent,
    utcnow,
)

ENTITY_KINDS = {
    "src_ips": "ip",
    "dst_ips": "ip",
    "hosts": "host",
    "users": "user",
    "domains": "domain",
    "files": "file",
}
MAX_ENTITIES = 50  # per kind and ticket
MERGED = "merged"  # TicketEntity kind marking a merge note already written


class TicketError(ValueError):
    """A ticket operation that is not allowed (unknown ticket, invalid transition, bad verdict)."""


class TicketRefError(TicketError):
    """A reference that can be neither a ticket number nor an incident id (a usage error)."""


TICKET_ID_MAX = 2**31 - 1  # tickets.id is an INTEGER column (32-bit on PostgreSQL)
INCIDENT_ID_MAX = 64  # length of tickets.incident_id


def parse_ref(ref: int | str) -> int | str:
    """A ticket number (ASCII digits, 1..TICKET_ID_MAX) or an incident id; TicketRefError otherwise."""
    if isinstance(ref, str) and ref.isascii() and ref.isdigit():
        ref = int(ref)
    if isinstance(ref, int):
        if not 1 <= ref <= TICKET_ID_MAX:
            raise TicketRefError(f"no ticket number {ref}: ticket numbers run from 1 to {TICKET_ID_MAX}")
        return ref
    if not ref or len(ref) > INCIDENT_ID_MAX or not ref.isprintable():
        raise TicketRefError(f"{ref[:80]!r} is neither a ticket number nor an incident id")
    return ref


@dataclass(slots=True)
class Upsert:
    ticket: Ticket
    created: bool
    changes: list[str] = field(default_factory=list)
    runs: list[tuple[int, str]] = field(default_factory=list)  # playbook runs started: (run id, playbook)


def start_runs(
    s: Session, ticket_id: int, playbooks: list[str], now: datetime, owner: str | None = None, lease: float = 300.0
) -> list[tuple[int, str]]:
    """Create a run per playbook not yet run on the ticket (insert-or-ignore), noting each start. With an
    `owner`, the runs are created already claimed by it (the process that will run them at once)."""
    return [(run_id, name) for run_id, _, name in start_many(s, [(ticket_id, p) for p in playbooks], now, owner, lease)]


def start_many(
    s: Session, pairs: list[tuple[int, str]], now: datetime, owner: str | None = None, lease: float = 300.0
) -> list[tuple[int, int, str]]:
    """`start_runs` for many (ticket id, playbook) pairs at once; returns (run id, ticket id, playbook)."""
    if not pairs:
        return []
    rows: list[dict[str, Any]] = [
        {
            "ticket_id": tid,
            "playbook": name,
            "status": "running" if owner else "pending",
            "step": 0,
            "attempt": 0,
            "next_at": now,
            "context": {},
            "created_at": now,
            "updated_at": now,
            "owner": owner,
            "lease_until": now + timedelta(seconds=lease) if owner else None,
        }
        for tid, name in pairs
    ]
    cols = (PlaybookRun.id, PlaybookRun.ticket_id, PlaybookRun.playbook)
    started = [tuple(r) for r in db.insert_ignore_returning(s, PlaybookRun, rows, ["ticket_id", "playbook"], cols)]
    db.insert_rows(
        s,
        TimelineEvent,
        [
            {
                "ticket_id": tid,
                "at": now,
                "kind": "playbook",
                "actor": "system",
                "status": "ok",
                "text": f"playbook {name} started",
                "data": {"run": run_id},
            }
            for run_id, tid, name in started
        ],
    )
    return started


class TicketStore:
    def __init__(self, url: str | None = None, *, migrate: bool = True, pool_size: int = 10, create: bool = True):
        """The store at `url` (default: MDR_DB_URL, else soar.db in MDR_HOME). `create=False`: a missing SQLite
        file is an error (db.StoreError) instead of a new empty store."""
        if migrate:
            self.url, self.engine = db.open_engine(url, create=create, pool_size=pool_size)
        else:
            self.url = db.normalize_url(url or db.default_url())
            self.engine = db.make_engine(self.url, pool_size=pool_size)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One transaction. On SQLite, this process's transactions queue on a lock first: SQLite takes one
        writer at a time anyway, and its busy handler would make the waiting threads sleep-poll."""
        with self._serial, self.Session.begin() as s:
            yield s

    # ---- incidents -> tickets ----------------------------------------------------------------------
    def upsert_incident(
        self,
        inc: Incident,
        now: datetime | None = None,
        playbooks: list[str] | None = None,
        owner: str | None = None,
        lease: float = 300.0,
    ) -> Upsert:
        """Open the incident's ticket or add the update to it (idempotent by incident id and version), and
        in the same transaction start the given playbooks when the ticket is new or the update changed it.
        With an `owner`, those runs are created already claimed by it."""
        r = self.apply_batch([inc], lambda _: playbooks or [], owner, lease, now)[0]
        assert isinstance(r, Upsert)
        return r

    def apply_batch(
        self,
        incs: list[Incident],
        playbooks: Callable[[Incident], list[str]],
        owner: str | None = None,
        lease: float = 300.0,
        now: datetime | None = None,
    ) -> list[Upsert | Ticket | None]:
        """Several incident updates in one transaction, set-based (a handful of statements per batch, not per
        update). Returns, in input order, an `Upsert` per update and the survivor's ticket (or None) per merged
        incident. Of several updates of one incident the newest counts; survivors are written before the
        incidents merged into them; rows are locked in incident-id order, so concurrent batches cannot
        deadlock."""
        now = now or utcnow()
        latest: dict[str, int] = {}
        merged = []
        for i, inc in enumerate(incs):
            if inc.status == "merged" and inc.merged_into:
                merged.append(i)
            elif (j := latest.get(inc.incident_id)) is None or (inc.version, i) >= (incs[j].version, j):
                latest[inc.incident_id] = i
        out: list[Upsert | Ticket | None] = [None] * len(incs)
        with self.tx() as s:
            ups = self._upsert_many(s, [incs[latest[k]] for k in sorted(latest)], now, playbooks, owner, lease)
            for i, inc in enumerate(incs):
                if inc.incident_id in ups and i not in merged:
                    u = ups[inc.incident_id]
                    out[i] = u if latest[inc.incident_id] == i else Upsert(u.ticket, False)
            for i in sorted(merged, key=lambda i: incs[i].incident_id):
                out[i] = self._merge(s, incs[i], now)
        return out

    def _upsert_many(
        self,
        s: Session,
        incs: list[Incident],
        now: datetime,
        playbooks: Callable[[Incident], list[str]],
        owner: str | None,
        lease: float,
    ) -> dict[str, Upsert]:
        if not incs:
            return {}
        snaps = {i.incident_id: to_builtins(i) for i in incs}
        existing = self._lock_tickets(s, list(snaps))
        fresh = [i for i in incs if i.incident_id not in existing]
        rows = {i.incident_id: _new_row(i, snaps[i.incident_id], now) for i in fresh}
        cols = (Ticket.id, Ticket.incident_id)
        new_ids = dict(
            (iid, tid) for tid, iid in db.insert_ignore_returning(s, Ticket, list(rows.values()), ["incident_id"], cols)
        )
        if len(new_ids) < len(fresh):  # concurrent writers created some first: they are updates then
            existing.update(self._lock_tickets(s, [i.incident_id for i in fresh if i.incident_id not in new_ids]))
        out: dict[str, Upsert] = {}
        events: list[dict[str, Any]] = []
        entities: list[dict[str, Any]] = []
        runs: list[tuple[int, str]] = []
        for inc in incs:
            iid = inc.incident_id
            if iid in new_ids:
                t = Ticket(id=new_ids[iid], **rows[iid])
                out[iid] = Upsert(t, True)
                events.append(
                    {
                        "ticket_id": t.id,
                        "at": now,
                        "kind": "created",
                        "actor": "system",
                        "status": None,
                        "text": f"ticket opened: {inc.title}",
                        "data": {
                            "priority": inc.priority,
                            "category": inc.category,
                            "sla_due": t.sla_due.isoformat(),
                            "alerts": inc.alert_count,
                            "version": inc.version,
                        },
                    }
                )
            else:
                t = existing[iid]
                out[iid] = Upsert(t, False, self._apply(s, t, inc, snaps[iid], now))
            if out[iid].created or out[iid].changes:
                entities += _entity_rows(t, inc)
                runs += [(t.id, name) for name in playbooks(inc)]
        db.insert_rows(s, TimelineEvent, events)
        db.insert_ignore(s, TicketEntity, entities, ["ticket_id", "kind", "value"])
        if new_ids:
            self._consume_merges(s, [out[i].ticket for i in new_ids], now)
        by_ticket = {u.ticket.id: u for u in out.values()}
        for run_id, tid, name in start_many(s, runs, now, owner, lease):
            by_ticket[tid].runs.append((run_id, name))
        return out

    @staticmethod
    def _lock_tickets(s: Session, incident_ids: list[str]) -> dict[str, Ticket]:
        q = select(Ticket).where(Ticket.incident_id.in_(incident_ids)).order_by(Ticket.incident_id)
        return {t.incident_id: t for t in s.scalars(q.with_for_update())}

    def _apply(self, s: Session, t: Ticket, inc: Incident, snap: dict[str, Any], now: datetime) -> list[str]:
        if inc.version < t.incident_version or (inc.version == t.incident_version and inc.status == t.incident_status):
            return []
        old = t.incident or {}
        changes = []
        if inc.priority != t.priority:
            changes.append(f"priority {t.priority} -> {inc.priority}")
            t.priority = inc.priority
            t.sla_due = sla.incident_due(inc)
        if inc.status != t.incident_status:
            changes.append(f"incident {inc.status}")
        new_ucs = [u for u in inc.use_cases if u not in old.get("use_cases", [])]
        if new_ucs:
            changes.append("new use cases: " + ", ".join(new_ucs))
        if inc.outcome != old.get("outcome", "unknown"):
            changes.append(f"outcome {old.get('outcome', 'unknown')} -> {inc.outcome}")
        t.title = inc.title[:500]
        t.category = inc.category
        t.incident = snap
        t.incident_version = inc.version
        t.incident_status = inc.status
        t.first_seen = min(t.first_seen, inc.first_seen)
        t.last_seen = max(t.last_seen, inc.last_seen)
        t.updated_at = now
        if changes:
            self._event(
                s,
                t.id,
                "update",
                "; ".join(changes),
                now=now,
                data={"version": inc.version, "alerts": inc.alert_count},
            )
        return changes

    def merge_incident(self, inc: Incident, now: datetime | None = None) -> Ticket | None:
        """A fused incident: note it on its survivor's ticket (or remember it until that ticket opens) and
        close its own ticket, if it had one, as a duplicate. Returns the survivor's ticket when it exists."""
        with self.tx() as s:
            return self._merge(s, inc, now or utcnow())

    def _merge(self, s: Session, inc: Incident, now: datetime) -> Ticket | None:
        assert inc.merged_into
        survivor = self._by_incident(s, inc.merged_into)
        if survivor is None:
            pending = {
                "survivor_id": inc.merged_into,
                "incident_id": inc.incident_id,
                "title": inc.title[:500],
                "alert_count": inc.alert_count,
                "at": now,
            }
            db.insert_ignore(s, PendingMerge, pending, ["survivor_id", "incident_id"])
        else:
            self._note_merge(s, survivor, inc.incident_id, inc.title, inc.alert_count, now)
        own = self._by_incident(s, inc.incident_id)
        if own is not None and own.status != "closed":
            ref = f"ticket {survivor.id}" if survivor else f"incident {inc.merged_into}"
            self._set_status(s, own, "closed", "system:fusion", now, verdict="duplicate", comment=f"merged into {ref}")
        return survivor

    def _note_merge(self, s: Session, t: Ticket, incident_id: str, title: str, alerts: int, now: datetime) -> None:
        marker = {"ticket_id": t.id, "kind": MERGED, "value": incident_id, "tenant_id": t.tenant_id}
        if db.insert_ignore(s, TicketEntity, marker, ["ticket_id", "kind", "value"]):
            self._event(
                s,
                t.id,
                "merged",
                f"incident {incident_id} ({title}, {alerts} alerts) merged into this ticket",
                now=now,
                data={"incident_id": incident_id},
            )

    def _consume_merges(self, s: Session, tickets: list[Ticket], now: datetime) -> None:
        by_incident = {t.incident_id: t for t in tickets}
        rows = s.scalars(select(PendingMerge).where(PendingMerge.survivor_id.in_(list(by_incident)))).all()
        for m in rows:
            self._note_merge(s, by_incident[m.survivor_id], m.incident_id, m.title, m.alert_count, now)
        if rows:
            s.execute(delete(PendingMerge).where(PendingMerge.survivor_id.in_({m.survivor_id for m in rows})))

    # ---- reads -------------------------------------------------------------------------------------
    def get(self, ref: int | str) -> Ticket | None:
        """A ticket by numeric id or by incident id."""
        with self.tx() as s:
            return self._find(s, ref, lock=False, required=False)

    def require(self, ref: int | str) -> Ticket:
        t = self.get(parse_ref(ref))
        if t is None:
            raise TicketError(f"no ticket {ref}")
        return t

    def list(
        self,
        status: str | None = None,
        priority: str | None = None,
        tenant: str | None = None,
        limit: int = 100,
    ) -> list[Ticket]:
        q = select(Ticket)
        if status:
            q = q.where(Ticket.status == status)
        if priority:
            q = q.where(Ticket.priority == priority)
        if tenant:
            q = q.where(Ticket.tenant_id == tenant)
        with self.tx() as s:
            return list(s.scalars(q.order_by(Ticket.priority, Ticket.created_at, Ticket.id).limit(limit)))

    def count(self) -> int:
        from sqlalchemy import func

        with self.tx() as s:
            return s.scalar(select(func.count()).select_from(Ticket)) or 0

    def timeline(self, ticket_id: int) -> builtins.list[TimelineEvent]:
        with self.tx() as s:
            return list(
                s.scalars(select(TimelineEvent).where(TimelineEvent.ticket_id == ticket_id).order_by(TimelineEvent.id))
            )

    def runs(self, ticket_id: int) -> builtins.list[PlaybookRun]:
        with self.tx() as s:
            return list(
                s.scalars(select(PlaybookRun).where(PlaybookRun.ticket_id == ticket_id).order_by(PlaybookRun.id))
            )

    def related(self, t: Ticket, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """Other tickets of the tenant sharing an entity (IP, host, user, domain, file) with `t`."""
        mine = TicketEntity.__table__.alias("mine")
        other = TicketEntity.__table__.alias("other")
        q = (
            select(Ticket, other.c.value)
            .join(other, other.c.ticket_id == Ticket.id)
            .join(
                mine,
                and_(
                    mine.c.tenant_id == other.c.tenant_id,
                    mine.c.kind == other.c.kind,
                    mine.c.value == other.c.value,
                ),
            )
            .where(
                mine.c.ticket_id == t.id,
                other.c.ticket_id != t.id,
                mine.c.kind.in_(set(ENTITY_KINDS.values())),
            )
            .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        )
        found: dict[int, dict[str, Any]] = {}
        with self.tx() as s:
            for rel, value in s.execute(q):
                d = found.get(rel.id)
                if d is None:
                    if len(found) >= limit:
                        continue
                    d = found[rel.id] = {
                        "id": rel.id,
                        "incident_id": rel.incident_id,
                        "title": rel.title,
                        "category": rel.category,
                        "priority": rel.priority,
                        "status": rel.status,
                        "verdict": rel.verdict,
                        "created_at": rel.created_at.isoformat(),
                        "shared": [],
                    }
                if value not in d["shared"]:
                    d["shared"].append(value)
        return list(found.values())

    def unacknowledged_due(self, now: datetime) -> builtins.list[Ticket]:
        """Tickets not acknowledged by their due time that may still escalate (not at the last tier of their
        current priority yet): what every tick of the SOAR clock reads."""
        prio = Ticket.escalation_priority
        more = or_(Ticket.escalation_level < sla.MAX_TIER, prio.is_(None), prio != Ticket.priority)
        with self.tx() as s:
            return list(
                s.scalars(
                    select(Ticket)
                    .where(Ticket.status == "new", Ticket.acknowledged_at.is_(None), Ticket.sla_due <= now, more)
                    .order_by(Ticket.sla_due)
                )
            )

    # ---- analyst actions ---------------------------------------------------------------------------
    def transition(
        self,
        ref: int | str,
        to: str,
        *,
        actor: str,
        verdict: str | None = None,
        comment: str | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        """Move a ticket along new -> acknowledged -> investigating -> resolved -> closed."""
        with self.tx() as s:
            t = self._find(s, ref)
            self._set_status(s, t, to, actor, now or utcnow(), verdict=verdict, comment=comment)
            return t

    def acknowledge(self, ref: int | str, actor: str, now: datetime | None = None) -> Ticket:
        return self.transition(ref, "acknowledged", actor=actor, now=now)

    def close_ticket(
        self,
        ref: int | str,
        verdict: str,
        actor: str,
        comment: str | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        return self.transition(ref, "closed", actor=actor, verdict=verdict, comment=comment, now=now)

    def _set_status(
        self,
        s: Session,
        t: Ticket,
        to: str,
        actor: str,
        now: datetime,
        *,
        verdict: str | None = None,
        comment: str | None = None,
    ) -> None:
        if to not in STATUSES:
            raise TicketError(f"unknown status {to!r}; one of {', '.join(STATUSES)}")
        if to not in TRANSITIONS[t.status]:
            allowed = ", ".join(sorted(TRANSITIONS[t.status])) or "none"
            raise TicketError(f"ticket {t.id}: {t.status} -> {to} is not allowed (from {t.status}: {allowed})")
        if to == "closed" and verdict not in VERDICTS:
            raise TicketError(f"closing needs a verdict: one of {', '.join(VERDICTS)}")
        if to != "closed" and verdict is not None:
            raise TicketError("a verdict is given when closing")
        old = t.status
        t.status = to
        if to in ("acknowledged", "closed") and t.acknowledged_at is None:
            t.acknowledged_at = now
            t.assignee = t.assignee or actor
        if to in ("resolved", "closed") and t.resolved_at is None:
            t.resolved_at = now
        if old == "resolved" and to == "investigating":
            t.resolved_at = None
        if to == "closed":
            t.closed_at = now
            t.verdict = verdict
        t.updated_at = now
        text = f"{old} -> {to}" + (f" ({verdict})" if verdict else "") + (f": {comment}" if comment else "")
        self._event(
            s,
            t.id,
            "status",
            text,
            actor=actor,
            now=now,
            data={"from": old, "to": to, **({"verdict": verdict} if verdict else {})},
        )

    def assign(self, ref: int | str, assignee: str, actor: str, now: datetime | None = None) -> Ticket:
        now = now or utcnow()
        with self.tx() as s:
            t = self._find(s, ref)
            t.assignee = assignee
            t.updated_at = now
            self._event(s, t.id, "assign", f"assigned to {assignee}", actor=actor, now=now)
            return t

    def note(self, ref: int | str, text: str, actor: str, now: datetime | None = None) -> Ticket:
        now = now or utcnow()
        with self.tx() as s:
            t = self._find(s, ref)
            self._event(s, t.id, "note", text, actor=actor, now=now)
            return t

    def add_event(
        self,
        ticket_id: int,
        kind: str,
        text: str,
        *,
        status: str | None = None,
        actor: str = "system",
        data: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        with self.tx() as s:
            self._event(s, ticket_id, kind, text, status=status, actor=actor, data=data, now=now)

    def set_external(self, ticket_id: int, channel: str, ref: dict[str, Any]) -> None:
        with self.tx() as s:
            t = self._find(s, ticket_id)
            t.external = {**(t.external or {}), channel: ref}

    def mark_escalated(
        self,
        t: Ticket,
        tier: int,
        *,
        breach: bool,
        text: str,
        actor: str = "system:sla",
        data: dict[str, Any] | None = None,
        now: datetime | None = None,
        notices: builtins.list[Notice] | None = None,
    ) -> bool:
        """Compare-and-set the escalation level from what `t` holds to (t.priority, tier): True for the one
        caller that wins, so each level is escalated exactly once even with concurrent checkers. The winner's
        `notices` (the escalation's outbox, pipeline/soar/notices.py) are written in the same transaction."""
        now = now or utcnow()
        prio = Ticket.escalation_priority
        cond = [
            Ticket.id == t.id,
            Ticket.escalation_level == t.escalation_level,
            prio.is_(None) if t.escalation_priority is None else prio == t.escalation_priority,
        ]
        if breach:
            cond.append(Ticket.acknowledged_at.is_(None))
        values: dict[str, Any] = {
            "escalation_level": tier,
            "escalation_priority": t.priority,
            "updated_at": now,
        }
        if breach:
            values["sla_breached"] = True
        with self.tx() as s:
            if s.execute(update(Ticket).where(*cond).values(**values)).rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
                return False
            self._event(s, t.id, "escalation", text, status="ok", actor=actor, data=data, now=now)
            s.add_all(notices or [])
        t.escalation_level, t.escalation_priority = tier, t.priority
        t.sla_breached = t.sla_breached or breach
        return True

    # ---- export ------------------------------------------------------------------------------------
    def export(self, t: Ticket) -> dict[str, Any]:
        """A ticket as one JSON-able dict (tickets.jsonl): fields, playbook runs and timeline."""

        def iso(d: datetime | None) -> str | None:
            return d.isoformat() if d else None

        return {
            "id": t.id,
            "incident_id": t.incident_id,
            "tenant_id": t.tenant_id,
            "title": t.title,
            "category": t.category,
            "priority": t.priority,
            "status": t.status,
            "assignee": t.assignee,
            "verdict": t.verdict,
            "sla_due": iso(t.sla_due),
            "sla": (state := sla.sla_state(t, utcnow())),
            "sla_breached": state == "breached",
            "escalation_level": t.escalation_level,
            "external": t.external or {},
            "incident_version": t.incident_version,
            "incident_status": t.incident_status,
            "first_seen": iso(t.first_seen),
            "last_seen": iso(t.last_seen),
            "created_at": iso(t.created_at),
            "acknowledged_at": iso(t.acknowledged_at),
            "resolved_at": iso(t.resolved_at),
            "closed_at": iso(t.closed_at),
            "playbooks": [{"name": r.playbook, "status": r.status, "step": r.step} for r in self.runs(t.id)],
            "timeline": [
                {
                    "at": iso(e.at),
                    "kind": e.kind,
                    "actor": e.actor,
                    "status": e.status,
                    "text": e.text,
                    **({"data": e.data} if e.data else {}),
                }
                for e in self.timeline(t.id)
            ],
        }

    # ---- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _by_incident(s: Session, incident_id: str) -> Ticket | None:
        return s.scalars(select(Ticket).where(Ticket.incident_id == incident_id).with_for_update()).first()

    @staticmethod
    def _find(s: Session, ref: int | str, *, lock: bool = True, required: bool = True) -> Ticket:
        q = select(Ticket)
        try:
            key = parse_ref(ref)
        except TicketRefError:
            if required:
                raise
            return None  # type: ignore[return-value]  # None only when not required
        q = q.where(Ticket.id == key) if isinstance(key, int) else q.where(Ticket.incident_id == key)
        t = s.scalars(q.with_for_update() if lock else q).first()
        if t is None and required:
            raise TicketError(f"no ticket {ref}")
        return t  # type: ignore[return-value]  # as above

    @staticmethod
    def _event(
        s: Session,
        ticket_id: int,
        kind: str,
        text: str,
        *,
        status: str | None = None,
        actor: str = "system",
        data: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> None:
        s.add(
            TimelineEvent(
                ticket_id=ticket_id,
                at=now or utcnow(),
                kind=kind,
                actor=actor,
                status=status,
                text=text,
                data=data,
            )
        )


def _new_row(inc: Incident, snap: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "incident_id": inc.incident_id,
        "tenant_id": inc.tenant_id,
        "title": inc.title[:500],
        "category": inc.category,
        "priority": inc.priority,
        "status": "new",
        "incident": snap,
        "incident_version": inc.version,
        "incident_status": inc.status,
        "sla_due": sla.incident_due(inc),
        "sla_breached": False,
        "escalation_level": 0,
        "external": {},
        "first_seen": inc.first_seen,
        "last_seen": inc.last_seen,
        "created_at": now,
        "updated_at": now,
    }


def _entity_rows(t: Ticket, inc: Incident) -> list[dict[str, Any]]:
    return [
        {"ticket_id": t.id, "kind": kind, "value": v[:300], "tenant_id": t.tenant_id}
        for attr, kind in ENTITY_KINDS.items()
        for v in getattr(inc.entities, attr)[:MAX_ENTITIES]
    ]
