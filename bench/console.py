"""Console benchmark on PostgreSQL: 100k incidents across 50 tenants; queue and incident page p95 server time
(goal < 200 ms) and live-update latency (goal < 2 s after the ticket is committed).

Data: the lab day's incidents (their real ticket snapshots, alerts with raw records, timeline events and
playbook runs, as `mdr replay` writes them) cloned into 50 tenants with fresh ids, spread over the last 30 days,
60 % closed, the open ones past their response time mostly acknowledged (15 % breached); each clone keeps up
to 3 of its alerts. Loaded with multi-row inserts (not measured).
Server: `mdr console` in its own process; server time is its `Server-Timing` header (request in to response
out, rendering included), wall time is what the client saw. The floor, measured in the same run, is
/healthz (one store round trip): the pages are reported as ratios to it too.
Live update: an SSE client on /events while tickets are committed one at a time through the real write path
(`TicketStore.apply_batch`); latency = event received - commit returned.

    .venv/bin/python bench/console.py [--incidents 100000] [--tenants 50] [--requests 200] [--pg-url URL] [--db URL]

PostgreSQL: `--pg-url URL`, else MDR_BENCH_PG_URL, else a throwaway cluster from the Debian postgresql binaries
(tests/pg.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import msgspec  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from pipeline.console.auth import AuthError, add_user  # noqa: E402
from pipeline.schema import Incident  # noqa: E402
from pipeline.soar.evidence import StoredAlert  # noqa: E402
from pipeline.soar.models import PlaybookRun, Ticket, TimelineEvent, utcnow  # noqa: E402
from pipeline.soar.tickets import TicketStore, Upsert  # noqa: E402
from tests.console.conftest import LAB1, replay_into  # noqa: E402
from tests.console.server import PASSWORD, free_port, login  # noqa: E402

ALERTS_PER_CLONE = 3


def pct(vals: list[float], q: float) -> float:
    s = sorted(vals)
    return s[min(len(s) - 1, int(q * len(s)))]


def templates(url: str, work: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The lab day's tickets (with timeline and runs) and alerts, as rows to clone."""
    replay_into(url, work / "lab", "lab", LAB1, "web-01")
    store = TicketStore(url)
    with store.tx() as s:
        tickets = []
        for t in s.scalars(select(Ticket).where(Ticket.incident_status != "merged")):
            row = {c.name: getattr(t, c.name) for c in Ticket.__table__.columns if c.name != "id"}
            row["_timeline"] = [{c.name: getattr(e, c.name) for c in TimelineEvent.__table__.columns
                                 if c.name not in ("id", "ticket_id")}
                                for e in s.scalars(select(TimelineEvent).where(TimelineEvent.ticket_id == t.id))]
            row["_runs"] = [{c.name: getattr(r, c.name) for c in PlaybookRun.__table__.columns
                             if c.name not in ("id", "ticket_id")}
                            for r in s.scalars(select(PlaybookRun).where(PlaybookRun.ticket_id == t.id))]
            tickets.append(row)
        alerts = {a.alert_id: {c.name: getattr(a, c.name) for c in StoredAlert.__table__.columns}
                  for a in s.scalars(select(StoredAlert))}
    store.close()
    return tickets, alerts


def _trim(src: dict[str, Any]) -> dict[str, Any]:
    """A template ticket whose incident keeps ALERTS_PER_CLONE alert ids, with @I@ where a clone's suffix goes
    and @T@ for its tenant."""
    inc = copy.deepcopy(src["incident"])
    keep = inc["alert_ids"][:ALERTS_PER_CLONE]

    def mark(ids: list[str]) -> list[str]:
        return [f"{a[:24]}@I@" for a in ids if a in keep]

    inc.update(incident_id=f"@I@{src['incident_id'][8:]}", tenant_id="@T@", alert_ids=mark(keep))
    for ex in inc.get("explanation", []):
        ex["alert_ids"] = mark(ex["alert_ids"])
        ex["conditions"] = {k: mark(v) for k, v in (ex.get("conditions") or {}).items()}
    return {"src": src, "incident": json.dumps(inc, default=str), "keep": keep}


def _copy(conn: Any, table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)


def load(url: str, n: int, tenants: int, work: Path) -> list[tuple[str, str]]:
    """Clone the lab tickets into `n` tickets over `tenants` tenants (PostgreSQL COPY); returns (tenant,
    incident id) of each."""
    tpl, alerts = templates(url, work)
    trimmed = [_trim(t) for t in tpl]
    store = TicketStore(url)
    rnd = random.Random(7)
    now = utcnow()
    made: list[tuple[str, str]] = []
    tcols = [c.name for c in Ticket.__table__.columns if c.name != "id"]
    t0 = time.perf_counter()
    chunk = 10_000
    raw = store.engine.raw_connection()
    conn = raw.driver_connection
    assert conn is not None
    try:
        for start in range(0, n, chunk):
            rows, meta = [], []
            for i in range(start, min(n, start + chunk)):
                t = trimmed[i % len(trimmed)]
                src = t["src"]
                tenant, suffix = f"tenant-{i % tenants:02d}", f"{i:08x}"
                iid = f"{suffix}{src['incident_id'][8:]}"
                created = now - timedelta(minutes=rnd.randrange(0, 30 * 24 * 60))
                due = created + (src["sla_due"] - src["created_at"])
                closed = rnd.random() < 0.6
                # open and past its response time: mostly acknowledged (in work), some breached
                acked = closed or (due < now and rnd.random() < 0.85)
                status = "closed" if closed else (rnd.choice(("acknowledged", "investigating")) if acked else "new")
                row = dict(src, incident_id=iid, tenant_id=tenant, created_at=created, updated_at=created,
                           incident=t["incident"].replace("@I@", suffix).replace("@T@", tenant), sla_due=due,
                           external="{}", status=status, sla_breached=not acked and due < now,
                           verdict=rnd.choice(("true_positive", "false_positive", "benign")) if closed else None,
                           closed_at=created + timedelta(hours=2) if closed else None,
                           acknowledged_at=min(due, created + timedelta(minutes=10)) if acked else None)
                rows.append(tuple(row[c] for c in tcols))
                meta.append((t, tenant, suffix, iid, created))
                made.append((tenant, iid))
            _copy(conn, "tickets", tcols, rows)
            with conn.cursor() as cur:
                cur.execute("SELECT incident_id, id FROM tickets WHERE incident_id = ANY(%s)", ([m[3] for m in meta],))
                ids = dict(cur.fetchall())
            tl, runs, al = [], [], []
            for t, tenant, suffix, iid, created in meta:
                tid = ids[iid]
                tl += [(tid, created, e["kind"], e["actor"], e["status"], e["text"],
                        json.dumps(e["data"], default=str) if e["data"] is not None else None)
                       for e in t["src"]["_timeline"][:6]]
                runs += [(tid, r["playbook"], r["status"], r["step"], r["attempt"], created,
                          json.dumps(r["context"], default=str), json.dumps(r["approval"], default=str)
                          if r["approval"] else None, created, created) for r in t["src"]["_runs"]]
                for orig in t["keep"]:
                    base = alerts.get(orig)
                    if base:
                        aid = f"{orig[:24]}{suffix}"
                        doc = {**base["doc"], "alert_id": aid, "tenant_id": tenant}
                        al.append((tenant, aid, base["time"], base["count"], json.dumps(doc, default=str),
                                   base["raw"]))
            _copy(conn, "timeline", ["ticket_id", "at", "kind", "actor", "status", "text", "data"], tl)
            _copy(conn, "playbook_runs", ["ticket_id", "playbook", "status", "step", "attempt", "next_at", "context",
                                          "approval", "created_at", "updated_at"], runs)
            _copy(conn, "alerts", ["tenant_id", "alert_id", "time", "count", "doc", "raw"], al)
            conn.commit()
            print(f"\r  loaded {len(made):,} incidents ({time.perf_counter() - t0:.0f} s)", end="", flush=True)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")  # what autovacuum does to a loaded table (visibility map, statistics)
        conn.autocommit = False
    finally:
        raw.close()
        store.close()
    print()
    return made


@contextlib.contextmanager
def console(url: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "console", "--db", url, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def timed(c: httpx.Client, paths: list[str]) -> tuple[list[float], list[float]]:
    server, wall = [], []
    for p in paths:
        t0 = time.perf_counter()
        r = c.get(p)
        wall.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (p, r.status_code)
        dur = re.search(r"dur=([\d.]+)", r.headers["server-timing"])
        assert dur is not None, r.headers["server-timing"]
        server.append(float(dur[1]))
    return server, wall


def live(base: str, url: str, tenant: str, n: int = 20) -> list[float]:
    """Commit tickets one at a time; seconds from commit to the SSE event carrying the ticket's id."""
    c = httpx.Client(base_url=base, timeout=None)
    login(c, "root")
    got: dict[int, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with c.stream("GET", "/events") as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("retry"):
                    ready.set()
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "tickets":
                    now = time.perf_counter()
                    for tid in json.loads(line[6:])["ids"]:
                        got.setdefault(tid, now)
                if len(got) >= n:
                    return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    ready.wait(30)
    store = TicketStore(url)
    tpl = store.list(tenant=tenant, limit=1)[0].incident
    out = []
    run = f"{int(time.time()) % 10**6:06d}"  # fresh incidents on every run (a reused store keeps the last run's)
    for i in range(n):
        inc = msgspec.convert({**tpl, "incident_id": f"{run}{i:04d}{tpl['incident_id'][10:]}", "version": 1},
                              Incident)
        [u] = store.apply_batch([inc], lambda _: [])
        assert isinstance(u, Upsert)
        committed = time.perf_counter()
        deadline = committed + 10
        while u.ticket.id not in got and time.perf_counter() < deadline:
            time.sleep(0.005)
        out.append(got.get(u.ticket.id, deadline) - committed)
        time.sleep(random.uniform(0.2, 0.6))
    store.close()
    c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--pg-url", default=os.environ.get("MDR_BENCH_PG_URL"))
    ap.add_argument("--db", help="Measure a store this bench loaded before (its database URL), without loading")
    args = ap.parse_args()
    import tempfile

    from tests.pg import new_database, postgres_cluster

    with contextlib.ExitStack() as stack:
        if args.db:  # a store this bench loaded before
            url = args.db
            store = TicketStore(url)
            with store.tx() as s:
                made = [(t, i) for t, i in s.execute(select(Ticket.tenant_id, Ticket.incident_id))]
        else:
            url = new_database(args.pg_url or stack.enter_context(postgres_cluster()))
            print(f"PostgreSQL: loading {args.incidents:,} incidents across {args.tenants} tenants ...")
            made = load(url, args.incidents, args.tenants, Path(tempfile.mkdtemp(prefix="mdr-bench-console-")))
            store = TicketStore(url)
        for name, role, tenants in (("root", "admin", []), ("ana", "analyst", ["tenant-07"]),
                                    ("multi", "analyst", [f"tenant-{i:02d}" for i in range(5)])):
            with contextlib.suppress(AuthError):  # there already
                add_user(store, name, role, tenants, PASSWORD)
        with store.tx() as s:
            n_open = s.scalar(select(func.count()).select_from(Ticket).where(Ticket.status != "closed"))
            n_all = s.scalar(select(func.count()).select_from(Ticket))
            n_tenants = s.scalar(select(func.count(Ticket.tenant_id.distinct())))
        store.close()
        print(f"  {n_all:,} tickets of {n_tenants} tenants")
        print(f"  {n_open:,} open tickets")
        rnd = random.Random(1)
        with console(url) as base:
            clients = {}
            for name in ("root", "ana", "multi"):
                clients[name] = httpx.Client(base_url=base, timeout=30)
                login(clients[name], name)
            floor, _ = timed(clients["root"], ["/healthz"] * args.requests)
            fl = pct(floor, 0.95)
            rows: list[tuple[str, list[float], list[float] | None]] = [("floor: /healthz", floor, None)]
            cases = {
                "queue, admin (50 tenants)": ("root", ["/queue"]),
                "queue, admin, P1 + text filter": ("root", ["/queue?priority=P1&text=compromise"]),
                "queue, analyst (1 tenant)": ("ana", ["/queue"]),
                "queue, analyst (5 tenants)": ("multi", ["/queue"]),
                "incident page, admin": ("root", [f"/incidents/{iid}" for _, iid in rnd.sample(made, 400)]),
                "incident page, analyst": ("ana", [f"/incidents/{iid}" for t, iid in made if t == "tenant-07"]),
                "API /api/incidents, admin": ("root", ["/api/incidents"]),
            }
            for label, (who, paths) in cases.items():
                timed(clients[who], paths[:5])  # warm-up
                seq = [paths[i % len(paths)] for i in range(args.requests)]
                took, walls = timed(clients[who], seq)
                rows.append((label, took, walls))
            print(f"\n{'page':<34} {'server p50':>10} {'p95':>8} {'max':>8} {'x floor p95':>12} {'wall p95':>9}")
            for label, server, wall in rows:
                print(f"{label:<34} {statistics.median(server):>8.1f}ms {pct(server, .95):>6.1f}ms "
                      f"{max(server):>6.1f}ms {pct(server, .95) / fl:>11.1f}x "
                      f"{(f'{pct(wall, .95):.1f}ms') if wall else '':>9}")
            lat = live(base, url, "tenant-03")
            p50, p95 = statistics.median(lat) * 1000, pct(lat, .95) * 1000
            print(f"\nlive update (commit -> SSE event), {len(lat)} tickets: p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
                  f"max {max(lat) * 1000:.0f} ms (goal < 2000 ms)")
            worst = max(pct(s, .95) for label, s, w in rows if w)
            print(f"\nworst page p95 server time {worst:.1f} ms (goal < 200 ms): {'PASS' if worst < 200 else 'FAIL'}; "
                  f"live p95 {pct(lat, .95):.2f} s: {'PASS' if pct(lat, .95) < 2 else 'FAIL'}")


if __name__ == "__main__":
    main()
