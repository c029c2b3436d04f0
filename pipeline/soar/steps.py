"""The step actions. Each handler takes the run's `StepContext`, the step and its rendered parameters and
returns a `StepResult`; connector errors become failed results (retryable or not), an unconfigured channel
a skipped one, and a busy channel (its bulkhead full) raises `Busy` so the runner comes back shortly.
Connector calls are made with the step's timeout and without inline retries: the runner retries the step
with backoff through the store. Text for a channel (a notice, a ticket description) is rendered in that
channel's markup, so the values in it are escaped for the system that shows them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.schema import Alert, Incident
from pipeline.soar.connectors import (
    Channels,
    ChannelUnavailable,
    Connector,
    ConnectorError,
    DryRun,
    Message,
    TicketInfo,
)
from pipeline.soar.connectors.base import NO_RETRY
from pipeline.soar.models import Ticket
from pipeline.soar.playbooks import Step
from pipeline.soar.safety import Safety, Targets, default_safety, justify, record_approved, refusal, reserve
from pipeline.soar.templates import Templates
from pipeline.textsafe import escape

if TYPE_CHECKING:
    from pipeline.soar.sla import Escalator
    from pipeline.soar.tickets import TicketStore

RAW_LIMIT = 4096
Evidence = Callable[[str], Alert | None]
Enricher = Callable[[Incident], dict[str, Any]]


class Busy(Exception):
    """The channel's concurrency limit is reached; try the step again shortly."""


@dataclass(slots=True)
class StepResult:
    status: str  # ok | failed | skipped | waiting | denied | dry-run
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    retryable: bool = False


@dataclass(slots=True)
class StepContext:
    store: TicketStore | None
    channels: Channels
    templates: Templates
    ticket: Ticket
    incident: Incident
    vars: dict[str, Any]
    now: datetime
    approval: dict[str, Any] | None = None
    evidence: Evidence | None = None
    enrichers: dict[str, Enricher] = field(default_factory=dict)
    escalator: Escalator | None = None
    dry_run: bool = False
    safety: Safety = field(default_factory=default_safety)

    @contextmanager
    def use(self, channel: str) -> Iterator[Connector]:
        conn = self.channels.get(str(channel), self.ticket.tenant_id)
        if not conn.slots.acquire(blocking=False):
            raise Busy(channel)
        try:
            yield conn
        finally:
            conn.slots.release()


def evaluate(step: Step, ctx: StepContext) -> StepResult:
    """The step's `when:` condition, then the step itself."""
    if step.when:
        try:
            if not ctx.templates.truthy(step.when, ctx.vars):
                return StepResult("skipped", f"condition false: {step.when}")
        except Exception as e:
            return StepResult("failed", f"condition {step.when!r}: {type(e).__name__}: {e}")
    return run_step(step, ctx)


def run_step(step: Step, ctx: StepContext) -> StepResult:
    """Render the parameters and run the step's action (exceptions become results)."""
    try:
        params = ctx.templates.value(step.params, ctx.vars)
        return HANDLERS[step.action](ctx, step, params)
    except Busy:
        raise
    except DryRun as d:
        return StepResult("dry-run", f"would send {d.request['method']} {d.request['url']}", {"request": d.request})
    except ChannelUnavailable as e:
        return StepResult("skipped", f"channel unavailable: {e}")
    except ConnectorError as e:
        return StepResult("failed", str(e), retryable=e.retryable)
    except Exception as e:  # a bug or bad data in one step must not lose the run
        return StepResult("failed", f"{type(e).__name__}: {e}")


def _text(ctx: StepContext, step: Step, params: dict[str, Any], markup: str) -> str:
    """The step's `template` file or `text`, rendered for `markup` (its values escaped for it)."""
    if "template" in params:
        return ctx.templates.render_file(str(params["template"]), ctx.vars, markup).strip()
    source = step.params.get("text")
    if isinstance(source, str):
        return ctx.templates.render(source, ctx.vars, markup).strip()
    return escape(markup, str(params.get("text") or "")).strip()


def _message(ctx: StepContext, step: Step, params: dict[str, Any], markup: str) -> Message:
    inc, t = ctx.incident, ctx.ticket
    title = str(params.get("title") or f"[{t.priority}] {inc.title}")
    return Message(
        title=title,
        text=_text(ctx, step, params, markup),
        priority=t.priority,
        tenant=t.tenant_id,
        incident_id=t.incident_id,
        ticket_id=t.id,
        markup=markup,
    )


def _listify(v: Any) -> list[str]:
    if v is None:
        return []
    items = re.split(r"[,\s]+", v) if isinstance(v, str) else list(v)
    return list(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))


# ---- handlers ------------------------------------------------------------------------------------------
def do_notify(ctx: StepContext, step: Step, p: dict[str, Any]) -> StepResult:
    with ctx.use(p["channel"]) as conn:
        data = conn.notify(_message(ctx, step, p, conn.markup), timeout=step.timeout, retry=NO_RETRY)
    return StepResult("ok", f"notice sent to {p['channel']} ({conn.type})", {"channel": p["channel"], **data})


def do_enrich(ctx: StepContext, step: Step, p: dict[str, Any]) -> StepResult:
    inc = ctx.incident
    out: dict[str, Any] = {}
    parts: list[str] = []
    if "asset" in p["sources"]:
        asset: dict[str, Any] = {"hosts": inc.entities.hosts, "dst_ips": inc.entities.dst_ips}
        if inc.asset is not None:
            asset["inventory"] = ctx.vars["incident"].get("asset")
        if "asset" in ctx.enrichers:
            asset.update(ctx.enrichers["asset"](inc))
        out["asset"] = asset
        parts.append(
            f"asset {inc.asset.name} ({inc.asset.criticality})"
            if inc.asset
            else f"hosts {', '.join(inc.entities.hosts[:3]) or 'unknown'}"
        )
    if "intel" in p["sources"]:
        intel = list(ctx.vars["incident"].get("intel", []))
        if "intel" in ctx.enrichers:
            intel += ctx.enrichers["intel"](inc).get("intel", [])
        out["intel"] = intel
        parts.append(f"{len(intel)} intel hits")
    if "related" in p["sources"] and ctx.store is not None:
        out["related"] = ctx.store.related(ctx.ticket, int(p["related_limit"]))
        parts.append(f"{len(out['related'])} related tickets")
    return StepResult("ok", "enriched: " + ", ".join(parts), out)


def do_collect(ctx: StepContext, step: Step, p: dict[str, Any]) -> StepResult:
    ids = ctx.incident.alert_ids[: p["limit"]] if p["alerts"] else []
    raw: dict[str, str] = {}
    if p["raw"] and ctx.evidence is not None:
        for aid in ids:
            a = ctx.evidence(aid)
            if a is not None and a.raw:
                raw[aid] = a.raw[:RAW_LIMIT]
    note = "" if ctx.evidence is not None or not p["raw"] else " (raw records not available to this runner)"
    return StepResult(
        "ok",
        f"evidence: {len(ids)} of {len(ctx.incident.alert_ids)} alert ids, {len(raw)} raw records{note}",
        {"alert_ids": ids, "alert_total": len(ctx.incident.alert_ids), "raw": raw},
    )


def ticket_info(ctx: StepContext, text: str, markup: str = "raw") -> TicketInfo:
    inc, t = ctx.incident, ctx.ticket
    obs = [("ip", v) for v in inc.entities.src_ips[:50]] + [("hostname", v) for v in inc.entities.hosts[:20]]
    obs += [("url", v) for v in inc.entities.urls[:20]] + [("domain", v) for v in inc.entities.domains[:20]]
    obs += [("filename", v) for v in inc.entities.files[:20]]
    return TicketInfo(
        ticket_id=t.id,
        incident_id=t.incident_id,
        tenant=t.tenant_id,
        title=inc.title,
        text=text,
        priority=t.priority,
        category=inc.category,
        created_ms=int(t.created_at.timestamp() * 1000),
        tags=["mdr", f"tenant:{t.tenant_id}", f"category:{inc.category}", *inc.attack[:10]],
        observables=obs,
        markup=markup,
    )


def _ticket_text(ctx: StepContext, step: Step, p: dict[str, Any], markup: str) -> str:
    """The step's text, else the `ticket` template, else the incident title; rendered for `markup`."""
    if "template" in p or "text" in p:
        return _text(ctx, step, p, markup)
    if ctx.templates.has("ticket"):
        return ctx.templates.render_file("ticket", ctx.vars, markup)
    return escape(markup, ctx.incident.title)


def do_ticket(ctx: StepContext, step: Step, p: dict[str, Any]) -> StepResult:
    t, action = ctx.ticket, p["action"]
    channel: str = p.get("channel") or ""  # validated: open and update name one, escalate may
    external = dict(t.external or {})
    if action == "escalate" and not channel:
        if ctx.dry_run or ctx.escalator is None:
            return StepResult("dry-run" if ctx.dry_run else "skipped", "would escalate the ticket")
        reason = str(p.get("reason") or _ticket_text(ctx, step, p, "raw"))
        esc = ctx.escalator.escalate_now(t, reason, actor=f"playbook:{ctx.vars.get('playbook')}")
        return StepResult(
            "ok",
            f"escalated to tier {esc.tier}" if esc else "already escalated",
            {"tier": esc.tier, "notices": esc.notices} if esc else {},
        )
    with ctx.use(channel) as conn:
        text = _ticket_text(ctx, step, p, conn.markup)
        if action == "open":
            if channel in external:
                return StepResult("ok", f"already open in {channel}: {external[channel]}", external[channel])
            ref = conn.open_ticket(ticket_info(ctx, text, conn.markup), timeout=step.timeout, retry=NO_RETRY)
        else:
            if channel not in external and not ctx.dry_run:
                return StepResult("failed", f"no {channel} ticket to {action}; open it first")
            old = external.get(channel) or {"alert_id": "(new)", "key": "(new)"}
            fn = conn.update_ticket if action == "update" else conn.escalate_ticket
            ref = {**old, **fn(old, text, timeout=step.timeout, retry=NO_RETRY)}
    if ctx.store is not None:
        ctx.store.set_external(t.id, channel, {k: v for k, v in ref.items() if k != "comment_id"})
    t.external = {**external, channel: ref}
    return StepResult("ok", f"{action} in {channel}: {ref}", {"channel": channel, **ref})


def _per_target(
    ctx: StepContext,
    step: Step,
    p: dict[str, Any],
    key: str,
    call: Callable[..., dict[str, Any]],
) -> StepResult:
    """`call(connector, target, reason=, ref=, timeout=, retry=)` for each target in `p[key]` that the response
    safety rules let through (pipeline/soar/safety.py); the others are held: the run waits for an analyst,
    with each held target's reason and every target's justification on the ticket's timeline."""
    targets = _listify(p[key])
    if not targets:
        return StepResult("skipped", f"nothing to act on ({key} is empty)")
    kind = "ip" if step.action == "block_ip" else "host"
    why = {t: justify(ctx.incident, t, kind, ctx.evidence) for t in targets}
    a = ctx.approval or {}
    with ctx.use(p["channel"]) as conn:
        if a.get("step") == step.id and a.get("decision"):
            return _after_approval(ctx, step, p, conn, call)
        policy = ctx.safety.policy.for_tenant(ctx.ticket.tenant_id)
        protect = Targets.parse(conn.settings.get("protect") or [], f"channel {p['channel']}: protect")
        inventory = ctx.safety.inventory(ctx.ticket.tenant_id)
        held = {t: r for t in targets if (r := refusal(policy, inventory, t, kind, protect)) is not None}
        allowed = {t: why[t] for t in targets if t not in held}
        if ctx.dry_run and held:
            return StepResult("dry-run", f"would {step.action} {', '.join(allowed) or 'nothing'} and hold for approval "
                              + "; ".join(f"{t} ({r})" for t, r in held.items()), {"held": held, "targets": why})
        granted = list(allowed)
        if allowed and ctx.store is not None and not ctx.dry_run:
            granted, used = reserve(ctx.store, ctx.ticket, step.action, p["channel"], allowed, policy.rate_limit,
                                    ctx.now)
            limit = policy.rate_limit
            for t in allowed:
                if t not in granted:
                    held[t] = (f"rate limit: {used} automated actions for tenant {ctx.ticket.tenant_id} in the last "
                               f"{limit.window:g}s (limit {limit.actions})")
        done, failed, retryable = _act(conn, granted, call, _common(ctx, step, p))
    data: dict[str, Any] = {"channel": p["channel"], "done": done, "failed": failed,
                            "justification": {t: why[t] for t in targets}}
    if held:
        deadline = ctx.now + timedelta(seconds=policy.approval_timeout)
        prompt = f"{step.action} held for approval: " + "; ".join(f"{t} ({r})" for t, r in held.items())
        done_text = f"; done: {', '.join(targets_of(done))}" if done else ""
        return StepResult(
            "waiting",
            f"{prompt}{done_text} (mdr tickets approve|deny {ctx.ticket.id}, until {deadline:%Y-%m-%d %H:%M UTC})",
            {"step": step.id, "prompt": prompt, "deadline": deadline.isoformat(), "on_timeout": "deny",
             "requested_at": ctx.now.isoformat(), "held": [{"target": t, "reason": r} for t, r in held.items()],
             **data},
        )
    return _outcome(step, p, targets, data, retryable)


def _common(ctx: StepContext, step: Step, p: dict[str, Any]) -> dict[str, Any]:
    reason = str(p.get("reason") or f"MDR incident {ctx.incident.incident_id}: {ctx.incident.title}")
    return {"reason": reason, "ref": ctx.ticket.incident_id, "timeout": step.timeout, "retry": NO_RETRY}


def _act(conn: Connector, targets: list[str], call: Callable[..., dict[str, Any]], common: dict[str, Any]
         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    done, failed, retryable = [], [], False
    for target in targets:
        try:
            done.append(call(conn, target, **common))
        except ConnectorError as e:
            failed.append({"target": target, "error": str(e)})
            retryable = retryable or e.retryable
    return done, failed, retryable


def targets_of(done: list[dict[str, Any]]) -> list[str]:
    return [str(d.get("ip") or d.get("host")) for d in done]


def _outcome(step: Step, p: dict[str, Any], targets: list[str], data: dict[str, Any], retryable: bool,
             note: str = "") -> StepResult:
    failed = data["failed"]
    if failed:
        return StepResult(
            "failed",
            f"{step.action}: {len(failed)} of {len(targets)} failed: {failed[0]['error']}{note}",
            data,
            retryable,
        )
    return StepResult("ok", f"{step.action}: {', '.join(targets)} via {p['channel']}{note}", data)


def _after_approval(ctx: StepContext, step: Step, p: dict[str, Any], conn: Connector,
                    call: Callable[..., dict[str, Any]]) -> StepResult:
    """The step again once an analyst decided on the targets it held: act on them (and retry the ones that
    failed before), or record that they were not approved."""
    a = ctx.approval or {}
    by, before = str(a.get("by", "?")), list(a.get("done") or [])
    held = [h["target"] for h in a.get("held") or []]
    why = a.get("justification") or {}
    if a.get("decision") != "approve":
        return StepResult("denied", f"{step.action}: {', '.join(held)} not approved by {by}",
                          {"channel": p["channel"], "done": before, "held": a.get("held"), "by": by})
    retry = [f["target"] for f in a.get("failed") or []]
    done, failed, retryable = _act(conn, held + retry, call, _common(ctx, step, p))
    if ctx.store is not None:
        acted = set(targets_of(done))
        record_approved(ctx.store, ctx.ticket, step.action, p["channel"],
                        {t: why.get(t, t) for t in held if t in acted}, by, ctx.now)
    data = {"channel": p["channel"], "done": before + done, "failed": failed, "approved_by": by,
            "justification": why}
    return _outcome(step, p, held + retry, data, retryable, f" (approved by {by})")


def do_block_ip(ctx: StepContext, step: Step, p: dict[str, Any]) -> StepResult:
    return _per_target(ctx, step, p, "ips", lambda c, ip, **kw: c.block_ip(ip, duration=float(p["duration"]), **kw))


def do_isolate_host(ctx: StepContext, step: Step, p: dict[str, Any]) -> StepResult:
    return _per_target(ctx, step, p, "hosts", lambda c, h, **kw: c.isolate_host(h, **kw))


def do_wait_approval(ctx: StepContext, step: Step, p: dict[str, Any]) -> StepResult:
    a = ctx.approval or {}
    if a.get("step") == step.id and a.get("decision"):
        by = a.get("by", "?")
        data = {"approved": a["decision"] == "approve", "by": by, "comment": a.get("comment")}
        if data["approved"]:
            return StepResult("ok", f"approved by {by}", data)
        return StepResult("denied", f"denied by {by}" + ("" if p["on_deny"] == "stop" else "; continuing"), data)
    if ctx.dry_run:
        return StepResult(
            "dry-run",
            f"would wait for approval: {p['prompt']} (dry run assumes approval)",
            {"approved": True},
        )
    deadline = ctx.now + timedelta(seconds=float(p["timeout"]))
    return StepResult(
        "waiting",
        f"waiting for approval until {deadline:%Y-%m-%d %H:%M UTC}: {p['prompt']} "
        f"(mdr tickets approve|deny {ctx.ticket.id})",
        {
            "step": step.id,
            "prompt": str(p["prompt"]),
            "deadline": deadline.isoformat(),
            "on_timeout": p["on_timeout"],
            "requested_at": ctx.now.isoformat(),
        },
    )


HANDLERS: dict[str, Callable[[StepContext, Step, dict[str, Any]], StepResult]] = {
    "notify": do_notify,
    "enrich": do_enrich,
    "collect": do_collect,
    "ticket": do_ticket,
    "block_ip": do_block_ip,
    "isolate_host": do_isolate_host,
    "wait_approval": do_wait_approval,
}
