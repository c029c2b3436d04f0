"""Noise classifier benchmark: inference throughput on one core, and the held-out figures beside the baseline.

    .venv/bin/python bench/classify.py [--data DIR] [--model DIR] [--batch 1024] [--report-dir DIR]
                                       [--learning-curve 100,300,1000,3000 [--base-data DIR]]
                                       [--blind data/waf-lab-blind [--blind-train DIR[,DIR...]] ...]

Throughput: `NoiseClassifier.decide` (feature extraction with the streaming state, scoring, guardrails,
contributions and `Suppressed` records for the suppressed ones) over the labeled set's alerts in event-time order,
in batches, with one BLAS / OpenMP thread and the pipeline's GC settings; alerts are normalized beforehand (not
timed). CPU time of the process is reported beside wall time (the machine is shared). Figures: the evaluation of
`pipeline.classify.evaluate` on the held-out split (per alert and as the core decides) with the CRS
anomaly-score baseline chosen in the same run. With --learning-curve: noise reduction and false negatives on the
held-out split against the number of verdicts trained on (`pipeline.classify.evaluate.learning_curve`).
With --blind: the figures on a labeled set no modelling choice has seen (every record, per alert with dedup off,
and as the core decides), read as a new tenant and as the tenant trained on, of --model and of a model trained
in the run on each --blind-train group (as `mdr model train --kind linear` does); false negatives per attack
source (the set's `attack_type`, grouped by the tool or list before its first `-`) and one by one. The CRS
baseline is shown at its fixed thresholds only: the chosen one would be chosen on the blind set's labels.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from threadpoolctl import threadpool_limits  # noqa: E402

from pipeline.classify.evaluate import curve_lines, evaluate, learning_curve, summary_lines  # noqa: E402
from pipeline.classify.model import NoiseClassifier  # noqa: E402
from pipeline.classify.train import Dataset, load_data, normalize_dir, train  # noqa: E402
from pipeline.gc_tuning import tune_gc  # noqa: E402
from pipeline.rules.usecase import UseCase  # noqa: E402
from pipeline.schema import Alert  # noqa: E402

SHARED = ROOT.parent / "shared" / "labeled" / "waf-pl4-train"
SAMPLE = ROOT / "tests" / "fixtures" / "labeled" / "waf-pl4-sample"
MODEL = ROOT / "models" / "noise-default"
BLIND = ROOT / "data" / "waf-lab-blind"
BLIND_FN_SHOWN = 12


def throughput(model: NoiseClassifier, alerts: list[Alert], batch: int, repeat: int) -> dict[str, float]:
    """Best of `repeat` passes: alerts/s (CPU and wall) of decide, and the CPU split into its parts."""
    batches = [alerts[i:i + batch] for i in range(0, len(alerts), batch)]
    matched: list[list[list[UseCase]]] = [[[] for _ in b] for b in batches]
    best = {"cpu": float("inf"), "wall": float("inf"), "features": float("inf"), "predict": float("inf")}
    for _ in range(repeat):
        model.reset()
        c0, w0 = time.process_time(), time.perf_counter()
        suppressed = sum(d is not None for b, m in zip(batches, matched, strict=True) for d in model.decide(b, m))
        best["cpu"] = min(best["cpu"], time.process_time() - c0)
        best["wall"] = min(best["wall"], time.perf_counter() - w0)
        model.reset()
        c0 = time.process_time()
        xs = [model.extractor.transform(b) for b in batches]
        best["features"] = min(best["features"], time.process_time() - c0)
        c0 = time.process_time()
        for x in xs:
            model.predict(x)
        best["predict"] = min(best["predict"], time.process_time() - c0)
    n = len(alerts)
    return {"alerts": n, "suppressed": suppressed, "alerts_per_s_cpu": n / best["cpu"],
            "alerts_per_s_wall": n / best["wall"], "us_per_alert": best["cpu"] / n * 1e6,
            "features_us": best["features"] / n * 1e6, "predict_us": best["predict"] / n * 1e6,
            "extract_score_per_s": n / (best["features"] + best["predict"])}


def source_lines(ds: Dataset, fn_by_type: dict[str, int]) -> list[str]:
    """False negatives per attack source: one line per tool / list (the attack_type before its first `-`)."""
    att = Counter(k for k, lab in zip(ds.kinds, ds.labels, strict=True) if lab == 1)
    groups: dict[str, list[str]] = {}
    for k in sorted(att):
        groups.setdefault(k.split("-", 1)[0], []).append(k)
    out = []
    for g, ks in groups.items():
        n, fn = sum(att[k] for k in ks), sum(fn_by_type.get(k, 0) for k in ks)
        parts = ", ".join(f"{k.split('-', 1)[-1]} {fn_by_type.get(k, 0)}/{att[k]}" for k in ks)
        out.append(f"  {g:<7} FN {fn / n:6.2%} ({fn}/{n}): {parts}")
    return out


def blind_figures(blind: Path, model_dir: Path, name: str) -> None:
    """The model's figures on every record of the blind set, as a new tenant and as the tenant trained on."""
    for tenant, what in (("blind", "as a new tenant"), ("default", "as the tenant trained on")):
        ds = load_data([blind], tenant)
        report = evaluate(model_dir, [blind], split="all", tenant=tenant, pipeline=False, ds=ds)
        m, c = report["model_metrics"], report["model_core"]
        print(f"blind set {blind.name}, model {name} ({report['model']['version']}), {what}: per alert (dedup off) "
              f"noise reduction {m['noise_reduction']:.2%} ({m['suppressed_benign']}/{m['benign']}), FN "
              f"{m['fn_rate']:.2%} ({m['suppressed_attack']}/{m['attack']}); as the core decides "
              f"{c['noise_reduction']:.2%} / FN {c['fn_rate']:.2%}; CRS anomaly score (fixed thresholds) "
              + ", ".join(f"{k} {r['noise_reduction']:.2%} / FN {r['fn_rate']:.2%}"
                          for k, r in report["baseline_fixed"].items()))
        md = report["model"]
        print(f"  threshold {md['threshold']:.4g}; kept although below it: {m['kept_below_threshold'] or 'none'}")
        fn = report["false_negatives"]
        for line in source_lines(ds, fn["by_attack_type"]):
            print(line)
        for f in fn["alerts"][:BLIND_FN_SHOWN]:
            print(f"  FN {f['attack_type']} P(attack) {f['score']:.3f} anomaly {f['anomaly_score']} rules "
                  f"{','.join(f['rules'])}: {f['request'][:110]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED if SHARED.exists() else SAMPLE)
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--report-dir", type=Path, default=None)
    ap.add_argument("--no-figures", action="store_true", help="throughput only")
    ap.add_argument("--learning-curve", default=None, help="verdict counts, e.g. 100,300,1000,3000")
    ap.add_argument("--kind", action="append", default=None, help="learning curve: model families (hgb, linear)")
    ap.add_argument("--base-data", type=Path, action="append", default=[],
                    help="labeled data every learning-curve point trains on besides the verdicts")
    ap.add_argument("--blind", type=Path, nargs="?", const=BLIND, default=None,
                    help="a labeled set no choice was made on (alone: data/waf-lab-blind)")
    ap.add_argument("--blind-train", action="append", default=[],
                    help="comma-separated data directories a model is trained on (as mdr model train --kind "
                         "linear) and judged on --blind; repeatable")
    args = ap.parse_args()
    tune_gc()
    alerts, _, _ = normalize_dir(args.data, "default")
    model = NoiseClassifier.load(args.model)
    with threadpool_limits(1):
        t = throughput(model, alerts, args.batch, args.repeat)
    print(f"data {args.data} ({t['alerts']} alerts), model {model.version}, batches of {args.batch}, one thread")
    print(f"feature extraction + scoring: {t['extract_score_per_s']:,.0f} alerts/s (CPU time; features "
          f"{t['features_us']:.1f} us + scoring {t['predict_us']:.1f} us per alert)")
    print(f"full decide (+ scope, guardrails, contributions and records of {t['suppressed']} suppressed): "
          f"{t['alerts_per_s_cpu']:,.0f} alerts/s CPU time ({t['us_per_alert']:.1f} us/alert), "
          f"{t['alerts_per_s_wall']:,.0f} alerts/s wall")
    if not args.no_figures:
        report = evaluate(args.model, [args.data], args.report_dir)
        for line in summary_lines(report):
            print(line)
    if args.learning_curve:
        sizes = [int(x) for x in args.learning_curve.split(",")]
        base = load_data(args.base_data) if args.base_data else None
        c0 = time.process_time()
        points = learning_curve(load_data([args.data]), sizes, base=base,
                                kinds=tuple(args.kind or ("hgb", "linear")))
        print(f"learning curve on {args.data} (held-out split; verdicts: first labeled alerts of train+validation "
              f"in event time{'; plus ' + ', '.join(map(str, args.base_data)) if base else ''}), "
              f"{time.process_time() - c0:.0f} s CPU:")
        for line in curve_lines(points):
            print(line)
    if args.blind:
        blind_figures(args.blind, args.model, args.model.name)
        for group in args.blind_train:
            dirs = group.split(",")
            c0 = time.process_time()
            model = train(dirs, 0.995, ("linear",))[0]
            with tempfile.TemporaryDirectory() as tmp:
                model.save(tmp)
                print(f"trained on {' + '.join(dirs)} ({time.process_time() - c0:.0f} s CPU)")
                blind_figures(args.blind, Path(tmp), "+".join(Path(d).name for d in dirs))


if __name__ == "__main__":
    main()
