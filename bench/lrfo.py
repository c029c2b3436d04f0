"""Leave-rule-family-out: noise reduction and false negatives on rule families a model never trained on.

    .venv/bin/python bench/lrfo.py [--data DIR ...] [--kind linear] [--min-attacks 50] [--profile OUT.jsonl]

The labeled sets (default: the shared PL4 set and data/waf-lab-pl12, read as one tenant) are one dataset. For each
CRS rule family with at least --min-attacks attack alerts, `train()` (as `mdr model train`, the --kind families)
learns from the labeled alerts that carry no rule of it (the family's alerts stay in their streams, unlabeled),
and `NoiseClassifier.assess` (scope, guardrails with the project's use cases) judges every alert that carries one,
per alert (dedup off). Pooled figures sum the folds (an alert with rules of two families counts in both). No
figure of a fold's test alerts feeds any choice: thresholds come from each fold's training alerts alone.

Printed per fold: noise reduction, FN rate, the thresholds, and why the benign alerts were kept (score at or above
the threshold for unseen rules, out of scope, guardrail), with the score quantiles of kept benign and of attack
alerts. --profile writes one JSON line per judged alert (fold, label, score, threshold, fate, rules, content).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import paths  # noqa: E402
from pipeline.classify.content import content_of, decode  # noqa: E402
from pipeline.classify.evaluate import model_decisions  # noqa: E402
from pipeline.classify.generalize import folds, leave_family_out  # noqa: E402
from pipeline.classify.metrics import core_view  # noqa: E402
from pipeline.classify.model import NoiseClassifier  # noqa: E402
from pipeline.classify.train import Dataset, load_data, train  # noqa: E402
from pipeline.rules.usecase import load_usecases  # noqa: E402

SHARED = Path(os.environ.get("MDR_SHARED", ROOT.parent / "shared"))
SETS = [SHARED / "labeled" / "waf-pl4-train", ROOT / "data" / "waf-lab-pl12"]


def quantiles(v: np.ndarray) -> str:
    if not len(v):
        return "-"
    q = np.quantile(v, [0.1, 0.5, 0.9])
    return f"p10 {q[0]:.3f} p50 {q[1]:.3f} p90 {q[2]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, action="append", default=None)
    ap.add_argument("--kind", action="append", default=None, help="model families train() compares")
    ap.add_argument("--min-attacks", type=int, default=50)
    ap.add_argument("--target-recall", type=float, default=0.995)
    ap.add_argument("--only", action="append", default=None, help="only these families (e.g. crs-xss)")
    ap.add_argument("--profile", type=Path, default=None)
    args = ap.parse_args()
    data = [d for d in (args.data or SETS) if d.exists()]
    ds = load_data(data)
    ucs = load_usecases(str(paths.usecases_dir()))
    kinds = tuple(args.kind or ("linear",))
    print(f"{len(ds.alerts)} alerts of {', '.join(map(str, data))}; families: {', '.join(kinds)}; "
          f"folds: families with >= {args.min_attacks} attack alerts")
    rows: list[dict[str, Any]] = []
    masks = folds(ds, ds.mask("all"), args.min_attacks)
    t0 = time.process_time()

    def train_fn(d: Dataset) -> NoiseClassifier:
        return train([], args.target_recall, kinds, dedup_window=None, ds=d)[0]

    def judge(model: NoiseClassifier, d: Dataset) -> np.ndarray:
        why: list[str] = []
        p, sup, _ = model_decisions(model, d, core_view(d, None), ucs, why)
        m = d.y >= 0
        fam = next(f for f, fm in masks.items() if np.array_equal(fm, m))
        fold = {"threshold": model.threshold, "threshold_novel": model.threshold_novel,
                "range_variant": model.scope.variant}
        y = d.y
        fates = Counter(w for w, lab in zip(why, y.tolist(), strict=True) if lab == 0)
        kept_b = m & (y == 0) & ~sup
        print(f"{fam}: threshold {fold['threshold']:.4g}, unseen rules {fold['threshold_novel']:.4g}, scope "
              f"{fold['range_variant']} (inner {model.manifest.get('novel_rules', {}).get('range_variants')}); "
              f"benign fates "
              f"{dict(fates)}; kept benign scores {quantiles(p[kept_b & (np.asarray(why) == 'score')])}; "
              f"attack scores {quantiles(p[m & (y == 1)])}")
        if args.profile is not None:
            for i in np.flatnonzero(m):
                a = d.alerts[i]
                rows.append({"fold": fam, "label": int(y[i]), "score": round(float(p[i]), 5), "fate": why[i],
                             "threshold_novel": fold["threshold_novel"], "rules": sorted({r.id for r in a.rules}),
                             "content": decode(content_of(a)[0])[:300].decode("utf-8", "replace")})
        return sup

    out = leave_family_out(ds, train_fn, judge, only=args.only, min_attacks=args.min_attacks)
    for fam, r in out["folds"].items():
        print(f"{fam:<16} benign {r['benign']:>5} attack {r['attack']:>6}  NR {r['noise_reduction']:7.2%}  "
              f"FN {r['fn_rate']:6.2%} ({r['suppressed_attack']})  thr {r['threshold']:.4g} / novel "
              f"{r['threshold_novel']:.4g}")
    for fam, why in out.get("skipped", {}).items():
        print(f"{fam:<16} skipped: {why}")
    pr = out["pooled"]
    print(f"pooled: noise reduction {pr['noise_reduction']:.2%} ({pr['suppressed_benign']}/{pr['benign']}), "
          f"FN {pr['fn_rate']:.2%} ({pr['suppressed_attack']}/{pr['attack']}); "
          f"{time.process_time() - t0:.0f} s CPU")
    if args.profile is not None:
        with args.profile.open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    main()
