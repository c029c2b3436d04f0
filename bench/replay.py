"""Benchmark: throughput of `mdr replay` against the orjson floor, and peak memory (RSS) of a long replay, 1x,
10x and 50x the lab-1 day.

Throughput (`--rate N`, default 12 copies): the replay of N copies of the day (records read, normalized, fed to
the core `mdr replay` builds with an empty context, JSONL outputs written; not the SOAR ticket step) in records
per CPU second of its process, beside the floor measured in the same process just before: reading the same files
and `orjson.loads` of every JSON record (`str.split` of every text line). Issue 16's goal: at least 20 % of it.

Copy k of the day is the lab day k days earlier with its own actors, host and site (tests/e2e/variant.py),
written as files; a replay reads all the copies (one directory per day) as one input, through the production
core, and writes its JSONL outputs as it goes (`OutputFiles`). Each replay runs in a fresh process; its peak
RSS is printed beside the floor measured in the same run: a process that imported everything and loaded the
use cases, then replayed nothing. `--collect` adds the same replays collected in memory (`ReplayResult`, what
the tests and the ticket step of `mdr replay` hold), for comparison.

    .venv/bin/python bench/replay.py [--rate 12] [--copies 1 10 50] [--collect]
    .venv/bin/python bench/replay.py --rate 12 --copies   # throughput only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAB = ROOT / "samples" / "lab-1"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(days: list[str], out: str, mode: str) -> dict:
    """One replay of `days` in this process (mode: floor | stream | collect)."""
    from pipeline.core.engine import Core
    from pipeline.gc_tuning import tune_gc
    from pipeline.normalize.source import AlertSource
    from pipeline.replay import OutputFiles, ReplayResult, run
    from pipeline.rules.usecase import load_usecases

    tune_gc()
    core = Core(load_usecases(str(ROOT / "usecases")))
    if mode == "floor":
        return {"peak_mb": peak_mb()}
    source = AlertSource(days, "shop", "web-01")
    files, res = OutputFiles(out), ReplayResult()
    t = time.perf_counter()
    run(source, core, files, *([res] if mode == "collect" else []))
    files.close()
    seconds = time.perf_counter() - t
    with open(Path(out) / "alerts.jsonl", "rb") as fh:
        alerts = sum(1 for _ in fh)
    with open(Path(out) / "incidents.jsonl", "rb") as fh:
        incidents = sum(1 for _ in fh)
    return {"peak_mb": peak_mb(), "seconds": seconds, "alerts": alerts, "incidents": incidents,
            "late": source.late, "most_open": source.most_open, "state": sum(map(len, (
                core.state.dedup, core.state.alerts, core.state.correlation, core.state.incidents,
                core.state.fusion)))}


def floor_records(days: list[str]) -> tuple[int, float]:
    """(records, CPU seconds) of the floor: read every file of `days`, `orjson.loads` each JSON record (a
    .json file is one record), `str.split` each text line."""
    import orjson

    files = [f for d in days for f in sorted(Path(d).rglob("*")) if f.is_file() and f.suffix != ".md"]
    n, t = 0, time.process_time()
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".json":
            orjson.loads(data)
            n += 1
            continue
        for line in data.splitlines():
            if not line.strip():
                continue
            if line.startswith(b"{"):
                orjson.loads(line)
            else:
                line.decode("utf-8", "replace").split()
            n += 1
    return n, time.process_time() - t


def rate_child(days: list[str], out: str) -> dict:
    """Floor, then the replay `mdr replay` runs (no SOAR step), in this process: records per CPU second."""
    from pipeline.assemble import build_core
    from pipeline.context.store import Context
    from pipeline.gc_tuning import tune_gc
    from pipeline.normalize.source import AlertSource
    from pipeline.replay import OutputFiles, ReplayResult, run
    from pipeline.rules.usecase import load_usecases

    tune_gc()
    records, floor_s = floor_records(days)
    core = build_core(load_usecases(str(ROOT / "usecases")), Context())
    source = AlertSource(days, "shop", "web-01")
    files, res = OutputFiles(out), ReplayResult()
    t = time.process_time()
    run(source, core, files, res)
    files.close()
    seconds = time.process_time() - t
    read = res.records
    return {"records": read, "floor_records": records, "alerts": res.alerts_raw, "seconds": seconds,
            "rate": read / seconds, "floor_rate": records / floor_s}


def run_child(*args: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--copies", type=int, nargs="*", default=[1, 10, 50])
    ap.add_argument("--rate", type=int, default=12, help="copies of the day for the throughput line (0: none)")
    ap.add_argument("--collect", action="store_true", help="also replay into memory (ReplayResult)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, out, *days = args.child
        print(json.dumps(rate_child(days, out) if mode == "rate" else child(days, out, mode)))
        return
    from tests.e2e.variant import write_days

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        days = [str(d) for d in write_days(LAB, Path(tmp) / "days", max([*args.copies, args.rate]))]
        print(f"wrote {len(days)} copies of the lab-1 day in {time.perf_counter() - t:.0f} s")
        if args.rate:
            r = run_child("rate", str(Path(tmp) / "out-rate"), *days[:args.rate])
            print(f"mdr replay of {args.rate} copies: {r['records']:,d} records, {r['alerts']:,d} alerts in "
                  f"{r['seconds']:.1f} CPU s: {r['rate']:,.0f} records/s; floor (orjson.loads / str.split of the "
                  f"same {r['floor_records']:,d} records): {r['floor_rate']:,.0f} records/s; "
                  f"{100 * r['rate'] / r['floor_rate']:.1f} % of the floor (goal >= 20 %)")
        if not args.copies:
            return
        floor = run_child("floor", tmp)["peak_mb"]
        print(f"floor (imports + use cases, nothing replayed): peak RSS {floor:.0f} MB")
        print(f"{'days':>5} {'mode':>8} {'alerts':>8} {'incidents':>9} {'s':>6} {'peak RSS MB':>11} "
              f"{'over floor':>10} {'state keys':>10} {'files open':>10} {'late':>5}")
        for n in args.copies:
            for mode in ("stream", "collect") if args.collect else ("stream",):
                out = Path(tmp) / f"out-{n}-{mode}"
                r = run_child(mode, str(out), *days[:n])
                print(f"{n:5d} {mode:>8} {r['alerts']:8,d} {r['incidents']:9,d} {r['seconds']:6.1f} "
                      f"{r['peak_mb']:11.0f} {r['peak_mb'] - floor:10.0f} {r['state']:10,d} "
                      f"{r['most_open']:10d} {r['late']:5d}")


if __name__ == "__main__":
    main()
