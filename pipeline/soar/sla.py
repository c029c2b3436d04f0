"""Response-time SLA and escalation.

Response times per priority follow the managed-service terms (P1 15 min, P2 30 min, P3 2 h, P4 4 h, P5 8 h);
the clock starts when the pipeline raised the incident (its `detected_at`, event time), the same rule for
incidents, tickets and reports (pipeline.context.priority, docs/priority.md "One clock"). A ticket still `new` (not
acknowledged) at its due time is escalated: tier 1 at the due time, tier 2 one response time later, tier 3
two response times later (on-call analyst, senior experts, chief expert group), each tier's channels
notified once. A ticket opened more than a day after its detection (a replayed past day) is history: breached,
never escalated. The escalation level is kept in the ticket as (priority, tier) and advanced with a
compare-and-set, so each level fires exactly once across concurrent checkers; a priority raised later
makes a new level (its own due time is recomputed) and escalates again.

The notices of a level are written with it, as an outbox (pipeline/soar/notices.py): a process that stops
between the escalation and its notices leaves them to the next tick (`resend`), so none is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError

from pipeline.context import priority as clock
from pipeline.schema import PRIORITIES, Incident
from pipeline.soar import db
from pipeline.soar.connectors import Channels, ChannelUnavailable, ConnectorError, Message
from pipeline.soar.models import Notice, Ticket, utcnow
from pipeline.soar.notices import Notices
from pipeline.soar.templates import Templates

if TYPE_CHECKING:
    from pipeline.soar.tickets import TicketStore

RESPONSE = {p: int(d.total_seconds()) for p, d in clock.SLA.items()}  # seconds per priority
MAX_TIER = 3
HISTORY = timedelta(days=1)  # a ticket opened this long after detection is history: not escalated
TIER_NAMES = {1: "on-call analyst", 2: "senior experts", 3: "chief expert group"}


def response_time(priority: str) -> timedelta:
    return timedelta(seconds=RESPONSE.get(priority, RESPONSE["P3"]))


def due(start: datetime, priority: str) -> datetime:
    return start + response_time(priority)


def incident_due(inc: Incident) -> datetime:
    """A ticket's deadline: the incident's detection + the response time of its priority."""
    return clock.response_due(inc)


def sla_state(t: Ticket, now: datetime) -> str:
    """met | breached | pending of a ticket at `now` (the one clock rule)."""
    return clock.sla_state(t.sla_due, t.acknowledged_at, now, t.sla_breached)


def rank(priority: str | None) -> int:
    """P1 -> 5 ... P5 -> 1; None (never escalated) -> 0."""
    return len(PRIORITIES) - PRIORITIES.index(priority) if priority in PRIORITIES else 0


def history(t: Ticket) -> bool:
    """A ticket opened more than HISTORY after its incident was detected (a replay of a past day, a backfill):
    its SLA counts as breached like any other, but nobody is paged about it."""
    return t.created_at - (t.sla_due - response_time(t.priority)) > HISTORY


def tier_due(t: Ticket, now: datetime) -> int:
    """The escalation tier a ticket has reached at `now` (0: not due, or history)."""
    if t.acknowledged_at is not None or t.status != "new" or now < t.sla_due or history(t):
        return 0
    late = (now - t.sla_due) / response_time(t.priority)
    return min(MAX_TIER, 1 + int(late))


def pending_tier(t: Ticket, now: datetime) -> int:
    """The tier to escalate to now, or 0 when this ticket's current level was already escalated."""
    tier = tier_due(t, now)
    if tier == 0:
        return 0
    if (rank(t.priority), tier) > (rank(t.escalation_priority), t.escalation_level):
        return tier
    return 0


@dataclass(slots=True)
class Escalation:
    ticket_id: int
    priority: str
    tier: int
    notices: list[dict[str, Any]] = field(default_factory=list)


class Escalator:
    def __init__(self, store: TicketStore, channels: Channels, templates: Templates | None = None):
        self.store = store
        self.channels = channels
        self.templates = templates or Templates()
        self.notices = Notices(store, db.owner_id(self))

    def check(self, now: datetime | None = None) -> list[Escalation]:
        """Escalate every overdue unacknowledged ticket whose current level has not been escalated."""
        now = now or utcnow()
        done = []
        for t in self.store.unacknowledged_due(now):
            tier = pending_tier(t, now)
            if tier:
                late = int((now - t.sla_due).total_seconds() // 60)
                esc = self._escalate(
                    t,
                    tier,
                    breach=True,
                    now=now,
                    reason=f"not acknowledged {late} min after its {t.priority} due time",
                )
                if esc is not None:
                    done.append(esc)
        return done

    def resend(self, now: datetime | None = None) -> int:
        """Send the notices a stopped process left unsent (their lease ran out); returns how many."""
        now = now or utcnow()
        n = 0
        for notice in self.notices.stale(now):
            t = self.store.get(notice.ticket_id)
            if t is not None and self.notices.claim(notice, now):
                self._deliver(t, notice, again=True)
                n += 1
        return n

    def escalate_now(self, t: Ticket, reason: str, actor: str = "playbook") -> Escalation | None:
        """A playbook or analyst escalation: the next tier, at once (not an SLA breach)."""
        tier = min(MAX_TIER, max(1, t.escalation_level + 1 if t.escalation_priority == t.priority else 1))
        return self._escalate(t, tier, breach=False, now=utcnow(), reason=reason, actor=actor)

    def _escalate(
        self, t: Ticket, tier: int, *, breach: bool, now: datetime, reason: str, actor: str = "system:sla"
    ) -> Escalation | None:
        names = self.channels.tiers[min(tier, len(self.channels.tiers)) - 1] if self.channels.tiers else []
        text = f"escalated to tier {tier} ({TIER_NAMES[tier]}) at {t.priority}: {reason}" + (
            f"; notifying {', '.join(names)}" if names else "; no escalation channel configured"
        )
        outbox = self.notices.new(t.id, names, {"tier": tier, "priority": t.priority, "reason": reason}, now)
        if not self.store.mark_escalated(
            t,
            tier,
            breach=breach,
            text=text,
            actor=actor,
            now=now,
            data={"tier": tier, "priority": t.priority, "channels": names},
            notices=outbox,
        ):
            return None
        return Escalation(t.id, t.priority, tier, [self._deliver(t, notice) for notice in outbox])

    def message(self, t: Ticket, tier: int, reason: str, markup: str = "raw") -> Message:
        """The escalation notice, its text in `markup` (the receiving channel's)."""
        ctx = {
            "ticket": {
                "id": t.id,
                "priority": t.priority,
                "status": t.status,
                "title": t.title,
                "sla_due": t.sla_due.isoformat(),
                "tenant": t.tenant_id,
            },
            "incident": t.incident,
            "tier": tier,
            "tier_name": TIER_NAMES[tier],
            "reason": reason,
        }
        title = f"[ESCALATION T{tier}] {t.priority} ticket #{t.id}: {t.title}"
        text = f"Ticket #{t.id} ({t.priority}, tenant {t.tenant_id}) {reason}.\n\n{t.title}"
        if self.templates.has("escalation"):
            try:
                text = self.templates.render_file("escalation", ctx, markup)
            except TemplateError as e:  # a broken template must not stop the escalation
                text, markup = f"{text}\n\n(escalation template failed: {type(e).__name__}: {e})", "raw"
        else:
            markup = "raw"
        return Message(
            title=title,
            text=text,
            priority=t.priority,
            tenant=t.tenant_id,
            incident_id=t.incident_id,
            ticket_id=t.id,
            kind="escalation",
            markup=markup,
        )

    def _deliver(self, t: Ticket, notice: Notice, again: bool = False) -> dict[str, Any]:
        """Send one notice of the outbox and record how it went (the `notify` event on the ticket's timeline)."""
        name, tier, reason = notice.channel, notice.data["tier"], notice.data["reason"]
        try:
            conn = self.channels.get(name, t.tenant_id)
            with conn.slots:
                data = conn.notify(self.message(t, tier, reason, conn.markup))
            status, detail = "ok", f"escalation notice sent to {name}"
        except ChannelUnavailable as e:
            status, detail, data = "skipped", f"escalation notice to {name} skipped: {e}", {}
        except ConnectorError as e:
            status, detail, data = "failed", f"escalation notice to {name} failed: {e}", {}
        if again:
            detail += f" (tier {tier}; the process that escalated stopped before sending it)"
        self.notices.finish(notice, status, detail, data)
        return {"channel": name, "status": status, "detail": detail}
