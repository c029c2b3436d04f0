"""The playbook runner: advances persistent runs on a small pool of worker threads.

A run is claimed from the store and worked in slices: a slice runs steps until one with an external effect
(notify, ticket, block_ip, isolate_host) has been done, saves the slice's results to the ticket's timeline
in one transaction, and puts the run back on the queue. The queue is ordered by how far a run has got, so a
new incident's first steps never wait behind the later steps of older runs.

A failed step is retried with backoff by rescheduling the run (no thread waits out the backoff), a
`wait_approval` step parks the run in the store until an analyst decides, and a channel whose concurrency
limit is reached defers only the runs that need it: one slow connector holds at most its own
`max_concurrency` workers and never stalls other incidents. A crash leaves runs in the store, where `poll()`
(or another process) resumes them once their lease has run out; steps without external effects that had
not been saved yet are simply run again.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from pipeline.schema import Incident
from pipeline.soar import db
from pipeline.soar.connectors import Channels
from pipeline.soar.models import PlaybookRun, Ticket, utcnow
from pipeline.soar.playbooks import Playbook, PlaybookSet, Step
from pipeline.soar.runs import Event, Runs
from pipeline.soar.safety import Safety, default_safety
from pipeline.soar.sla import Escalator
from pipeline.soar.steps import Busy, Enricher, Evidence, StepContext, StepResult, evaluate
from pipeline.soar.tickets import TicketError, TicketStore

log = logging.getLogger(__name__)
BUSY_DELAY = 0.2  # seconds before a step whose channel is saturated is tried again
CONTEXT_SKIP = ("raw",)  # step data kept in the timeline but not in the run context
EXTERNAL = frozenset({"notify", "ticket", "block_ip", "isolate_host"})  # steps saved at once
_STOP = (1 << 30, 0, 0)


@dataclass(slots=True)
class StepEvent:
    run_id: int
    ticket_id: int
    incident_id: str
    playbook: str
    step: str
    action: str
    status: str
    detail: str
    at: datetime
    elapsed: float


@dataclass(slots=True)
class _Live:
    """A run this process has claimed, between its slices."""

    run: PlaybookRun
    pb: Playbook
    ticket: Ticket
    incident: Incident
    events: list[Event] = field(default_factory=list)  # results not yet saved


def step_context(
    t: Ticket, pb: Playbook, run_context: dict[str, Any], now: datetime, channels: Channels, **kw: Any
) -> dict[str, Any]:
    """Template variables of a step (`available('name')` tells whether a channel is configured)."""
    return {
        "incident": t.incident,
        "playbook": pb.name,
        "tenant": t.tenant_id,
        "now": now.isoformat(),
        "ticket": {
            "id": t.id,
            "status": t.status,
            "priority": t.priority,
            "title": t.title,
            "sla_due": t.sla_due.isoformat() if t.sla_due else None,
            "tenant": t.tenant_id,
            "external": t.external or {},
        },
        "steps": run_context,
        "available": lambda name: channels.available(str(name), t.tenant_id),
        **kw,
    }


class Runner:
    def __init__(
        self,
        store: TicketStore,
        playbooks: PlaybookSet,
        channels: Channels,
        *,
        workers: int = 8,
        lease: float = 300.0,
        evidence: Evidence | None = None,
        enrichers: dict[str, Enricher] | None = None,
        escalator: Escalator | None = None,
        safety: Safety | None = None,
    ):
        self.store = store
        self.playbooks = playbooks
        self.channels = channels
        self.runs = Runs(store)
        self.lease = lease
        self.evidence = evidence
        self.enrichers = enrichers or {}
        self.escalator = escalator or Escalator(store, channels, playbooks.templates)
        self.safety = safety or default_safety()
        self.owner = db.owner_id(self)
        self.listeners: list[Callable[[StepEvent], None]] = []
        self.workers = workers
        self._queue: queue.PriorityQueue[tuple[int, int, int]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._live: dict[int, _Live] = {}
        self._cv = threading.Condition()
        self._active: set[int] = set()  # queued or being worked on in this process
        self._again: set[int] = set()
        self._timers: list[tuple[float, int]] = []
        self._timer_thread: threading.Thread | None = None
        self._closed = False

    # ---- scheduling ---------------------------------------------------------------------------------
    def start(self, t: Ticket, pb: Playbook) -> int | None:
        """Start `pb` on the ticket unless it already ran / runs there; returns the new run id."""
        run_id = self.runs.create(t.id, pb.name)
        if run_id is not None:
            self.schedule(run_id)
        return run_id

    def adopt(self, run_id: int, ticket: Ticket, playbook: str) -> None:
        """Run a run that the store created already claimed by this runner (`owner=self.owner`, in the
        ticket's own transaction): no claim and no reload needed."""
        pb = self.playbooks.get(playbook)
        if pb is None:  # not loaded here: leave it to the lease and whoever has it
            return
        now = utcnow()
        run = PlaybookRun(
            id=run_id,
            ticket_id=ticket.id,
            playbook=playbook,
            status="running",
            step=0,
            attempt=0,
            context={},
            approval=None,
            next_at=now,
            owner=self.owner,
        )
        with self._cv:
            self._live[run_id] = _Live(run, pb, ticket, msgspec.convert(ticket.incident, Incident))
            if self._closed:
                return
            self._submit(run_id)

    def schedule(self, run_id: int, at: datetime | None = None) -> None:
        with self._cv:
            if self._closed:
                return
            if at is None or at <= utcnow():
                self._submit(run_id)
            else:
                self._push(at, run_id)

    def _push(self, at: datetime, run_id: int) -> None:
        heapq.heappush(self._timers, (at.timestamp(), run_id))
        if self._timer_thread is None:
            self._timer_thread = threading.Thread(target=self._timer_loop, name="soar-timers", daemon=True)
            self._timer_thread.start()
        self._cv.notify_all()

    def _submit(self, run_id: int, priority: int = 0) -> None:
        if run_id in self._active:
            self._again.add(run_id)
            return
        self._active.add(run_id)
        self._queue.put((priority, next(self._seq), run_id))
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._worker, name=f"soar-run-{i}", daemon=True) for i in range(self.workers)
            ]
            for th in self._threads:
                th.start()

    def _timer_loop(self) -> None:
        with self._cv:
            while not self._closed:
                now = time.time()
                while self._timers and self._timers[0][0] <= now:
                    self._submit(heapq.heappop(self._timers)[1])
                self._cv.wait(self._timers[0][0] - now if self._timers else None)

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item == _STOP:
                return
            run_id = item[2]
            outcome: int | datetime | None = None
            try:
                outcome = self._slice(run_id)
            except Exception:
                log.exception("playbook run %s failed unexpectedly (left for poll to resume)", run_id)
            with self._cv:
                if isinstance(outcome, int) and not self._closed:  # more steps: back on the queue
                    self._again.discard(run_id)
                    self._queue.put((outcome, next(self._seq), run_id))
                    continue
                self._live.pop(run_id, None)
                self._active.discard(run_id)
                if run_id in self._again:
                    self._again.discard(run_id)
                    self._submit(run_id)
                elif isinstance(outcome, datetime) and not self._closed:
                    self._push(outcome, run_id)
                self._cv.notify_all()

    def poll(self, now: datetime | None = None) -> int:
        """Resume runs that are due in the store (retries, restarts, other processes) and time out
        approvals past their deadline. Returns how many runs were scheduled."""
        now = now or utcnow()
        for r in self.runs.waiting():
            deadline = (r.approval or {}).get("deadline")
            if deadline and datetime.fromisoformat(deadline) <= now:
                decision = (r.approval or {}).get("on_timeout", "deny")
                self._decide(r, decision, "system:timeout", "no decision before the deadline")
        due = self.runs.due(now)
        for run_id in due:
            self.schedule(run_id)
        return len(due)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until no run of this process is running or due within `timeout`; True when all settled."""
        deadline = time.time() + timeout
        with self._cv:
            while True:
                if not self._active and (not self._timers or self._timers[0][0] > deadline):
                    return not self._timers
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._cv.wait(min(remaining, 0.5))

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        for _ in self._threads:
            self._queue.put(_STOP)
        for th in self._threads:
            th.join(timeout=30)
        if self._timer_thread is not None:
            self._timer_thread.join(timeout=5)

    # ---- approvals ----------------------------------------------------------------------------------
    def decide(self, ref: int | str, approve: bool, actor: str, comment: str | None = None) -> list[int]:
        """An analyst's decision on the ticket's waiting run(s); resumes them. Returns their ids."""
        t = self.store.require(ref)
        waiting = self.runs.waiting(t.id)
        if not waiting:
            raise TicketError(f"ticket {t.id}: no playbook run is waiting for approval")
        return [r.id for r in waiting if self._decide(r, "approve" if approve else "deny", actor, comment)]

    def _decide(self, r: PlaybookRun, decision: str, actor: str, comment: str | None) -> bool:
        step = (r.approval or {}).get("step")
        verb = "approved" if decision == "approve" else "denied"
        text = f"{r.playbook}/{step}: {verb} by {actor}" + (f": {comment}" if comment else "")
        record = {"decision": decision, "by": actor, "comment": comment, "decided_at": utcnow().isoformat()}
        ok = self.runs.decide(r, record, text, actor)
        if ok:
            self.schedule(r.id)
        return ok

    # ---- execution ----------------------------------------------------------------------------------
    def _claim(self, run_id: int) -> _Live | None:
        run = self.runs.claim(run_id, self.owner, self.lease)
        if run is None:
            return None
        pb = self.playbooks.get(run.playbook)
        t = self.store.get(run.ticket_id)
        if pb is None or t is None:
            ev = Event("playbook", f"playbook {run.playbook} is not loaded here", "failed")
            self.runs.save(run, self.owner, status="failed", lease=self.lease, events=[ev])
            return None
        return _Live(run, pb, t, msgspec.convert(t.incident, Incident))

    def _slice(self, run_id: int) -> int | datetime | None:
        """Work on a run until it has done an external step (returns its queue priority), must come back
        later (returns when), or has ended / waits for an analyst (None)."""
        live = self._live.get(run_id) or self._claim(run_id)
        if live is None:
            return None
        self._live[run_id] = live
        run, pb = live.run, live.pb
        while run.step < len(pb.steps):
            step = pb.steps[run.step]
            now = utcnow()
            ctx = StepContext(
                self.store,
                self.channels,
                self.playbooks.templates,
                live.ticket,
                live.incident,
                step_context(live.ticket, pb, run.context, now, self.channels, approval=run.approval),
                now,
                approval=run.approval,
                evidence=self.evidence,
                enrichers=self.enrichers,
                escalator=self.escalator,
                safety=self.safety,
            )
            t0 = time.perf_counter()
            try:
                res = evaluate(step, ctx)
            except Busy:
                nxt = now + timedelta(seconds=BUSY_DELAY)
                return nxt if self._save(live, "pending", next_at=nxt) else None
            self._emit(live, step, res, time.perf_counter() - t0, now)
            outcome = self._record(live, step, res, time.perf_counter() - t0, now)
            if outcome is not None or run.status != "running":
                return outcome
            if step.action in EXTERNAL and res.status not in ("skipped", "dry-run"):
                return run.step if self._save(live, "running") else None
        n = {s: sum(1 for v in run.context.values() if v.get("status") == s) for s in ("ok", "failed", "skipped")}
        final = "failed" if n["failed"] and not n["ok"] else "done"
        text = f"playbook {pb.name} finished: {n['ok']} ok, {n['failed']} failed, {n['skipped']} skipped"
        live.events.append(Event("playbook", text, final if final == "failed" else "ok", {"run": run.id}))
        self._save(live, final)
        return None

    def _record(self, live: _Live, step: Step, res: StepResult, elapsed: float, now: datetime) -> datetime | None:
        """Fold a step result into the run; saves at once when the run waits, retries later or stops."""
        run = live.run
        label = f"{live.pb.name}/{step.id} ({step.action})"
        data = {
            "step": step.id,
            "action": step.action,
            "attempt": run.attempt + 1,
            "elapsed_ms": round(elapsed * 1000, 1),
            **res.data,
        }
        if res.status == "waiting":
            run.approval = dict(res.data)
            live.events.append(Event("approval", f"{label}: {res.detail}", "waiting", data, now))
            self._save(live, "waiting")
            return None
        if res.status == "failed" and res.retryable and run.attempt + 1 < step.retry.attempts:
            run.attempt += 1
            delay = step.retry.delay(run.attempt)
            nxt = utcnow() + timedelta(seconds=delay)  # from the failure, not the step start
            text = f"{label}: attempt {run.attempt}/{step.retry.attempts} failed: {res.detail}; retry in {delay:g}s"
            live.events.append(Event("step", text, "retry", data, now))
            return nxt if self._save(live, "pending", next_at=nxt) else None
        detail = res.detail + (f" (after {run.attempt + 1} attempts)" if res.status == "failed" and run.attempt else "")
        keep = {k: v for k, v in res.data.items() if k not in CONTEXT_SKIP}
        run.context = {**run.context, step.id: {**keep, "action": step.action, "status": res.status}}
        run.step += 1
        run.attempt = 0
        live.events.append(Event("step", f"{label}: {detail}", res.status, data, now))
        stop = (res.status == "failed" and step.on_failure == "stop") or (
            res.status == "denied" and step.params.get("on_deny", "continue") == "stop"
        )
        if stop:
            self._save(live, "denied" if res.status == "denied" else "failed")
        return None

    def _save(self, live: _Live, status: str, next_at: datetime | None = None) -> bool:
        events, live.events = live.events, []
        if self.runs.save(live.run, self.owner, status=status, lease=self.lease, events=events, next_at=next_at):
            return True
        live.run.status = "lost"  # another worker took the run over (its lease ran out): stop here
        log.warning("playbook run %s: lease lost", live.run.id)
        return False

    def _emit(self, live: _Live, step: Step, res: StepResult, elapsed: float, now: datetime) -> None:
        if not self.listeners:
            return
        run = live.run
        ev = StepEvent(
            run.id,
            run.ticket_id,
            live.ticket.incident_id,
            live.pb.name,
            step.id,
            step.action,
            res.status,
            res.detail,
            now,
            elapsed,
        )
        for fn in self.listeners:
            fn(ev)
