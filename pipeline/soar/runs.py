"""Persistent playbook runs: create once per (ticket, playbook), claim with a lease, save progress.

A run is claimed by one worker at a time (`UPDATE ... WHERE status='pending' AND next_at <= now`, or a
`running` run whose lease ran out because its worker died), so several processes can share the store.
Every save is guarded by the owner and writes the steps' timeline events in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update

from pipeline.soar.models import PlaybookRun, TimelineEvent, table, utcnow
from pipeline.soar.tickets import TicketStore, start_runs


@dataclass(slots=True)
class Event:
    """A timeline event written together with a run's progress."""

    kind: str
    text: str
    status: str | None = None
    data: dict[str, Any] | None = None
    at: datetime | None = None


class Runs:
    def __init__(self, store: TicketStore):
        self.store = store

    def create(self, ticket_id: int, playbook: str, now: datetime | None = None) -> int | None:
        """A new pending run, or None when this ticket already has a run of this playbook."""
        with self.store.tx() as s:
            started = start_runs(s, ticket_id, [playbook], now or utcnow())
        return started[0][0] if started else None

    @staticmethod
    def _runnable(now: datetime) -> Any:
        return or_(
            and_(PlaybookRun.status == "pending", PlaybookRun.next_at <= now),
            and_(PlaybookRun.status == "running", PlaybookRun.lease_until < now),
        )

    def claim(self, run_id: int, owner: str, lease: float, now: datetime | None = None) -> PlaybookRun | None:
        now = now or utcnow()
        with self.store.tx() as s:
            res = s.execute(
                update(PlaybookRun)
                .where(PlaybookRun.id == run_id, self._runnable(now))
                .values(status="running", owner=owner, lease_until=now + timedelta(seconds=lease), updated_at=now)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
                return None
            return s.get(PlaybookRun, run_id)

    def save(
        self,
        run: PlaybookRun,
        owner: str,
        *,
        status: str,
        lease: float,
        events: list[Event] | None = None,
        next_at: datetime | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Persist `run`'s step/attempt/context/approval with a new status, plus its timeline events, in one
        transaction guarded by the owner. False when the run is no longer ours."""
        now = now or utcnow()
        values: dict[str, Any] = {
            "status": status,
            "step": run.step,
            "attempt": run.attempt,
            "context": run.context,
            "approval": run.approval,
            "updated_at": now,
            "next_at": next_at or now,
            "lease_until": now + timedelta(seconds=lease) if status == "running" else None,
            "owner": owner if status == "running" else None,
        }
        actor = f"playbook:{run.playbook}"
        with self.store.tx() as s:
            res = s.execute(
                update(PlaybookRun)
                .where(PlaybookRun.id == run.id, PlaybookRun.owner == owner, PlaybookRun.status == "running")
                .values(**values)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]  # as above
                return False
            if events:
                s.execute(
                    insert(table(TimelineEvent)),
                    [
                        {
                            "ticket_id": run.ticket_id,
                            "at": e.at or now,
                            "kind": e.kind,
                            "actor": actor,
                            "status": e.status,
                            "text": e.text,
                            "data": e.data,
                        }
                        for e in events
                    ],
                )
        run.status = status
        return True

    def due(self, now: datetime | None = None, limit: int = 500) -> list[int]:
        now = now or utcnow()
        with self.store.tx() as s:
            return list(
                s.scalars(select(PlaybookRun.id).where(self._runnable(now)).order_by(PlaybookRun.next_at).limit(limit))
            )

    def next_due(self) -> datetime | None:
        with self.store.tx() as s:
            return s.scalar(select(func.min(PlaybookRun.next_at)).where(PlaybookRun.status == "pending"))

    def waiting(self, ticket_id: int | None = None) -> list[PlaybookRun]:
        q = select(PlaybookRun).where(PlaybookRun.status == "waiting")
        if ticket_id is not None:
            q = q.where(PlaybookRun.ticket_id == ticket_id)
        with self.store.tx() as s:
            return list(s.scalars(q.order_by(PlaybookRun.id)))

    def decide(
        self, run: PlaybookRun, decision: dict[str, Any], text: str, actor: str, now: datetime | None = None
    ) -> bool:
        """Record an approval decision on a waiting run and make it runnable again (once)."""
        now = now or utcnow()
        approval = {**(run.approval or {}), **decision}
        with self.store.tx() as s:
            res = s.execute(
                update(PlaybookRun)
                .where(PlaybookRun.id == run.id, PlaybookRun.status == "waiting")
                .values(status="pending", next_at=now, approval=approval, updated_at=now)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]  # as above
                return False
            s.add(
                TimelineEvent(
                    ticket_id=run.ticket_id,
                    at=now,
                    kind="approval",
                    actor=actor,
                    status="ok" if decision.get("decision") == "approve" else "denied",
                    text=text,
                    data={"run": run.id, "step": approval.get("step")},
                )
            )
        run.approval = approval
        return True

    def pending_count(self) -> int:
        with self.store.tx() as s:
            return (
                s.scalar(
                    select(func.count()).select_from(PlaybookRun).where(PlaybookRun.status.in_(("pending", "running")))
                )
                or 0
            )
