"""Kafka's default partitioner, as the Java client and aiokafka apply it: murmur2 of the key, made positive,
modulo the partition count. Vectorised (numpy) for the many keys of one flush's outputs; cached for tenants.

A tenant-keyed ingest topic (``--tenant-keyed``) puts a tenant's messages in the partition `tenant_partition`
names, the same partition the by-tenant topic would put its alerts in: the worker can then run them there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from aiokafka.partitioner import murmur2

SEED = 0x9747B28C
M = np.uint64(0x5BD1E995)
MASK = np.uint64(0xFFFFFFFF)


def murmur2_many(keys: Sequence[bytes]) -> list[int]:
    """`murmur2(key) & 0x7fffffff` of every key, computed per key length as numpy vectors."""
    out = [0] * len(keys)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        by_len[len(k)].append(i)
    for n, idx in by_len.items():
        if len(idx) < 8:  # numpy's set-up costs more than the pure-Python hash of a few keys
            for i in idx:
                out[i] = murmur2(keys[i]) & 0x7FFFFFFF
            continue
        for i, h in zip(idx, _vector(b"".join(keys[i] for i in idx), len(idx), n), strict=True):
            out[i] = h
    return out


def _vector(data: bytes, count: int, n: int) -> list[int]:
    """murmur2 of `count` keys of `n` bytes each, laid end to end in `data` (all products stay below 2**63)."""
    buf = np.frombuffer(data, dtype=np.uint8).reshape(count, n)
    h = np.full(count, (SEED ^ n) & 0xFFFFFFFF, dtype=np.uint64)
    words = n // 4
    if words:
        w = np.ascontiguousarray(buf[:, :words * 4]).view("<u4").astype(np.uint64)
        for j in range(words):
            k = (w[:, j] * M) & MASK
            k ^= k >> np.uint64(24)
            k = (k * M) & MASK
            h = ((h * M) & MASK) ^ k
    rest = n % 4
    tail = buf[:, words * 4:].astype(np.uint64)
    if rest >= 3:
        h ^= tail[:, 2] << np.uint64(16)
    if rest >= 2:
        h ^= tail[:, 1] << np.uint64(8)
    if rest >= 1:
        h ^= tail[:, 0]
        h = (h * M) & MASK
    h ^= h >> np.uint64(13)
    h = (h * M) & MASK
    h ^= h >> np.uint64(15)
    return (h & np.uint64(0x7FFFFFFF)).tolist()


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` among `partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class TenantPartitions:
    """tenant -> its partition of the by-tenant topic (and of a tenant-keyed ingest topic), cached."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self._cache: dict[str, int] = {}

    def __call__(self, tenant: str) -> int:
        p = self._cache.get(tenant)
        if p is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            p = self._cache[tenant] = partition_of(tenant.encode(), self.partitions)
        return p
