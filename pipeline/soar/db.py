"""Database plumbing: engines for SQLite (default) and PostgreSQL (`MDR_DB_URL`), Alembic upgrade on open, and
an insert-or-ignore that means the same on both backends.

SQLite runs in WAL mode and takes the write lock at the start of every transaction (`BEGIN IMMEDIATE`), so
concurrent writers queue (busy timeout) instead of failing on a read-to-write upgrade. PostgreSQL serializes
migrations with an advisory lock; row updates use `SELECT ... FOR UPDATE`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from pipeline.errors import UsageError, UserError
from pipeline.redact import REDACTOR

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
_MIGRATE_LOCK = 0x6D6472  # pg advisory lock key ("mdr")


URL_HELP = "sqlite:///path/to/soar.db (or a plain file path) or postgresql://user:password@host:5432/dbname"


class StoreError(UserError):
    """The ticket store cannot be found or reached; the message says where it looked and how to point
    elsewhere."""


def default_path() -> Path:
    """The store every command uses by default: `soar.db` in MDR_HOME (default `~/.mdr`)."""
    from pipeline.context.store import mdr_home

    return mdr_home() / "soar.db"


def default_url() -> str:
    """`MDR_DB_URL`, else the SQLite file `default_path()`: one store for replay, tickets, report and worker."""
    return os.environ.get("MDR_DB_URL") or f"sqlite:///{default_path()}"


def owner_id(obj: object) -> str:
    """Who holds a claimed row (a playbook run, an escalation notice, a lease): this host, process and `obj`."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(obj):x}"


def normalize_url(url: str) -> str:
    """A plain file path is a SQLite store; postgres:// and postgresql:// use psycopg 3 (the driver this
    project installs)."""
    if "://" not in url and not url.startswith("sqlite:"):
        return f"sqlite:///{url}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def shown(url: str) -> str:
    """The URL with its password hidden (for messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return url


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other backends and in-memory databases)."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _source(given: str | None) -> str:
    if given:
        return "--db"
    return "MDR_DB_URL" if os.environ.get("MDR_DB_URL") else "the default: soar.db in MDR_HOME"


def open_engine(url: str | None = None, *, create: bool = True, pool_size: int = 10) -> tuple[str, Engine]:
    """(normalized URL, migrated engine) of the store at `url` (default: `default_url()`).

    With `create=False` a SQLite file that does not exist is an error (reading commands must not leave an
    empty store behind). Raises StoreError / UsageError with one line naming the cause and the fix."""
    given = url
    url = normalize_url(url or default_url())
    path = sqlite_path(url)
    if not create and path is not None and not path.is_file():
        raise StoreError(f"no ticket store at {path} ({_source(given)}); `mdr replay` or `mdr worker` creates it, "
                         f"or point to another one with --db URL or MDR_DB_URL")
    try:
        engine = make_engine(url, pool_size=pool_size)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as e:
        raise UsageError(f"--db {given or url!r} is not a store URL ({e}); use {URL_HELP}") from None
    except OSError as e:
        raise StoreError(f"cannot create the ticket store at {path}: {e.strerror or e}; "
                         "point --db or MDR_DB_URL to a writable place") from None
    try:
        migrate(engine)
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as e:
        engine.dispose()
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise StoreError(f"cannot open the ticket store {shown(url)}: {reason}; check that it runs and "
                         f"accepts connections, or point --db / MDR_DB_URL elsewhere ({URL_HELP})") from None
    return url, engine


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    REDACTOR.add_url(url)  # the password never shows in a log, a timeline or an error
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 60, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _sqlite_pragmas(engine)
        return engine
    # no pre-ping (a round trip per transaction): a dropped connection fails one step, which is retried
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=60000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine, revision: str = "head", *, down: bool = False) -> None:
    """Upgrade the schema to `revision` (default: the newest Alembic revision), or downgrade it to `revision`
    ("base": no table) with `down`; serialized across processes."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


CHUNK = 500  # rows per multi-row statement (SQLite limits the bound parameters of one statement)


# The dialects' INSERT with ON CONFLICT (their Insert classes are unrelated types, each with on_conflict_*).
_INSERT: dict[str, Callable[..., Any]] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert_ignore(model: Any, rows: Any, keys: list[str], dialect: str) -> Any:
    ins = _INSERT.get(dialect)
    if ins is None:
        raise NotImplementedError(f"insert-or-ignore for {dialect}")
    table = getattr(model, "__table__", model)
    return ins(table).values(rows).on_conflict_do_nothing(index_elements=keys)


def insert_ignore_returning(
    session: Session, model: Any, rows: list[dict[str, Any]], keys: list[str], returning: tuple[Any, ...]
) -> list[Any]:
    """INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING `returning`: the rows actually inserted.
    (rowcount is unreliable here, with implicit RETURNING on PostgreSQL.)"""
    dialect = session.get_bind().dialect.name
    out: list[Any] = []
    for i in range(0, len(rows), CHUNK):
        out += session.execute(_insert_ignore(model, rows[i : i + CHUNK], keys, dialect).returning(*returning)).all()
    return out


def insert_ignore(session: Session, model: Any, rows: list[dict[str, Any]] | dict[str, Any], keys: list[str]) -> int:
    """INSERT ... ON CONFLICT (keys) DO NOTHING; returns how many rows were inserted."""
    rows = [rows] if isinstance(rows, dict) else rows
    if not rows:
        return 0
    table = getattr(model, "__table__", model)
    return len(insert_ignore_returning(session, model, rows, keys, tuple(table.primary_key.columns)))


def upsert(session: Session, model: Any, rows: list[dict[str, Any]], keys: list[str], update: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET the `update` columns to the new row's values."""
    ins = _INSERT.get(session.get_bind().dialect.name)
    if ins is None:
        raise NotImplementedError(f"upsert for {session.get_bind().dialect.name}")
    table = getattr(model, "__table__", model)
    for i in range(0, len(rows), CHUNK):
        stmt = ins(table).values(rows[i : i + CHUNK])
        session.execute(stmt.on_conflict_do_update(index_elements=keys,
                                                   set_={c: getattr(stmt.excluded, c) for c in update}))


def insert_rows(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """A plain multi-row INSERT (Core, executemany)."""
    if rows:
        session.execute(insert(getattr(model, "__table__", model)), rows)
