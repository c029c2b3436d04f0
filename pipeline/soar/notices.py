"""The outbox of escalation notices: a notice per channel is written in the escalation's own transaction
(`TicketStore.mark_escalated`), claimed by the process that escalates, and finished with its `notify` timeline
event in one transaction once sent. Should that process stop in between, the notice is still `sending` when its
lease runs out, and the next tick of the SOAR clock claims and sends it: an escalation is never left
unannounced. (A process that stops after sending and before finishing makes the notice go out twice: at least
once, and the notice carries the ticket and tier to tell.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from pipeline.soar.models import Notice, TimelineEvent, utcnow

if TYPE_CHECKING:
    from pipeline.soar.tickets import TicketStore

LEASE = 120.0  # seconds a notice stays with its sender: longer than a connector's timeouts and retries take


class Notices:
    def __init__(self, store: TicketStore, owner: str, lease: float = LEASE):
        self.store = store
        self.owner = owner
        self.lease = lease

    def new(self, ticket_id: int, channels: list[str], data: dict[str, Any], now: datetime) -> list[Notice]:
        """Notices to `channels`, claimed by this owner: for `mark_escalated` to write with the escalation."""
        until = now + timedelta(seconds=self.lease)
        return [Notice(ticket_id=ticket_id, channel=c, data=data, status="sending", owner=self.owner,
                       lease_until=until, created_at=now) for c in channels]

    def stale(self, now: datetime, limit: int = 100) -> list[Notice]:
        """Notices whose sender stopped before it finished them (their lease ran out)."""
        with self.store.tx() as s:
            q = select(Notice).where(Notice.status == "sending", Notice.lease_until < now)
            return list(s.scalars(q.order_by(Notice.id).limit(limit)))

    def claim(self, notice: Notice, now: datetime) -> bool:
        """Take a stale notice over (one of several racing claimers gets it)."""
        with self.store.tx() as s:
            res = s.execute(
                update(Notice)
                .where(Notice.id == notice.id, Notice.status == "sending", Notice.lease_until < now)
                .values(owner=self.owner, lease_until=now + timedelta(seconds=self.lease))
            )
            return res.rowcount == 1  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult

    def finish(self, notice: Notice, status: str, detail: str, data: dict[str, Any]) -> bool:
        """Record the outcome (ok, failed, skipped) and its `notify` timeline event, if the notice is still ours."""
        now = utcnow()
        with self.store.tx() as s:
            res = s.execute(
                update(Notice)
                .where(Notice.id == notice.id, Notice.owner == self.owner, Notice.status == "sending")
                .values(status=status, lease_until=None)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]  # as above
                return False
            s.add(TimelineEvent(ticket_id=notice.ticket_id, at=now, kind="notify", actor="system:sla", status=status,
                                text=detail, data={"channel": notice.channel, **data}))
        notice.status = status
        return True
