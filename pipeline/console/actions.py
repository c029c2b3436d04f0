"""The console's writes: each one finds its target within the asker's tenants (else `NotFound`), checks the
role (viewers read only: `Forbidden`), then calls the same ticket, playbook and verdict functions as the CLI
(`TicketStore`, `Runner.decide`, `verdicts.close`, `verdicts.record_verdict`) and writes the audit log, refused
and failed attempts included. No business rule lives here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.console import audit, queries
from pipeline.console.auth import Principal
from pipeline.soar import evidence, verdicts
from pipeline.soar.models import STATUSES, VERDICTS, Ticket
from pipeline.soar.tickets import TicketError, TicketStore

T = TypeVar("T")
MAX_TEXT = 4000  # longest note / comment kept
ALERT_VERDICTS = ("true_positive", "false_positive")  # what the console offers for a single alert


class ConsoleError(Exception):
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ConsoleError):
    status = 404


class Forbidden(ConsoleError):
    status = 403


class Conflict(ConsoleError):
    """The ticket functions refused (invalid transition, nothing waiting for approval, bad verdict)."""

    status = 409


@dataclass(slots=True)
class Context:
    """What the actions need besides the store: where verdicts go and the playbook runner (for approvals)."""

    store: TicketStore
    verdicts_file: Path | None = None
    runner: Callable[[], Any] | None = None  # returns a soar Runner, created on first use


def _text(v: str | None, what: str, required: bool = False) -> str | None:
    v = (v or "").strip()
    if required and not v:
        raise ConsoleError(f"{what} is empty")
    if len(v) > MAX_TEXT:
        raise ConsoleError(f"{what} is longer than {MAX_TEXT} characters")
    return v or None


class Actions:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.store = ctx.store

    # ---- plumbing -------------------------------------------------------------------------------------
    def _ticket(self, who: Principal, ref: int | str) -> Ticket:
        with self.store.tx() as s:
            t = queries.ticket(s, who, ref)
        if t is None:
            raise NotFound(f"no ticket {ref}")
        return t

    def _run(self, who: Principal, action: str, tenant: str | None, target: str, client: str | None,
             detail: dict[str, Any] | None, fn: Callable[[], T]) -> T:
        """Check the role, run `fn` and audit the outcome."""
        if not who.can_act:
            audit.log(self.store, who, action, "refused", tenant=tenant, target=target, client=client,
                      detail={"why": "read-only role"})
            raise Forbidden(f"the {who.role} role cannot {action}")
        try:
            out = fn()
        except TicketError as e:
            audit.log(self.store, who, action, "refused", tenant=tenant, target=target, client=client,
                      detail={**(detail or {}), "why": str(e)})
            raise Conflict(str(e)) from None
        except ConsoleError as e:
            audit.log(self.store, who, action, "refused", tenant=tenant, target=target, client=client,
                      detail={**(detail or {}), "why": e.message})
            raise
        except Exception as e:
            audit.log(self.store, who, action, "failed", tenant=tenant, target=target, client=client,
                      detail={**(detail or {}), "why": type(e).__name__})
            raise
        audit.log(self.store, who, action, "ok", tenant=tenant, target=target, client=client, detail=detail)
        return out

    def _on_ticket(self, who: Principal, ref: int | str, action: str, client: str | None,
                   detail: dict[str, Any] | None, fn: Callable[[Ticket], T]) -> T:
        t = self._ticket(who, ref)
        return self._run(who, action, t.tenant_id, f"ticket:{t.id}", client, detail, lambda: fn(t))

    # ---- ticket actions (TicketStore, as `mdr tickets ...`) ---------------------------------------------
    def acknowledge(self, who: Principal, ref: int | str, client: str | None = None) -> Ticket:
        return self._on_ticket(who, ref, "acknowledge", client, None,
                               lambda t: self.store.acknowledge(t.id, who.name))

    def assign(self, who: Principal, ref: int | str, assignee: str, client: str | None = None) -> Ticket:
        name = _text(assignee, "assignee", required=True)
        assert name is not None
        if len(name) > 128:
            raise ConsoleError("assignee is longer than 128 characters")
        return self._on_ticket(who, ref, "assign", client, {"assignee": name},
                               lambda t: self.store.assign(t.id, name, who.name))

    def note(self, who: Principal, ref: int | str, text: str, client: str | None = None) -> Ticket:
        body = _text(text, "note", required=True)
        assert body is not None
        return self._on_ticket(who, ref, "note", client, {"chars": len(body)},
                               lambda t: self.store.note(t.id, body, who.name))

    def set_status(self, who: Principal, ref: int | str, status: str, client: str | None = None) -> Ticket:
        if status not in STATUSES or status == "closed":
            raise ConsoleError(f"status is one of {', '.join(s for s in STATUSES if s != 'closed')} "
                               "(close with a verdict)")
        return self._on_ticket(who, ref, "status", client, {"to": status},
                               lambda t: self.store.transition(t.id, status, actor=who.name))

    def close(self, who: Principal, ref: int | str, verdict: str, note: str | None = None,
              client: str | None = None) -> Ticket:
        if verdict not in VERDICTS:
            raise ConsoleError(f"verdict is one of {', '.join(VERDICTS)}")
        comment = _text(note, "note")
        return self._on_ticket(
            who, ref, "close", client, {"verdict": verdict},
            lambda t: verdicts.close(self.store, t.id, verdict, who.name, comment, self.ctx.verdicts_file).ticket)

    def decide(self, who: Principal, ref: int | str, approve: bool, comment: str | None = None,
               client: str | None = None) -> list[int]:
        """Approve or deny the playbook step waiting on the ticket; the runner resumes the run(s)."""
        text = _text(comment, "comment")
        runner = self.ctx.runner

        def run(t: Ticket) -> list[int]:
            if runner is None:
                raise ConsoleError("this console runs no playbooks (approvals are off)")
            return list(runner().decide(t.id, approve, who.name, text))

        return self._on_ticket(who, ref, "approve" if approve else "deny", client, None, run)

    # ---- alert verdicts (verdicts.record_verdict: the store's alert verdicts, which `mdr model retrain` reads) ----
    def judge_alert(self, who: Principal, alert_id: str, verdict: str, note: str | None = None,
                    ticket_ref: int | str | None = None, client: str | None = None) -> Path:
        """Mark one alert true or false positive, from its incident's ticket when given."""
        with self.store.tx() as s:
            a = queries.alert(s, who, alert_id)
            t = queries.ticket(s, who, ticket_ref) if ticket_ref is not None else None
        if a is None:
            raise NotFound(f"no alert {alert_id}")
        if ticket_ref is not None and (t is None or t.tenant_id != a.tenant_id
                                       or a.alert_id not in (t.incident or {}).get("alert_ids", [])):
            raise NotFound(f"alert {alert_id} is not part of ticket {ticket_ref}")
        comment = _text(note, "note")

        def run() -> Path:
            if verdict not in ALERT_VERDICTS:
                raise ConsoleError(f"an alert verdict is one of {', '.join(ALERT_VERDICTS)}")
            return self._record(a.tenant_id, a.alert_id, verdict, who, comment, t.id if t else None, "console")

        return self._run(who, "alert_verdict", a.tenant_id, f"alert:{a.alert_id}", client, {"verdict": verdict}, run)

    def unsuppress(self, who: Principal, alert_id: str, note: str | None = None, client: str | None = None) -> Path:
        """Release a suppressed alert: it is recorded as a true positive (the model learns it was wrong)."""
        with self.store.tx() as s:
            row = queries.suppressed_one(s, who, alert_id)
        if row is None:
            raise NotFound(f"no suppressed alert {alert_id}")
        comment = _text(note, "note")

        def run() -> Path:
            if not evidence.unsuppress(self.store, row.tenant_id, row.alert_id, who.name):
                raise Conflict(f"alert {alert_id} was already released")
            return self._record(row.tenant_id, row.alert_id, "true_positive", who, comment, None, "unsuppress")

        return self._run(who, "unsuppress", row.tenant_id, f"alert:{row.alert_id}", client,
                         {"score": row.score, "threshold": row.threshold, "model": row.model_version}, run)

    def _record(self, tenant: str, alert_id: str, verdict: str, who: Principal, comment: str | None,
                ticket_id: int | None, source: str) -> Path:
        rec = verdicts.record_verdict(self.store, tenant, [alert_id], verdict, who.name, source=source,
                                      comment=comment, ticket_id=ticket_id, path=self.ctx.verdicts_file)
        assert rec.path is not None
        return rec.path
