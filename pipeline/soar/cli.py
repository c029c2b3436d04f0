"""`mdr tickets ...` and `mdr playbooks ...` (Typer sub-apps registered in pipeline/cli.py).

Heavy imports (SQLAlchemy, httpx) happen inside the commands so that `mdr --help` stays fast.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer
from rich.console import Console

from pipeline.cliargs import tenant_option, usage_error
from pipeline.clitext import Table, lit
from pipeline.schema import PRIORITIES
from pipeline.soar.lifecycle import STATUSES, VERDICTS

# Option values as choices (typer shows them in --help and rejects others with exit code 2)
Status = StrEnum("Status", {s: s for s in STATUSES})  # type: ignore[misc]  # members from data
Target = StrEnum("Target", {s: s for s in STATUSES if s != "new"})  # type: ignore[misc]  # members from data
Verdict = StrEnum("Verdict", {v: v for v in VERDICTS})  # type: ignore[misc]  # members from data
Priority = StrEnum("Priority", {p: p for p in PRIORITIES})  # type: ignore[misc]  # members from data

if TYPE_CHECKING:
    from pipeline.soar.actions import Soar
    from pipeline.soar.tickets import TicketStore

tickets_app = typer.Typer(
    help="Tickets: list, show, acknowledge, note, close with a verdict, approve, escalate.",
    no_args_is_help=True,
)
playbooks_app = typer.Typer(help="Playbooks: validate, dry-run, resume pending runs.", no_args_is_help=True)
verdict_app = typer.Typer(help="Alert verdicts: mark alerts or a whole incident true / false positive "
                               "(the noise classifier learns from them: mdr model retrain).", no_args_is_help=True)
err = Console(stderr=True)
out = Console()

DbOpt = Annotated[str | None, typer.Option("--db", help="Store: sqlite:///file, a file path or postgresql://... "
                                          "(default: MDR_DB_URL, else soar.db in MDR_HOME)")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Analyst name (default: the login name)")]
PlaybooksOpt = Annotated[str | None, typer.Option("--playbooks", help="Playbook file or directory")]
ChannelsOpt = Annotated[str | None, typer.Option("--channels", help="Channel configuration (channels.yaml)")]


def _ref(value: str) -> str:
    """A ticket reference checked before any store is opened (exit 2 with one line when it cannot be one)."""
    from pipeline.soar.tickets import TicketRefError, parse_ref

    try:
        parse_ref(value)
    except TicketRefError as e:
        usage_error(str(e))
    return value


IdArg = Annotated[str, typer.Argument(help="Ticket number or incident id", callback=_ref)]


def _actor(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "analyst"


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


@contextmanager
def _closing(thing: C) -> Iterator[C]:
    """Yield `thing` and close it after; a TicketError becomes one error line and exit status 1 (2 for a
    reference that cannot be a ticket)."""
    from pipeline.soar.tickets import TicketError, TicketRefError

    try:
        yield thing
    except TicketRefError as e:
        usage_error(str(e))
    except TicketError as e:
        err.print(lit(("error:", "red"), " ", e))
        raise typer.Exit(1) from None
    finally:
        thing.close()


def _store(db: str | None) -> AbstractContextManager[TicketStore]:
    """The existing store (a missing one is reported with where it was looked for)."""
    from pipeline.soar.tickets import TicketStore

    return _closing(TicketStore(db, create=False))


def _soar(db: str | None, playbooks: str | None, channels: str | None, create: bool = False
          ) -> AbstractContextManager[Soar]:
    from pipeline.soar.actions import Soar

    return _closing(Soar.open(db, playbooks=playbooks, channels=channels, create=create))


def _ts(d: datetime | None) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S") if d else "-"


def ticket_table(rows: list[Any], now: datetime) -> Table:
    """Tickets as a table that reads at 80 columns (long titles end in an ellipsis); the tenant and verdict
    columns appear when they say something."""
    from pipeline.soar.sla import sla_state
    from pipeline.tables import fitted

    tenants = len({t.tenant_id for t in rows}) > 1
    verdicts = any(t.verdict for t in rows)
    headers = ["id", "prio", "status", *(["tenant"] if tenants else []), "category", "title", "SLA due", "SLA",
               *(["verdict"] if verdicts else [])]
    cells = [[str(t.id), t.priority, t.status, *([t.tenant_id] if tenants else []), t.category, t.title,
              t.sla_due.strftime("%m-%d %H:%M") if t.sla_due else "-", sla_state(t, now),
              *([t.verdict or ""] if verdicts else [])] for t in rows]
    return fitted(headers, cells, out.width, wide="title")


# ---- tickets ----------------------------------------------------------------------------------------------
@tickets_app.command("list")
def tickets_list(
    status: Annotated[Status | None, typer.Option(help="Only this status")] = None,
    priority: Annotated[Priority | None, typer.Option(help="Only this priority")] = None,
    tenant: Annotated[str | None, tenant_option("Tenant id")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
    db: DbOpt = None,
) -> None:
    """List tickets (most urgent first)."""
    with _store(db) as store:
        rows = store.list(status=status and status.value, priority=priority and priority.value, tenant=tenant,
                          limit=limit)
        if as_json:
            for t in rows:
                line = json.dumps({k: v for k, v in store.export(t).items() if k != "timeline"}, default=str)
                out.print(lit(line), soft_wrap=True, highlight=False)  # one JSON line (ASCII: no control chars)
            return
        if not rows:
            from pipeline.soar.db import shown

            err.print(lit(f"no tickets{' matching the filters' if status or priority or tenant else ''} in "
                          f"{shown(store.url)}"))
            return
        out.print(ticket_table(rows, datetime.now(UTC)))


@tickets_app.command("show")
def tickets_show(ref: IdArg, as_json: Annotated[bool, typer.Option("--json")] = False, db: DbOpt = None) -> None:
    """A ticket with its playbook runs and timeline."""
    with _store(db) as store:
        d = store.export(store.require(ref))
        if as_json:
            out.print_json(json.dumps(d), ensure_ascii=True)
            return
        out.print(lit((f"#{d['id']}", "bold"), f" [{d['priority']}] ", d["title"]))
        for k in (
            "status",
            "tenant_id",
            "category",
            "incident_id",
            "assignee",
            "verdict",
            "sla_due",
            "sla_breached",
            "escalation_level",
            "first_seen",
            "created_at",
            "acknowledged_at",
            "resolved_at",
            "closed_at",
            "external",
        ):
            out.print(lit(f"  {k:>16}: ", d[k]))
        for r in d["playbooks"]:
            out.print(lit(f"  {'playbook':>16}: ", f"{r['name']} ({r['status']}, next step {r['step']})"))
        tab = Table("at", "kind", "status", "actor", "text", title="timeline")
        for e in d["timeline"]:
            tab.add_row(e["at"][:19], e["kind"], e["status"] or "", e["actor"], e["text"][:160])
        out.print(tab)


@tickets_app.command("ack")
def tickets_ack(ref: IdArg, by: ByOpt = None, db: DbOpt = None) -> None:
    """Acknowledge a ticket (stops SLA escalation)."""
    with _store(db) as store:
        t = store.acknowledge(ref, _actor(by))
        out.print(lit(f"ticket {t.id}: acknowledged by ", t.assignee))


@tickets_app.command("status")
def tickets_status(
    ref: IdArg,
    to: Annotated[Target, typer.Argument(help="The status to move to")],
    by: ByOpt = None,
    db: DbOpt = None,
) -> None:
    """Move a ticket to another status (invalid transitions are refused)."""
    with _store(db) as store:
        t = store.transition(ref, to.value, actor=_actor(by))
        out.print(f"ticket {t.id}: {t.status}")


@tickets_app.command("assign")
def tickets_assign(ref: IdArg, assignee: str, by: ByOpt = None, db: DbOpt = None) -> None:
    """Assign a ticket to an analyst."""
    with _store(db) as store:
        t = store.assign(ref, assignee, _actor(by))
        out.print(lit(f"ticket {t.id}: assigned to ", t.assignee))


@tickets_app.command("note")
def tickets_note(ref: IdArg, text: str, by: ByOpt = None, db: DbOpt = None) -> None:
    """Add a note to a ticket's timeline."""
    with _store(db) as store:
        t = store.note(ref, text, _actor(by))
        out.print(f"ticket {t.id}: note added")


@tickets_app.command("close")
def tickets_close(
    ref: IdArg,
    verdict: Annotated[Verdict, typer.Option(help="The closing verdict")],
    comment: Annotated[str | None, typer.Option(help="Closing note")] = None,
    verdicts: Annotated[Path | None, typer.Option(help="Verdicts JSONL file to append to")] = None,
    by: ByOpt = None,
    db: DbOpt = None,
) -> None:
    """Close a ticket with a verdict; the verdict is published (JSONL file + registered sinks) and recorded for
    each of the incident's alerts (the alert verdicts `mdr model retrain` learns from)."""
    from pipeline.soar import verdicts as pub

    with _store(db) as store:
        t, path, rec = pub.close(store, ref, verdict.value, _actor(by), comment, verdicts)
        n = rec.alerts if rec else 0
        out.print(lit(f"ticket {t.id}: closed as {t.verdict} (verdict appended to ", path, f"; {n} alert verdicts)"))


VerdictOpt = Annotated[Verdict, typer.Option(help="The verdict")]


def _tenants_of(store: TicketStore, alert_ids: list[str], tenant: str | None) -> dict[str, list[str]]:
    """tenant -> alert ids, from the store's evidence (restricted to `tenant` when given); ids the store does not
    hold go to `tenant`, and need it."""
    from sqlalchemy import select

    from pipeline.soar.evidence import StoredAlert
    from pipeline.soar.tickets import TicketError

    q = select(StoredAlert.alert_id, StoredAlert.tenant_id).where(StoredAlert.alert_id.in_(alert_ids))
    if tenant is not None:
        q = q.where(StoredAlert.tenant_id == tenant)
    found: dict[str, set[str]] = {}
    with store.tx() as s:
        for aid, t in s.execute(q):
            found.setdefault(aid, set()).add(t)
    groups: dict[str, list[str]] = {}
    for aid in dict.fromkeys(alert_ids):
        ts = found.get(aid) or ({tenant} if tenant else set())
        if not ts:
            raise TicketError(f"alert {aid} is not in the store: give its --tenant to record a verdict without its "
                              "content")
        if len(ts) > 1:
            raise TicketError(f"alert {aid} is in tenants {', '.join(sorted(ts))}: give --tenant")
        groups.setdefault(ts.pop(), []).append(aid)
    return groups


@verdict_app.command("alert")
def verdict_alert(
    alert_ids: Annotated[list[str], typer.Argument(help="Alert ids")],
    verdict: VerdictOpt,
    tenant: Annotated[str | None, tenant_option("Tenant of the alerts (needed for alerts the store does not hold)")
                      ] = None,
    comment: Annotated[str | None, typer.Option()] = None,
    by: ByOpt = None,
    db: DbOpt = None,
) -> None:
    """Mark alerts true or false positive (their content is the store's: the alerts mdr replay and the worker
    stored)."""
    from pipeline.soar.verdicts import path_for, record_verdict

    with _store(db) as store:
        n = content = 0
        for t, ids in _tenants_of(store, alert_ids, tenant).items():
            rec = record_verdict(store, t, ids, verdict.value, _actor(by), source="cli", comment=comment,
                                 path=path_for(store.url))
            n, content = n + rec.alerts, content + rec.with_content
        out.print(f"{n} alert verdicts recorded ({content} with their content)")


@verdict_app.command("incident")
def verdict_incident(
    ref: IdArg,
    verdict: VerdictOpt,
    comment: Annotated[str | None, typer.Option()] = None,
    by: ByOpt = None,
    db: DbOpt = None,
) -> None:
    """Mark every alert of an incident (ticket number or incident id) true or false positive, without closing
    its ticket; alerts judged on their own keep their verdict."""
    from pipeline.soar.verdicts import record_incident_verdict

    with _store(db) as store:
        rec = record_incident_verdict(store, ref, verdict.value, _actor(by), source="cli", comment=comment)
        kept = f"; {rec.outranked} keep their own alert verdict" if rec.outranked else ""
        out.print(f"{rec.alerts} alert verdicts recorded ({rec.with_content} with their content{kept})")


@verdict_app.command("list")
def verdict_list(
    tenant: Annotated[str | None, tenant_option("Only this tenant's verdicts")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
    db: DbOpt = None,
) -> None:
    """Recorded alert verdicts, oldest first."""
    from pipeline.soar.verdicts import list_verdicts

    with _store(db) as store:
        rows = list_verdicts(store, tenant, content=True)
    if as_json:
        for r, doc in rows:
            out.print_json(json.dumps({"tenant_id": r.tenant_id, "alert_id": r.alert_id, "verdict": r.verdict,
                                       "analyst": r.analyst, "source": r.source, "incident_id": r.incident_id,
                                       "at": r.at.isoformat(), "has_content": doc is not None}))
        return
    tab = Table("tenant", "alert", "verdict", "analyst", "source", "incident", "at")
    for r, _ in rows:
        tab.add_row(r.tenant_id, r.alert_id, r.verdict, r.analyst, r.source, r.incident_id or "", _ts(r.at))
    out.print(tab)


def _decision(approve: bool, doc: str) -> Callable[..., None]:
    """The `approve` (`deny`) command: decide the playbook step waiting on a ticket and resume its runs."""

    def command(
        ref: IdArg,
        comment: Annotated[str | None, typer.Option()] = None,
        by: ByOpt = None,
        db: DbOpt = None,
        playbooks: PlaybooksOpt = None,
        channels: ChannelsOpt = None,
        wait: Annotated[float, typer.Option(help="Seconds to wait for the resumed steps")] = 60.0,
    ) -> None:
        with _soar(db, playbooks, channels) as soar:
            t = soar.store.require(ref)
            before = len(soar.store.timeline(t.id))
            runs = soar.runner.decide(t.id, approve, _actor(by), comment)
            settled = soar.runner.drain(wait)
            for e in soar.store.timeline(t.id)[before:]:
                out.print(lit(f"{e.kind:>10} {e.status or '':>8}  ", e.text))
            out.print(
                f"ticket {t.id}: {'approved' if approve else 'denied'} ({len(runs)} run(s) resumed"
                + ("" if settled else "; steps still pending, `mdr playbooks resume` continues them")
                + ")"
            )

    command.__doc__ = doc
    return command


tickets_approve = tickets_app.command("approve")(
    _decision(True, "Approve the playbook step waiting on this ticket; the run resumes.")
)
tickets_deny = tickets_app.command("deny")(
    _decision(False, "Deny the playbook step waiting on this ticket (the run stops, or continues if the step says so).")
)


@tickets_app.command("escalate")
def tickets_escalate(
    now: Annotated[str | None, typer.Option(help="Check as of this ISO time")] = None,
    db: DbOpt = None,
    playbooks: PlaybooksOpt = None,
    channels: ChannelsOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for resumed playbook steps")] = 60.0,
) -> None:
    """Run the SOAR clock now (the streaming worker runs it every --soar-tick seconds): escalate unacknowledged
    tickets past their due time (once per level) and resume the playbook runs that are due."""
    with _soar(db, playbooks, channels) as soar:
        _tick(soar, datetime.fromisoformat(now) if now else None, wait)


def _tick(soar: Soar, when: datetime | None, wait: float) -> None:
    """`soar.tick(when)`, its escalations and resumed runs printed; then the resumed runs' steps (for `wait`)."""
    done = soar.tick(when)
    for e in done.escalations:
        notes = ", ".join(f"{n['channel']}: {n['status']}" for n in e.notices) or "no channel"
        out.print(lit(f"ticket {e.ticket_id}: {e.priority} escalated to tier {e.tier} ({notes})"))
    settled = soar.drain(wait)
    out.print(f"{len(done.escalations)} escalation(s), {done.resumed} run(s) resumed"
              + ("" if settled else "; some are still waiting for their retry time"))


# ---- playbooks --------------------------------------------------------------------------------------------
@playbooks_app.command("validate")
def playbooks_validate(
    path: Annotated[str | None, typer.Argument(help="Playbook file or directory")] = None,
    channels: ChannelsOpt = None,
) -> None:
    """Check playbooks: schema, actions and parameters, templates, conditions, channel names (file:line)."""
    from pipeline.soar.connectors import ChannelConfigError, load_channels
    from pipeline.soar.playbooks import load_playbooks

    try:
        chans = load_channels(channels)
    except ChannelConfigError as e:
        err.print(lit((e, "red")))
        raise typer.Exit(1) from None
    names = chans.names() if chans.specs or chans.tenants else None
    pbs = load_playbooks(path, channels=names)
    for problem in pbs.errors:
        err.print(lit((problem, "red")))
    err.print(
        f"{len(pbs.playbooks)} playbooks loaded from {len(pbs.files)} files, {len(pbs.errors)} problems"
        + ("" if names is not None else " (no channel configuration: channel names not checked)")
    )
    from pipeline.soar.safety import PolicyError, load_policy

    try:
        err.print(lit("response safety: ", load_policy(playbooks=path).origin))
    except PolicyError as e:
        err.print(lit((e, "red")))
        raise typer.Exit(1) from None
    if pbs.errors:
        raise typer.Exit(1)


def _incidents(path: Path) -> list[Any]:
    from pipeline.schema import decode_incident

    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("{") and "\n{" not in text:
        return [decode_incident(text)]
    return [decode_incident(line) for line in text.splitlines() if line.strip()]


@playbooks_app.command("run")
def playbooks_run(
    incident: Annotated[Path, typer.Argument(help="Incident JSON (or JSONL) file")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run/--no-dry-run", help="Show each step and what it would send")
    ] = True,
    playbook: Annotated[str | None, typer.Option(help="Run this playbook, not the selected")] = None,
    db: DbOpt = None,
    playbooks: PlaybooksOpt = None,
    channels: ChannelsOpt = None,
) -> None:
    """Run the incident's playbooks: by default a dry run that sends nothing and writes nothing."""
    from pipeline.soar.actions import dry_run as simulate
    from pipeline.soar.connectors import load_channels
    from pipeline.soar.playbooks import load_playbooks

    incs = _incidents(incident)
    if not dry_run:
        with _soar(db, playbooks, channels, create=True) as soar:
            results = soar.handle(incs)
            for inc, r in zip(incs, results, strict=True):
                if r.error:
                    err.print(lit((f"incident {inc.incident_id}: not written: ", "red"), r.error))
                    continue
                out.print(lit(
                    f"incident {inc.incident_id}: ticket {r.ticket_id}"
                    f"{' (new)' if r.created else ''}, playbooks started: {', '.join(r.playbooks) or 'none'}"
                ))
            soar.drain(120)
        if any(r.error for r in results):
            raise typer.Exit(1)
        return
    chans = load_channels(channels, dry_run=True)
    pbs = load_playbooks(playbooks)
    if playbook and playbook not in pbs.playbooks:
        err.print(lit((f"no playbook {playbook!r}", "red"), f" (loaded: {', '.join(sorted(pbs.playbooks))})"))
        raise typer.Exit(1)
    for inc in incs:
        runs = simulate(inc, pbs, chans, only=playbook)
        if not runs:
            out.print(lit(f"incident {inc.incident_id}: no playbook selected"))
        for pb, steps_run in runs:
            head = f"incident {inc.incident_id} [{inc.priority} {inc.category}] -> playbook {pb.name}"
            out.print(lit((head, "bold")))
            for step, res in steps_run:
                out.print(lit(f"  {step.id:<22} {step.action:<13} {res.status:<8} ", res.detail), soft_wrap=True)
                req = res.data.get("request")
                if req:
                    out.print_json(json.dumps(req, default=str), indent=2, ensure_ascii=True)


@playbooks_app.command("resume")
def playbooks_resume(
    db: DbOpt = None,
    playbooks: PlaybooksOpt = None,
    channels: ChannelsOpt = None,
    wait: Annotated[float, typer.Option(help="Seconds to keep running due steps")] = 60.0,
) -> None:
    """Run what is due: retries, runs left by a stopped process, approvals past their deadline (the SOAR clock,
    as `mdr tickets escalate`: overdue tickets escalate too)."""
    with _soar(db, playbooks, channels) as soar:
        _tick(soar, None, wait)


def replay_tickets(res: Any, out_dir: Path, db: str | None, inventories: Any = None) -> Path:
    """The SOAR part of `mdr replay`: tickets and playbooks for the incidents (response targets checked against
    `inventories`, the replay's tenant -> asset inventory); returns tickets.jsonl."""
    from pipeline.schema import encode
    from pipeline.soar.actions import handle_replay

    r = handle_replay(res, out_dir, db, inventories=inventories)
    for e in r.errors:
        err.print(lit(("skipped playbook", "yellow"), " ", e))
    if r.dead:  # after the replay's own dead letters (write_outputs)
        with (Path(out_dir) / "dlq.jsonl").open("ab") as fh:
            fh.writelines(encode(d) + b"\n" for d in r.dead)
        err.print(lit((f"{len(r.dead)} incident updates could not be written", "yellow"), " (dlq.jsonl, soar_error)"))
    err.print(
        f"tickets: {r.tickets} for this replay ({r.created} new), {r.runs_started} playbook runs started"
        + ("" if r.settled else "; some steps still wait for a retry (`mdr playbooks resume`)")
    )
    return r.path
