"""Fixtures of the console tests.

- `lab_store_template`: the bundled lab day, and a labeled WAF sample with the default noise model (suppressed
  alerts), replayed (the real `mdr replay` core and its SOAR adapter) for two tenants, `shop` and `acme`, into
  one SQLite store, once per session; `lab_store` is a fresh copy per test.
- `users`: one console user per role and tenant scope (see `USERS`) in a store.
- `console_server`: a real console (uvicorn) on a store, torn down after the test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.console.auth import add_user
from pipeline.console.web import ConsoleConfig
from pipeline.soar.tickets import TicketStore
from tests.console.server import PASSWORD, ConsoleServer

ROOT = Path(__file__).resolve().parents[2]
LAB1 = ROOT / "samples" / "lab-1"
LABELED = ROOT / "tests" / "fixtures" / "labeled" / "waf-pl4-sample"  # the default model suppresses most of it
MODEL = ROOT / "models" / "noise-default"
TENANTS = ("shop", "acme")
# name -> (role, tenants)
USERS: dict[str, tuple[str, list[str]]] = {
    "root": ("admin", []),
    "shop-admin": ("admin", ["shop"]),
    "ana": ("analyst", ["shop"]),
    "bob": ("analyst", ["acme"]),
    "vera": ("viewer", ["shop"]),
}


def replay_into(db_url: str, out: Path, tenant: str, inputs: Path, host: str | None = None,
                model: Path | None = None) -> Any:
    """`mdr replay INPUTS --tenant TENANT [--host H] [--model M]` into `db_url` (no saved context)."""
    from pipeline.classify.model import NoiseClassifier
    from pipeline.context.store import Context
    from pipeline.core.engine import Core
    from pipeline.replay import replay
    from pipeline.rules.usecase import load_usecases
    from pipeline.soar.actions import handle_replay

    ctx = Context()
    core = Core(load_usecases(str(ROOT / "usecases")), enricher=ctx.enrich, prioritizer=ctx.prioritize,
                classifier=NoiseClassifier.load(model) if model else None)
    res = replay([str(inputs)], core, tenant, host)
    handle_replay(res, out, db_url, workers=2, drain_timeout=30)
    return res


@pytest.fixture(scope="session")
def lab_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("lab-store")
    url = f"sqlite:///{d}/soar.db"
    for tenant in TENANTS:
        replay_into(url, d / tenant, tenant, LAB1, "web-01")
        replay_into(url, d / f"{tenant}-noise", tenant, LABELED, model=MODEL)  # suppressed alerts
    store = TicketStore(url)
    for name, (role, tenants) in USERS.items():
        add_user(store, name, role, tenants, PASSWORD)
    store.close()
    return d / "soar.db"


@pytest.fixture
def lab_store(lab_store_template: Path, tmp_path: Path) -> str:
    """A fresh copy of the lab store (both tenants, every user of USERS); returns its URL."""
    dst = tmp_path / "store" / "soar.db"
    dst.parent.mkdir()
    shutil.copy(lab_store_template, dst)
    return f"sqlite:///{dst}"


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[Callable[..., ConsoleServer]]:
    servers: list[ConsoleServer] = []

    def start(db_url: str, forwarded_allow_ips: str | None = None, **cfg: Any) -> ConsoleServer:
        cfg.setdefault("verdicts_file", tmp_path / "verdicts.jsonl")
        s = ConsoleServer(ConsoleConfig(db_url=db_url, **cfg), forwarded_allow_ips).__enter__()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.__exit__()
