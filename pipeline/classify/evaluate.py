"""Evaluating a noise model on labeled data, beside the CRS anomaly-score baseline, in one run.

Figures are on the held-out split (`--split all` for data the model never saw), in two views:

- per alert: every labeled alert classified on its own (the view of the labeled set's README baseline).
- as the core decides: the core dedups first, so only representatives are classified and each decision covers
  every alert merged into it; representatives of the split, weighted by the labeled alerts they cover. Attack
  alerts the dedup merged into a *benign* representative are reported apart (no threshold can keep them without
  keeping the benign representative).

Noise reduction = share of benign-caused alerts suppressed; FN rate = share of attack alerts suppressed. The
model's decisions come from `NoiseClassifier.assess` (the code the core runs, guardrails included) over each
directory's whole stream in event-time order with a fresh state, the history fed as in the core. Baseline: suppress
when the CRS inbound anomaly score (`extra.anomaly_score`) is below a threshold chosen on the validation split
with the same rule and target recall (`choose_threshold`), same guardrails; fixed README thresholds for
reference. Also: false negatives one by one and by rule, category and attack type; a per-rule table; PR curve,
confusion matrices and noise-reduction / FN trade-off as PNG; and a check that the real core (`mdr replay` path)
made the same decisions.
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
from pipeline.classify.metrics import CoreView, choose_threshold, core_rates, core_view, rates
from pipeline.classify.model import NoiseClassifier
from pipeline.classify.train import BATCH, Dataset, data_files, load_data
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


def model_decisions(model: NoiseClassifier, ds: Dataset, view: CoreView, ucs: UseCaseSet | None = None,
                    why: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, Counter[str]]:
    """(P(attack), suppressed?, why alerts below the threshold were kept) for every alert of the dataset; one
    fresh state per stream, only representatives entering the history (as in the core). `why` gets each
    alert's fate (`NoiseClassifier.assess`), in dataset order."""
    p = np.zeros(len(ds.alerts))
    sup = np.zeros(len(ds.alerts), dtype=bool)
    rec = view.is_rep.tolist()
    kept: Counter[str] = Counter()
    for start, end in ds.streams:
        model.reset()
        for i in range(start, end, BATCH):
            batch = ds.alerts[i:min(i + BATCH, end)]
            scores, dec = model.assess(batch, match_usecases(ucs, batch), rec[i:i + len(batch)], why)
            p[i:i + len(batch)] = scores
            sup[i:i + len(batch)] = [d is not None for d in dec]
        kept.update(model.stats)
    return p, sup, kept


def anomaly_scores(ds: Dataset) -> np.ndarray:
    """CRS inbound anomaly score of each alert (NaN when the product states none)."""
    out = np.full(len(ds.alerts), np.nan)
    for i, a in enumerate(ds.alerts):
        v = a.extra.get("anomaly_score")
        if isinstance(v, int | float):
            out[i] = v
    return out


def baseline(ds: Dataset, view: CoreView, target: float, ucs: UseCaseSet | None = None
             ) -> tuple[float, np.ndarray, np.ndarray]:
    """(threshold chosen on validation as for the model, scores, suppressed?) of the anomaly-score baseline."""
    s = anomaly_scores(ds)
    thr = choose_threshold(s, ds.y, ds.mask("validation"), view, target)
    matched = match_usecases(ucs, ds.alerts)
    sup = np.array([bool(v < thr) and keep_reason(a, m) is None
                    for a, v, m in zip(ds.alerts, s, matched, strict=True)], dtype=bool)
    return thr, s, sup


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
    items: list[dict[str, Any]] = []
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


def pipeline_check(model_dir: str | Path, ds: Dataset, dirs: Sequence[str | Path], view: CoreView,
                   sup: np.ndarray, ucs: UseCaseSet | None, tenant: str, window: float) -> dict[str, Any]:
    """Run the real core (`mdr replay` path) with the model over the data; compare its decisions."""
    from pipeline.core.engine import Core
    from pipeline.replay import replay

    core_sup: set[str] = set()
    for d in dirs:
        core = Core(ucs or UseCaseSet(), dedup_window=window, classifier=NoiseClassifier.load(model_dir))
        core_sup |= {s.alert.alert_id for s in replay(data_files(Path(d)), core, tenant).suppressed}
    reps = np.flatnonzero(view.is_rep)
    differ = sum(1 for i in reps if (ds.alerts[i].alert_id in core_sup) != bool(sup[i]))
    return {"dedup_window_s": window, "representatives": len(reps), "suppressed_by_core": len(core_sup),
            "decisions_differing": differ}


def evaluate(model_dir: str | Path, dirs: Sequence[str | Path], report_dir: str | Path | None = None,
             split: str = "heldout", ucs: UseCaseSet | None = None, tenant: str = "default",
             pipeline: bool = True, ds: Dataset | None = None) -> dict[str, Any]:
    """The evaluation report (a dict; also written to `report_dir` with figures when given)."""
    model = NoiseClassifier.load(model_dir)
    ds = ds or load_data(dirs, tenant)
    view = core_view(ds, model.dedup_window)
    mask, y = ds.mask(split), ds.y
    if not mask.any():
        where = ", ".join(map(str, dirs))
        raise ValueError(f"no labeled alerts in the {split} split of {where} ({len(ds.alerts)} alerts read): a data "
                         "directory holds product records and labels.jsonl (see `mdr model train --help`)")
    p, sup, kept = model_decisions(model, ds, view, ucs)
    target = float(model.manifest.get("target_recall", 0.995))
    bthr, bscore, bsup = baseline(ds, view, target, ucs)
    report: dict[str, Any] = {
        "model": {"version": model.version, "variant": model.manifest.get("variant"),
                  "threshold": model.threshold, "target_recall": target, "features": len(model.used),
                  "dedup_window_s": model.dedup_window},
        "data": {"dirs": [str(d) for d in dirs], "split": split, "alerts": len(ds.alerts),
                 "same_data_as_training": ds.data_hash == model.manifest["training_data"]["sha256"]},
        "model_metrics": {**rates(sup, y, mask), "kept_below_threshold": dict(kept)},
        "model_core": core_rates(sup, y, mask, view),
        "baseline": {"rule": "suppress if CRS inbound anomaly score < threshold (chosen on validation)",
                     "threshold": bthr, **rates(bsup, y, mask)},
        "baseline_core": core_rates(bsup, y, mask, view),
        "baseline_fixed": {f"anomaly_score < {t}": rates(np.nan_to_num(bscore, nan=np.inf) < t, y, mask)
                           for t in BASELINE_REFERENCE},
        "false_negatives": false_negatives(ds, mask, sup, p),
        "baseline_false_negatives": false_negatives(ds, mask, bsup, bscore)["by_attack_type"],
        "per_rule": per_rule(ds, mask, sup),
    }
    if pipeline:
        window = model.dedup_window
        report["pipeline"] = pipeline_check(model_dir, ds, dirs, view, sup, ucs, tenant,
                                            0.0 if window is None else window)
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
    split = report["data"]["split"]
    pr_png(d / "pr_curve.png", y, p, np.nan_to_num(b, nan=-1.0), split)
    confusion_png(d / "confusion_matrix.png", y, sup, "model")
    confusion_png(d / "confusion_matrix_baseline.png", y, bsup, "anomaly-score baseline")
    tradeoff_png(d / "tradeoff.png", y, p, np.nan_to_num(b, nan=-1.0), report, split)
    (d / "report.md").write_text(markdown(report), encoding="utf-8")


def _line(name: str, r: dict[str, Any]) -> str:
    return (f"{name}: noise reduction {r['noise_reduction']:.2%} ({r['suppressed_benign']}/{r['benign']}), "
            f"FN rate {r['fn_rate']:.2%} ({r['suppressed_attack']}/{r['attack']})")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline figures, model beside baseline (for the CLI, the bench and the report)."""
    m, b, mc, bc = report["model_metrics"], report["baseline"], report["model_core"], report["baseline_core"]
    md = report["model"]
    lines = [
        f"model {md['version']} ({md['variant']}), P(attack) threshold {md['threshold']:.4g}, target recall "
        f"{md['target_recall']}; baseline: CRS anomaly score < {b['threshold']:g}; split {report['data']['split']}",
        _line("per alert      model   ", m), _line("per alert      baseline", b),
        _line(f"as core decides model   ({mc['representatives']} representatives)", mc),
        _line("as core decides baseline", bc),
        f"attack alerts the dedup ({md['dedup_window_s']} s) merged into benign representatives: "
        f"{mc['attack_in_benign_groups']} ({mc['attack_in_benign_groups_suppressed']} suppressed with them; "
        f"baseline {bc['attack_in_benign_groups_suppressed']})",
    ]
    lines += [_line(f"per alert      {k:>21}", v) for k, v in report["baseline_fixed"].items()]
    pl = report.get("pipeline")
    if pl:
        lines.append(f"real core (mdr replay path): {pl['suppressed_by_core']} suppressed, "
                     f"{pl['decisions_differing']} of {pl['representatives']} decisions differ from this evaluation")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    fn = report["false_negatives"]
    out = ["# Noise classifier evaluation", "", *[f"- {ln}" for ln in summary_lines(report)], "",
           "Kept although below the threshold (all splits): "
           f"{report['model_metrics']['kept_below_threshold'] or 'none'}",
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


CURVE_SIZES = (100, 300, 1000, 3000)


def learning_curve(ds: Dataset, sizes: Sequence[int] = CURVE_SIZES, target: float = 0.995,
                   base: Dataset | None = None, dedup_window: float | None = None,
                   kinds: Sequence[str] = ("hgb", "linear")) -> list[dict[str, Any]]:
    """Noise reduction and false negatives on the held-out split of `ds` against the number of verdicts a model
    was trained on: the first n labeled alerts of the train and validation splits in event-time order (the
    verdicts analysts would have given first), plus every label of `base` (data the deployment started with).
    Each point trains as `mdr model train` does (selection and thresholds on those verdicts' own train /
    validation splits); a point whose verdicts cannot yet give a threshold suppresses nothing."""
    from pipeline.classify.train import merge, train

    y = ds.y
    pool = [i for i in np.flatnonzero((y >= 0) & (np.asarray(ds.splits) != "heldout"))]
    pool.sort(key=lambda i: ds.alerts[i].time)
    test = ds.mask("heldout")
    out = []
    for n in sizes:
        if n > len(pool):
            break
        keep = np.zeros(len(y), dtype=bool)
        keep[pool[:n]] = True
        sub = ds.subset(keep)
        point: dict[str, Any] = {"verdicts": n, "attack_verdicts": int((y[keep] == 1).sum())}
        try:
            model = train([], target, tuple(kinds), dedup_window=dedup_window,
                          ds=merge(base, sub) if base is not None else sub)[0]
        except ValueError as e:
            out.append({**point, **rates(np.zeros(len(y), dtype=bool), y, test), "model": None, "note": str(e)})
            continue
        _, sup, _ = model_decisions(model, ds, core_view(ds, dedup_window))
        out.append({**point, **rates(sup, y, test), "model": model.manifest.get("variant"),
                    "threshold": model.threshold, "threshold_novel": model.threshold_novel})
    return out


def curve_lines(curve: Sequence[dict[str, Any]]) -> list[str]:
    return [f"{c['verdicts']:>6} verdicts ({c['attack_verdicts']} attack): noise reduction "
            f"{c['noise_reduction']:.2%} ({c['suppressed_benign']}/{c['benign']}), FN rate {c['fn_rate']:.2%} "
            f"({c['suppressed_attack']}/{c['attack']})" + (f" [{c['note']}]" if c.get("note") else "")
            for c in curve]
