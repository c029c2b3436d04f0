"""Normalize throughput on one core: Suricata EVE and ModSecurity audit records, lab-1 replicated in memory.

For each format it times, over the same records:
  floor       `orjson.loads` of every line (the least any JSON normalizer must do),
  normalize   `NormalizeStage.process` (the pipeline's entry point: checks + normalizer),
  +dedup      normalize, then `pipeline.dedup.Dedup` on the alerts (skipped when the module is absent),
and prints records/s, alerts/s and the cost relative to the floor.

Copy k of the lab records gets its 127.0.0.x addresses rewritten to 10.a.b.x and its transaction ids made
unique, so that copies are distinct sources, targets and events (dedup then holds as many entities as a busy
day would, not one merged copy).

    .venv/bin/python bench/normalize.py [--records 200000] [--repeat 3] [--lab DIR] [--cpu 0]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.normalize.base import RawRecord
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.runtime import tune_gc

try:
    from pipeline.dedup import Dedup
except ImportError:  # the dedup stage is not there yet
    Dedup = None

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1000
TXID = '"transaction_id":"'
FILES = {
    "suricata": ["ids/eve_attack.jsonl", "ids/eve_scanners.jsonl"],
    "modsecurity": ["waf/modsec_audit.jsonl"],
}


def lab_dir(arg: str | None) -> Path:
    """The lab-1 samples: --lab, else ../shared/samples/lab-1, else tests/fixtures (the same files)."""
    for p in ([Path(arg)] if arg else []) + [ROOT.parent / "shared/samples/lab-1", ROOT / "tests/fixtures"]:
        if (p / FILES["suricata"][0]).exists():
            return p
    raise SystemExit("no lab-1 files found; pass --lab")


def replicate(lines: list[str], n: int) -> list[str]:
    """At least `n` lines: copy k of `lines` with 127.0.0.x rewritten to 10.(k // 256).(k % 256).x and
    ModSecurity transaction ids prefixed with k (each copy is other transactions, not the same ones again)."""
    out = list(lines)
    k = 1
    while len(out) < n:
        prefix = f"10.{k // 256 % 256}.{k % 256}."
        out.extend(line.replace("127.0.0.", prefix).replace(TXID, f"{TXID}{k}-") for line in lines)
        k += 1
    return out


def timed(fn: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, int, int]:
    """Best wall time of `repeat` runs (the first also warms caches and the allocator)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        alerts, kept = fn()
        best = min(best, time.perf_counter() - t0)
    return best, alerts, kept


def bench(fmt: str, lines: list[str], repeat: int) -> list[tuple[str, float, int, int]]:
    """(stage, seconds, alerts normalized, alerts kept after dedup) per stage."""
    now = datetime.now(UTC)
    recs = [RawRecord(line, "bench", now, "web-01") for line in lines]
    # The input stands for a stream: keep the cyclic GC from walking 200k held records on every full pass.
    gc.collect()
    gc.freeze()
    tune_gc()  # as the worker and `mdr replay` run

    def floor() -> tuple[int, int]:
        loads = orjson.loads
        for line in lines:
            loads(line)
        return 0, 0

    def run(dedup: Dedup | None) -> tuple[int, int]:
        """Batches of BATCH records, as the stream worker takes them; alerts leave after each batch."""
        stage, out = NormalizeStage(), NormalizeResult()
        alerts = kept = 0
        for start in range(0, len(recs), BATCH):
            for r in recs[start:start + BATCH]:
                stage.process(r, fmt, out)
            assert not out.dead, out.dead[:1]
            alerts += len(out.alerts)
            if dedup is not None:
                for a in out.alerts:
                    kept += dedup.process(a)[0] is a  # a new representative
            out.alerts.clear()
        if dedup is not None:
            for _ in dedup.drain():
                pass
        return alerts, kept if dedup is not None else alerts

    rows = [("floor (orjson.loads)", *timed(floor, repeat)), ("normalize", *timed(lambda: run(None), repeat))]
    if Dedup is not None:
        rows.append(("normalize + dedup", *timed(lambda: run(Dedup()), repeat)))
    gc.unfreeze()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000, help="records per format (default 200000)")
    ap.add_argument("--lab", help="lab-1 samples directory")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the first allowed one)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs per stage (default 3)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    lab = lab_dir(args.lab)
    print(f"lab: {lab}  records/format: >= {args.records}  python {sys.version.split()[0]}  one core")
    if Dedup is None:
        print("pipeline.dedup not importable: the dedup column is skipped")
    print(f"{'format':12} {'stage':22} {'records':>8} {'alerts':>8} {'kept':>8} {'seconds':>8} "
          f"{'records/s':>10} {'alerts/s':>10} {'us/record':>9} {'x floor':>7}")
    for fmt, files in FILES.items():
        lines = [ln for f in files for ln in (lab / f).read_text(encoding="utf-8").splitlines() if ln.strip()]
        lines = replicate(lines, args.records)
        rows = bench(fmt, lines, args.repeat)
        base = rows[0][1]
        for stage, secs, alerts, kept in rows:
            n = len(lines)
            print(f"{fmt:12} {stage:22} {n:8d} {alerts:8d} {kept:8d} {secs:8.3f} {n / secs:10,.0f} "
                  f"{alerts / secs:10,.0f} {secs / n * 1e6:9.2f} {secs / base:7.1f}")


if __name__ == "__main__":
    main()
