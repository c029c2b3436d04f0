"""Memory of the worker's state: bytes per open incident, per correlation window, per dedup window and per
tenant, as the worker persists them; RSS of a worker holding many tenants; restore time of that state.

    .venv/bin/python bench/memory.py [--tenants 40] [--worker-tenants 1000 --sample 20]

1. In one process (no Kafka): `--tenants` copies of the lab-1 day, each its own tenant, host and attacker
   address, through the worker's stages (`e2e.Stages`: IngestStage, PartitionWork over 4 partitions, the real
   core and `PartitionState`), ~1 s of input per round. The state is measured as the table stores it: the
   encoded records a snapshot writes (JSON / orjson / pickle) and the same zstd-compressed as written, by kind,
   at the end of the day (windows of the last minutes, incidents still open) and at the largest it was.
2. A real `mdr worker --tenant-keyed` on a broker, fed `--worker-tenants` tenants (each every `--sample`-th record
   of the lab day): its RSS before and after, its changelog bytes; then a second worker with an empty data dir
   restores that state from the changelog (the worker-loss case without a standby): seconds to ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e import (  # noqa: E402
    ROUND,
    Stages,
    lab_values,
    metric,
    start_worker,
    stop,
)

from pipeline.stream.state import KINDS, PartitionState, _pack  # noqa: E402

COUNTED = {"incidents": "open incident", "correlation": "correlation window", "dedup": "dedup window"}


def rss_kib(pid: int | str = "self", field: str = "VmRSS") -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert m is not None, field
    return int(m[1])


def by_kind(states: list[PartitionState]) -> dict[str, tuple[int, int, int]]:
    """kind -> (records, encoded bytes, zstd bytes as the table writes them) over the partitions' state."""
    pairs: dict[str, list[tuple[bytes, bytes | None]]] = {}
    for st in states:
        for k, v in st.enc.items():
            pairs.setdefault(k.split(b"\x1f", 1)[0].decode(), []).append((k, v))
    return {kind: (len(kv), sum(len(k) + len(v or b"") for k, v in kv), len(_pack(0, kv)))
            for kind, kv in pairs.items()}


def state_bytes(states: list[PartitionState]) -> int:
    return sum(len(k) + len(v) for st in states for k, v in st.enc.items())


def in_process(tenants: int) -> None:
    values = lab_values(tenants, 100, "tenant", tenants=tenants)
    rss0 = rss_kib()
    stages = Stages()
    msgs = stages.messages(values)
    states = [w.pstate for w in stages.parts]
    peak, alerts, t0 = 0, 0, time.perf_counter()
    for i in range(0, len(msgs), ROUND):
        alerts += stages.round(msgs[i:i + ROUND])
        peak = max(peak, state_bytes(states))
    alerts += stages.round([])
    rss1 = rss_kib()
    kinds = by_kind(states)
    total = sum(b for _, b, _ in kinds.values())
    packed = sum(z for _, _, z in kinds.values())
    print(f"in process: {tenants} tenants x the lab-1 day = {alerts:,} alerts in {time.perf_counter() - t0:.0f}s; "
          f"state at the end of the day, as the table stores it:")
    print(f"  {'kind':14} {'records':>8} {'bytes':>11} {'zstd':>10}  per record")
    for kind in [k for k in KINDS if k in kinds] + [k for k in kinds if k not in KINDS]:
        n, b, z = kinds[kind]
        print(f"  {kind:14} {n:8,} {b:11,} {z:10,}  {b / max(n, 1):8,.0f} B")
    opened = kinds.get("incidents", (0, 0, 0))
    fusion = kinds.get("fusion", (0, 0, 0))
    for kind, what in COUNTED.items():
        n, b, z = kinds.get(kind, (0, 0, 0))
        extra = fusion[1] if kind == "incidents" else 0  # an open incident is also in the fusion map
        if n:
            print(f"state per {what}: {(b + extra) / n:,.0f} bytes encoded ({b / n:,.0f} without its fusion copy)")
    print(f"state per tenant: {total / tenants:,.0f} bytes encoded, {packed / tenants:,.0f} bytes zstd "
          f"(at the largest during the day: {peak / tenants:,.0f} encoded); open incidents per tenant "
          f"{opened[0] / tenants:.1f}")
    import zstandard

    sample = b"".join(stages.sample)
    ratio = len(sample) / max(len(zstandard.ZstdCompressor(level=3).compress(sample)), 1)  # the producer's zstd
    per, ingest = stages.output_bytes / alerts, sum(len(v) for vs in values.values() for _, v in vs) / alerts
    print(f"bytes per alert: outputs {per:,.0f} as encoded, ~{per / ratio:,.0f} zstd in record batches; state "
          f"changelog {stages.changelog_bytes / alerts:,.0f} (zstd segments and snapshots); ingest {ingest:,.0f} "
          f"(envelopes, before compression)")
    print(f"RSS of this process grew {(rss1 - rss0) / 1024:,.0f} MiB = {(rss1 - rss0) * 1024 / tenants:,.0f} bytes "
          f"per tenant ({(rss1 - rss0) * 1024 / max(total, 1):.1f}x the encoded state)")


def worker_phase(tenants: int, sample: int) -> None:
    from pipeline.stream.app import ensure_topics
    from pipeline.stream.broker import free_port, open_broker
    from pipeline.stream.config import Topics
    from pipeline.stream.producer import send_values
    from tests.stream.fixtures_worker import read_topic

    values = lab_values(tenants, 100, "tenant", tenants=tenants, sample=sample)
    records = sum(len(json.loads(v).get("records", [1])) for vs in values.values() for _, v in vs)
    work = Path(tempfile.mkdtemp(prefix="mdr-bench-mem-"))
    with open_broker() as broker:
        b, prefix, app = broker.bootstrap, "mem.", "bench-mem"
        topics = Topics(prefix=prefix)
        ensure_topics(b, topics, 4)
        port = free_port()
        proc = start_worker(b, work, app, "mem-1", port, prefix, ["--tenant-keyed"])
        try:
            while metric(port, "mdr_assigned_partitions") < 4:
                time.sleep(0.5)
            time.sleep(2)
            idle = rss_kib(proc.pid)
            for kind, vs in values.items():
                asyncio.run(send_values(b, topics.ingest_topic(kind), vs, None))
            t0 = time.monotonic()
            while True:
                time.sleep(2)
                read = metric(port, "mdr_records_total")
                applied, alerts = metric(port, "mdr_alerts_applied_total"), metric(port, "mdr_alerts_total")
                if read >= sum(len(vs) for vs in values.values()) and applied >= alerts > 0:
                    break
            time.sleep(3)
            held, hwm = rss_kib(proc.pid), rss_kib(proc.pid, "VmHWM")
            print(f"worker holding {tenants:,} tenants ({records:,} records, {applied:,.0f} alerts applied in "
                  f"{time.monotonic() - t0:.0f}s): RSS {idle / 1024:,.0f} MiB idle -> {held / 1024:,.0f} MiB "
                  f"(peak {hwm / 1024:,.0f} MiB): {(held - idle) * 1024 / tenants:,.0f} bytes per tenant")
        finally:
            stop(proc)
        changelog = read_topic(b, f"{app}-state-changelog", timeout=60)
        size = sum(len(r.value or b"") + len(r.key or b"") for r in changelog)
        print(f"state changelog: {len(changelog):,} records, {size / 2**20:,.1f} MiB (zstd segments and snapshots, "
              f"before compaction)")
        port2 = free_port()
        t0 = time.monotonic()
        proc = start_worker(b, work, app, "mem-2", port2, prefix, ["--tenant-keyed", "--log-level", "info"])
        log = work / "mem-2.log"
        try:
            while len(re.findall(r"state loaded", log.read_text(errors="replace"))) < 4:
                if time.monotonic() - t0 > 600:
                    raise SystemExit("the second worker did not restore the state in 10 minutes")
                time.sleep(0.2)
            restored = time.monotonic() - t0
            keys = sum(int(n) for n in re.findall(r"state loaded \((\d+) keys\)", log.read_text()))
            print(f"a worker with an empty data dir restored it ({keys:,} keys, 4 partitions) and was ready "
                  f"{restored:.1f}s after its start ({size / 2**20 / restored:,.1f} MiB/s of changelog, start-up "
                  f"included); RSS {rss_kib(proc.pid) / 1024:,.0f} MiB")
        finally:
            stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tenants", type=int, default=40, help="tenants of the in-process phase (each a lab day)")
    ap.add_argument("--worker-tenants", type=int, default=1000, help="tenants of the real worker (0: skip)")
    ap.add_argument("--sample", type=int, default=20, help="the worker phase sends every N-th record")
    a = ap.parse_args()
    from pipeline.gc_tuning import tune_gc

    tune_gc()
    if a.tenants:
        in_process(a.tenants)
    if a.worker_tenants:
        worker_phase(a.worker_tenants, a.sample)


if __name__ == "__main__":
    main()
