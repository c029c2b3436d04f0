"""A flush's output records, produced as one record batch per topic partition instead of one awaited
`producer.send` per record (whose Python cost per record was several times the encoding of the record).

Records keep Kafka's key partitioning (`partitions.murmur2_many`: the partition the default partitioner would
choose), so a compacted topic and any consumer that relies on key partitioning see what they saw before.
Batches go to the producer's accumulator like single records do: the producer's flush before each offset
commit covers them. Output records (`output`) have the configured secrets redacted (pipeline/redact.py), as in
every other sink; the worker's own by-tenant hop (`add`) carries the alerts as the core must see them.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable
from typing import Any

from pipeline.redact import redact_bytes
from pipeline.stream.partitions import murmur2_many

_rr = itertools.count()  # partition of records without a key: round robin


class Outbox:
    """Records to produce, by topic; `send` hands them to an aiokafka producer in batches."""

    __slots__ = ("count", "records")

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[bytes | None, bytes]]] = {}
        self.count = 0

    def add(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        if isinstance(key, str):
            key = key.encode()
        self.records.setdefault(topic, []).append((key or None, value))
        self.count += 1

    def output(self, topic: str, key: str | bytes | None, value: bytes) -> None:
        """An output record (incidents, alerts, suppressed, fates, dead letters, tickets: JSON), redacted."""
        self.add(topic, key, redact_bytes(value))

    async def send(self, producer: Any) -> list[Awaitable[Any]]:
        """Append every record to batches of its topic partition and queue them on `producer` (aiokafka);
        returns the batches' delivery futures. The outbox is empty afterwards."""
        futures: list[Awaitable[Any]] = []
        records, self.records, self.count = self.records, {}, 0
        for topic, recs in records.items():
            parts = sorted(await producer.partitions_for(topic))
            n = len(parts)
            keyed = [k for k, _ in recs if k is not None]
            hashes = iter(murmur2_many(keyed)) if n > 1 else iter(())
            by_part: dict[int, list[tuple[bytes | None, bytes]]] = {}
            for k, v in recs:
                if n == 1:
                    p = parts[0]
                elif k is None:
                    p = parts[next(_rr) % n]
                else:
                    p = parts[next(hashes) % n]
                by_part.setdefault(p, []).append((k, v))
            for p, kvs in by_part.items():
                batch = producer.create_batch()
                for k, v in kvs:
                    if batch.append(key=k, value=v, timestamp=None) is None:  # full: send it, start the next
                        futures.append(await producer.send_batch(batch, topic, partition=p))
                        batch = producer.create_batch()
                        batch.append(key=k, value=v, timestamp=None)
                futures.append(await producer.send_batch(batch, topic, partition=p))
        return futures
