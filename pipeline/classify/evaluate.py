"""Evaluating a noise model on labeled data, beside the CRS anomaly-score baseline, in one run.

Figures are on the held-out split (`--split all` for data the model never saw), per labeled alert:

- noise reduction = share of benign-caused alerts suppressed; FN rate = share of attack alerts suppressed.
- The model's decisions come from `NoiseClassifier.assess` (the code the core runs, guardrails included), over
  each directory's whole stream in event-time order with a fresh state.
- Baseline: suppress when `extra.anomaly_score` (CRS inbound anomaly score) is below a threshold chosen on the
  validation split for the same target recall with the same rule (`recall_threshold`), same guardrails.
- False negatives listed one by one and counted by rule, rule category and attack type; a per-rule table;
  PR curve, confusion matrix and noise-reduction / FN trade-off as PNG (matplotlib, Agg).
- Pipeline check: the production core (`mdr replay` path, dedup window `DEDUP_WINDOW`) runs with the model; an
  alert the dedup merged into a representative shares its fate. Representatives are classified with the source
  history the core sees (representatives only), and may come from any split.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.classify.guardrails import keep_reason
from pipeline.classify.model import NoiseClassifier
from pipeline.classify.train import (
    BATCH,
    DEDUP_WINDOW,
    Dataset,
    data_files,
    load_data,
    recall_threshold,
    recorded,
    representatives,
)
from pipeline.rules.usecase import UseCase, UseCaseSet
from pipeline.schema import Alert

FN_LIST_MAX = 200
BASELINE_REFERENCE = (10, 13)  # fixed anomaly-score thresholds quoted by the labeled set's README


def match_usecases(ucs: UseCaseSet | None, alerts: Sequence[Alert]) -> list[list[UseCase]]:
    """The use cases each alert matches (as the core's match stage computes them)."""
    if ucs is None or ucs.index is None:
        return [[] for _ in alerts]
    by_ref = ucs.by_ref
    return [[by_ref[r.id] for r in ucs.index.match(a) if r.id in by_ref] for a in alerts]


def model_decisions(model: NoiseClassifier, ds: Dataset, ucs: UseCaseSet | None = None
                    ) -> tuple[np.ndarray, np.ndarray, Counter[str]]:
    """(P(attack), suppressed?, guardrail counts) for every alert of the dataset; one fresh state per stream."""
    p = np.zeros(len(ds.alerts))
    sup = np.zeros(len(ds.alerts), dtype=bool)
    rec = recorded(ds, model.dedup_window)
    for start, end in ds.streams:
        model.reset()
        for i in range(start, end, BATCH):
            batch = ds.alerts[i:min(i + BATCH, end)]
            scores, dec = model.assess(batch, match_usecases(ucs, batch), rec[i:i + len(batch)])
            p[i:i + len(batch)] = scores
            sup[i:i + len(batch)] = [d is not None for d in dec]
    guards = Counter(r.split(":")[0] for a, ucs_a, s, q in zip(
        ds.alerts, match_usecases(ucs, ds.alerts), sup, p, strict=True)
        if not s and q < model.threshold and (r := keep_reason(a, ucs_a)))
    return p, sup, guards


def anomaly_scores(ds: Dataset) -> np.ndarray:
    """CRS inbound anomaly score of each alert (NaN when the product states none)."""
    out = np.full(len(ds.alerts), np.nan)
    for i, a in enumerate(ds.alerts):
        v = a.extra.get("anomaly_score")
        if isinstance(v, int | float):
            out[i] = v
    return out


def baseline(ds: Dataset, target: float, ucs: UseCaseSet | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """(threshold chosen on validation, scores, suppressed?) of the anomaly-score baseline."""
    s = anomaly_scores(ds)
    y, va = ds.y, ds.mask("validation")
    att = s[va & (y == 1)]
    thr = recall_threshold(att[~np.isnan(att)], target)
    matched = match_usecases(ucs, ds.alerts)
    sup = np.array([bool(v < thr) and keep_reason(a, m) is None
                    for a, v, m in zip(ds.alerts, s, matched, strict=True)], dtype=bool)
    return thr, s, sup


def rates(sup: np.ndarray, y: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Noise reduction and FN rate of a suppression decision over the alerts in `mask`."""
    ben, att = mask & (y == 0), mask & (y == 1)
    nb, na = int(ben.sum()), int(att.sum())
    sb, sa = int((sup & ben).sum()), int((sup & att).sum())
    return {"benign": nb, "attack": na, "suppressed_benign": sb, "suppressed_attack": sa,
            "noise_reduction": sb / nb if nb else 0.0, "fn_rate": sa / na if na else 0.0}


def _rules(a: Alert) -> list[str]:
    return list(dict.fromkeys(r.id for r in (a.rules or [a.rule]) if r.id))


def per_rule(ds: Dataset, mask: np.ndarray, sup: np.ndarray) -> list[dict[str, Any]]:
    """One row per rule id: alerts carrying it, benign / attack, suppressed of each, noise reduction."""
    rows: dict[str, Counter[str]] = {}
    names: dict[str, tuple[str, str]] = {}
    for i in np.flatnonzero(mask):
        a, lab = ds.alerts[i], ds.labels[i]
        for r in a.rules or [a.rule]:
            names.setdefault(r.id, (r.category or "", r.name))
        for rid in _rules(a):
            c = rows.setdefault(rid, Counter())
            c["alerts"] += 1
            c["attack" if lab == 1 else "benign"] += 1
            if sup[i]:
                c["fn" if lab == 1 else "suppressed_benign"] += 1
    out = []
    for rid, c in sorted(rows.items(), key=lambda kv: -kv[1]["alerts"]):
        cat, name = names.get(rid, ("", ""))
        out.append({"rule": rid, "category": cat, "name": name[:80], "alerts": c["alerts"],
                    "benign": c["benign"], "attack": c["attack"], "suppressed_benign": c["suppressed_benign"],
                    "fn": c["fn"], "noise_reduction": round(c["suppressed_benign"] / c["benign"], 4)
                    if c["benign"] else None})
    return out


def false_negatives(ds: Dataset, mask: np.ndarray, sup: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """Suppressed attacks: listed (first `FN_LIST_MAX`) and counted by rule, category and attack type."""
    idx = np.flatnonzero(mask & sup & (ds.y == 1))
    by_rule: Counter[str] = Counter()
    by_cat: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    items = []
    for i in idx:
        a = ds.alerts[i]
        by_rule.update(_rules(a))
        by_cat.update({r.category or "none" for r in (a.rules or [a.rule])})
        by_type[ds.kinds[i] or "?"] += 1
        if len(items) < FN_LIST_MAX:
            items.append({"record_id": ds.record_ids[i], "attack_type": ds.kinds[i], "score": round(float(p[i]), 6),
                          "anomaly_score": a.extra.get("anomaly_score"), "rules": _rules(a),
                          "request": f"{a.http.method} {a.http.url}"[:160] if a.http else a.message})
    return {"count": len(idx), "by_rule": dict(by_rule.most_common()), "by_category": dict(by_cat.most_common()),
            "by_attack_type": dict(by_type.most_common()), "alerts": items}


def pipeline_check(model_dir: str | Path, ds: Dataset, dirs: Sequence[str | Path], split: str,
                   ucs: UseCaseSet | None, tenant: str, window: float = DEDUP_WINDOW) -> dict[str, Any]:
    """Run the production core with the model (dedup on) and score every labeled alert by its fate."""
    from pipeline.engine import Core
    from pipeline.replay import replay

    sup_ids: set[str] = set()
    rep_of: dict[str, str] = {}
    for d, (start, end) in zip(dirs, ds.streams, strict=True):
        core = Core(ucs or UseCaseSet(), dedup_window=window, classifier=NoiseClassifier.load(model_dir))
        res = replay(data_files(Path(d)), core, tenant)
        sup_ids |= {s.alert.alert_id for s in res.suppressed}
        alerts = ds.alerts[start:end]
        rep_of.update((a.alert_id, r) for a, r in zip(alerts, representatives(alerts, window), strict=True))
    y, mask = ds.y, ds.mask(split)
    sup = np.array([rep_of[a.alert_id] in sup_ids for a in ds.alerts], dtype=bool)
    label_of = {a.alert_id: lab for a, lab in zip(ds.alerts, ds.labels, strict=True)}
    hidden = [i for i, a in enumerate(ds.alerts)
              if y[i] == 1 and rep_of[a.alert_id] != a.alert_id and label_of[rep_of[a.alert_id]] == 0]
    return {"dedup_window_s": window, "representatives": len(set(rep_of.values())),
            "alerts": len(ds.alerts), **rates(sup, y, mask),
            "attacks_merged_into_benign_representative": len(hidden),
            "of_which_suppressed": sum(1 for i in hidden if sup[i])}


def evaluate(model_dir: str | Path, dirs: Sequence[str | Path], report_dir: str | Path | None = None,
             split: str = "heldout", ucs: UseCaseSet | None = None, tenant: str = "default",
             pipeline: bool = True, ds: Dataset | None = None) -> dict[str, Any]:
    """The evaluation report (a dict; also written to `report_dir` with figures when given)."""
    model = NoiseClassifier.load(model_dir)
    ds = ds or load_data(dirs, tenant)
    mask = ds.mask(split)
    y = ds.y
    p, sup, guards = model_decisions(model, ds, ucs)
    target = float(model.manifest.get("target_recall", 0.995))
    bthr, bscore, bsup = baseline(ds, target, ucs)
    report: dict[str, Any] = {
        "model": {"version": model.version, "kind": model.manifest.get("kind"), "threshold": model.threshold,
                  "target_recall": target, "features": len(model.used)},
        "data": {"dirs": [str(d) for d in dirs], "split": split, "alerts": len(ds.alerts),
                 "same_data_as_training": ds.data_hash == model.manifest["training_data"]["sha256"]},
        "model_metrics": {**rates(sup, y, mask), "kept_by_guardrail": dict(guards)},
        "baseline": {"rule": "suppress if CRS inbound anomaly score < threshold (chosen on validation)",
                     "threshold": bthr, **rates(bsup, y, mask)},
        "false_negatives": false_negatives(ds, mask, sup, p),
        "baseline_false_negatives": false_negatives(ds, mask, bsup, bscore)["by_attack_type"],
        "baseline_fixed": {f"anomaly_score < {t}": rates(np.nan_to_num(bscore, nan=np.inf) < t, y, mask)
                           for t in BASELINE_REFERENCE},
        "per_rule": per_rule(ds, mask, sup),
    }
    if pipeline:
        report["pipeline"] = pipeline_check(model_dir, ds, dirs, split, ucs, tenant,
                                            model.dedup_window or DEDUP_WINDOW)
    if report_dir is not None:
        write_report(report, Path(report_dir), y[mask], p[mask], bscore[mask], sup[mask], bsup[mask])
    return report


def write_report(report: dict[str, Any], d: Path, y: np.ndarray, p: np.ndarray, b: np.ndarray,
                 sup: np.ndarray, bsup: np.ndarray) -> None:
    """report.json, report.md, per_rule.csv and the PNG figures."""
    from pipeline.classify.plots import confusion_png, pr_png, tradeoff_png

    d.mkdir(parents=True, exist_ok=True)
    (d / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    rows = report["per_rule"]
    with open(d / "per_rule.csv", "w", newline="", encoding="utf-8") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    pr_png(d / "pr_curve.png", y, p, np.nan_to_num(b, nan=-1.0))
    confusion_png(d / "confusion_matrix.png", y, sup, "model")
    confusion_png(d / "confusion_matrix_baseline.png", y, bsup, "anomaly-score baseline")
    tradeoff_png(d / "tradeoff.png", y, p, np.nan_to_num(b, nan=-1.0), report)
    (d / "report.md").write_text(markdown(report), encoding="utf-8")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline figures, model beside baseline (for the CLI, the bench and the report)."""
    m, b = report["model_metrics"], report["baseline"]
    lines = [
        f"split {report['data']['split']}: {m['benign']} benign, {m['attack']} attack alerts",
        f"model    {report['model']['version']} ({report['model']['kind']}), threshold "
        f"{report['model']['threshold']:.4g}: noise reduction {m['noise_reduction']:.2%} "
        f"({m['suppressed_benign']}/{m['benign']}), FN rate {m['fn_rate']:.2%} "
        f"({m['suppressed_attack']}/{m['attack']})",
        f"baseline anomaly score < {b['threshold']:g}: noise reduction {b['noise_reduction']:.2%} "
        f"({b['suppressed_benign']}/{b['benign']}), FN rate {b['fn_rate']:.2%} "
        f"({b['suppressed_attack']}/{b['attack']})",
    ]
    pl = report.get("pipeline")
    if pl:
        lines.append(
            f"pipeline (core, dedup {pl['dedup_window_s']:g} s, {pl['representatives']} representatives of "
            f"{pl['alerts']} alerts): noise reduction {pl['noise_reduction']:.2%}, FN rate {pl['fn_rate']:.2%}; "
            f"{pl['attacks_merged_into_benign_representative']} attack alerts (all splits) merged into a benign "
            f"representative, {pl['of_which_suppressed']} of them suppressed with it")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    fn = report["false_negatives"]
    out = ["# Noise classifier evaluation", "", *[f"- {ln}" for ln in summary_lines(report)], "",
           f"Guardrails kept (model would have suppressed): {report['model_metrics']['kept_by_guardrail'] or 0}",
           "", "## False negatives (attack alerts suppressed)", "",
           f"By attack type: {fn['by_attack_type']}; baseline: {report['baseline_false_negatives']}", "",
           f"By rule category: {fn['by_category']}", "", f"By rule: {fn['by_rule']}", "",
           "| record | type | P(attack) | anomaly | request |", "|---|---|---|---|---|"]
    out += [f"| {f['record_id']} | {f['attack_type']} | {f['score']:.4f} | {f['anomaly_score']} | "
            f"`{f['request'].replace('|', '%7C')}` |" for f in fn["alerts"]]
    out += ["", "## Per rule (top 40 by alerts; all in per_rule.csv)", "",
            "| rule | category | alerts | benign | attack | benign suppressed | FN |", "|---|---|---|---|---|---|---|"]
    out += [f"| {r['rule']} | {r['category']} | {r['alerts']} | {r['benign']} | {r['attack']} | "
            f"{r['suppressed_benign']} | {r['fn']} |" for r in report["per_rule"][:40]]
    out += ["", "Figures: pr_curve.png, tradeoff.png, confusion_matrix.png, confusion_matrix_baseline.png", ""]
    return "\n".join(out)
