"""Threat-intel scale benchmark, in one run:

1. load 1 million generated indicators (mixed: IPv4, IPv6, CIDRs, domains, URLs, MD5/SHA-1/SHA-256) from a
   CSV feed: wall time and memory (RSS) of a fresh process; the same from the saved state (msgpack), which is
   what `mdr replay` loads;
2. the per-alert cost of the pipeline without vs with enrichment (assets + those 1M indicators), on the real
   lab-1 records: the normalize stage alone vs normalize + enrich, and the whole core (`Core.feed_alerts`:
   dedup, match, correlate, incidents, fusion, priority) without vs with the enricher.

    .venv/bin/python bench/intel.py [--n 1000000] [--samples samples/lab-1] [--repeat 5]

Targets: load < 30 s and < 500 MB; enrichment adds < 10 % to the per-alert cost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ASSETS = """assets:
  - name: web-01
    ips: [127.0.0.1]
    hostnames: [vm, shop.lab.local]
    criticality: high
"""
# values of the lab-1 day that the generated feed also lists, so that lookups find real hits
HASHES = {128: "md5", 160: "sha1", 256: "sha256"}
REAL_HITS = [("127.0.0.66", "ip"), ("malware-lab.test", "domain"), ("shop.lab.local/uploads/cmd.php", "url")]


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    cur = peak = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, n: int, seed: int = 7) -> None:
    """A CSV feed of n indicators with realistic shapes, sources, confidences, tags and validity windows."""
    rnd = random.Random(seed)
    tlds = ["com", "net", "org", "ru", "cn", "io", "info", "xyz", "top", "biz"]
    words = ["cdn", "update", "mail", "secure", "login", "api", "static", "files", "dl", "srv", "img", "my"]
    sources = ["abuse.ch", "otx", "misp:CIRCL", "vendor-feed", "internal-hunt"]
    tags = ["c2", "botnet", "phishing", "scanner", "malware", "ransomware", "tor-exit", "apt"]

    def domain() -> str:
        return f"{rnd.choice(words)}{rnd.randrange(10**6)}.{rnd.choice(words)}-{rnd.randrange(10**4)}." \
               f"{rnd.choice(tlds)}"

    def ipv4() -> str:  # first three octets
        return f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}"

    with open(path, "w", encoding="utf-8") as fh:
        fh.write("value,type,source,confidence,tags,valid_from,valid_until\n")
        for v, t in REAL_HITS:
            fh.write(f"{v},{t},lab-feed,90,lab,,\n")
        for i in range(n - len(REAL_HITS)):
            r = rnd.random()
            if r < 0.40:
                v, t = f"{ipv4()}.{rnd.randrange(256)}", "ip"
            elif r < 0.42:
                g = [f"{rnd.getrandbits(16):x}" for _ in range(3)]
                v, t = f"2001:db8:{g[0]}:{g[1]}::{g[2]}", "ip"
            elif r < 0.47:
                v, t = f"{ipv4()}.0/24", "cidr"
            elif r < 0.72:
                v, t = domain(), "domain"
            elif r < 0.80:
                v, t = f"http://{domain()}/{rnd.choice(words)}/{rnd.randrange(10**8):x}.php", "url"
            else:
                bits = rnd.choice((128, 160, 256))
                v, t = f"{rnd.getrandbits(bits):0{bits // 4}x}", HASHES[bits]
            valid = ","
            if i % 2:  # half carry their own validity window (STIX-like), half none (blocklist-like)
                d, m1, m2 = rnd.randrange(1, 28), rnd.randrange(1, 12), rnd.randrange(1, 13)
                valid = f"2026-{m1:02d}-{d:02d}T00:00:00Z,2027-{m2:02d}-{d:02d}"
            fh.write(f"{v},{t},{rnd.choice(sources)},{rnd.randrange(10, 101)},{rnd.choice(tags)},{valid}\n")


# ---- children (fresh processes, so RSS is theirs alone) ----------------------------------------------------
def child_load_csv(csv: str, state: str) -> dict:
    from pipeline.context.feeds import load_feed
    from pipeline.context.store import write_intel

    base, _ = rss_mb()
    t = time.perf_counter()
    s, _ = load_feed(csv)
    elapsed = time.perf_counter() - t
    cur, peak = rss_mb()
    write_intel(Path(state), s)
    return {"indicators": len(s), "seconds": elapsed, "rss_mb": cur, "peak_rss_mb": peak, "base_rss_mb": base}


def child_load_state(state: str) -> dict:
    from pipeline.context.store import read_intel

    base, _ = rss_mb()
    t = time.perf_counter()
    s = read_intel(Path(state))
    elapsed = time.perf_counter() - t
    cur, peak = rss_mb()
    return {"indicators": len(s), "seconds": elapsed, "rss_mb": cur, "peak_rss_mb": peak, "base_rss_mb": base}


def child_per_alert(state: str, samples: str, repeat: int) -> dict:
    from datetime import UTC, datetime

    from pipeline.context.store import Context, read_intel
    from pipeline.normalize.reader import expand, read_records
    from pipeline.normalize.stage import NormalizeResult, NormalizeStage

    ctx = Context()
    ctx.add_intel(read_intel(Path(state)), "shop")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(ASSETS)
    assert ctx.load_assets("shop", fh.name), ctx.errors
    os.unlink(fh.name)
    now = datetime.now(UTC)
    records = [rh for f in expand([samples]) for rh in read_records(f, "shop", None, now)]

    def normalize():
        stage, res = NormalizeStage(), NormalizeResult()
        for rec, hint in records:
            stage.process(rec, hint, res)
        stage.flush(res)
        return res.alerts

    def timed(fn, *args):
        t = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - t, out

    norm, enrich, hits = [], [], 0
    for _ in range(repeat):
        dt, alerts = timed(normalize)
        norm.append(dt)
        t = time.perf_counter()
        for a in alerts:
            ctx.enrich(a)
        enrich.append(time.perf_counter() - t)
        hits = sum(1 for a in alerts if a.intel)
    n = len(alerts)
    out = {"records": len(records), "alerts": n, "alerts_with_intel_hits": hits,
           "alerts_with_asset": sum(1 for a in alerts if a.asset),
           "normalize_us_per_alert": min(norm) / n * 1e6, "enrich_us_per_alert": min(enrich) / n * 1e6}
    out["normalize_stage_overhead_pct"] = 100 * out["enrich_us_per_alert"] / out["normalize_us_per_alert"]
    out.update(_core_cost(ctx, samples, repeat))
    return out


def _core_cost(ctx, samples: str, repeat: int) -> dict:
    """Per-alert cost of the whole core without vs with the enricher (same alerts, fresh core per run)."""
    try:
        from pipeline.core.engine import Core
        from pipeline.normalize.source import read_alerts
        from pipeline.rules.usecase import load_usecases

        ucs = load_usecases(str(ROOT / "usecases"))
    except Exception as e:  # the core is optional for this benchmark
        return {"core": f"not measured: {e}"}
    plain: list[float] = []
    enriched: list[float] = []
    for _ in range(repeat):
        for hooks, acc in (({}, plain), ({"enricher": ctx.enrich}, enriched)):
            alerts = read_alerts([samples], "shop").alerts
            core = Core(ucs, **hooks)
            t = time.perf_counter()
            for i in range(0, len(alerts), 2048):
                core.feed_alerts(alerts[i:i + 2048])
                core.take()
            acc.append((time.perf_counter() - t) / len(alerts) * 1e6)
    return {"core_us_per_alert": min(plain), "core_with_enrich_us_per_alert": min(enriched),
            "core_overhead_pct": 100 * (min(enriched) - min(plain)) / min(plain)}


def run_child(*args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--samples", default=str(ROOT / "samples" / "lab-1"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        children: dict[str, Callable[..., Any]] = {"load_csv": child_load_csv, "load_state": child_load_state,
                                                   "per_alert": child_per_alert}
        fn = children[kind]
        if kind == "per_alert":
            rest[-1] = int(rest[-1])
        print(json.dumps(fn(*rest)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv, state = Path(tmp) / "feed.csv", Path(tmp) / "feed.msgpack"
        t = time.perf_counter()
        generate(csv, args.n)
        print(f"generated {args.n:,} indicators ({csv.stat().st_size / 1e6:.0f} MB CSV) "
              f"in {time.perf_counter() - t:.1f} s")
        load = run_child("--child", "load_csv", str(csv), str(state))
        print(f"load from CSV      : {load['indicators']:,} indicators in {load['seconds']:.1f} s; RSS "
              f"{load['rss_mb']:.0f} MB (peak {load['peak_rss_mb']:.0f} MB, interpreter + imports "
              f"{load['base_rss_mb']:.0f} MB)")
        st = run_child("--child", "load_state", str(state))
        print(f"load saved state   : {st['indicators']:,} indicators in {st['seconds']:.1f} s; RSS "
              f"{st['rss_mb']:.0f} MB (peak {st['peak_rss_mb']:.0f} MB); "
              f"file {state.stat().st_size / 1e6:.0f} MB")
        pa = run_child("--child", "per_alert", str(state), args.samples, str(args.repeat))
    print(f"per alert ({pa['alerts']:,} lab-1 alerts from {pa['records']:,} records; "
          f"{pa['alerts_with_asset']:,} with an asset, {pa['alerts_with_intel_hits']:,} with intel hits):")
    print(f"  normalize stage  : {pa['normalize_us_per_alert']:.1f} µs;  + enrich "
          f"{pa['enrich_us_per_alert']:.1f} µs  -> +{pa['normalize_stage_overhead_pct']:.1f} %")
    if "core_us_per_alert" in pa:
        print(f"  core (feed_alerts): {pa['core_us_per_alert']:.1f} µs;  with enricher "
              f"{pa['core_with_enrich_us_per_alert']:.1f} µs  -> +{pa['core_overhead_pct']:.1f} %")
        total = pa["normalize_us_per_alert"] + pa["core_us_per_alert"]
        print(f"  normalize + core : {total:.1f} µs;  enrichment adds "
              f"{100 * (pa['core_with_enrich_us_per_alert'] - pa['core_us_per_alert']) / total:.1f} %")
    else:
        print(f"  core             : {pa['core']}")


if __name__ == "__main__":
    main()
