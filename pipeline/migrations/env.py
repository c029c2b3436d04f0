"""Alembic environment of the SOAR store. Used by `pipeline.soar.db.migrate` (which hands in a connection) and
by the alembic CLI (`alembic -x url=... upgrade head` with script_location = pipeline/migrations)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

# the tables on Base beyond the SOAR models: console users/tokens/sessions/audit, the report's alert_stats /
# funnel_stats, stored and suppressed alerts
import pipeline.console.models
import pipeline.soar.evidence
import pipeline.store.alert_stats  # noqa: F401
from pipeline.soar.db import default_url, normalize_url
from pipeline.soar.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or default_url()
    engine = create_engine(normalize_url(url))
    with engine.begin() as c:
        _run(c)


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
