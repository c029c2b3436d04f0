"""`act(incident)`: the entry point from the core to SOAR. Opens or updates the incident's ticket
(idempotently, by incident id) and starts its playbook(s); merged incidents are noted on their survivor.

`Soar` bundles the store, the playbooks, the channels, the runner and the SLA escalator. Adapters drive it:
`mdr replay` (`act_on_replay`), the streaming worker (`submit` per incident update: non-blocking, written in
batches by an intake thread; `tick` periodically), tests (`act`, synchronous).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.engine import error_text
from pipeline.redact import REDACTOR
from pipeline.schema import DeadLetter, Incident, encode, to_builtins
from pipeline.soar import db, sla
from pipeline.soar.connectors import Channels, load_channels
from pipeline.soar.connectors import register_secrets as register_channel_secrets
from pipeline.soar.evidence import record as record_evidence
from pipeline.soar.models import Ticket, utcnow
from pipeline.soar.playbooks import Playbook, PlaybookSet, Step, load_playbooks
from pipeline.soar.runner import Runner, step_context
from pipeline.soar.safety import Inventories, Safety, SavedInventories, default_safety, load_policy
from pipeline.soar.sla import Escalation, Escalator
from pipeline.soar.steps import Enricher, Evidence, StepContext, StepResult, evaluate
from pipeline.soar.tickets import TicketStore, Upsert

log = logging.getLogger(__name__)
INTAKE_BATCH = 200  # most incident updates written in one transaction by the intake thread


@dataclass(slots=True)
class ActResult:
    incident_id: str
    ticket_id: int | None
    created: bool = False
    changes: list[str] = field(default_factory=list)
    playbooks: list[str] = field(default_factory=list)  # started by this update
    merged_into: str | None = None
    error: str = ""  # why the update could not be written (logged; a dead letter, see `failed_updates`)


class Soar:
    def __init__(
        self,
        store: TicketStore,
        playbooks: PlaybookSet,
        channels: Channels,
        *,
        workers: int = 8,
        evidence: Evidence | None = None,
        enrichers: dict[str, Enricher] | None = None,
        safety: Safety | None = None,
    ):
        self.store = store
        self.playbooks = playbooks
        self.channels = channels
        self.escalator = Escalator(store, channels, playbooks.templates)
        self.runner = Runner(
            store,
            playbooks,
            channels,
            workers=workers,
            evidence=evidence,
            enrichers=enrichers,
            escalator=self.escalator,
            safety=safety,
        )
        self._queue: queue.Queue[Incident | None] = queue.Queue()
        self._intake: threading.Thread | None = None
        self._intake_lock = threading.Condition()
        self._pending = 0

    @classmethod
    def open(
        cls,
        db_url: str | None = None,
        *,
        playbooks: str | Path | None = None,
        channels: str | Path | None = None,
        inventories: Inventories | None = None,
        **kw: Any,
    ) -> Soar:
        """Store (`db_url`, else MDR_DB_URL, else out/soar.db), playbooks, channels and the response-safety
        policy from their defaults; the tenants' inventories from `inventories`, else as saved under MDR_HOME."""
        chans = load_channels(channels)
        pbs = load_playbooks(playbooks, channels=chans.names() if chans.specs or chans.tenants else None)
        kw.setdefault("safety", Safety(load_policy(playbooks=playbooks), inventories or SavedInventories()))
        return cls(TicketStore(db_url), pbs, chans, **kw)

    def act(self, inc: Incident) -> ActResult:
        """Take one incident update from the core (synchronously: the ticket is written when this returns)."""
        return self.act_many([inc])[0]

    def act_many(self, incidents: list[Incident]) -> list[ActResult]:
        """Several updates in one transaction (results in input order); should the batch fail, each update
        is tried on its own so that one bad update cannot hold back the others."""
        if not incidents:
            return []
        try:
            done = self.store.apply_batch(incidents, self._playbooks, self.runner.owner, self.runner.lease)
        except Exception:
            if len(incidents) == 1:
                raise
            log.exception("batch of %d incident updates failed; applying them one by one", len(incidents))
            return [r for inc in incidents for r in self._one_by_one(inc)]
        return [self._result(inc, r) for inc, r in zip(incidents, done, strict=True)]

    def _one_by_one(self, inc: Incident) -> list[ActResult]:
        try:
            return self.act_many([inc])
        except Exception as e:
            log.exception("incident update %s could not be applied", inc.incident_id)
            return [ActResult(inc.incident_id, None, error=error_text(e))]

    def _playbooks(self, inc: Incident) -> list[str]:
        return [p.name for p in self.playbooks.select(inc)]

    def _result(self, inc: Incident, r: Upsert | Ticket | None) -> ActResult:
        if not isinstance(r, Upsert):
            return ActResult(inc.incident_id, r.id if r else None, merged_into=inc.merged_into)
        for run_id, name in r.runs:
            self.runner.adopt(run_id, r.ticket, name)
        return ActResult(inc.incident_id, r.ticket.id, r.created, r.changes, [n for _, n in r.runs])

    # ---- non-blocking intake (the streaming worker) ---------------------------------------------------
    def submit(self, inc: Incident) -> None:
        """Queue an incident update and return at once; an intake thread writes what has queued up in one
        transaction per batch (so the batch grows with the load) and starts the playbooks."""
        with self._intake_lock:
            if self._intake is None:
                self._intake = threading.Thread(target=self._intake_loop, name="soar-intake", daemon=True)
                self._intake.start()
            self._pending += 1
        self._queue.put(inc)

    def _intake_loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < INTAKE_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(i is None for i in batch)
            batch = [i for i in batch if i is not None]
            try:
                self.act_many(batch)
            except Exception:
                log.exception("incident updates lost: %s", [i.incident_id for i in batch])
            with self._intake_lock:
                self._pending -= len(batch)
                self._intake_lock.notify_all()
            if stop:
                return

    def written(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted update is written (tickets open, runs started); False on timeout."""
        deadline = time.time() + timeout
        with self._intake_lock:
            while self._pending and time.time() < deadline:
                self._intake_lock.wait(deadline - time.time())
            return not self._pending

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until submitted updates are written and the runs they started have settled."""
        deadline = time.time() + timeout
        return self.written(timeout) and self.runner.drain(max(0.0, deadline - time.time()))

    def tick(self, now: datetime | None = None) -> list[Escalation]:
        """Periodic work: resume due runs, time out approvals, escalate overdue tickets."""
        self.runner.poll(now)
        return self.escalator.check(now)

    def close(self) -> None:
        if self._intake is not None:
            self._queue.put(None)
            self._intake.join(timeout=30)
        self.runner.close()
        self.channels.close()
        self.store.close()


# ---- module-level entry point ----------------------------------------------------------------------------
_default: Soar | None = None
_default_lock = threading.Lock()


def act(incident: Incident, soar: Soar | None = None) -> ActResult:
    """Open/update the incident's ticket and start its playbook(s) with `soar` or a default instance."""
    global _default
    if soar is None:
        with _default_lock:
            if _default is None:
                _default = Soar.open()
            soar = _default
    return soar.act(incident)


def register_secrets(db_url: str | None = None, channels: str | Path | None = None) -> None:
    """Make the secrets SOAR is configured with (channel settings, the store URL's password) known to the
    redaction before anything is written: an adapter calls this first."""
    REDACTOR.add_url(db_url or db.default_url())
    register_channel_secrets(channels)


# ---- adapters --------------------------------------------------------------------------------------------
def failed_updates(incidents: list[Incident], results: list[ActResult]) -> list[DeadLetter]:
    """Dead letters (reason `soar_error`, stage `soar`, the incident as raw) of the updates that failed."""
    return [DeadLetter(reason="soar_error", detail=r.error, source="soar", stage="soar", tenant_id=inc.tenant_id,
                       raw=encode(inc).decode())
            for inc, r in zip(incidents, results, strict=True) if r.error]


@dataclass(slots=True)
class ReplayTickets:
    path: Path
    tickets: int
    created: int
    runs_started: int
    settled: bool
    errors: list[str]
    dead: list[DeadLetter] = field(default_factory=list)  # incident updates that could not be written


def act_on_replay(
    res: Any,
    out_dir: str | Path,
    db_url: str | None = None,
    *,
    playbooks: str | Path | None = None,
    channels: str | Path | None = None,
    workers: int = 8,
    drain_timeout: float = 120.0,
    inventories: Inventories | None = None,
) -> ReplayTickets:
    """Tickets and playbooks for a replay's incidents (a `pipeline.replay.ReplayResult`); writes
    `tickets.jsonl` into `out_dir`. The replay's alerts and suppressed alerts are stored as evidence first
    (the console reads them); raw records of the replay's alerts are available to `collect` steps (and justify
    response actions); `inventories` (tenant -> inventory) are the replay's context's."""
    out = Path(out_dir)
    by_id = {a.alert_id: a for a in res.alerts}
    soar = Soar.open(
        db_url or db.default_url(out),
        playbooks=playbooks,
        channels=channels,
        evidence=by_id.get,
        workers=workers,
        inventories=inventories,
    )
    try:
        incidents = res.sorted_incidents()
        record_evidence(soar.store, res.alerts, res.suppressed, incidents)  # before the tickets that point at them
        results = soar.act_many(incidents)
        settled = soar.runner.drain(drain_timeout)
        soar.escalator.check()
        ids = sorted({r.ticket_id for r in results if r.ticket_id is not None and r.merged_into is None})
        path = out / "tickets.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            for tid in ids:
                t = soar.store.get(tid)
                if t is not None:
                    fh.write(orjson.dumps(soar.store.export(t)) + b"\n")
        return ReplayTickets(
            path,
            len(ids),
            sum(r.created for r in results),
            sum(len(r.playbooks) for r in results),
            settled,
            [str(e) for e in soar.playbooks.errors],
            failed_updates(incidents, results),
        )
    finally:
        soar.close()


def dry_run(
    inc: Incident,
    playbooks: PlaybookSet,
    channels: Channels,
    store: TicketStore | None = None,
    only: str | None = None,
    safety: Safety | None = None,
) -> list[tuple[Playbook, list[tuple[Step, StepResult]]]]:
    """What the incident's playbooks would do: each step's condition, parameters and outgoing request,
    without sending anything or writing to the store (`channels` should be loaded with dry_run=True)."""
    now = utcnow()
    t = (store.get(inc.incident_id) if store else None) or Ticket(
        id=0,
        incident_id=inc.incident_id,
        tenant_id=inc.tenant_id,
        title=inc.title,
        category=inc.category,
        priority=inc.priority,
        status="new",
        incident=to_builtins(inc),
        sla_due=sla.due(now, inc.priority),
        external={},
        created_at=now,
        first_seen=inc.first_seen,
        last_seen=inc.last_seen,
        escalation_level=0,
    )
    chosen = [playbooks.playbooks[only]] if only else playbooks.select(inc)
    out = []
    for pb in chosen:
        context: dict[str, Any] = {}
        results = []
        for step in pb.steps:
            ctx = StepContext(
                store,
                channels,
                playbooks.templates,
                t,
                inc,
                step_context(t, pb, context, now, channels),
                now,
                dry_run=True,
                safety=safety or default_safety(),
            )
            res = evaluate(step, ctx)
            context[step.id] = {**res.data, "action": step.action, "status": res.status}
            results.append((step, res))
        out.append((pb, results))
    return out
