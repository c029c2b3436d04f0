"""Event time is the core's, per tenant: a tenant's watermark is the newest event time of its alerts, and the
core expires what closed before it. `mdr replay` and the worker run the same expiry, one tenant's clock never
closes another tenant's windows, and a long replay keeps only the windows still open."""

from __future__ import annotations

from collections import Counter

import pytest

from pipeline.core.engine import Core, CoreState
from pipeline.normalize.source import read_alerts
from pipeline.replay import OutputFiles, ReplayPart, replay
from pipeline.rules.usecase import load_usecases
from pipeline.schema import Alert, encode
from pipeline.stream.config import WorkerConfig
from pipeline.stream.processor import Batch, Item, PartitionWork
from pipeline.stream.state import PartitionState
from tests.days import lab_day
from tests.e2e.variant import write_days
from tests.time_repros import LAB, ROOT

USECASES = load_usecases(str(ROOT / "usecases"))
DAYS = 3


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[str]:
    """lab-1 on three days (each its own actors, host and site), one directory per day."""
    return [str(d) for d in write_days(LAB, tmp_path_factory.mktemp("days"), DAYS)]


def feed(core: Core, alerts: list[Alert]) -> None:
    for i in range(0, len(alerts), 2048):
        core.feed_alerts(alerts[i:i + 2048])


def tenants(state: CoreState) -> dict[str, Counter[str]]:
    """Per state mapping, how many entries each tenant holds."""
    return {"dedup": Counter(a.tenant_id for a in state.dedup.values()),
            "alerts": Counter(a.tenant_id for a in state.alerts.values()),
            "incidents": Counter(i.tenant_id for i in state.incidents.values()),
            "fusion": Counter(i.tenant_id for i in state.fusion.values())}


def test_one_tenants_clock_does_not_close_another_tenants_windows() -> None:
    core = Core(USECASES)
    feed(core, sorted(lab_day("a") + lab_day("b"), key=lambda a: a.time))
    before = tenants(core.state)
    assert all(before[k]["b"] for k in before)
    core.take()
    feed(core, lab_day("a", back=-1))  # a day later, for tenant a only
    after = tenants(core.state)
    assert {k: after[k]["b"] for k in after} == {k: before[k]["b"] for k in before}  # b's windows stay open
    assert not [i for i in core.take().incidents.values() if i.tenant_id == "b"]
    assert core.state.watermark["a"] - core.state.watermark["b"] > 86_000
    assert all(a.time.day == 25 for a in core.state.dedup.values() if a.tenant_id == "a")  # a's day 1 closed


def test_nor_in_the_worker_where_tenants_share_a_partition() -> None:
    w = PartitionWork(0, WorkerConfig(), USECASES, PartitionState())
    for n, (tenant, back) in enumerate((("a", 0), ("b", 0), ("a", -1))):
        w.add(Batch(tenant, [Item(a, "in:0", n * 10_000 + i, 0, 0.0) for i, a in enumerate(lab_day(tenant, back))]),
              None, 0.0)
        flushed = w.run()
        if n == 1:
            before = tenants(w.pstate.state)
    after = tenants(w.pstate.state)
    assert {k: after[k]["b"] for k in after} == {k: before[k]["b"] for k in before} and before["incidents"]["b"]
    assert not [i for i in flushed.out.incidents.values() if i.tenant_id == "b"]
    assert all(a.time.day == 25 for a in w.pstate.state.dedup.values() if a.tenant_id == "a")


def test_a_long_replay_keeps_only_the_windows_still_open(days: list[str]) -> None:
    core = Core(USECASES)
    res = replay(days, core, "shop", "web-01")
    last = max(a.time for a in res.alerts).date()
    assert {a.time.date() for a in res.alerts} == {last.fromordinal(last.toordinal() - k) for k in range(DAYS)}
    state = core.state
    assert state.dedup and all(a.time.date() == last for a in state.dedup.values())
    assert all(a.time.date() == last for a in state.alerts.values())
    assert all(i.last_seen.date() == last for i in [*state.incidents.values(), *state.fusion.values()])
    assert all(c["ev"][-1][0] > max(core.state.watermark.values()) - 86_400 for c in state.correlation.values())
    live = set(state.fusion) | {i.incident_id for i in state.incidents.values()}
    assert set(core.idsets._sets) <= live and set(core.fusion.source_sets._sets) <= live  # caches go along
    for key in [*core.fusion._merged, *core.fusion.explanation_sets._sets]:
        assert set(key.split("\x1f")[:2]) <= live
    open_ids = {i.incident_id for i in state.incidents.values()}
    assert core.builder.explained._sets and {k.split("\x1f")[0] for k in core.builder.explained._sets} <= open_ids
    closed = Counter(i.first_seen.date() for i in res.incidents.values() if i.status == "closed")
    assert closed and last not in closed  # the earlier days' incidents were closed by event time
    assert res.late == 0


def test_replay_and_the_worker_run_the_same_expiry(days: list[str]) -> None:
    """The same alerts in the same calls leave the same state, whichever adapter drives the core."""
    core = Core(USECASES)
    replay(days, core, "shop", "web-01")
    w = PartitionWork(0, WorkerConfig(), USECASES, PartitionState())
    alerts = read_alerts(days, "shop", "web-01").alerts
    w.add(Batch("shop", [Item(a, "in:0", i, 0, 0.0) for i, a in enumerate(alerts)]), None, 0.0)
    w.run()
    worker = w.pstate.state
    for name in ("dedup", "alerts", "incidents", "fusion", "correlation", "suppressed", "watermark"):
        assert sorted(dict.keys(getattr(worker, name))) == sorted(getattr(core.state, name)), name
    assert {k: encode(v) for k, v in dict.items(worker.incidents)} == \
        {k: encode(v) for k, v in core.state.incidents.items()}


class _Parts:
    def __init__(self) -> None:
        self.parts: list[ReplayPart] = []

    def take(self, part: ReplayPart) -> None:
        self.parts.append(part)


def test_replay_hands_over_each_alert_once_it_is_final(days: list[str]) -> None:
    """Outputs go out as the replay goes: an alert once its count can no longer grow (with its final count),
    so the first day's alerts are out before the last day is read."""
    sink = _Parts()
    res = replay(days, Core(USECASES), "shop", "web-01", sinks=[sink])
    handed = [(encode(a), n) for n, p in enumerate(sink.parts) for a in p.alerts]
    assert [a for a, _ in handed] == [encode(a) for a in res.alerts]  # as final at hand-over as at the end
    first = min(a.time for a in res.alerts).date()
    first_day_out = max(n for (_, n), a in zip(handed, res.alerts, strict=True) if a.time.date() == first)
    assert first_day_out < len(sink.parts) // 2
    assert sum(p.alerts_raw for p in sink.parts) == res.alerts_raw == DAYS * 2706


def test_the_output_files_are_what_a_collected_replay_holds(days: list[str], tmp_path) -> None:
    """Written as the replay goes, the files end as the whole result held in memory would be written: alerts
    with their final counts, incidents in their final state by first seen, each incident set aside once."""
    files, sink = OutputFiles(tmp_path / "out"), _Parts()
    res = replay(days, Core(USECASES), "shop", "web-01", sinks=[files, sink])
    paths = files.close()
    assert paths["alerts"].read_bytes().splitlines() == [encode(a) for a in res.alerts]
    assert paths["incidents"].read_bytes().splitlines() == [encode(i) for i in res.sorted_incidents()]
    assert paths["dlq"].read_bytes() == b"" and not (tmp_path / "out" / ".incidents.unsorted").exists()
    final = [(n, i.incident_id) for n, p in enumerate(sink.parts) for i in p.final_incidents]
    assert sorted(i for _, i in final) == sorted(res.incidents)
    first = min(i.first_seen for i in res.incidents.values()).date()
    assert max(n for n, i in final if res.incidents[i].first_seen.date() == first) < len(sink.parts) - 1
