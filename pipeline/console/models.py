"""Tables of the console in the SOAR store (Alembic revision 0003_console): users, API tokens, sessions,
failed logins (the login rate limit) and the audit log. Shared by every console process on the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.soar.models import Base, JsonType, UTCDateTime

ROLES = ("admin", "analyst", "viewer")


class User(Base):
    __tablename__ = "console_users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    tenants: Mapped[list[str]] = mapped_column(JsonType, default=list)  # empty for an admin: every tenant
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """An API token: only its SHA-256 is kept (tokens are 256-bit random, so no slow hash is needed)."""

    __tablename__ = "console_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("console_users.name", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A login session: the cookie holds a random id, the store its SHA-256, the CSRF token and a flash."""

    __tablename__ = "console_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("console_users.name", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    flash: Mapped[str | None] = mapped_column(Text)


class LoginFailure(Base):
    """One failed login, by the name tried and the client address (the rate limit counts recent rows)."""

    __tablename__ = "console_login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200))  # "user:NAME" or "ip:ADDRESS"
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Who did what, when, to what, and how it ended (ok | refused | failed)."""

    __tablename__ = "console_audit"
    __table_args__ = (Index("ix_console_audit_at", "at"), Index("ix_console_audit_tenant_at", "tenant_id", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str | None] = mapped_column(String(128))
    target: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    client: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
