"""What stateful normalizers buffer, seen from a stream: the records a worker must not commit past, and
forgetting the ones of partitions a rebalance took away."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from pipeline.normalize.base import Origin, RawRecord
from pipeline.normalize.stage import NormalizeResult, NormalizeStage

LAB = Path(__file__).resolve().parents[2] / "samples" / "lab-1"


def _records(text_lines: list[str], topic: str, partition: int, host: str) -> list[RawRecord]:
    now = datetime.now(UTC)
    return [RawRecord(t, "shop", now, host, Origin(topic=topic, partition=partition, offset=i))
            for i, t in enumerate(text_lines)]


def _open_transaction(uid: str) -> list[str]:
    lines = (LAB / "waf" / "apache_error.log").read_text().splitlines()
    return [ln for ln in lines if f'unique_id "{uid}"' in ln and not re.search(r'\[id "9(49|59|80)\d+"\]', ln)]


def test_buffered_floor_and_discard() -> None:
    stage = NormalizeStage()
    out = NormalizeResult()
    a = _records(_open_transaction("awUxD03R2MqInzbJfVSqNwAAAAA"), "waf", 0, "web-01")
    b = _records(_open_transaction("awUxDzCwX7QjkQlWJqPx4AAAAAE"), "waf", 1, "web-02")
    for rec in a + b:
        stage.process(rec, "modsec_error", out)
    assert not out.alerts  # both transactions wait for their closing line
    assert stage.buffered_floor() == {("waf", 0): 0, ("waf", 1): 0}

    stage.discard_from({("waf", 0)})  # partition 0 went to another worker
    assert stage.buffered_floor() == {("waf", 1): 0}
    flushed = stage.flush().alerts
    assert [x.host.name for x in flushed] == ["web-02"]
    assert stage.buffered_floor() == {}
