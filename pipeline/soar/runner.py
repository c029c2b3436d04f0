"""The playbook runner: advances persistent runs step by step on a thread pool.

Each run is claimed from the store, its steps run one after another with their own timeouts, and every
result is written to the ticket's timeline. A failed step is retried with backoff by rescheduling the run
(the worker thread is released while it waits), a `wait_approval` step parks the run until an analyst
decides, and a channel whose concurrency limit is reached defers only the runs that need it. So one slow
connector holds at most its own `max_concurrency` workers and never stalls other incidents; a crash
leaves runs in the store, where `poll()` (or another process) picks them up again.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from pipeline.schema import Incident
from pipeline.soar.connectors import Channels
from pipeline.soar.models import PlaybookRun, Ticket, utcnow
from pipeline.soar.playbooks import Playbook, PlaybookSet, Step
from pipeline.soar.runs import Runs
from pipeline.soar.sla import Escalator
from pipeline.soar.steps import Busy, Enricher, Evidence, StepContext, StepResult, evaluate
from pipeline.soar.tickets import TicketError, TicketStore

log = logging.getLogger(__name__)
BUSY_DELAY = 0.2  # seconds before a step whose channel is saturated is tried again
CONTEXT_SKIP = ("raw",)  # step data kept in the timeline but not in the run context


@dataclass(slots=True)
class StepEvent:
    run_id: int
    ticket_id: int
    playbook: str
    step: str
    action: str
    status: str
    detail: str
    at: datetime
    elapsed: float


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
    ):
        self.store = store
        self.playbooks = playbooks
        self.channels = channels
        self.runs = Runs(store)
        self.lease = lease
        self.evidence = evidence
        self.enrichers = enrichers or {}
        self.escalator = escalator or Escalator(store, channels, playbooks.templates)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.listeners: list[Callable[[StepEvent], None]] = []
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="soar-run")
        self._cv = threading.Condition()
        self._active: set[int] = set()
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

    def _submit(self, run_id: int) -> None:
        if run_id in self._active:
            self._again.add(run_id)
            return
        self._active.add(run_id)
        self.pool.submit(self._work, run_id)

    def _timer_loop(self) -> None:
        with self._cv:
            while not self._closed:
                now = time.time()
                while self._timers and self._timers[0][0] <= now:
                    self._submit(heapq.heappop(self._timers)[1])
                self._cv.wait(self._timers[0][0] - now if self._timers else None)

    def _work(self, run_id: int) -> None:
        nxt = None
        try:
            nxt = self._advance(run_id)
        except Exception:
            log.exception("playbook run %s failed unexpectedly (left for poll to resume)", run_id)
        finally:
            with self._cv:
                self._active.discard(run_id)
                if run_id in self._again:
                    self._again.discard(run_id)
                    self._submit(run_id)
                elif nxt is not None and not self._closed:
                    self._push(nxt, run_id)
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
        self.pool.shutdown(wait=True)
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
        ok = self.runs.decide(
            r,
            {"decision": decision, "by": actor, "comment": comment, "decided_at": utcnow().isoformat()},
            text,
            actor,
        )
        if ok:
            self.schedule(r.id)
        return ok

    # ---- execution ----------------------------------------------------------------------------------
    def _advance(self, run_id: int) -> datetime | None:
        """Run the claimed run's steps until it ends, waits, or must come back later (returns when)."""
        run = self.runs.claim(run_id, self.owner, self.lease)
        if run is None:
            return None
        pb = self.playbooks.get(run.playbook)
        t = self.store.get(run.ticket_id)
        if pb is None or t is None:
            self._save(
                run, "failed", ("playbook", f"playbook {run.playbook} is not loaded here", "failed", None)
            )
            return None
        inc = msgspec.convert(t.incident, Incident)
        while run.step < len(pb.steps):
            step = pb.steps[run.step]
            now = utcnow()
            ctx = StepContext(
                self.store,
                self.channels,
                self.playbooks.templates,
                t,
                inc,
                step_context(t, pb, run.context, now, self.channels, approval=run.approval),
                now,
                approval=run.approval,
                evidence=self.evidence,
                enrichers=self.enrichers,
                escalator=self.escalator,
            )
            t0 = time.perf_counter()
            try:
                res = evaluate(step, ctx)
            except Busy:
                nxt = now + timedelta(seconds=BUSY_DELAY)
                self._save(run, "pending", None, next_at=nxt)
                return nxt
            nxt = self._record(run, pb, step, res, time.perf_counter() - t0, now)
            if run.status != "running":
                return nxt
        n = {
            s: sum(1 for v in run.context.values() if v.get("status") == s)
            for s in ("ok", "failed", "skipped")
        }
        final = "failed" if n["failed"] and not n["ok"] else "done"
        self._save(
            run,
            final,
            (
                "playbook",
                f"playbook {pb.name} finished: {n['ok']} ok, {n['failed']} failed, {n['skipped']} skipped",
                final if final == "failed" else "ok",
                {"run": run.id},
            ),
        )
        return None

    def _record(
        self, run: PlaybookRun, pb: Playbook, step: Step, res: StepResult, elapsed: float, now: datetime
    ) -> datetime | None:
        label = f"{pb.name}/{step.id} ({step.action})"
        data = {
            "step": step.id,
            "action": step.action,
            "attempt": run.attempt + 1,
            "elapsed_ms": round(elapsed * 1000, 1),
            **res.data,
        }
        self._emit(run, pb, step, res, elapsed, now)
        if res.status == "waiting":
            run.approval = dict(res.data)
            self._save(run, "waiting", ("approval", f"{label}: {res.detail}", "waiting", data))
            return None
        if res.status == "failed" and res.retryable and run.attempt + 1 < step.retry.attempts:
            run.attempt += 1
            delay = step.retry.delay(run.attempt)
            nxt = utcnow() + timedelta(seconds=delay)  # from the failure, not the step start
            self._save(
                run,
                "pending",
                (
                    "step",
                    f"{label}: attempt {run.attempt}/{step.retry.attempts} failed: "
                    f"{res.detail}; retry in {delay:g}s",
                    "retry",
                    data,
                ),
                next_at=nxt,
            )
            return nxt
        detail = res.detail + (
            f" (after {run.attempt + 1} attempts)" if res.status == "failed" and run.attempt else ""
        )
        keep = {k: v for k, v in res.data.items() if k not in CONTEXT_SKIP}
        run.context = {**run.context, step.id: {**keep, "action": step.action, "status": res.status}}
        run.step += 1
        run.attempt = 0
        stop = (res.status == "failed" and step.on_failure == "stop") or (
            res.status == "denied" and step.params.get("on_deny", "stop") == "stop"
        )
        status = ("denied" if res.status == "denied" else "failed") if stop else "running"
        self._save(run, status, ("step", f"{label}: {detail}", res.status, data))
        return None

    def _save(self, run: PlaybookRun, status: str, event: Any, next_at: datetime | None = None) -> None:
        if not self.runs.save(run, self.owner, status=status, lease=self.lease, event=event, next_at=next_at):
            run.status = "lost"  # another worker took the run over (lease expired): stop here
            log.warning("playbook run %s: lease lost", run.id)

    def _emit(
        self, run: PlaybookRun, pb: Playbook, step: Step, res: StepResult, elapsed: float, now: datetime
    ) -> None:
        if not self.listeners:
            return
        ev = StepEvent(
            run.id, run.ticket_id, pb.name, step.id, step.action, res.status, res.detail, now, elapsed
        )
        for fn in self.listeners:
            fn(ev)
