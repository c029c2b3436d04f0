"""Rule families, the threshold for alerts with rules never seen in training, and leave-rule-family-out figures.

A *rule family* groups the rules that look for one kind of attack: for OWASP CRS, the rule file (the first three
digits of the id: 942 SQL injection, 941 XSS, 930 LFI, 920 protocol enforcement ...; the anomaly-evaluation and
initialization files are not families); for other products, the rule's category.

An alert that carries a rule the model never saw is judged against a stricter threshold, `threshold_novel`,
chosen by cross-validation over rule families *on the training split only* (`novel_threshold`): for each family,
a model fitted without the alerts of that family scores them; the scores of their attacks, pooled over the
folds, give the split-conformal threshold for the target recall. Too few attacks for that target: -inf
(nothing novel is suppressed). The same folds choose which features the scope range-checks (`choose_range`).

`leave_family_out` is the honest figure for rules never seen: each family in turn is removed from the data, a
model is trained (selection and thresholds on the remaining data's own train / validation splits) and judged on
the alerts of the removed family, with the code the core runs (`NoiseClassifier.assess`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.classify.metrics import rates, recall_threshold
from pipeline.schema import Alert, Rule

if TYPE_CHECKING:
    from pipeline.classify.train import Dataset

CRS_FAMILIES = {
    "911": "method", "913": "scanner", "920": "protocol", "921": "protocol-attack", "930": "lfi", "931": "rfi",
    "932": "rce", "933": "php", "934": "generic", "941": "xss", "942": "sqli", "943": "session-fixation",
    "944": "java", "950": "data-leak", "951": "data-leak", "952": "data-leak", "953": "data-leak",
    "954": "data-leak", "955": "web-shell",
}
CRS_BOOKKEEPING = frozenset({"901", "905", "910", "912", "949", "959", "980"})
MIN_FOLD_ATTACKS = 5  # a family with fewer attack alerts is no fold of its own
MIN_FOLD_CLASS = 10  # a fold's training rows need this many of each label (calibration uses 5 folds)


def rule_family(r: Rule) -> str | None:
    """The family of one rule (None: a bookkeeping rule, or nothing to tell)."""
    rid = r.id or ""
    if len(rid) == 6 and rid.isdigit() and rid.startswith("9"):
        pre = rid[:3]
        return None if pre in CRS_BOOKKEEPING else f"crs-{CRS_FAMILIES.get(pre, pre)}"
    return r.category.lower() if r.category else None


def families(a: Alert) -> frozenset[str]:
    """Every rule family an alert carries."""
    return frozenset(f for f in map(rule_family, (a.rule, *a.rules)) if f)


def folds(ds: Dataset, mask: np.ndarray, min_attacks: int = MIN_FOLD_ATTACKS) -> dict[str, np.ndarray]:
    """Family -> boolean mask of the alerts (within `mask`) that carry it; families with enough attacks."""
    fams = [families(a) for a in ds.alerts]
    y = ds.y
    count = Counter(f for i in np.flatnonzero(mask & (y == 1)) for f in fams[i])
    out = {}
    for f, n in sorted(count.items()):
        if n >= min_attacks:
            out[f] = mask & np.fromiter((f in s for s in fams), dtype=bool, count=len(fams))
    return out


def novel_threshold(fit: Callable[[np.ndarray], Any], X: np.ndarray, y: np.ndarray,
                    fold_masks: dict[str, np.ndarray], train: np.ndarray, target: float,
                    guarded: np.ndarray | None = None, ranges: dict[str, np.ndarray] | None = None
                    ) -> tuple[float, dict[str, Any]]:
    """(threshold for alerts with unseen rules, per-fold details). `fit(mask)` returns an estimator fitted on
    the rows of `mask` with a `predict_proba` on the final model's calibrated scale; only `train` rows are used.
    `guarded` alerts (kept by a payload guardrail whatever their score) count with score +inf.

    `ranges` (scope range variant -> boolean mask of the columns of X its range check covers) adds the choice of
    the scope for unseen rules from the same folds (`choose_range`): each fold's held-out family is judged at the
    pooled threshold, in scope when within its fold's training range (`Scope`, `MARGIN`); the variant with the
    fewest families above the target's false-negative rate, then the most benign alerts suppressed, wins
    (`detail["range_variant"]`). The threshold itself never depends on the scope (out-of-scope attacks count with
    their score), so a wider scope only adds suppressions that the threshold already accounts for."""
    from pipeline.classify.scope import Scope

    scores: list[np.ndarray] = []
    judged: list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
    detail: dict[str, Any] = {}
    for fam, m in fold_masks.items():
        te = m & train
        tr = train & ~m
        if np.bincount(y[tr].astype(np.int64), minlength=2)[:2].min() < MIN_FOLD_CLASS or not (te & (y == 1)).any():
            continue
        p = fit(tr).predict_proba(X[te])[:, 1]
        if guarded is not None:  # attacks a guardrail always keeps can never be suppressed
            p = np.where(guarded[te], np.inf, p)
        scores.append(p[y[te] == 1])
        detail[fam] = {"alerts": int(te.sum()), "attacks": int((y[te] == 1).sum())}
        if ranges:
            fold_scope = Scope.learn([], X[tr])
            judged.append((fam, p, y[te], {v: fold_scope.inside(X[te], c) for v, c in ranges.items()}))
    pooled = np.concatenate(scores) if scores else np.zeros(0)
    thr = recall_threshold(pooled, target) if len(pooled) else float("-inf")
    out = {"folds": detail, "attacks_pooled": len(pooled), "rule": "split-conformal on the pooled "
           "out-of-family attack scores of the train split (leave-one-family-out; each fold refits the "
           "base model and maps its decision values through the final model's calibrator)"}
    if ranges:
        out.update(choose_range(judged, thr, target, list(ranges)))
    return thr, out


MIN_RANGE_FOLD_ATTACKS = 20  # a family's false-negative rate counts in the scope choice from this many attacks


def choose_range(judged: Sequence[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]], thr: float,
                 target: float, variants: Sequence[str]) -> dict[str, Any]:
    """The scope range variant for unseen rules, from the leave-one-family-out folds judged at `thr`: fewest
    families (with at least `MIN_RANGE_FOLD_ATTACKS` attacks) whose false-negative rate exceeds 1 - target, then
    the largest share of benign alerts suppressed, then the earlier (stricter) variant."""
    figures: dict[str, dict[str, Any]] = {}
    for v in variants:
        over, sb, nb, sa = [], 0, 0, 0
        for fam, p, y, inside in judged:
            sup = (p < thr) & inside[v]
            att = y == 1
            sb += int((sup & (y == 0)).sum())
            nb += int((y == 0).sum())
            sa += int((sup & att).sum())
            if att.sum() >= MIN_RANGE_FOLD_ATTACKS and (sup & att).sum() > (1.0 - target) * att.sum():
                over.append(fam)
        figures[v] = {"families_over_fn_target": over, "noise_reduction": sb / nb if nb else 0.0,
                      "suppressed_attack": sa}
    best = min(variants, key=lambda v: (len(figures[v]["families_over_fn_target"]),
                                        -figures[v]["noise_reduction"], variants.index(v)))
    return {"range_variant": best, "range_variants": figures,
            "range_rule": "fewest leave-one-family-out folds above the false-negative target, then the most "
                          "benign alerts suppressed (judged at the pooled threshold, guardrail-kept attacks "
                          "excluded), then the stricter variant"}


class Recalibrated:
    """A base model fitted on a fold, scored on the calibrated scale of the final model (its sigmoid
    calibrator applied to the fold model's decision values): one fit per fold instead of a calibrated CV."""

    def __init__(self, base: Any, calibrated: Any):
        self.base = base
        self.calibrator = calibrated.calibrated_classifiers_[0].calibrators[0]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = np.clip(self.calibrator.predict(self.base.decision_function(X)), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])


def leave_family_out(ds: Dataset, train_fn: Callable[[Dataset], Any], judge: Callable[[Any, Dataset], np.ndarray],
                     only: Sequence[str] | None = None, min_attacks: int = MIN_FOLD_ATTACKS) -> dict[str, Any]:
    """Per family F: train on the labeled alerts that carry no rule of F (`train_fn` on a copy whose other labels
    are hidden; the alerts stay in their streams, unlabeled), judge the alerts that carry a rule of F
    (`judge(model, dataset) -> suppressed?`). Pooled figures sum the folds (an alert with rules of two families
    counts in both). A family whose removal leaves too little to train on is reported under `skipped`."""
    every = ds.mask("all")
    out: dict[str, Any] = {"folds": {}}
    tot: Counter[str] = Counter()
    for fam, m in folds(ds, every, min_attacks).items():
        if only and fam not in only:
            continue
        try:
            model = train_fn(ds.subset(~m))
        except ValueError as e:  # too little left to train on without this family
            out.setdefault("skipped", {})[fam] = str(e)
            continue
        test = ds.subset(m)
        sup = judge(model, test)
        r = rates(sup, test.y, test.mask("all"))
        out["folds"][fam] = {**r, "threshold": model.threshold, "threshold_novel": model.threshold_novel}
        for k in ("benign", "attack", "suppressed_benign", "suppressed_attack"):
            tot[k] += r[k]
    out["pooled"] = {**tot, "noise_reduction": tot["suppressed_benign"] / tot["benign"] if tot["benign"] else 0.0,
                     "fn_rate": tot["suppressed_attack"] / tot["attack"] if tot["attack"] else 0.0}
    return out
