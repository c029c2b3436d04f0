"""Work stays in small runs under load (`--max-run`): tenant-keyed ingest normalizes a large read in slices of
about that many alerts, and a partition with that many alerts pending is due, so a backlog runs in bounded runs
whose outputs are those of one run over it. No timing here: the bound is on sizes, which a busy machine does not
change."""

from __future__ import annotations

import time

from pipeline.context.store import Context
from pipeline.core.engine import Outputs
from pipeline.rules.usecase import load_usecases
from pipeline.stream.config import WorkerConfig
from pipeline.stream.envelope import Message
from pipeline.stream.partitions import TenantPartitions
from pipeline.stream.processor import Batch, CoreHooks, IngestStage, Item, PartitionWork
from pipeline.stream.producer import envelopes
from pipeline.stream.state import PartitionState
from tests.stream.fixtures_worker import LAB1, LAB_TOPICS, USECASES, summary

ROUTE = TenantPartitions(4)


def lab_messages(tenant: str = "shop", per_message: int = 10) -> list[Message]:
    """The lab day of one tenant as tenant-keyed ingest messages read from its partition."""
    return [Message(v, f"mdr.alerts.{kind}", ROUTE(tenant), i) for d, kind in LAB_TOPICS.items()
            for i, v in enumerate(envelopes([str(LAB1 / d)], tenant, None, "web-01", per_message))]


def _key(it: Item) -> tuple:
    return it.alert.alert_id, it.src, it.off, it.seq


def test_ingest_slices_end_at_the_alert_bound_and_add_up_to_the_whole_read() -> None:
    msgs = lab_messages()
    whole = IngestStage({}, ROUTE).ingest(msgs)
    slices = list(IngestStage({}, ROUTE).slices(msgs, 200))
    assert len(slices) > 5 and slices[-1][0] == len(msgs)
    start = 0
    for end, res in slices:
        counts = [len(items) for _, _, items, _ in res.direct]
        assert all(start <= i < end for _, _, _, i in res.direct)  # indexes count from the start of the read
        if end < len(msgs):  # a slice ends with the message that brought it to the bound, not later
            assert sum(counts) >= 200 > sum(counts) - counts[-1]
            assert res.direct[-1][3] == end - 1
        start = end
    assert [_key(it) for _, res in slices for _, _, items, _ in res.direct for it in items] == \
        [_key(it) for _, _, items, _ in whole.direct for it in items]
    assert sum(sum(res.records.values()) for _, res in slices) == len(msgs) == sum(whole.records.values())
    assert [d.offset for _, res in slices for d in res.dead] == [d.offset for d in whole.dead]
    assert len(list(IngestStage({}, ROUTE).slices(msgs, 0))) == 1  # 0: no bound


def _work(max_run: int) -> PartitionWork:
    cfg = WorkerConfig(max_run=max_run)
    return PartitionWork(ROUTE("shop"), cfg, load_usecases(str(USECASES)), PartitionState(),
                         CoreHooks(Context(), None))


def _backlog(per_message: int) -> list[list[Item]]:
    """Fresh objects of the lab day's alerts in event-time order (a run sorts its alerts by event time; with the
    backlog in that order, runs of any size feed the core what one run feeds it), as messages of about
    `per_message` alerts that end where the event time changes: the core's results do not depend on where its
    calls are cut (tests/core/test_engine_chunking.py), except between duplicates of the same instant, where the
    cut decides which one becomes the representative."""
    stage = IngestStage({}, ROUTE)
    res = stage.ingest(lab_messages())
    res.direct += stage.flush_idle(0.0).direct
    items = sorted((it for _, _, items, _ in res.direct for it in items), key=lambda it: it.alert.time)
    for off, it in enumerate(items):  # as one ingest partition delivers them (every alert fresh, in order)
        it.src, it.off, it.seq = "mdr.alerts.waf:0", off, 0
    msgs, msg = [], [items[0]]
    for it in items[1:]:
        if len(msg) >= per_message and it.alert.time != msg[-1].alert.time:
            msgs.append(msg)
            msg = []
        msg.append(it)
    return [*msgs, msg]


def _outputs(runs: list) -> tuple:
    """What the runs emitted, as consumers see it: the latest version of every incident and alert, the
    suppressed alerts, fates and dead letters."""
    incidents, alerts, out = {}, {}, Outputs()
    for fl in runs:
        incidents |= fl.out.incidents
        alerts |= {a.alert_id: a.count for a in fl.alerts}
        out.suppressed += fl.out.suppressed
        out.fates += fl.out.fates
        out.dead += fl.out.dead
    return (summary(incidents), alerts, sorted(s.alert.alert_id for s in out.suppressed),
            sorted((f.alert_id, f.fate) for f in out.fates), sorted((d.alert_id, d.reason) for d in out.dead))


def test_a_backlog_runs_in_runs_of_at_most_max_run_and_gives_the_outputs_of_one_run() -> None:
    max_run = 300
    now = time.monotonic()  # one clock reading: nothing is due by time, and no tenant is quiet
    one = _work(0)  # no bound: never due by its size
    for msg in _backlog(40):  # the core changes the alerts it keeps (counts): each work gets its own
        one.add(Batch("shop", msg), None, now)
        assert not one.due(now)
    whole = one.run()
    assert whole.fed == sum(map(len, _backlog(40))) > 5 * max_run

    bounded, runs = _work(max_run), []
    msgs = _backlog(40)
    for msg in msgs:  # the same messages; the partition runs whenever it is due
        bounded.add(Batch("shop", msg), None, now)
        if bounded.due(now):
            runs.append(bounded.run())
    runs.append(bounded.run())
    assert len(runs) > whole.fed // (max_run + 100)
    assert all(fl.fed <= max_run + max(map(len, msgs)) - 1 for fl in runs)  # due once it reached the bound
    assert sum(fl.fed for fl in runs) == whole.fed
    assert _outputs(runs) == _outputs([whole])
    assert bounded.pstate.hw == one.pstate.hw  # every alert applied once, and marked
