"""Incidents from the `mdr.incidents` topic, for the demo's live table and `mdr incidents tail` (rendered by
pipeline/tables.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from pipeline.schema import Incident, decode_incident


def read_incidents(bootstrap: str, topic: str, *, from_beginning: bool = True, follow: bool = True,
                   idle: float | None = None, stop: Callable[[], bool] = lambda: False
                   ) -> Iterator[tuple[bytes | None, Incident | None]]:
    """(key, incident) of every record of the incidents topic (all partitions), from the beginning (the
    compacted topic holds each incident's latest state) or only new ones; without `follow` it ends at the
    end of the topic as it was when it started, with `idle` after that many seconds without records."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        ends = consumer.end_offsets(tps) if tps else {}
        last = time.monotonic()
        while not stop():
            got = consumer.poll(timeout_ms=250)
            for recs in got.values():
                for r in recs:
                    last = time.monotonic()
                    yield r.key, decode_incident(r.value) if r.value else None
            if not follow and all(consumer.position(tp) >= ends[tp] for tp in tps):
                return
            if idle is not None and time.monotonic() - last > idle:
                return
    finally:
        consumer.close()
