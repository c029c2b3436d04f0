"""Size a deployment from the figures the benches measure: partitions, workers, broker, state, recovery.

    .venv/bin/python bench/scaling_sim.py                       # 1,000 tenants x 50 alerts/s, peaks of 10x
    .venv/bin/python bench/scaling_sim.py --per-core 9000 --tenants 2000 --burst-share 0.1

Every input is a measured figure of this repository's benches (defaults: docs/scaling.md, where they were
measured) or a stated assumption (marked so in --help). The simulation:

1. places the tenants on partitions with Kafka's partitioner (the worker's own `TenantPartitions`), and the
   partitions on workers as Faust's assignor does (round robin), one worker per core;
2. draws each tenant's alert rate second by second for `--hours`: the base rate, and peaks of `--peak` times
   it that start at random (a tenant is in a peak `--burst-share` of the time, `--burst-minutes` on average);
3. queues each worker's arrivals against its capacity (`--per-core` alerts/s) and reports the added latency
   (backlog / capacity) alerts see, for every worker count; the smallest count whose p99 stays under
   `--latency` is the sizing; the same workers are then run through a peak of every tenant at once;
4. derives broker throughput and storage, state size and memory per worker, and the time to recover from the
   loss of one worker (group rebalance, state restore from the changelog, catching up with the backlog).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.stream.partitions import TenantPartitions

MiB = 1 << 20


def args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = ap.add_argument
    a("--tenants", type=int, default=1000)
    a("--rate", type=float, default=50.0, help="alerts/s of a tenant on average, its peaks included")
    a("--peak", type=float, default=10.0, help="a tenant's peak rate, times --rate")
    a("--burst-share", type=float, default=0.05, help="ASSUMPTION: share of the time a tenant is in a peak")
    a("--burst-minutes", type=float, default=5.0, help="ASSUMPTION: mean length of a peak")
    a("--all-peak-minutes", type=float, default=5.0, help="ASSUMPTION: length of the every-tenant peak")
    a("--per-core", type=float, default=7_800.0,
      help="alerts/s one worker sustains on one core (bench/e2e.py: alerts per worker CPU-second)")
    a("--partitions", type=int, default=256, help="partitions of the ingest topics (tenant-keyed) and the state")
    a("--latency", type=float, default=1.0, help="p99 of the latency the queue may add, seconds")
    a("--hours", type=float, default=1.0, help="simulated time")
    a("--ingest-bytes", type=float, default=2_830.0,
      help="ingest bytes per alert, uncompressed envelopes of ~2.9 records (bench/memory.py)")
    a("--output-bytes", type=float, default=92.0,
      help="output bytes per alert, zstd record batches: alerts, incidents, dead letters (bench/memory.py)")
    a("--changelog-bytes", type=float, default=203.0, help="state changelog bytes per alert, zstd (bench/memory.py)")
    a("--window-bytes", type=float, default=3_660.0, help="state bytes per dedup window (bench/memory.py)")
    a("--distinct", type=float, default=0.41,
      help="share of alerts that open a dedup window (lab-1: 1,098 of 2,706); the rest are repeats")
    a("--dedup-window", type=float, default=600.0, help="seconds a dedup window stays open")
    a("--tenant-bytes", type=float, default=776_000.0,
      help="state bytes of a tenant beside its dedup windows: correlation windows, incidents (bench/memory.py)")
    a("--rss-factor", type=float, default=4.0, help="worker RSS per byte of encoded state (bench/memory.py)")
    a("--rss-base", type=float, default=150.0, help="RSS of an idle worker, MiB (bench/memory.py)")
    a("--zstd", type=float, default=14.7, help="encoded / zstd bytes of the state (bench/memory.py)")
    a("--restore-mibs", type=float, default=3.8, help="changelog MiB/s a fresh worker restores (bench/memory.py)")
    a("--rebalance", type=float, default=10.0, help="seconds to notice a lost worker and rebalance "
      "(session timeout 6 s + assignment, measured in tests/stream/test_worker.py)")
    a("--replication", type=int, default=3, help="ASSUMPTION: replication factor of every topic")
    a("--retention-days", type=float, default=7.0, help="ASSUMPTION: retention of ingest and output topics")
    a("--max-rss-gib", type=float, default=8.0, help="ASSUMPTION: memory one worker (core) may use")
    a("--broker-mibs", type=float, default=100.0,
      help="ASSUMPTION: MiB/s one broker takes in (produce + replication), with headroom")
    a("--seed", type=int, default=16)
    return ap.parse_args()


def tenant_rates(a: argparse.Namespace, rng: np.random.Generator) -> np.ndarray:
    """alerts/s of every tenant (rows) in every second (columns): base rate, and random peaks."""
    seconds = int(a.hours * 3600)
    leave = 1.0 / (a.burst_minutes * 60)
    enter = leave * a.burst_share / (1 - a.burst_share)  # stationary share in a peak = burst_share
    state = rng.random(a.tenants) < a.burst_share
    base = a.rate / (1 + a.burst_share * (a.peak - 1))  # so that the mean, peaks included, is --rate
    rates = np.empty((a.tenants, seconds), dtype=np.float32)
    for t in range(seconds):
        flip = rng.random(a.tenants)
        state = np.where(state, flip >= leave, flip < enter)
        rates[:, t] = np.where(state, base * a.peak, base)
    return rates


def worker_load(rates: np.ndarray, tenant_part: np.ndarray, partitions: int, workers: int) -> np.ndarray:
    """alerts/s arriving at each worker (rows) each second: partitions round robin over the workers."""
    part = np.zeros((partitions, rates.shape[1]), dtype=np.float64)
    np.add.at(part, tenant_part, rates)
    load = np.zeros((workers, rates.shape[1]), dtype=np.float64)
    np.add.at(load, np.arange(partitions) % workers, part)
    return load


def queue(load: np.ndarray, capacity: float) -> tuple[float, float, float]:
    """(p99 added latency of the alerts, worst added latency, seconds of the run with a backlog) for workers of
    `capacity` alerts/s each, fed `load` (workers x seconds)."""
    backlog = np.zeros(load.shape[0])
    lat = np.zeros_like(load)
    for t in range(load.shape[1]):
        backlog = np.maximum(0.0, backlog + load[:, t] - capacity)
        lat[:, t] = backlog / capacity
    weights = load.ravel()
    order = np.argsort(lat.ravel())
    cum = np.cumsum(weights[order])
    p99 = lat.ravel()[order][np.searchsorted(cum, 0.99 * cum[-1])]
    return float(p99), float(lat.max()), float((lat > 0).any(axis=0).mean() * load.shape[1])


def main() -> None:
    a = args()
    rng = np.random.default_rng(a.seed)
    tenants = [f"tenant-{i:05d}" for i in range(a.tenants)]
    base = a.rate / (1 + a.burst_share * (a.peak - 1))
    total_mean, total_peak = a.rate * a.tenants, base * a.peak * a.tenants
    print(f"load: {a.tenants:,} tenants x {a.rate:g} alerts/s on average ({base:.0f} outside peaks, "
          f"{base * a.peak:.0f} in a peak, {a.burst_share:.0%} of the time): {total_mean:,.0f} alerts/s, "
          f"{total_peak:,.0f} if every tenant peaks at once")
    rates = tenant_rates(a, rng)
    floor = math.ceil(total_mean / a.per_core)
    chosen = None
    print(f"workers (one core each, {a.per_core:,.0f} alerts/s): added latency of the alerts, simulated "
          f"{a.hours:g} h of independent peaks")
    partitions = a.partitions
    route = TenantPartitions(partitions)
    tenant_part = np.array([route(t) for t in tenants])
    for workers in range(floor, min(4 * floor + 8, partitions + 1)):
        load = worker_load(rates, tenant_part, partitions, workers)
        p99, worst, busy = queue(load, a.per_core)
        util = load.sum() / (workers * a.per_core * load.shape[1])
        print(f"  {workers:3d} workers, {partitions:3d} partitions: utilisation {util:.0%}, p99 {p99:6.2f}s, worst "
              f"{worst:6.1f}s, backlog in {busy / load.shape[1]:.0%} of the seconds")
        if p99 <= a.latency:
            chosen = (workers, util)
            break
    if chosen is None:
        raise SystemExit("no worker count up to 4x the floor meets --latency")
    workers, util = chosen
    sim_peak = float(rates.sum(axis=0).max())  # the busiest second of the simulated hours
    per_part = np.bincount(tenant_part, minlength=partitions)
    print(f"sizing: {workers} workers (cores) on {partitions} partitions; tenants per partition "
          f"{per_part.min()}-{per_part.max()} (mean {per_part.mean():.1f}); room to grow to {partitions} workers "
          f"without repartitioning")
    # every tenant at its peak at once: how far behind, how long to drain once it ends
    cap = workers * a.per_core
    excess = max(0.0, total_peak - cap)
    behind = excess * a.all_peak_minutes * 60
    drain = behind / max(cap - total_mean, 1e-9)
    print(f"every tenant at {a.peak:g}x at once for {a.all_peak_minutes:g} min: demand {total_peak:,.0f} alerts/s "
          f"on {cap:,.0f} of capacity; {behind:,.0f} alerts behind ({behind / cap:,.0f}s of work), drained "
          f"{drain / 60:,.1f} min after the peak; no alert is lost (Kafka holds them), they are late. "
          f"Capacity for it without delay: {math.ceil(total_peak / a.per_core / 0.85)} workers")
    # broker
    rec_in = total_mean * a.ingest_bytes / MiB
    out = total_mean * a.output_bytes / MiB
    changelog = total_mean * a.changelog_bytes / MiB
    produce = rec_in + out + changelog
    busiest = produce * sim_peak / total_mean
    brokers = max(3, math.ceil(busiest * a.replication / a.broker_mibs))
    disk = (rec_in + out) * 86400 * a.retention_days * a.replication / 2**20  # TiB
    print(f"broker: produced {produce:,.1f} MiB/s on average (ingest {rec_in:,.1f}, outputs {out:,.1f}, state "
          f"changelog {changelog:,.1f}), {busiest:,.0f} MiB/s in the busiest simulated second ({sim_peak:,.0f} "
          f"alerts/s); x{a.replication} replication -> {brokers} brokers at {a.broker_mibs:g} MiB/s each (an "
          f"every-tenant peak queues on their disks); {disk:,.1f} TiB of disk for {a.retention_days:g} days of "
          f"ingest and outputs (the changelog is compacted: about the state)")
    # state
    windows = a.rate * a.dedup_window * a.distinct
    tenant_state = windows * a.window_bytes + a.tenant_bytes
    state_all = tenant_state * a.tenants
    rss_all = state_all * a.rss_factor / MiB  # MiB
    by_memory = math.ceil(rss_all / (a.max_rss_gib * 1024 - a.rss_base))
    print(f"state: {windows:,.0f} dedup windows open per tenant at {a.rate:g} alerts/s ({a.distinct:.0%} open one) "
          f"-> {tenant_state / MiB:,.1f} MiB per tenant, {state_all / 2**30:,.1f} GiB in all "
          f"({state_all / a.zstd / 2**30:,.1f} GiB zstd in RocksDB and the changelog); in memory ~"
          f"{rss_all / 1024:,.0f} GiB ({a.rss_factor:g}x): {by_memory} workers of at most {a.max_rss_gib:g} GiB")
    if by_memory > workers:
        print(f"sizing by memory: {by_memory} workers ({by_memory - workers} more than the throughput needs)")
        workers, util = by_memory, util * chosen[0] / by_memory
    per_worker = state_all / workers
    print(f"per worker: {per_worker / 2**30:,.2f} GiB of state, RSS "
          f"~{(a.rss_base + per_worker * a.rss_factor / MiB) / 1024:,.1f} GiB, {a.tenants / workers:,.0f} tenants, "
          f"utilisation {util:.0%}")
    # recovery
    lost_state = state_all / a.zstd / workers / MiB
    restore = lost_state / a.restore_mibs
    outage = a.rebalance + restore
    lost_rate = total_mean / workers
    spare = cap - total_mean
    catch_up = lost_rate * outage / max(spare, 1e-9)
    print(f"loss of one worker: rebalance {a.rebalance:g}s + restore of its {lost_state:,.0f} MiB of changelog "
          f"{restore:,.0f}s (0 with a standby replica, table_standby_replicas=1, or a restart on its own disk) "
          f"= {outage:,.0f}s without its {lost_rate:,.0f} alerts/s; the {workers - 1} others catch up in "
          f"{catch_up:,.0f}s more at {util:.0%} utilisation")


if __name__ == "__main__":
    main()
