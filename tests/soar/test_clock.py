"""The SOAR clock's lease on SQLite and PostgreSQL: of processes racing for it exactly one holds it, the holder
renews it, another takes it over once it ran out or was released; clocks of two processes racing beat by beat
tick once per beat, and every ticket escalates once per tier."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from pipeline.soar.actions import Soar
from pipeline.soar.clock import Clock, Lease
from pipeline.soar.models import utcnow
from pipeline.soar.tickets import TicketStore
from tests.soar.helpers import incident, playbook
from tests.soar.servers import RecordingServer

T = TypeVar("T")
Pair = tuple[list[Soar], RecordingServer]


@pytest.fixture
def pair(make_soar: Callable[..., Soar], http_server: Callable[..., RecordingServer]) -> Pair:
    """Two processes' SOAR on one store, escalating to a pager (a real local server)."""
    pager = http_server()
    soars = [make_soar([playbook("p", [{"collect": {}}], categories=["dos"])],
                       {"pager": {"type": "webhook", "url": pager.url}}) for _ in range(2)]
    for s in soars:
        s.channels.tiers = [["pager"]]
    return soars, pager


def race(fns: list[Callable[[], T]]) -> list[T]:
    """Run the functions in threads released at the same moment; their results in order."""
    out: list[Any] = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i: int) -> None:
        barrier.wait()
        out[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def test_lease_race_has_one_winner_renewal_and_takeover(db_url: str) -> None:
    stores = [TicketStore(db_url) for _ in range(5)]  # one engine each, as separate processes have
    try:
        leases = [Lease(s, "soar-clock", f"worker-{i}", ttl=30) for i, s in enumerate(stores)]
        t0 = utcnow()
        first = race([lambda lease=lease: lease.acquire(t0) for lease in leases])
        assert first.count(True) == 1  # the insert: one row, one owner
        holder = first.index(True)
        at = t0 + timedelta(seconds=20)  # within the lease: the holder renews, nobody else gets it
        assert race([lambda lease=lease: lease.acquire(at) for lease in leases]) == [i == holder for i in range(5)]
        late = at + timedelta(seconds=31)  # renewed at +20 s: held until +50 s, now run out (the holder died)
        others = [lease for i, lease in enumerate(leases) if i != holder]
        taken = race([lambda lease=lease: lease.acquire(late) for lease in others])
        assert taken.count(True) == 1  # the conditional update: one takes it over
        successor = others[taken.index(True)]
        assert not leases[holder].acquire(late + timedelta(seconds=1))  # the old holder is back: too late
        successor.release(late + timedelta(seconds=2))
        after = race([lambda lease=lease: lease.acquire(late + timedelta(seconds=3)) for lease in leases])
        assert after.count(True) == 1  # released: taken at the next beat, without waiting for the ttl
    finally:
        for s in stores:
            s.close()


def test_two_clocks_tick_once_per_beat_and_escalate_each_tier_once(pair: Pair) -> None:
    soars, pager = pair
    tickets = [soars[0].store.upsert_incident(incident(n, priority="P1")).ticket for n in range(1, 6)]
    due = max(t.sla_due for t in tickets)
    clocks = [Clock(s, interval=10.0, owner=f"worker-{i}") for i, s in enumerate(soars)]  # lease: 30 s
    beats = [due - timedelta(minutes=1), due + timedelta(seconds=1), due + timedelta(seconds=11),
             due + timedelta(minutes=15, seconds=1), due + timedelta(minutes=30, seconds=1),
             due + timedelta(minutes=30, seconds=11), due + timedelta(hours=2)]
    escalated: list[tuple[int, int]] = []
    for now in beats:
        done = race([lambda c=c, now=now: c.tick(now) for c in clocks])
        assert sum(d is not None for d in done) == 1, now  # one clock ticks per beat, the other stands by
        escalated += [(e.ticket_id, e.tier) for d in done if d is not None for e in d.escalations]
    assert sorted(escalated) == sorted((t.id, tier) for t in tickets for tier in (1, 2, 3))
    assert len(pager.wait(15)) == 15
    store = soars[0].store
    for t in tickets:
        assert [e.data["tier"] for e in store.timeline(t.id) if e.kind == "escalation"] == [1, 2, 3]
    holder = next(c for c in clocks if c.holding)
    holder.close()  # a graceful stop hands the clock over at once
    other = next(c for c in clocks if c is not holder)
    assert other.tick(beats[-1] + timedelta(seconds=1)) is not None and other.holding


def test_a_stalled_holder_and_its_successor_escalate_once(pair: Pair) -> None:
    """A holder that stalls past its lease (GC pause, slow channel) ticks while its successor does: the tickets'
    compare-and-set, not the lease, keeps each escalation single."""
    soars, pager = pair
    tickets = [soars[0].store.upsert_incident(incident(n, priority="P2")).ticket for n in range(1, 9)]
    stalled, successor = (Clock(s, interval=1.0, owner=f"worker-{i}") for i, s in enumerate(soars))
    now = max(t.sla_due for t in tickets) + timedelta(seconds=1)
    assert stalled.lease.acquire(now - timedelta(seconds=10))  # took it long ago, then stalled
    done = race([lambda: stalled.soar.tick(now), lambda: successor.tick(now)])  # it resumes mid-tick
    assert done[1] is not None  # the lease had run out: the successor ticks too
    ids = [e.ticket_id for d in done if d is not None for e in d.escalations]
    assert sorted(ids) == sorted(t.id for t in tickets)
    assert len(pager.wait(len(tickets))) == len(tickets)


def test_a_notice_its_process_left_unsent_is_sent_by_a_later_tick(pair: Pair) -> None:
    """The escalation committed with its outbox, then its process stopped before sending: once the notice's lease
    ran out, the next tick (of whichever process) sends it, once."""
    soars, pager = pair
    t = soars[0].store.upsert_incident(incident(1, priority="P1")).ticket
    now = t.sla_due + timedelta(seconds=1)
    dying = soars[0].escalator
    outbox = dying.notices.new(t.id, ["pager"], {"tier": 1, "priority": "P1", "reason": "not acknowledged"}, now)
    assert soars[0].store.mark_escalated(t, 1, breach=True, text="escalated to tier 1", now=now, notices=outbox)
    # ... and here it stopped. Within the notice's lease nobody sends it again (its sender may still be at it).
    assert [d.resent for d in race([lambda s=s: s.tick(now + timedelta(seconds=30)) for s in soars])] == [0, 0]
    later = now + timedelta(seconds=dying.notices.lease + 1)
    done = race([lambda s=s: s.tick(later) for s in soars])
    assert sorted(d.resent for d in done) == [0, 1] and all(d.escalations == [] for d in done)
    [page] = pager.wait(1)
    assert page.json["kind"] == "escalation" and page.json["title"].startswith("[ESCALATION T1] P1")
    notes = [e for e in soars[1].store.timeline(t.id) if e.kind == "notify"]
    assert [(e.status, e.data["channel"]) for e in notes] == [("ok", "pager")]
    assert "stopped before sending" in notes[0].text
    assert soars[1].tick(later + timedelta(minutes=1)).resent == 0 and len(pager.requests) == 1
