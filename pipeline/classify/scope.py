"""What a model may judge: only alerts that look like its training data can be suppressed.

A noise model trained on one product, one WAF configuration and one kind of traffic knows nothing of the rest; a
linear model in particular extrapolates without limit (a feature a thousand standard deviations from its
training mean dominates the score). So an alert is in scope only when

- its product (format) occurred in the training split, and
- every feature the model uses lies within the training split's range, widened by `MARGIN` of that range on
  each side (a feature constant in training must keep that value), except the features of the model's range
  variant (`RANGE_VARIANTS`: `no-ngrams` leaves the hashed character 3-gram shares unchecked; each is a share of
  one short text and falls outside a few thousand training rows' range on ordinary values). Training chooses the
  variant by leave-one-family-out inside its train split (`generalize.novel_threshold`); a manifest without one
  checks every feature.

An alert with a rule id the training split never had is judged against the model's stricter `threshold_novel`
(chosen by leave-rule-family-out cross-validation on the training split); at a deployment the model knows, the
range check then skips the columns of its rule family (rule ids, categories, the product's per-family scores).

Out-of-scope alerts are kept, whatever their score: the threshold's recall guarantee is unaffected (keeping only
raises recall), noise reduction is lost only on unfamiliar alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from pipeline.schema import Alert

MARGIN = 0.1
RANGE_VARIANTS: dict[str, tuple[str, ...]] = {"all": (), "no-ngrams": ("ng:",)}  # name -> unchecked prefixes
_ID = attrgetter("id")


@dataclass(slots=True)
class Scope:
    products: frozenset[str]
    rules: frozenset[str]
    lo: np.ndarray  # per used feature, margin included
    hi: np.ndarray
    variant: str = "all"  # `RANGE_VARIANTS` key: which features the range check leaves out
    checked: np.ndarray | None = None  # per used feature: range-checked (None: all)

    @classmethod
    def learn(cls, alerts: Sequence[Alert], X: np.ndarray, margin: float = MARGIN) -> Scope:
        """The scope of a training split: its alerts and their feature rows (used columns only)."""
        mn, mx = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        pad = (mx - mn) * margin
        return cls(frozenset(a.source.format or a.source.product for a in alerts),
                   frozenset(r.id for a in alerts for r in (a.rule, *a.rules)), mn - pad, mx + pad)

    def select(self, cols: Sequence[int]) -> Scope:
        """The same scope over a subset of the feature columns (every one range-checked)."""
        return Scope(self.products, self.rules, self.lo[list(cols)], self.hi[list(cols)])

    def with_variant(self, variant: str, names: Sequence[str]) -> Scope:
        """The same ranges, checked as `RANGE_VARIANTS[variant]` says (`names`: the used features)."""
        return Scope(self.products, self.rules, self.lo, self.hi, variant, checked_columns(names, variant))

    def known(self, a: Alert) -> bool:
        """The alert's product and all its rule ids were seen in training."""
        return self.product_known(a) and self.rules_known(a)

    def product_known(self, a: Alert) -> bool:
        return (a.source.format or a.source.product) in self.products

    def rules_known(self, a: Alert) -> bool:
        """Every rule id of the alert was seen in training (else it is judged against `threshold_novel`)."""
        return (not a.rule.id or a.rule.id in self.rules) and self.rules.issuperset(map(_ID, a.rules))

    def inside(self, X: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Per row: every feature (of the boolean `columns` mask, default all) within the (widened) training
        range."""
        ok = (self.lo <= X) & (self.hi >= X)
        cols = self.checked if columns is None else (columns if self.checked is None else columns & self.checked)
        return np.asarray((ok if cols is None else ok | ~cols).all(axis=1))

    def to_dict(self, names: Sequence[str]) -> dict[str, Any]:
        return {"margin": MARGIN, "products": sorted(self.products), "rules": sorted(self.rules),
                "ranges": {n: [float(a), float(b)] for n, a, b in zip(names, self.lo, self.hi, strict=True)},
                "range_variant": self.variant, "unchecked_prefixes": list(RANGE_VARIANTS[self.variant])}

    @classmethod
    def from_dict(cls, d: dict[str, Any], names: Sequence[str]) -> Scope:
        r = d["ranges"]
        scope = cls(frozenset(d["products"]), frozenset(d["rules"]),
                    np.array([r[n][0] for n in names]), np.array([r[n][1] for n in names]))
        variant = d.get("range_variant", "all")
        if variant not in RANGE_VARIANTS:
            raise ValueError(f"unknown scope range variant {variant!r}")
        return scope.with_variant(variant, names)


def checked_columns(names: Sequence[str], variant: str) -> np.ndarray:
    """Per feature name: range-checked under the variant."""
    skip = RANGE_VARIANTS[variant]
    return np.fromiter((not n.startswith(skip) for n in names), dtype=bool, count=len(names))
