"""The partition state's table records: segments and snapshots load back to the same state, even when a
crash cut the records of the last batch short."""

from __future__ import annotations

import pytest

from pipeline.schema import decode_alert, encode
from pipeline.stream import state as st
from pipeline.stream.config import WorkerConfig
from pipeline.stream.processor import Batch, Item, PartitionWork
from pipeline.stream.state import PartitionState
from tests.lab import LabReplay
from tests.stream.fixtures_worker import USECASES


def _apply(table: dict[bytes, bytes], writes: list) -> None:
    for k, v in writes:
        if v is None:
            table.pop(k, None)
        else:
            table[k] = v


@pytest.fixture(scope="module")
def batches(lab1_replay: LabReplay) -> list[list[Item]]:
    """lab-1's alerts as a tenant's input in 12 batches (copies: the cores under test change what they hold)."""
    alerts = sorted((decode_alert(encode(a)) for a in lab1_replay.result.alerts), key=lambda a: a.time)
    items = [Item(a, "in:0", i, 0, 0.0) for i, a in enumerate(alerts)]
    n = len(items) // 12 + 1
    return [items[i:i + n] for i in range(0, len(items), n)]


def test_segments_and_snapshots_load_back(batches, monkeypatch) -> None:
    from pipeline.rules.usecase import load_usecases

    monkeypatch.setattr(st, "SNAP_MIN", 300_000)  # a snapshot every few batches
    monkeypatch.setattr(st, "CHUNK", 150_000)  # segments in pieces
    monkeypatch.setattr(st, "SNAP_STEP", 60_000)  # snapshots in pieces, written over several batches
    w = PartitionWork(0, WorkerConfig(), load_usecases(str(USECASES)), PartitionState())
    table: dict[bytes, bytes] = {}
    snapshots = pieces = 0
    spread = False
    for batch in batches:
        before = dict(table)
        w.add(Batch("shop", batch), None, 0.0)
        writes = w.run().writes
        snapshots += any(k == st.SNAP_META.encode() for k, _ in writes)
        spread = spread or (w.pstate._snap is not None and w.pstate._snap.done > 0)
        pieces = max(pieces, sum(k.startswith(st.SEGMENT.encode()) and v is not None for k, v in writes))
        for cut in sorted({0, 1, len(writes) // 2, len(writes) - 1}):  # a crash after `cut` records:
            crashed = dict(before)
            _apply(crashed, writes[:cut])
            loaded = PartitionState()
            loaded.load(crashed.items())
            assert loaded.enc in (_state(before), w.pstate.enc)  # the previous or the new state
        _apply(table, writes)
        assert _state(table) == w.pstate.enc
    assert snapshots >= 2 and pieces > 1
    s = w.pstate  # the older segments and snapshots were deleted
    in_progress = s._snap.done if s._snap is not None else 0
    assert len(table) == 1 + s.snap_chunks + len(s.segs) + in_progress and s.snap_chunks > 1
    assert spread, "no snapshot was written over several batches"


def _state(table: dict[bytes, bytes]) -> dict[bytes, bytes]:
    s = PartitionState()
    s.load(table.items())
    return s.enc


def test_tenants_sharing_an_ingest_partition_are_not_taken_for_redeliveries(batches) -> None:
    """One ingest partition carries many tenants; their alerts reach a by-tenant partition in separate batches
    (tenant A's offsets 0..n, then tenant B's offsets 0..n). Only a true redelivery is skipped."""
    from pipeline.rules.usecase import load_usecases
    from pipeline.schema import decode_alert, encode

    w = PartitionWork(0, WorkerConfig(), load_usecases(str(USECASES)), PartitionState())
    first = batches[0]
    other = [Item(decode_alert(encode(it.alert)), it.src, it.off, it.seq, it.t_in) for it in first]
    for it in other:
        it.alert.tenant_id = "other"
    w.add(Batch("shop", first), None, 0.0)
    w.add(Batch("other", other), None, 0.0)
    assert len(w.pending) == 2 * len(first) and w.redelivered == 0
    w.add(Batch("other", other[-3:]), None, 0.0)  # redelivered
    assert len(w.pending) == 2 * len(first) and w.redelivered == 3


def test_a_restart_after_a_crash_in_a_snapshot_continues_to_the_same_state(batches, monkeypatch) -> None:
    """Crash in the middle of a spread snapshot, restart from the table, take the batch again: the table then
    loads to the state of a run that never crashed, and later snapshots do not trip over the orphaned chunks."""
    from pipeline.rules.usecase import load_usecases

    monkeypatch.setattr(st, "SNAP_MIN", 300_000)
    monkeypatch.setattr(st, "SNAP_STEP", 60_000)
    ucs = load_usecases(str(USECASES))

    def run(ws: PartitionWork, table: dict, todo: list, crash_in: int | None = None) -> None:
        for n, batch in enumerate(todo):
            ws.add(Batch("shop", batch), None, 0.0)
            writes = ws.run().writes
            if n == crash_in:
                snap = [i for i, (k, _) in enumerate(writes) if k.startswith(st.SNAPSHOT.encode())]
                _apply(table, writes[:snap[0] + 1])  # the segment and one snapshot chunk made it
                return
            _apply(table, writes)

    clean: dict[bytes, bytes] = {}
    run(PartitionWork(0, WorkerConfig(), ucs, PartitionState()), clean, batches)
    probe = PartitionWork(0, WorkerConfig(), ucs, PartitionState())
    at = next(n for n, b in enumerate(batches) if (probe.add(Batch("shop", b), None, 0.0) or True)
              and any(k.startswith(st.SNAPSHOT.encode()) for k, _ in probe.run().writes))
    crashed: dict[bytes, bytes] = {}
    run(PartitionWork(0, WorkerConfig(), ucs, PartitionState()), crashed, batches, crash_in=at)
    restored = PartitionState()
    restored.load(crashed.items())
    run(PartitionWork(0, WorkerConfig(), ucs, restored), crashed, batches[at:])
    assert _state(crashed) == _state(clean)
    assert not any(k.startswith(st.SNAPSHOT.encode()) and not k.startswith(
        st.snapshot_key(restored.snap_gen, 0)[:-6]) for k in crashed) or restored._snap is not None


def test_restarting_at_any_batch_boundary_gives_the_same_state(batches) -> None:
    """State loaded from the table continues exactly as the in-memory state would have: nothing the core or
    the noise classifier relies on lives outside the persisted mappings (shared objects, caches)."""
    from pipeline.classify.model import NoiseClassifier
    from pipeline.paths import ROOT
    from pipeline.rules.usecase import load_usecases
    from pipeline.stream.processor import CoreHooks

    ucs = load_usecases(str(USECASES))
    hooks = CoreHooks(classifier=NoiseClassifier.load(ROOT / "models" / "noise-default"))

    def run(ws: PartitionWork, table: dict, todo: list) -> None:
        for batch in todo:
            ws.add(Batch("shop", batch), None, 0.0)
            _apply(table, ws.run().writes)

    clean: dict[bytes, bytes] = {}
    run(PartitionWork(0, WorkerConfig(), ucs, PartitionState(), hooks), clean, batches)
    for k in (1, 3, 6, 9):
        table: dict[bytes, bytes] = {}
        run(PartitionWork(0, WorkerConfig(), ucs, PartitionState(), hooks), table, batches[:k])
        restored = PartitionState()
        restored.load(table.items())
        run(PartitionWork(0, WorkerConfig(), ucs, restored, hooks), table, batches[k:])
        assert _canonical(_state(table)) == _canonical(_state(clean)), f"restart after batch {k}"
    assert any(k.startswith(b"cls_sources") for k in _state(clean))  # the classifier's state is in it


def _canonical(enc: dict[bytes, bytes]) -> dict[bytes, object]:
    """The state with the classifier's pickled objects as their fields (pickle bytes depend on object sharing)."""
    import pickle

    def fields(o: object) -> object:
        return {s: getattr(o, s) for s in getattr(type(o), "__slots__", ())} or vars(o)

    return {k: fields(pickle.loads(v)) if k.startswith(b"cls_") else v for k, v in enc.items()}


def test_restarting_over_days_expires_to_the_same_state() -> None:
    """Expiry after a restart is the expiry of a run that never stopped: two tenants sharing the partition, three
    days each, restarts at several batch boundaries, the same state at the end (the first days expired)."""
    from pipeline.rules.usecase import load_usecases
    from tests.days import lab_day

    ucs = load_usecases(str(USECASES))
    offsets: dict[str, int] = {}
    batches: list[tuple[str, list[Item]]] = []
    for back in (2, 1, 0):
        for tenant in ("shop", "acme"):
            alerts = lab_day(tenant, back)
            for part in (alerts[:1500], alerts[1500:]):
                first = offsets.get(tenant, 0)
                offsets[tenant] = first + len(part)
                batches.append((tenant, [Item(a, "in:0", first + i, 0, 0.0) for i, a in enumerate(part)]))

    def run(ws: PartitionWork, table: dict, todo: list) -> None:
        for tenant, items in todo:
            ws.add(Batch(tenant, [Item(a.alert, a.src, a.off, a.seq, a.t_in) for a in items]), None, 0.0)
            _apply(table, ws.run().writes)

    def fresh(todo: list) -> list:  # the core changes alerts in place: every run gets its own
        from pipeline.schema import decode_alert, encode

        return [(t, [Item(decode_alert(encode(it.alert)), it.src, it.off, it.seq, it.t_in) for it in items])
                for t, items in todo]

    clean: dict[bytes, bytes] = {}
    w = PartitionWork(0, WorkerConfig(), ucs, PartitionState())
    run(w, clean, fresh(batches))
    last = max(a.time for a in w.pstate.state.dedup.values()).date()
    assert w.pstate.state.dedup and all(a.time.date() == last for a in w.pstate.state.dedup.values())
    for k in (1, 4, 7, 10):
        table: dict[bytes, bytes] = {}
        run(PartitionWork(0, WorkerConfig(), ucs, PartitionState()), table, fresh(batches[:k]))
        restored = PartitionState()
        restored.load(table.items())
        run(PartitionWork(0, WorkerConfig(), ucs, restored), table, fresh(batches[k:]))
        assert _state(table) == _state(clean), f"restart after batch {k}"


def test_a_restart_while_error_log_lines_wait_for_their_audit_records_loses_and_repeats_nothing() -> None:
    """The lines held for their audit records are state (kind `held`): a restart between a line and its audit
    record continues to the same state and outputs as no restart."""
    import time

    from pipeline.normalize.source import read_alerts
    from pipeline.paths import ROOT
    from pipeline.rules.usecase import load_usecases

    raw = [encode(a) for a in read_alerts([str(ROOT / "samples" / "lab-1" / "waf")], "shop", "web-01").alerts]
    alerts = [decode_alert(b) for b in raw]
    cuts = [i + 1 for i in range(len(alerts) - 1) if alerts[i].source.format == "modsec_error"
            and alerts[i + 1].extra.get("transaction_id") == alerts[i].extra.get("transaction_id")]
    assert len(cuts) > 100
    ucs = load_usecases(str(USECASES))

    def run(state: PartitionState, table: dict, lo: int, hi: int) -> list:
        items = [Item(decode_alert(b), "in:0", i, 0, 0.0) for i, b in enumerate(raw[lo:hi], lo)]
        ws = PartitionWork(0, WorkerConfig(), ucs, state, None)
        ws.add(Batch("shop", items), None, time.monotonic())  # the tenant is not quiet: lines wait
        done = ws.run()
        _apply(table, done.writes)
        return [(f.alert_id, f.fate, f.of) for f in done.out.fates]

    for k in (cuts[50], cuts[-1]):
        clean: dict[bytes, bytes] = {}
        clean_state = PartitionState()
        clean_fates = [*run(clean_state, clean, 0, k), *run(clean_state, clean, k, len(raw))]
        table: dict[bytes, bytes] = {}
        fates = run(PartitionState(), table, 0, k)
        assert any(key.startswith(b"held" + st.SEP.encode()) for key in _state(table))  # a line waits
        restored = PartitionState()
        restored.load(table.items())
        fates += run(restored, table, k, len(raw))
        assert _state(table) == _state(clean), f"restart at alert {k}"
        assert fates == clean_fates
        assert not any(key.startswith(b"held") for key in _state(clean))


def test_a_held_line_of_a_quiet_tenant_is_released_by_the_workers_clock() -> None:
    """The worker releases an error-log line once its tenant sent nothing for the hold (monotonic clock): a
    tenant that goes quiet sends nothing that would move its event time past the line."""
    import time

    from pipeline.normalize.source import read_alerts
    from pipeline.paths import ROOT
    from pipeline.rules.usecase import load_usecases

    alerts = read_alerts([str(ROOT / "samples" / "lab-1" / "waf")], "shop", "web-01").alerts
    line = next(a for a in alerts if a.source.format == "modsec_error")
    ws = PartitionWork(0, WorkerConfig(), load_usecases(str(USECASES)), PartitionState(), None)
    now = time.monotonic()
    ws.add(Batch("shop", [Item(line, "in:0", 0, 0, 0.0)]), None, now)
    assert ws.run().out.fates == [] and not ws.due(now + ws.core.pair_hold - 1)  # held; its tenant just sent it
    assert ws.due(now + ws.core.pair_hold)
    ws.tenant_at["shop"] -= ws.core.pair_hold  # as if the hold had passed
    done = ws.run()
    assert [(f.alert_id, f.fate) for f in done.out.fates] == [(line.alert_id, "representative")]
    assert done.writes and not ws.pstate.state.held and not ws.due(now + 1e9)
