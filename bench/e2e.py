"""End-to-end streaming benchmark on a real Kafka broker: worker throughput and latency beside baselines.

    .venv/bin/python bench/e2e.py --records 500000 [--ingest tenant-keyed,hop] [--phases raw,bare,inproc,1,2,latency]

Replicates lab-1 (varied tenants and attacker addresses) into the ingest topics, then in one run on the same
broker measures: a raw aiokafka consumer + orjson.loads, a bare Faust agent loop, the worker's stages in one
process without Kafka (`inproc`), one worker, two workers (alerts/s from the workers' own metrics), and
alert -> incident latency (p50/p99 of the worker's histogram: ingest timestamp to the incident acknowledged by
the broker) with input paced at half the one-worker rate. Worker phases run once per `--ingest` way: `hop`
(input keyed by host, alerts through the by-tenant topic) and `tenant-keyed` (input keyed by tenant, the worker
started with --tenant-keyed runs it where it is read).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.normalize.reader import expand  # noqa: E402
from pipeline.stream.app import ensure_topics  # noqa: E402
from pipeline.stream.broker import create_topics, free_port, open_broker  # noqa: E402
from pipeline.stream.config import Topics  # noqa: E402
from pipeline.stream.producer import envelopes, send_values  # noqa: E402

if TYPE_CHECKING:
    from pipeline.stream.processor import PartitionWork

LAB = ROOT / "samples" / "lab-1"
KINDS = {"waf": "waf", "ids": "firewall", "host": "host"}


def lab_values(copies: int, per_message: int, key_by: str = "host", tenants: int = 16, sample: int = 1
               ) -> dict[str, list[tuple[bytes, bytes]]]:
    """(key, envelope) pairs per ingest kind: lab-1 `copies` times, each copy its own host and attacker address,
    `tenants` tenants (every `sample`-th record only); keyed by host or by tenant as `mdr produce --key` keys
    them."""
    base = {kind: [orjson.loads(v) for v in envelopes(expand([str(LAB / d)]), "t", None, "web-01", per_message)]
            for d, kind in KINDS.items()}
    out: dict[str, list[tuple[bytes, bytes]]] = {k: [] for k in base}
    for c in range(copies):
        ip = f"10.{c // 250}.{c % 250}.66"
        host = f"web-{c:03d}"
        for kind, envs in base.items():
            for env in envs:
                tenant = f"tenant-{c % tenants}"
                e = dict(env, tenant=tenant, host=host)
                if "records" in e:
                    e["records"] = [r.replace("127.0.0.66", ip) for r in e["records"][::sample]]
                else:
                    e["record"] = e["record"].replace("127.0.0.66", ip)
                out[kind].append(((tenant if key_by == "tenant" else host).encode(), orjson.dumps(e)))
    return out


async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    got, t0 = 0, time.perf_counter()
    try:
        while got < n:
            for recs in (await c.getmany(timeout_ms=500, max_records=20000)).values():
                for r in recs:
                    orjson.loads(r.value)
                got += len(recs)
    finally:
        await c.stop()
    return got / (time.perf_counter() - t0)


def bare_faust(bootstrap: str, topic: str, n: int, work: Path) -> float:
    script = f"""
import time, faust, os, sys
app = faust.App("bare-{os.getpid()}", broker="kafka://{bootstrap}", web_enabled=False, autodiscover=False,
                consumer_auto_offset_reset="earliest", stream_buffer_maxsize=65536, broker_max_poll_records=5000,
                stream_wait_empty=False, store="memory://", datadir="{work}/bare")
t = app.topic("{topic}", value_serializer="raw")
st = {{"n": 0}}
@app.agent(t)
async def loop(stream):
    async for v in stream:
        if st["n"] == 0:
            st["t0"] = time.perf_counter()
        st["n"] += 1
        if st["n"] >= {n}:
            os.write(1, f"RATE {{st['n'] / (time.perf_counter() - st['t0'])}}\\n".encode())  # Faust redirects print
            os._exit(0)
app.main()
"""
    p = subprocess.run([sys.executable, "-c", script, "worker", "-l", "warn"], capture_output=True, text=True,
                       timeout=900, cwd=work, check=False)
    m = re.search(r"RATE ([\d.]+)", p.stdout)
    return float(m.group(1)) if m else float("nan")


def metric(port: int, name: str, labels: str = "") -> float:
    """Sum of a metric's samples (those whose labels contain `labels`)."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(v) for lab, v in re.findall(rf"^{name}(?:{{([^}}]*)}})? ([\d.e+]+)$", body, re.M)
               if labels in lab)


PROFILE: Path | None = None  # --profile: py-spy flame graphs of the workers go here
WORKER_ARGS: list[str] = []  # --worker-args: extra `mdr worker` options
WAYS = {"hop": ("host", []), "tenant-keyed": ("tenant", ["--tenant-keyed"])}  # --ingest: input key, worker options


def start_worker(bootstrap: str, work: Path, app_id: str, name: str, port: int, prefix: str = "mdr.",
                 args: list[str] | None = None) -> subprocess.Popen:
    spy = ([str(Path(sys.executable).with_name("py-spy")), "record", "-r", "250", "-f", "raw", "-o",
            str(PROFILE / f"{name}.txt"), "--"] if PROFILE else [])
    return subprocess.Popen(
        [*spy, sys.executable, "-m", "pipeline.cli", "worker", "--bootstrap", bootstrap, "--app-id", app_id,
         "--data-dir", str(work / name), "--metrics-port", str(port), "--log-level", "warning",
         "--prefix", prefix, "--no-tickets", *(args or []), *WORKER_ARGS],
        cwd=ROOT, stdout=(work / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the worker (under py-spy: its child, so that py-spy writes the profile when it exits)."""
    if PROFILE:
        subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)], check=False)
    else:
        proc.terminate()
    proc.wait(60)


def worker_pid(proc: subprocess.Popen) -> int:
    """The worker process (under py-spy: py-spy's child)."""
    if not PROFILE:
        return proc.pid
    for _ in range(50):
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        pids = kids.read_text().split() if kids.exists() else []
        if pids:
            return int(pids[0])
        time.sleep(0.1)
    return proc.pid


def _le(labels: str) -> float:
    """The upper bound of a histogram bucket, from its labels."""
    m = re.search(r'le="([^"]+)"', labels)
    assert m is not None, labels
    return float(m[1])


def quantile(port: int, q: float, name: str = "mdr_end_to_end_seconds", labels: str = "") -> float:
    """Quantile of one of the worker's histograms (linear inside a bucket)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    buckets = [(_le(lab), float(n)) for lab, n in
               re.findall(rf"^{name}_bucket{{([^}}]*)}} ([\d.e+]+)$", body, re.M) if labels in lab]
    total = buckets[-1][1] if buckets else 0.0
    lo_le, lo_n = 0.0, 0.0
    for le, n in buckets:
        if n >= q * total and total:
            if le == float("inf"):
                return lo_le
            return lo_le + (le - lo_le) * (q * total - lo_n) / max(n - lo_n, 1e-9)
        lo_le, lo_n = le, n
    return float("nan")


async def paced(bootstrap: str, topics: dict[str, list[tuple[bytes, bytes]]], per_second: float, seconds: float
                ) -> int:
    """Send the values round robin over the topics at `per_second` messages/s for `seconds`."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, max_request_size=16 << 20)
    await producer.start()
    streams = [(t, iter(vs)) for t, vs in topics.items()]
    sent, t0 = 0, time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds and streams:
            for t, it in list(streams):
                v = next(it, None)
                if v is None:
                    streams.remove((t, it))
                    continue
                await producer.send(t, v[1], key=v[0])
                sent += 1
            await asyncio.sleep(max(0.0, t0 + sent / per_second - time.perf_counter()))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def latency(bootstrap: str, work: Path, way: str, values: dict[str, list[tuple[bytes, bytes]]],
            alerts_per_msg: float, rate: float, seconds: float = 20.0) -> tuple[float, float, float, float]:
    """p50/p99 of alert -> incident latency (ingest timestamp to the incident acknowledged by the broker) of one
    worker with input paced at `rate` alerts/s; the rate offered; alerts that joined incidents."""
    prefix = f"lat-{way}."
    topics = Topics(prefix=prefix)
    ensure_topics(bootstrap, topics, 4)
    port = free_port()
    proc = start_worker(bootstrap, work, f"bench-lat-{way}", f"bench-lat-{way}", port, prefix=prefix,
                        args=WAYS[way][1])
    try:
        while metric(port, "mdr_alerts_total") == 0.0 and not _healthy(port):
            time.sleep(0.5)
        time.sleep(3)
        per_s = rate / alerts_per_msg
        pid, cpu0, t0 = worker_pid(proc), cpu_seconds(worker_pid(proc)), time.monotonic()
        sent = asyncio.run(paced(bootstrap, {topics.ingest_topic(k): vs for k, vs in values.items()}, per_s, seconds))
        time.sleep(5)
        cpu, took = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        print(f"  worker CPU while paced: {cpu:.1f}s in {took:.0f}s = {cpu / took:.0%} of one core")
        stages = {st: quantile(port, 0.99, "mdr_stage_seconds", f'stage="{st}"')
                  for st in ("normalize", "core", "state", "emit")}
        print("  stage p99 per batch: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in stages.items()))
        waits = {h: quantile(port, 0.99, "mdr_wait_seconds", f'hop="{h}"') for h in ("ingest", "internal", "hold")}
        print("  wait p99 before each hop: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in waits.items()))
        e2e = "mdr_end_to_end_seconds"
        print(f"  every alert to its outputs delivered: p50 {quantile(port, 0.5, e2e):.2f}s, "
              f"p99 {quantile(port, 0.99, e2e):.2f}s")
        inc = "mdr_alert_to_incident_seconds"
        joined = metric(port, inc + "_count")
        return quantile(port, 0.5, inc), quantile(port, 0.99, inc), sent * alerts_per_msg / seconds, joined
    finally:
        stop(proc)


def _healthy(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status == 200
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


BROKER_PID = 0  # for the CPU split printed beside the worker rates


def run_workers(bootstrap: str, work: Path, count: int, way: str, values: dict[str, list[tuple[bytes, bytes]]]
                ) -> tuple[float, float, float, float]:
    """`count` workers on topics of their own: once all of them hold their share of the partitions, the input
    is produced; returns (alerts, alerts/s, seconds from the first record read to the last alert applied,
    worker CPU seconds)."""
    app_id = f"bench-{count}-{way}"
    prefix = f"{app_id}."
    topics = Topics(prefix=prefix)
    ensure_topics(bootstrap, topics, 4)
    ports = [free_port() for _ in range(count)]
    procs = [start_worker(bootstrap, work, app_id, f"{app_id}-{i}", p, prefix, WAYS[way][1])
             for i, p in enumerate(ports)]
    pids = [worker_pid(p) for p in procs]
    try:
        internal = topics.internal
        stable = 0
        while stable < 6:  # every worker holds by-tenant partitions, all 4 are held, for 3 s
            time.sleep(0.5)
            held = [metric(p, "mdr_assigned_partitions", f'topic="{internal}"') for p in ports]
            stable = stable + 1 if all(held) and sum(held) == 4 else 0
        cpu0 = [cpu_seconds(p) for p in pids], cpu_seconds(BROKER_PID)
        msgs = sum(asyncio.run(send_values(bootstrap, topics.ingest_topic(k), vs, None)) for k, vs in values.items())
        t_first = None
        while True:  # /metrics costs the worker CPU: look often only near the start and the end
            read = sum(metric(p, "mdr_records_total") for p in ports)
            if read and t_first is None:
                t_first = time.monotonic()
            alerts = sum(metric(p, "mdr_alerts_total") for p in ports)
            applied = sum(metric(p, "mdr_alerts_applied_total") for p in ports)
            if read >= msgs and applied >= alerts > 0:
                break
            time.sleep(0.2 if t_first is None or (read >= msgs and applied >= 0.9 * alerts) else 1.0)
        elapsed = time.monotonic() - (t_first or 0.0)
        workers = [cpu_seconds(p) - c for p, c in zip(pids, cpu0[0], strict=True)]
        gc_s = sum(metric(p, "mdr_gc_pause_seconds_sum") for p in ports)
        full = sum(metric(p, "mdr_gc_pause_seconds_count", 'generation="2"') for p in ports)
        rerouted = sum(metric(p, "mdr_alerts_rerouted_total") for p in ports)
        print(f"  GC pauses: {gc_s:.1f} s in all, {full:.0f} full collections; {rerouted:,.0f} alerts rerouted")
        print(f"  CPU over the run: workers {' + '.join(f'{c:.1f}' for c in workers)} s, broker "
              f"{cpu_seconds(BROKER_PID) - cpu0[1]:.1f} s, in {elapsed:.1f} s on {os.cpu_count()} cores; "
              f"{applied / max(sum(workers), 1e-9):,.0f} alerts per worker CPU-second")
        return applied, applied / elapsed, elapsed, sum(workers)
    finally:
        for p in procs:
            stop(p)


class Stages:
    """The worker's stages in one process without Kafka: messages -> IngestStage -> each tenant's partition
    (PartitionWork: the core, its state change encoded into table records) -> outputs encoded into an outbox."""

    def __init__(self, partitions: int = 4, max_run: int | None = None):
        from pipeline.rules.usecase import load_usecases
        from pipeline.stream.config import WorkerConfig
        from pipeline.stream.partitions import TenantPartitions
        from pipeline.stream.processor import IngestStage, PartitionWork
        from pipeline.stream.state import PartitionState

        cfg = self.cfg = WorkerConfig() if max_run is None else WorkerConfig(max_run=max_run)
        self.route = TenantPartitions(partitions)
        self.ingest_stage = IngestStage({}, self.route)
        ucs = load_usecases(str(cfg.usecases))
        self.parts = [PartitionWork(p, cfg, ucs, PartitionState()) for p in range(partitions)]
        self.output_bytes = self.changelog_bytes = 0  # outputs as produced (before compression), state records
        self.sample: list[bytes] = []  # the first outputs, to measure how they compress

    def messages(self, values: dict[str, list[tuple[bytes, bytes]]]) -> list:
        """The values as consumed messages of their tenant's partition, interleaved as a consumer reads them."""
        from pipeline.stream.envelope import Message

        now = int(time.time() * 1000)
        return sorted((Message(v, f"mdr.alerts.{kind}", self.route(orjson.loads(v)["tenant"]), i, now)
                       for kind, vs in values.items() for i, (_, v) in enumerate(vs)), key=lambda m: m.offset)

    def round(self, msgs: list) -> int:
        """Normalize `msgs` (none: flush what stateful normalizers buffer) in slices of `--max-run` alerts, as the
        tenant-keyed worker does, running a partition once that many alerts wait and every partition with alerts
        at the end (the round is ~1 s of input: what `--max-hold` lets wait); returns the alerts applied."""
        from pipeline.stream.processor import Batch

        slices = self.ingest_stage.slices(msgs, self.cfg.max_run) if msgs else [(0, self.ingest_stage.flush_idle(0.0))]
        alerts = 0
        for _, res in slices:
            for p, tenant, items, _ in res.direct:
                self.parts[p].add(Batch(tenant, items), None, 0.0)
            alerts += sum(self._run(w) for w in self.parts if 0 < self.cfg.max_run <= len(w.pending))
        return alerts + sum(self._run(w) for w in self.parts if w.waiting)

    def _run(self, w: PartitionWork) -> int:
        """Run one partition and encode its outputs as the worker produces them; the alerts applied."""
        from pipeline.schema import encode
        from pipeline.stream.outbox import Outbox
        from pipeline.stream.state import encode_once

        fl = w.run()
        out = Outbox()
        for inc in fl.out.incidents.values():
            out.add("incidents", inc.incident_id, encode_once(inc, fl.encoded))
        for a in fl.alerts:
            out.add("alerts", a.alert_id, encode_once(a, fl.encoded))
        for s in fl.out.suppressed:
            out.add("suppressed", s.alert.alert_id, encode(s))
        self.output_bytes += sum(len(v) for recs in out.records.values() for _, v in recs)
        self.changelog_bytes += sum(len(k) + len(v or b"") for k, v in fl.writes)
        if len(self.sample) < 2000:
            self.sample += [v for recs in out.records.values() for _, v in recs]
        return fl.fed


ROUND = 300  # messages per in-process round: ~30k records, what one worker reads in about a second


def inproc(values: dict[str, list[tuple[bytes, bytes]]], max_run: int | None = None) -> tuple[float, float, float]:
    """`Stages` fed ~1 s of input at a time: (alerts, alerts/s, alerts per CPU-second)."""
    stages = Stages(max_run=max_run)
    msgs = stages.messages(values)
    alerts, t0, c0 = 0, time.perf_counter(), time.process_time()
    for i in range(0, len(msgs), ROUND):
        alerts += stages.round(msgs[i:i + ROUND])
    alerts += stages.round([])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return alerts, alerts / elapsed, alerts / cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--rate", type=float, help="alerts/s offered in the latency phase (default: half of 1 worker)")
    ap.add_argument("--worker-args", default="", help="extra `mdr worker` options, e.g. '--max-hold 0.3'")
    ap.add_argument("--profile", type=Path, help="record py-spy profiles of the workers into this directory")
    ap.add_argument("--phases", default="raw,bare,inproc,1,2,latency", help="which measurements to run")
    ap.add_argument("--ingest", default="tenant-keyed,hop", help="worker phases for each of: tenant-keyed, hop")
    a = ap.parse_args()
    global PROFILE, BROKER_PID
    PROFILE = a.profile
    WORKER_ARGS.extend(a.worker_args.split())
    if PROFILE:
        PROFILE.mkdir(parents=True, exist_ok=True)
    phases = set(a.phases.split(","))
    ways = [w for w in a.ingest.split(",") if w]
    copies = max(1, a.records // 7500)
    work = Path(tempfile.mkdtemp(prefix="mdr-bench-"))
    from pipeline.gc_tuning import tune_gc

    tune_gc()  # as the worker runs (the in-process phase)
    with open_broker() as broker:
        b = broker.bootstrap
        proc = getattr(broker, "_proc", None)
        BROKER_PID = proc.pid if proc else 0
        t0 = time.perf_counter()
        values = {w: lab_values(copies, a.per_message, WAYS[w][0]) for w in WAYS}
        some = next(iter(values.values()))
        records = sum(len(orjson.loads(v).get("records", [1])) for vs in some.values() for _, v in vs)
        msgs = sum(len(vs) for vs in some.values())
        print(f"input: ~{records:,.0f} lab-like records in {msgs:,} envelopes of up to {a.per_message} "
              f"(built in {time.perf_counter() - t0:.1f}s); each worker phase produces it to topics of its own")
        # the floors: one record per message, as most products send them
        single = [kv for vs in lab_values(max(1, min(copies, 200_000 // 7500)), 1).values() for kv in vs]
        create_topics(b, ["bench.single"], partitions=4)
        asyncio.run(send_values(b, "bench.single", single, None))
        raw = bare = float("nan")
        if "raw" in phases:
            raw = asyncio.run(raw_consume(b, "bench.single", len(single)))
            print(f"floor: raw aiokafka consumer + orjson.loads: {raw:,.0f} records/s")
        if "bare" in phases:
            bare = bare_faust(b, "bench.single", len(single), work)
            print(f"floor: bare Faust agent loop (one event per record): {bare:,.0f} records/s")
        if "inproc" in phases:
            n0, r0, c0 = inproc(values["tenant-keyed"])
            print(f"the worker's stages in one process, no Kafka: {n0:,.0f} alerts = {r0:,.0f} alerts/s "
                  f"({c0:,.0f} per CPU-second)")
        one: dict[str, tuple[float, float]] = {}
        for way in ways:
            vals = values[way]
            if "1" in phases:
                n1, r1, s1, cpu1 = run_workers(b, work, 1, way, vals)
                rec = r1 * records / n1
                one[way] = (n1, r1)
                print(f"1 worker, {way}: {n1:,.0f} alerts in {s1:.1f}s = {r1:,.0f} alerts/s, "
                      f"{n1 / max(cpu1, 1e-9):,.0f} alerts per worker CPU-second, {rec:,.0f} records/s "
                      f"= {rec / raw:.1%} of the raw consumer floor, {rec / bare:.2f}x the bare Faust loop"
                      + (f", {r1 / r0:.0%} of the stages in one process" if "inproc" in phases else ""))
            if "2" in phases:
                n2, r2, s2, _ = run_workers(b, work, 2, way, vals)
                r1 = one.get(way, (0, float("nan")))[1]
                print(f"2 workers, {way}: {n2:,.0f} alerts in {s2:.1f}s = {r2:,.0f} alerts/s ({r2 / r1:.2f}x one)")
        if len(one) == 2:
            print(f"tenant-keyed / hop, one worker: {one['tenant-keyed'][1] / one['hop'][1]:.2f}x")
        if "latency" in phases:
            for way in ways:
                n1, r1 = one.get(way, (0.0, float("nan")))
                rate = a.rate or r1 / 2
                if rate != rate:
                    continue
                per_msg = n1 / max(msgs, 1) if n1 else 32.0  # alerts per envelope of this input
                p50, p99, offered, joined = latency(b, work, way, values[way], per_msg, rate)
                print(f"latency, {way}, ~{offered:,.0f} alerts/s offered "
                      f"({'--rate' if a.rate else 'half of one worker'}): alert -> incident p50 {p50:.2f}s, "
                      f"p99 {p99:.2f}s ({joined:,.0f} alerts joined incidents)")
    print(f"work dir {work}; cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
