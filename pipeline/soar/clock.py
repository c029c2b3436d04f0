"""The SOAR clock of the streaming workers: `Soar.tick` (SLA escalation, resumption of playbook runs) every
`interval` seconds, in one worker at a time.

One worker at a time by a lease row in the ticket store (`leases`, name `soar-clock`): each beat, a worker takes
the lease when it is free or expired, or renews it when it is its own, in one conditional statement; only the
holder ticks. The holder renews it every beat; should it die, hang or lose the store, another worker takes over
once the lease has run out (`ttl`, three beats). The lease lives where the work is done, so it holds on SQLite
and PostgreSQL alike, whatever the Kafka group does (a rebalance moves partitions, not the lease), and whatever
else shares the store (a second consumer group, `mdr tickets escalate`).

The lease keeps the work in one place; it is not what makes escalation exactly once. A holder that stalls past
its lease (a long GC pause, a slow notification channel) may tick while its successor does; each escalation
is a compare-and-set of the ticket's level (`TicketStore.mark_escalated`) and each resumption a claim of the
run (`Runs.claim`), so of two racing ticks one wins each level and each run, and only the winner notifies.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import update

from pipeline.soar import db
from pipeline.soar.actions import Soar, Tick
from pipeline.soar.models import Lease as LeaseRow
from pipeline.soar.models import utcnow
from pipeline.soar.tickets import TicketStore

log = logging.getLogger(__name__)
NAME = "soar-clock"
BEATS_PER_LEASE = 3  # a lease lasts this many beats: a holder that missed two still holds it


class Lease:
    """A named lease in the store: `acquire` takes or renews it (True while this owner holds it)."""

    def __init__(self, store: TicketStore, name: str, owner: str, ttl: float):
        self.store = store
        self.name = name
        self.owner = owner
        self.ttl = ttl

    def acquire(self, now: datetime | None = None) -> bool:
        """Renew the lease if it is ours, else take it if nobody holds it or its holder let it run out: one
        insert (the first time) or conditional updates, so of processes racing for it exactly one gets it."""
        now = now or utcnow()
        until = now + timedelta(seconds=self.ttl)
        this = LeaseRow.name == self.name
        with self.store.tx() as s:
            if db.insert_ignore(s, LeaseRow, {"name": self.name, "owner": self.owner, "until": until,
                                              "acquired_at": now}, ["name"]):
                return True
            renew = update(LeaseRow).where(this, LeaseRow.owner == self.owner).values(until=until)
            if s.execute(renew).rowcount == 1:  # type: ignore[attr-defined]  # an UPDATE gives a CursorResult
                return True
            take = update(LeaseRow).where(this, LeaseRow.until < now).values(owner=self.owner, until=until,
                                                                              acquired_at=now)
            return s.execute(take).rowcount == 1  # type: ignore[attr-defined]  # as above

    def release(self, now: datetime | None = None) -> None:
        """Let the lease go (if ours), so that another process takes it at its next beat."""
        with self.store.tx() as s:
            s.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.owner == self.owner)
                .values(until=now or utcnow())
            )


class Clock:
    """`Soar.tick` in the process that holds the `soar-clock` lease; `tick()` is called every `interval`
    seconds (the worker's timer)."""

    def __init__(self, soar: Soar, interval: float, owner: str | None = None):
        self.soar = soar
        self.interval = interval
        self.lease = Lease(soar.store, NAME, owner or soar.runner.owner, BEATS_PER_LEASE * interval)
        self.holding: bool | None = None  # None: no beat yet
        self.closed = False

    def tick(self, now: datetime | None = None) -> Tick | None:
        """One beat: take or renew the lease and tick; None when another process holds the lease (or this clock
        was closed: a beat after the stop must not take the lease again)."""
        if self.closed:
            return None
        held = self.lease.acquire(now)
        if held != self.holding:
            if held:
                log.info("SOAR clock: this worker (%s) holds the lease and ticks", self.lease.owner)
            else:
                log.info("SOAR clock: another worker holds the lease; this one stands by")
            self.holding = held
        if not held:
            return None
        done = self.soar.tick(now)
        for e in done.escalations:
            log.info("ticket %d escalated to tier %d at %s", e.ticket_id, e.tier, e.priority)
        if done.resumed or done.resent:
            log.info("%d playbook run(s) resumed, %d escalation notice(s) sent again", done.resumed, done.resent)
        return done

    def close(self) -> None:
        """Release the lease (a graceful stop): another worker ticks from its next beat on."""
        self.closed = True
        if not self.holding:
            return
        self.holding = False
        try:
            self.lease.release()
        except Exception as e:  # the store is away: the lease runs out by itself
            log.warning("SOAR clock: lease not released (%s); another worker takes over once it runs out", e)
