"""Benchmark: alerts/s on one core through the whole core after normalization (dedup, match, correlate,
incidents, fusion), with the shipped use cases and with ~200 and ~430 rules (shipped + SigmaHQ rules).

The floor, measured in the same run, is the core with no use case at all (dedup and bookkeeping only).
Alerts: lab-1 normalized once, replicated into distinct tenants so that every copy is new work.

    .venv/bin/python bench/core.py [--copies 40] [--sigma ../shared/sigma]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.engine import Core  # noqa: E402
from pipeline.gc_tuning import tune_gc  # noqa: E402
from pipeline.normalize.source import read_alerts  # noqa: E402
from pipeline.rules.usecase import UseCaseSet, load_usecases  # noqa: E402
from pipeline.schema import Alert  # noqa: E402

SIGMA = ROOT.parent / "shared" / "sigma"


def lab_alerts() -> list[Alert]:
    return read_alerts([str(ROOT / "samples" / "lab-1")], "t", "web-01").alerts


def copies(alerts: list[Alert], n: int) -> list[list[Alert]]:
    raw = msgspec.json.encode(alerts)
    out = []
    for i in range(n):
        batch = msgspec.json.decode(raw, type=list[Alert])
        for a in batch:
            a.tenant_id = f"tenant-{i}"
            a.alert_id = f"{a.alert_id[:24]}{i:08x}"
        out.append(batch)
    return out


def rate(ucs: UseCaseSet, batches: list[list[Alert]]) -> tuple[float, int]:
    core = Core(ucs)
    n = 0
    t0 = time.process_time()
    for batch in batches:
        for i in range(0, len(batch), 2048):
            core.feed_alerts(batch[i:i + 2048])
        n += len(batch)
        core.take()
    return n / (time.process_time() - t0), len(core.usecases.usecases)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--sigma", type=Path, default=SIGMA, help="SigmaHQ rules (default: ../shared/sigma)")
    args = ap.parse_args()
    tune_gc()
    alerts = lab_alerts()
    sets: list[tuple[str, UseCaseSet]] = [("floor: no use case", UseCaseSet()),
                                          ("shipped use cases", load_usecases(str(ROOT / "usecases")))]
    if args.sigma.is_dir():
        sigma_files = sorted(str(p) for p in args.sigma.rglob("*.yml"))
        sets.append(("shipped + SigmaHQ (~200)", load_usecases([str(ROOT / "usecases"), *sigma_files[:160]])))
        sets.append(("shipped + all SigmaHQ", load_usecases([str(ROOT / "usecases"), *sigma_files])))
    print(f"{len(alerts)} lab-1 alerts x {args.copies} tenants, one core (process time)")
    print(f"{'rule set':28} {'rules':>6} {'alerts/s':>10} {'us/alert':>9} {'x floor':>8}")
    floor = None
    for name, ucs in sets:
        r, n_rules = rate(ucs, copies(alerts, args.copies))
        floor = floor or r
        print(f"{name:28} {n_rules:6d} {r:10,.0f} {1e6 / r:9.1f} {floor / r:8.2f}")


if __name__ == "__main__":
    main()
