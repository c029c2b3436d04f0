"""`Soar`: the one way from the core into SOAR, and its clock.

- `Soar.handle(incidents, now)`: opens or updates each incident's ticket (idempotently, by incident id and
  version: a replay, a restart or a redelivery changes nothing), notes merged incidents on their survivor and
  starts the selected playbooks, in one transaction per call.
- `Soar.tick(now)`: the clock: escalates unacknowledged tickets past their SLA (once per level), resumes
  playbook runs that are due (retries, runs left by a stopped process, approvals past their deadline).

Adapters drive both: `mdr replay` (`handle_replay`), the streaming worker (`handle` per flush; `tick` on a
timer through `clock.Clock`, by one worker at a time), `mdr tickets escalate` / `mdr playbooks resume` (`tick`),
tests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.core.engine import error_text
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


@dataclass(slots=True)
class Handled:
    """What `Soar.handle` did with one incident update."""

    incident_id: str
    ticket_id: int | None
    created: bool = False
    changes: list[str] = field(default_factory=list)
    playbooks: list[str] = field(default_factory=list)  # started by this update
    merged_into: str | None = None
    error: str = ""  # why the update could not be written (logged; a dead letter, see `failed_updates`)


@dataclass(slots=True)
class Tick:
    """What one `Soar.tick` did."""

    escalations: list[Escalation] = field(default_factory=list)
    resumed: int = 0  # playbook runs scheduled again (due retries, runs whose process stopped)
    resent: int = 0  # escalation notices whose process stopped before sending them


class Soar:
    """The ticket store, the playbooks and their runner, the channels and the SLA escalator of one process."""

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

    @classmethod
    def open(
        cls,
        db_url: str | None = None,
        *,
        playbooks: str | Path | None = None,
        channels: str | Path | None = None,
        inventories: Inventories | None = None,
        create: bool = True,
        **kw: Any,
    ) -> Soar:
        """Store (`db_url`, else MDR_DB_URL, else soar.db in MDR_HOME; `create=False`: it must exist), playbooks,
        channels and the response-safety policy from their defaults; the tenants' inventories from
        `inventories`, else as saved under MDR_HOME."""
        store = TicketStore(db_url, create=create)
        chans = load_channels(channels)
        pbs = load_playbooks(playbooks, channels=chans.names() if chans.specs or chans.tenants else None)
        kw.setdefault("safety", Safety(load_policy(playbooks=playbooks), inventories or SavedInventories()))
        return cls(store, pbs, chans, **kw)

    def handle(self, incidents: Sequence[Incident], now: datetime | None = None) -> list[Handled]:
        """Take incident updates from the core: open or update their tickets and start their playbooks, in one
        transaction (results in input order; idempotent by incident id and version). Should the batch fail,
        each update is tried on its own so that one bad update cannot hold back the others."""
        incidents = list(incidents)
        if not incidents:
            return []
        try:
            done = self.store.apply_batch(incidents, self._playbooks, self.runner.owner, self.runner.lease, now)
        except Exception:
            if len(incidents) == 1:
                raise
            log.exception("batch of %d incident updates failed; applying them one by one", len(incidents))
            return [r for inc in incidents for r in self._one_by_one(inc, now)]
        return [self._result(inc, r) for inc, r in zip(incidents, done, strict=True)]

    def _one_by_one(self, inc: Incident, now: datetime | None) -> list[Handled]:
        try:
            return self.handle([inc], now)
        except Exception as e:
            log.exception("incident update %s could not be applied", inc.incident_id)
            return [Handled(inc.incident_id, None, error=error_text(e))]

    def _playbooks(self, inc: Incident) -> list[str]:
        return [p.name for p in self.playbooks.select(inc)]

    def _result(self, inc: Incident, r: Upsert | Ticket | None) -> Handled:
        if not isinstance(r, Upsert):
            return Handled(inc.incident_id, r.id if r else None, merged_into=inc.merged_into)
        for run_id, name in r.runs:
            self.runner.adopt(run_id, r.ticket, name)
        return Handled(inc.incident_id, r.ticket.id, r.created, r.changes, [n for _, n in r.runs])

    def tick(self, now: datetime | None = None) -> Tick:
        """The clock: resume the playbook runs that are due (time out approvals past their deadline first),
        send escalation notices a stopped process left unsent, then escalate unacknowledged tickets past their
        SLA. Every step is a compare-and-set in the store, so ticks that race (two processes, a manual
        `mdr tickets escalate`) still escalate each level once and resume each run once; the streaming worker
        ticks through `clock.Clock`, one worker at a time."""
        now = now or utcnow()
        resumed = self.runner.poll(now)
        resent = self.escalator.resend(now)
        return Tick(self.escalator.check(now), resumed, resent)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the runs this process started or resumed have settled (done, or waiting for an analyst or
        a later retry); False on timeout."""
        return self.runner.drain(timeout)

    def close(self) -> None:
        self.runner.close()
        self.channels.close()
        self.store.close()


def register_secrets(db_url: str | None = None, channels: str | Path | None = None) -> None:
    """Make the secrets SOAR is configured with (channel settings, the store URL's password) known to the
    redaction before anything is written: an adapter calls this first."""
    REDACTOR.add_url(db_url or db.default_url())
    register_channel_secrets(channels)


# ---- adapters --------------------------------------------------------------------------------------------
def failed_updates(incidents: list[Incident], results: list[Handled]) -> list[DeadLetter]:
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


def handle_replay(
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
        db_url,
        playbooks=playbooks,
        channels=channels,
        evidence=by_id.get,
        workers=workers,
        inventories=inventories,
    )
    try:
        incidents = res.sorted_incidents()
        record_evidence(soar.store, res.alerts, res.suppressed, incidents)  # before the tickets that point at them
        results = soar.handle(incidents)
        soar.tick()  # runs a stopped process left in this store; tickets already past their SLA
        settled = soar.drain(drain_timeout)
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
        sla_due=sla.incident_due(inc),
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
