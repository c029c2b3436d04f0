"""Fixtures of the SOAR tests: stores on SQLite and on a real throwaway PostgreSQL (a database of the session's
cluster, `pg_base_url` in tests/conftest.py), local recording HTTP servers, incident factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.soar.actions import Soar
from pipeline.soar.connectors import Channels
from pipeline.soar.playbooks import load_playbooks
from pipeline.soar.tickets import TicketStore
from tests.pg import new_database
from tests.soar.helpers import write_yaml
from tests.soar.servers import RecordingServer, Responder


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


@pytest.fixture
def make_soar(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Soar]]:
    """`make(playbooks, channels, **Soar keywords)`: a Soar on the test's store with these playbooks."""
    made: list[Soar] = []

    def make(playbooks: list[dict[str, Any]], channels: dict[str, Any], **kw: Any) -> Soar:
        d = tmp_path / f"pb{len(made)}"
        for p in playbooks:
            write_yaml(d / f"{p['name']}.yaml", p)
        pbs = load_playbooks(d, channels=set(channels))
        assert pbs.errors == []
        soar = Soar(TicketStore(db_url), pbs, Channels({"channels": channels}), **kw)
        made.append(soar)
        return soar

    yield make
    for s in made:
        s.close()
