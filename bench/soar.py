"""SOAR benchmark on SQLite and PostgreSQL, with the shipped playbooks and every channel a real local server:

1. throughput: N incidents through ticket creation + playbook start as fast as possible, with `Soar.handle`
   one incident per call (one transaction each) and in batches of BATCH (the streaming worker hands over each
   flush's incident updates at once), while the runner executes the playbooks on its threads; then the time
   until every run has settled (done or waiting for approval) -> incidents/s fully processed;
2. latency: incidents handed over at a paced rate (default 100/s for 10 s), each as it comes; the time from the
   moment an incident is due (emitted by the core) to its first playbook step's result, p50 / p99 (goal: p99 <
   1 s). A consumer slower than the rate falls behind and that shows in these figures.

    .venv/bin/python bench/soar.py [--n 2000] [--rate 100] [--seconds 10] [--workers 4] [--backend both]

PostgreSQL: `--pg-url URL`, else MDR_BENCH_PG_URL, else a throwaway cluster from the Debian postgresql
binaries (tests/pg.py); skipped when none is available.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.schema import CATEGORY_CLASS, Entities, Incident, MatchExplanation  # noqa: E402
from pipeline.soar.actions import Soar  # noqa: E402
from pipeline.soar.connectors import Channels  # noqa: E402
from pipeline.soar.playbooks import load_playbooks  # noqa: E402
from pipeline.soar.runner import StepEvent  # noqa: E402
from pipeline.soar.tickets import TicketStore  # noqa: E402
from tests.soar.servers import RecordingServer, Reply, Seen  # noqa: E402

BATCH = 200  # incident updates per `handle` call in the batched run (a busy worker flush)
CATEGORIES = ["web_attack", "scan", "brute_force", "exploit", "webshell", "malware", "c2", "dos", "other"]
PRIORITIES = ["P1", "P2", "P3", "P3", "P4", "P4", "P5"]


def sink(s: Seen) -> Reply:
    if s.path == "/api/v1/alert":
        return Reply(201, {"_id": "~a"})
    if s.path.endswith("/case"):
        return Reply(201, {"_id": "~c"})
    return Reply(200, {"errcode": 0, "errmsg": "ok"})


class SinkProcess:
    """The local services (chat robots, TheHive, firewall API) in a child process, as real ones would be:
    their CPU does not compete with the pipeline's threads for the interpreter lock."""

    def __init__(self) -> None:
        import multiprocessing as mp

        self._conn, child = mp.Pipe()
        self._proc = mp.get_context("fork").Process(target=self._serve, args=(child,), daemon=True)
        self._proc.start()
        self.url: str = self._conn.recv()

    @staticmethod
    def _serve(conn: Any) -> None:
        server = RecordingServer(sink)
        conn.send(server.url)
        while (cmd := conn.recv()) != "stop":
            conn.send(len(server.requests) if cmd == "count" else None)
        server.close()

    def count(self) -> int:
        self._conn.send("count")
        return int(self._conn.recv())

    def close(self) -> None:
        self._conn.send("stop")
        self._proc.join(10)


def channels(url: str) -> Channels:
    spec: dict[str, dict[str, Any]] = {
        "customer": {"type": "dingtalk", "url": url + "/robot/send?access_token=bench", "secret": "SECbench"},
        "soc": {"type": "slack", "url": url + "/services/T/B/bench", "max_concurrency": 8},
        "casebook": {"type": "thehive", "url": url, "api_key": "bench-key", "max_concurrency": 8},
        "firewall": {"type": "response_api", "url": url + "/fw"},
        "edr": {"type": "response_api", "url": url + "/edr"},
        "oncall": {"type": "webhook", "url": url + "/page"},
        "customer-email": {"type": "log", "path": os.devnull},
    }
    for c in spec.values():
        c.setdefault("max_concurrency", 8)
    return Channels({"channels": spec, "escalation": {"tiers": [["oncall"], ["oncall", "soc"], ["oncall"]]}})


def incidents(n: int, seed: int, prefix: str) -> list[Incident]:
    rnd = random.Random(seed)
    now = time.time()
    from datetime import UTC, datetime

    out = []
    for i in range(n):
        cat = rnd.choice(CATEGORIES)
        t = datetime.fromtimestamp(now - rnd.randint(0, 3600), UTC)
        src = [f"198.51.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}" for _ in range(rnd.randint(1, 3))]
        host = f"web-{rnd.randint(1, 40):02d}"
        out.append(
            Incident(
                incident_id=f"{prefix}{i:07d}",
                tenant_id=f"tenant-{rnd.randint(1, 20)}",
                title=f"{cat} on {host}",
                category=cat,
                class_=CATEGORY_CLASS[cat],
                priority=rnd.choice(PRIORITIES),
                use_cases=[f"uc-{cat}"],
                first_seen=t,
                last_seen=t,
                alert_count=rnd.randint(1, 50),
                alert_ids=[f"{prefix}{i}-{k}" for k in range(rnd.randint(1, 20))],
                entities=Entities(src_ips=src, hosts=[host]),
                outcome=rnd.choice(["blocked", "attempted", "unknown"]),
                explanation=[MatchExplanation(use_case=f"uc-{cat}", title=f"{cat} rule", alert_ids=[])],
            )
        )
    return out


@contextlib.contextmanager
def open_soar(url: str, server: SinkProcess, workers: int) -> Iterator[Soar]:
    chans = channels(server.url)
    pbs = load_playbooks(ROOT / "playbooks", channels=chans.names())
    assert not pbs.errors, pbs.errors
    soar = Soar(TicketStore(url, pool_size=workers + 4), pbs, chans, workers=workers)
    try:
        yield soar
    finally:
        soar.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] if s else float("nan")


def throughput(url: str, server: SinkProcess, n: int, workers: int, batched: bool) -> dict[str, Any]:
    """Incidents/s through ticket + playbook start (`handle` of one incident, or of BATCH at once), with the
    runner executing the playbooks meanwhile; then incidents/s fully processed."""
    with open_soar(url, server, workers) as soar:
        batch = incidents(n, 1, "thb" if batched else "ths")
        size = BATCH if batched else 1
        before = server.count()
        t0 = time.perf_counter()
        for i in range(0, n, size):
            soar.handle(batch[i:i + size])
        acted = time.perf_counter() - t0
        settled = soar.drain(600)
        total = time.perf_counter() - t0
        return {
            "acted_per_s": n / acted,
            "processed_per_s": n / total,
            "settled": settled,
            "requests": server.count() - before,
        }


def latency(url: str, server: SinkProcess, rate: float, seconds: float, workers: int) -> dict[str, Any]:
    with open_soar(url, server, workers) as soar:
        batch = incidents(round(rate * seconds), 2, "lat")
        emitted: dict[str, float] = {}
        first: dict[str, float] = {}
        lock = threading.Lock()

        def on_step(ev: StepEvent) -> None:
            with lock:
                first.setdefault(ev.incident_id, time.perf_counter())

        soar.runner.listeners.append(on_step)
        t0 = time.perf_counter()
        late = 0.0
        for i, inc in enumerate(batch):
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
            emitted[inc.incident_id] = due  # when the core emitted it
            soar.handle([inc])
        soar.drain(600)
        lat = [first[k] - e for k, e in emitted.items() if k in first]
        return {
            "n": len(lat),
            "p50_ms": pct(lat, 50) * 1000,
            "p99_ms": pct(lat, 99) * 1000,
            "max_ms": max(lat) * 1000,
            "pacing_lag_ms": late * 1000,
        }


def pg_url(arg: str | None) -> contextlib.AbstractContextManager[str | None]:
    url = arg or os.environ.get("MDR_BENCH_PG_URL")
    if url:
        return contextlib.nullcontext(url)
    from tests.pg import PgUnavailable, postgres_cluster

    @contextlib.contextmanager
    def cluster() -> Iterator[str | None]:
        try:
            cm = postgres_cluster()
            u = cm.__enter__()
        except PgUnavailable as e:
            print(f"postgresql: skipped ({e})")
            yield None
            return
        try:
            yield u
        finally:
            cm.__exit__(None, None, None)

    return cluster()


def run_backend(name: str, make_url: Any, args: argparse.Namespace) -> None:
    server = SinkProcess()
    try:
        one = throughput(make_url(), server, args.n, args.workers, batched=False)
        many = throughput(make_url(), server, args.n, args.workers, batched=True)
        lat = latency(make_url(), server, args.rate, args.seconds, args.workers)
    finally:
        server.close()
    for label, thr in (("handle(1)", one), (f"handle({BATCH})", many)):
        print(
            f"{name:>10} {label:<11} ticket + playbook start {thr['acted_per_s']:6.0f} incidents/s, fully processed "
            f"{thr['processed_per_s']:5.0f} incidents/s ({args.n} incidents, {thr['requests']} connector requests, "
            f"settled={thr['settled']})"
        )
    print(
        f"{name:>10} latency   at {args.rate:g} incidents/s for {args.seconds:g}s (handle each): emitted -> first step "
        f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms (n={lat['n']}, "
        f"pacing lag {lat['pacing_lag_ms']:.1f} ms); goal p99 < 1000 ms {'met' if lat['p99_ms'] < 1000 else 'MISSED'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--pg-url")
    args = ap.parse_args()
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as d:
            counter = iter(range(100))
            run_backend("sqlite", lambda: f"sqlite:///{d}/bench{next(counter)}.db", args)
    if args.backend in ("postgres", "both"):
        with pg_url(args.pg_url) as base:
            if base is not None:
                from tests.pg import new_database

                run_backend("postgresql", lambda: new_database(base), args)


if __name__ == "__main__":
    main()
