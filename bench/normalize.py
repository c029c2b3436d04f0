"""Normalize throughput on one core, per format: the lab-1 logs (and the cloud fixtures) replicated in memory.

For each format it times, over the same records:
  floor       the least any normalizer of that input must do: `orjson.loads` of every JSON record, or
              `str.split` of every text line,
  normalize   `NormalizeStage.process` (the pipeline's entry point: checks + normalizer; stateful formats flushed),
  +dedup      normalize, then `pipeline.core.dedup.Dedup` on the alerts,
and prints records/s, alerts/s (per CPU second of this process) and the cost relative to the floor, then each
format's normalize + dedup rate against issue 16's goal (ModSecurity: 100k alerts/s; others: 100k records/s).
A record is a line, or one whole AIDE report.

Copy k of the records is made other events: 127.0.0.x addresses become 10.a.b.x, and ModSecurity transaction
and unique ids and auditd event serials get k written in, so that copies are distinct sources, targets and
events (dedup then holds as many entities as a busy day would, not one merged copy). The cloud products have
no lab output: their documented example records (tests/fixtures/cloud) are replicated as they are.

    .venv/bin/python bench/normalize.py [--records 200000] [--repeat 3] [--lab DIR] [--cpu 0] [FORMAT ...]
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.core.dedup import Dedup
from pipeline.gc_tuning import tune_gc
from pipeline.normalize.base import RawRecord
from pipeline.normalize.registry import formats, get
from pipeline.normalize.stage import NormalizeResult, NormalizeStage

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ROOT / "tests/fixtures/cloud"
BATCH = 1000
GOAL = 100_000  # normalize + dedup per CPU second: ModSecurity alerts, other formats' records (issue 16)
GOAL_IN_ALERTS = {"modsecurity"}
WHOLE_FILE_LINES = 100  # a whole-file record (an AIDE report) counts as this many lines towards --records
# The lab-1 files of each format (cloud formats: tests/fixtures/cloud/<format>/records.jsonl).
FILES = {
    "modsecurity": ["waf/modsec_audit.jsonl"],
    "modsec_error": ["waf/apache_error.log"],
    "apache_access": ["waf/apache_access.log"],
    "suricata": ["ids/eve_attack.jsonl", "ids/eve_scanners.jsonl"],
    "sshd": ["host/sshd_auth.log"],
    "auditd": ["host/audit.log"],
    "fail2ban": ["host/fail2ban.log"],
    "fail2ban_json": ["host/fail2ban_bans.jsonl"],
    "clamav": ["host/clamscan_webroot.log"],
    "aide": ["host/aide_check.json"],
}
# What makes copy k of a record another event: (pattern, replacement with {k}) per rewrite.
COPY_REWRITES = [
    (re.compile(r'("transaction_id":")'), r"\g<1>{k}-"),  # ModSecurity audit log
    (re.compile(r'(\[unique_id ")'), r"\g<1>{k}-"),  # Apache error log (ModSecurity's unique id)
    (re.compile(r"(msg=audit\(\d+\.\d+:)"), r"\g<1>{k}"),  # auditd event serial
]


def lab_dir(arg: str | None) -> Path:
    """The lab-1 samples: --lab, else ../shared/samples/lab-1, else tests/fixtures (the same files)."""
    for p in ([Path(arg)] if arg else []) + [ROOT.parent / "shared/samples/lab-1", ROOT / "tests/fixtures"]:
        if (p / FILES["suricata"][0]).exists():
            return p
    raise SystemExit("no lab-1 files found; pass --lab")


def records_of(fmt: str, lab: Path) -> list[str]:
    """The format's records: lines, or whole files for whole-file formats."""
    paths = [lab / f for f in FILES[fmt]] if fmt in FILES else [CLOUD / fmt / "records.jsonl"]
    texts = [p.read_text(encoding="utf-8") for p in paths]
    if get(fmt).whole_file:
        return texts
    return [ln for t in texts for ln in t.split("\n") if ln.strip()]  # not splitlines: auditd has \\x1d


def replicate(records: list[str], n: int) -> list[str]:
    """At least `n` records: copy k of `records` with 127.0.0.x rewritten to 10.(k // 256).(k % 256).x and the
    event ids of `COPY_REWRITES` given k (each copy is other transactions, not the same ones again)."""
    out = list(records)
    k = 1
    while len(out) < n:
        prefix = f"10.{k // 256 % 256}.{k % 256}."
        subs = [(pat, rep.format(k=k)) for pat, rep in COPY_REWRITES]
        for text in records:
            text = text.replace("127.0.0.", prefix)
            for pat, rep in subs:
                text = pat.sub(rep, text)
            out.append(text)
        k += 1
    return out


def timed(fn: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, int, int]:
    """Best CPU time of `repeat` runs (the first also warms caches and the allocator). CPU time, not wall
    time: on a shared machine the wall clock also counts the turns of other processes."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        alerts, kept = fn()
        best = min(best, time.process_time() - t0)
    return best, alerts, kept


def floor_fn(texts: list[str]) -> Callable[[], tuple[int, int]]:
    """The floor: decode every JSON record, or split every text line on spaces."""
    if texts[0].lstrip().startswith("{"):
        def floor() -> tuple[int, int]:
            loads = orjson.loads
            for t in texts:
                loads(t)
            return 0, 0
    else:
        def floor() -> tuple[int, int]:
            for t in texts:
                t.split(" ")
            return 0, 0
    return floor


def bench(fmt: str, texts: list[str], repeat: int) -> list[tuple[str, float, int, int]]:
    """(stage, seconds, alerts normalized, alerts kept after dedup) per stage."""
    now = datetime.now(UTC)
    recs = [RawRecord(t, "bench", now, "web-01") for t in texts]
    # The input stands for a stream: keep the cyclic GC from walking 200k held records on every full pass.
    gc.collect()
    gc.freeze()
    tune_gc()  # as the worker and `mdr replay` run

    def run(dedup: Dedup | None) -> tuple[int, int]:
        """Batches of BATCH records, as the stream worker takes them; alerts leave after each batch."""
        stage, out = NormalizeStage(), NormalizeResult()
        alerts = kept = 0
        for start in range(0, len(recs) + BATCH, BATCH):
            for r in recs[start:start + BATCH]:
                stage.process(r, fmt, out)
            if start >= len(recs):
                stage.flush(out)  # what stateful formats still hold
            assert not out.dead, out.dead[:1]
            alerts += len(out.alerts)
            if dedup is not None:
                for a in out.alerts:
                    kept += dedup.merge(a)[0] is a  # a new representative
            out.alerts.clear()
        if dedup is not None:
            for _ in dedup.drain():
                pass
        return alerts, kept if dedup is not None else alerts

    rows = [(f"floor ({'orjson.loads' if texts[0].startswith('{') else 'str.split'})", *timed(floor_fn(texts), repeat)),
            ("normalize", *timed(lambda: run(None), repeat)),
            ("normalize + dedup", *timed(lambda: run(Dedup()), repeat))]
    gc.unfreeze()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("formats", nargs="*", help="formats to run (default: all)")
    ap.add_argument("--records", type=int, default=200_000, help="records per format (default 200000)")
    ap.add_argument("--lab", help="lab-1 samples directory")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the first allowed one)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs per stage (default 3)")
    args = ap.parse_args()
    known = [f for f in FILES if f in formats()] + [f for f in formats() if (CLOUD / f).is_dir()]
    todo = args.formats or known
    if unknown := set(todo) - set(known):
        raise SystemExit(f"no bench input for {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    lab = lab_dir(args.lab)
    print(f"lab: {lab}  records/format: >= {args.records}  python {sys.version.split()[0]}  one core")
    print(f"{'format':15} {'stage':22} {'records':>8} {'alerts':>8} {'kept':>8} {'seconds':>8} "
          f"{'records/s':>10} {'alerts/s':>10} {'us/record':>9} {'x floor':>7}")
    goals = []
    for fmt in todo:
        n = args.records // WHOLE_FILE_LINES if get(fmt).whole_file else args.records
        texts = replicate(records_of(fmt, lab), n)
        rows = bench(fmt, texts, args.repeat)
        base = rows[0][1]
        for stage, secs, alerts, kept in rows:
            n = len(texts)
            print(f"{fmt:15} {stage:22} {n:8d} {alerts:8d} {kept:8d} {secs:8.3f} {n / secs:10,.0f} "
                  f"{alerts / secs:10,.0f} {secs / n * 1e6:9.2f} {secs / base:7.1f}", flush=True)
        _, secs, alerts, _ = rows[-1]
        what, rate = ("alerts/s", alerts / secs) if fmt in GOAL_IN_ALERTS else ("records/s", len(texts) / secs)
        goals.append(f"{fmt} {rate:,.0f} {what} ({secs / base:.1f}x floor): "
                     + ("met" if rate >= GOAL else f"{rate / GOAL:.0%} of the goal"))
    print(f"\nnormalize + dedup against the goal of {GOAL:,} per second (issue 16):")
    print("\n".join(f"  {g}" for g in goals))


if __name__ == "__main__":
    main()
