"""The console's audit log: every action, login and refused attempt, as (who, role, what, tenant, target, when,
outcome, client address, detail). Written in its own transaction, so a refused or failed action is logged too."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from pipeline.console.auth import Principal
from pipeline.console.models import AuditEntry
from pipeline.soar.models import utcnow


def log(store: Any, who: Principal | str, action: str, outcome: str = "ok", *, tenant: str | None = None,
        target: str | None = None, client: str | None = None, detail: dict[str, Any] | None = None) -> None:
    name, role = (who.name, who.role) if isinstance(who, Principal) else (who[:128], None)
    with store.tx() as s:
        s.add(AuditEntry(at=utcnow(), actor=name, role=role, action=action, tenant_id=tenant,
                         target=(target or "")[:200] or None, outcome=outcome, client=(client or "")[:64] or None,
                         detail=detail))


def entries(store: Any, who: Principal, limit: int = 200, actor: str | None = None) -> list[AuditEntry]:
    """The newest entries `who` may read: an unrestricted admin every one, others their tenants' and their own."""
    q = select(AuditEntry)
    if who.tenants is not None:
        q = q.where(AuditEntry.tenant_id.in_(sorted(who.tenants)) | (AuditEntry.actor == who.name))
    if actor:
        q = q.where(AuditEntry.actor == actor)
    with store.tx() as s:
        return list(s.scalars(q.order_by(AuditEntry.id.desc()).limit(limit)))
