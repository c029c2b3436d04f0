"""Users, passwords (argon2id), API tokens, login sessions with their CSRF token, and the login rate limit.

Everything lives in the store, so several console processes share users, sessions and the rate limit.
Secrets are never stored: passwords as argon2id hashes, API tokens and session ids as SHA-256 of 256-bit
random values. Sessions end after `IDLE` without use or `ABSOLUTE` after login, and on logout.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update

from pipeline.console.models import ROLES, ApiToken, LoginFailure, User, WebSession
from pipeline.soar.models import utcnow
from pipeline.tenant import TenantError, check_tenant

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_USER = 5  # failed logins per name within LOGIN_WINDOW before the name is locked out for a while
MAX_FAILURES_CLIENT = 20  # ... per client address
MIN_PASSWORD = 12
TOKEN_PREFIX = "mdr_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters
_DUMMY = _hasher.hash("not a password of anyone")


class AuthError(ValueError):
    """A user-management request that cannot be done (bad name, role, tenant, weak password, unknown user)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: name, role and the tenants they may see (None: every tenant, an unrestricted admin)."""

    name: str
    role: str
    tenants: frozenset[str] | None

    @property
    def can_act(self) -> bool:
        return self.role in ("admin", "analyst")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees(self, tenant: str | None) -> bool:
        return tenant is not None and (self.tenants is None or tenant in self.tenants)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def principal(u: User) -> Principal:
    tenants = frozenset(u.tenants or ())
    return Principal(u.name, u.role, None if u.role == "admin" and not tenants else tenants)


# ---- user management (mdr users ...) ------------------------------------------------------------------------
def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"a password has at least {MIN_PASSWORD} characters")


def add_user(store: Any, name: str, role: str, tenants: list[str], password: str) -> User:
    if not _NAME.match(name):
        raise AuthError("a user name is 1-128 characters: letters, digits and _ . @ - (starting with a letter "
                        "or digit)")
    if role not in ROLES:
        raise AuthError(f"role is one of {', '.join(ROLES)}")
    tenants = sorted(set(tenants))
    if role != "admin" and not tenants:
        raise AuthError(f"a{'n' if role == 'analyst' else ''} {role} needs at least one --tenant")
    for t in tenants:
        try:
            check_tenant(t)
        except TenantError as e:
            raise AuthError(str(e)) from None
    check_password(password)
    with store.tx() as s:
        if s.get(User, name) is not None:
            raise AuthError(f"user {name} exists")
        u = User(name=name, role=role, tenants=tenants, password_hash=_hasher.hash(password), disabled=False,
                 created_at=utcnow())
        s.add(u)
    return u


def set_password(store: Any, name: str, password: str) -> None:
    check_password(password)
    with store.tx() as s:
        u = s.get(User, name)
        if u is None:
            raise AuthError(f"no user {name}")
        u.password_hash = _hasher.hash(password)
        s.execute(delete(WebSession).where(WebSession.user == name))  # every session of the old password ends


def remove_user(store: Any, name: str) -> None:
    with store.tx() as s:
        u = s.get(User, name)
        if u is None:
            raise AuthError(f"no user {name}")
        s.execute(delete(WebSession).where(WebSession.user == name))
        s.execute(delete(ApiToken).where(ApiToken.user == name))
        s.delete(u)


def users(store: Any) -> list[User]:
    with store.tx() as s:
        return list(s.scalars(select(User).order_by(User.name)))


def new_token(store: Any, name: str, days: float | None = None) -> str:
    """A new API token for `name` (printed once; only its digest is kept)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with store.tx() as s:
        if s.get(User, name) is None:
            raise AuthError(f"no user {name}")
        s.add(ApiToken(digest=digest(token), user=name, created_at=now,
                       expires_at=now + timedelta(days=days) if days else None))
    return token


# ---- authentication ----------------------------------------------------------------------------------------
def _active(s: Any, name: str) -> User | None:
    u = s.get(User, name)
    return u if u is not None and not u.disabled else None


def verify_password(store: Any, name: str, password: str) -> Principal | None:
    """The user's principal when the password is right (constant work for unknown names)."""
    with store.tx() as s:
        u = _active(s, name) if _NAME.match(name) else None
        stored = u.password_hash if u is not None else _DUMMY
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if u is None:
        return None
    if _hasher.check_needs_rehash(stored):
        with store.tx() as s:
            s.execute(update(User).where(User.name == name).values(password_hash=_hasher.hash(password)))
    return principal(u)


def from_token(store: Any, token: str) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    now = utcnow()
    with store.tx() as s:
        row = s.get(ApiToken, digest(token))
        if row is None or (row.expires_at is not None and row.expires_at <= now):
            return None
        u = _active(s, row.user)
        if u is None:
            return None
        if row.last_used is None or now - row.last_used > timedelta(minutes=1):
            row.last_used = now
        return principal(u)


# ---- sessions ----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Session:
    who: Principal
    csrf: str
    digest: str
    flash: str | None = None


def open_session(store: Any, who: Principal) -> tuple[str, str]:
    """A new session for `who`; returns (cookie value, CSRF token)."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    with store.tx() as s:
        s.add(WebSession(digest=digest(sid), user=who.name, csrf=csrf, created_at=now, last_seen=now))
        s.execute(delete(WebSession).where(WebSession.created_at < now - ABSOLUTE))  # housekeeping
    return sid, csrf


def session(store: Any, sid: str, now: datetime | None = None) -> Session | None:
    """The live session of a cookie value (its idle clock restarted), or None."""
    if not sid or len(sid) > 100:
        return None
    now = now or utcnow()
    key = digest(sid)
    with store.tx() as s:
        row = s.get(WebSession, key)
        if row is None:
            return None
        if now - row.last_seen > IDLE or now - row.created_at > ABSOLUTE:
            s.delete(row)
            return None
        u = _active(s, row.user)
        if u is None:
            s.delete(row)
            return None
        flash = row.flash
        if flash is not None or now - row.last_seen > timedelta(seconds=30):
            row.last_seen, row.flash = now, None
        return Session(principal(u), row.csrf, key, flash)


def set_flash(store: Any, sess: Session, text: str) -> None:
    with store.tx() as s:
        s.execute(update(WebSession).where(WebSession.digest == sess.digest).values(flash=text[:500]))


def close_session(store: Any, sid: str) -> None:
    with store.tx() as s:
        s.execute(delete(WebSession).where(WebSession.digest == digest(sid)))


def csrf_ok(sess: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(sess.csrf.encode(), str(token).encode())


# ---- login rate limit --------------------------------------------------------------------------------------
def locked_out(store: Any, name: str, client: str, now: datetime | None = None) -> bool:
    """Too many recent failures for this name or this client address."""
    since = (now or utcnow()) - LOGIN_WINDOW
    with store.tx() as s:
        def count(key: str) -> int:
            q = select(func.count()).select_from(LoginFailure).where(LoginFailure.key == key, LoginFailure.at >= since)
            return s.scalar(q) or 0

        return count(f"user:{name[:128]}") >= MAX_FAILURES_USER or count(f"ip:{client}") >= MAX_FAILURES_CLIENT


def login_failed(store: Any, name: str, client: str) -> None:
    now = utcnow()
    with store.tx() as s:
        s.add_all([LoginFailure(key=f"user:{name[:128]}", at=now), LoginFailure(key=f"ip:{client}", at=now)])
        s.execute(delete(LoginFailure).where(LoginFailure.at < now - 2 * LOGIN_WINDOW))


def login_succeeded(store: Any, name: str) -> None:
    with store.tx() as s:
        s.execute(delete(LoginFailure).where(LoginFailure.key == f"user:{name[:128]}"))
