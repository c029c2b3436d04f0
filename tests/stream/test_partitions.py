"""Kafka's key partitioning as the worker computes it (tenant routing, batched outputs), the routing of a
tenant-keyed ingest message (alerts read on their tenant's partition run there, any other take the hop), and
the partition count changing no incident and no id (the in-process half of scaling out; the scale-out test in
test_worker.py runs two workers on the broker)."""

from __future__ import annotations

import random

import orjson
from aiokafka.partitioner import DefaultPartitioner, murmur2

from pipeline.context.store import Context
from pipeline.rules.usecase import load_usecases
from pipeline.stream.config import WorkerConfig
from pipeline.stream.envelope import Message
from pipeline.stream.partitions import TenantPartitions, murmur2_many, partition_of
from pipeline.stream.processor import Batch, CoreHooks, IngestStage, PartitionWork
from pipeline.stream.producer import envelopes
from pipeline.stream.state import PartitionState
from tests.stream.fixtures_worker import LAB1, LAB_TOPICS, USECASES, summary


def test_murmur2_many_is_kafkas_hash_for_every_key_length() -> None:
    rng = random.Random(16)
    keys = [rng.randbytes(rng.randrange(0, 70)) for _ in range(3000)]
    keys += [rng.randbytes(16).hex().encode() for _ in range(500)]  # alert and incident ids: 32 bytes
    keys += [b"\xff" * n for n in range(12)]  # high bytes: no sign trouble in the tail
    assert murmur2_many(keys) == [murmur2(k) & 0x7FFFFFFF for k in keys]


def test_a_tenant_goes_where_the_default_partitioner_sends_its_key() -> None:
    route = TenantPartitions(4)
    for tenant in ["shop", "acme", "t-a", "tenant-999", "a" * 63]:
        want = DefaultPartitioner()(tenant.encode(), [0, 1, 2, 3], [0, 1, 2, 3])
        assert route(tenant) == partition_of(tenant.encode(), 4) == want


def test_tenant_keyed_routing_runs_alerts_read_on_their_tenants_partition_and_hops_the_others() -> None:
    line = next(x for x in (LAB1 / "ids" / "eve_attack.jsonl").read_text().splitlines() if '"alert"' in x)
    route = TenantPartitions(4)
    home, away = route("shop"), (route("shop") + 1) % 4
    value = orjson.dumps({"tenant": "shop", "format": "suricata", "host": "s1", "record": line})
    msgs = [Message(value, "mdr.alerts.firewall", home, 7), Message(value, "mdr.alerts.firewall", away, 8)]
    res = IngestStage({}, route).ingest(msgs)
    assert [(p, t, len(items), i) for p, t, items, i in res.direct] == [(home, "shop", 1, 0)]
    assert [it.off for it in res.by_tenant["shop"]] == [8]
    hop_only = IngestStage({}).ingest(msgs)  # without --tenant-keyed every alert takes the by-tenant topic
    assert not hop_only.direct and len(hop_only.by_tenant["shop"]) == 2


def _incidents_over(partitions: int, tenants: list[str]) -> dict:
    """The lab day of each tenant through the worker's stages (tenant-keyed ingest, `partitions` partitions,
    each a PartitionWork with its own state): the latest version of every incident."""
    route = TenantPartitions(partitions)
    stage = IngestStage({}, route)
    ucs, hooks = load_usecases(str(USECASES)), CoreHooks(Context(), None)
    parts = [PartitionWork(p, WorkerConfig(), ucs, PartitionState(), hooks) for p in range(partitions)]
    msgs = [Message(v, f"mdr.alerts.{kind}", route(t), i, 0) for t in tenants for d, kind in LAB_TOPICS.items()
            for i, v in enumerate(envelopes([str(LAB1 / d)], t, None, "web-01", 10))]
    res = stage.ingest(msgs)
    res.direct += stage.flush_idle(0.0).direct
    assert not res.by_tenant and not res.dead
    for p, tenant, items, _ in res.direct:
        parts[p].add(Batch(tenant, items), None, 0.0)
    out: dict = {}
    for w in parts:
        out |= w.run().out.incidents
    return out


def test_the_partition_count_changes_no_incident_and_no_id() -> None:
    """Incident ids come from the tenant, the use case and the alerts, never from where they ran: the same
    tenants over 1, 4 and 7 partitions give the same incidents, ids included."""
    tenants = ["shop", "t-c", "gamma"]
    one = summary(_incidents_over(1, tenants))
    assert len(one) > 3 * 10  # each tenant's lab day has its incidents
    assert summary(_incidents_over(4, tenants)) == one
    assert summary(_incidents_over(7, tenants)) == one
