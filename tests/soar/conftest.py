"""Fixtures of the SOAR tests: stores on SQLite and on a real throwaway PostgreSQL (tests/pg.py), local
recording HTTP servers, incident factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.soar.tickets import TicketStore
from tests.pg import new_database, postgres_or_skip
from tests.soar.servers import RecordingServer, Responder


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    with postgres_or_skip() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/soar.db"
    return new_database(request.getfixturevalue("pg_base_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[TicketStore]:
    s = TicketStore(db_url)
    yield s
    s.close()


@pytest.fixture
def http_server() -> Iterator[Callable[..., RecordingServer]]:
    servers: list[RecordingServer] = []

    def make(responder: Responder | None = None) -> RecordingServer:
        s = RecordingServer(responder)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()
