"""A report store built through the real code paths: lab-1 and a synthetic second day of tenant `shop`
(another day of the same week, other actors) and a third day of tenant `acme`, each replayed through the core
with the context hooks (assets, intel, escort), tickets opened and worked through the SOAR ticket store API at
realistic times, and the alert statistics recorded with `record_stats`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.context.store import Context
from pipeline.core.engine import Core
from pipeline.replay import ReplayResult, replay
from pipeline.report.stats import record_stats
from pipeline.rules.usecase import load_usecases
from pipeline.soar.tickets import TicketStore
from tests.e2e.variant import LAB_DAY as LAB
from tests.e2e.variant import Variant, write_variant
from tests.lab import WEB_01

ROOT = Path(__file__).resolve().parents[2]
LAB1 = ROOT / "samples" / "lab-1"
IOCS = ROOT / "tests" / "context" / "data" / "iocs.csv"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # when the reports are generated
SHOP_DAY2 = Variant(attacker="203.0.113.77", benign="198.51.100.14", scanner="192.0.2.250", host="app-7",
                    site="store.example.net", webroot="/var/www/store", day_shift_days=-1, users=True)
ACME = Variant(attacker="198.18.7.42", benign="198.51.100.99", scanner="192.0.2.17", host="acme-db",
               site="portal.acme.test", webroot="/var/www/portal")


@dataclass
class Fixture:
    url: str
    store: TicketStore
    results: dict[str, list[ReplayResult]] = field(default_factory=dict)  # tenant -> its replays


def work_tickets(store: TicketStore, res: ReplayResult) -> None:
    """Open a ticket per incident a few minutes after its first alert, then work them: acknowledged in
    time and closed true positive; acknowledged late and resolved; closed as false positive; left new."""
    for k, inc in enumerate(res.open_incidents):
        created = inc.first_seen + timedelta(minutes=2 + k)
        store.upsert_incident(inc, now=created)
        step = k % 4
        if step == 0:
            store.acknowledge(inc.incident_id, "ana", now=created + timedelta(minutes=5))
            store.close_ticket(inc.incident_id, "true_positive", "ana", now=created + timedelta(hours=3))
        elif step == 1:
            store.acknowledge(inc.incident_id, "bo", now=created + timedelta(hours=3))
            store.transition(inc.incident_id, "investigating", actor="bo", now=created + timedelta(hours=4))
            store.transition(inc.incident_id, "resolved", actor="bo", now=created + timedelta(hours=6))
        elif step == 2:
            store.close_ticket(inc.incident_id, "false_positive", "ana", now=created + timedelta(minutes=20))
    for inc in res.sorted_incidents():
        if inc.status == "merged":
            store.merge_incident(inc, now=inc.first_seen + timedelta(minutes=2))


def replay_day(path: Path, tenant: str, host: str, work: Path, escort: Path | None = None) -> ReplayResult:
    """One day through the core with `tenant`'s context (shop: asset inventory and an intel feed)."""
    ctx = Context(clock=lambda: NOW)
    if tenant == "shop":
        assets = work / "assets.yaml"
        assets.write_text(WEB_01)
        assert ctx.load_assets(tenant, assets)
        assert ctx.load_intel(IOCS, tenant=tenant)
    if escort is not None:
        assert ctx.load_escort(tenant, escort)
    core = Core(load_usecases(str(ROOT / "usecases")), enricher=ctx.enrich, prioritizer=ctx.prioritize)
    return replay([str(path)], core, tenant, host)


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    if not LAB1.is_dir():
        pytest.skip("samples/lab-1 not present")
    base = tmp_path_factory.mktemp("report")
    escort = base / "escort.csv"
    escort.write_text("start,end,name\n2026-11-24,2026-11-25,Shopping festival\n")
    day2, acme = base / "shop-day2" / "data", base / "acme" / "data"
    write_variant(LAB1, day2, LAB, SHOP_DAY2)
    write_variant(LAB1, acme, LAB, ACME)
    url = f"sqlite:///{base}/soar.db"
    fx = Fixture(url, TicketStore(url))
    for tenant, path, host, esc in (("shop", LAB1, "web-01", escort), ("shop", day2, "app-server", None),
                                    ("acme", acme, "acme-web", None)):
        res = replay_day(path, tenant, host, base, esc)
        work_tickets(fx.store, res)
        record_stats(fx.store, tenant, res)
        fx.results.setdefault(tenant, []).append(res)
    yield fx
    fx.store.close()
