"""The partition state's table records: segments and snapshots load back to the same state, even when a
crash cut the records of the last batch short."""

from __future__ import annotations

import pytest

from pipeline.stream import state as st
from pipeline.stream.config import WorkerConfig
from pipeline.stream.processor import Batch, Item, PartitionWork
from pipeline.stream.state import PartitionState
from tests.stream.fixtures_worker import USECASES, replay_lab


def _apply(table: dict[bytes, bytes], writes: list) -> None:
    for k, v in writes:
        if v is None:
            table.pop(k, None)
        else:
            table[k] = v


@pytest.fixture(scope="module")
def batches() -> list[list[Item]]:
    """lab-1's alerts as a tenant's input in 12 batches."""
    alerts = sorted(replay_lab("shop").alerts, key=lambda a: a.time)
    items = [Item(a, "in:0", i, 0, 0.0) for i, a in enumerate(alerts)]
    n = len(items) // 12 + 1
    return [items[i:i + n] for i in range(0, len(items), n)]


def test_segments_and_snapshots_load_back(batches, monkeypatch) -> None:
    from pipeline.rules.usecase import load_usecases

    monkeypatch.setattr(st, "SNAP_MIN", 300_000)  # a snapshot every few batches
    monkeypatch.setattr(st, "CHUNK", 150_000)  # segments and snapshots in pieces
    w = PartitionWork(0, WorkerConfig(), load_usecases(str(USECASES)), PartitionState())
    table: dict[bytes, bytes] = {}
    snapshots = pieces = 0
    for batch in batches:
        before = dict(table)
        w.add(Batch("shop", batch), None, 0.0)
        writes = w.run().writes
        snapshots += any(k == st.SNAP_META.encode() for k, _ in writes)
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
    assert len(table) == 1 + s.snap_chunks + len(s.segs) and s.snap_chunks > 1


def _state(table: dict[bytes, bytes]) -> dict[bytes, bytes]:
    s = PartitionState()
    s.load(table.items())
    return s.enc
