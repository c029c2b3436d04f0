"""Drift of the noise model per tenant: how much of the traffic it can judge, and how its scores move.

`TenantDrift` counts, per tenant, the alerts the model scored, those out of its scope (product or feature ranges
it never saw: kept whatever their score), those carrying a rule it never saw (judged against the stricter
threshold) and a histogram of P(attack) in `BINS` equal bins. The counts are plain data (`to_dict`), so they
travel in the worker's metrics, in `mdr replay`'s `drift.json` and into the weekly report.

`notices(current, baseline)` compares a period with a reference (the model's training split or an earlier
period): a tenant whose out-of-scope share rose by more than `RISE_ABS` (absolute) and by a factor `RISE_REL`
gets a notice, as does a score histogram whose population stability index exceeds `PSI_NOTICE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

BINS = 10
RISE_ABS = 0.05
RISE_REL = 1.5
PSI_NOTICE = 0.25
MIN_ALERTS = 50  # fewer alerts in a period: no notice (shares too noisy)


@dataclass(slots=True)
class TenantDrift:
    alerts: int = 0
    out_of_scope: int = 0
    novel_rules: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * BINS)

    def observe(self, score: float, out_of_scope: bool, novel: bool) -> None:
        self.alerts += 1
        self.out_of_scope += out_of_scope
        self.novel_rules += novel
        self.hist[min(int(score * BINS), BINS - 1) if score > 0 else 0] += 1

    def add(self, other: TenantDrift) -> None:
        self.alerts += other.alerts
        self.out_of_scope += other.out_of_scope
        self.novel_rules += other.novel_rules
        self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]

    @property
    def out_of_scope_share(self) -> float:
        return self.out_of_scope / self.alerts if self.alerts else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "out_of_scope": self.out_of_scope, "novel_rules": self.novel_rules,
                "out_of_scope_share": round(self.out_of_scope_share, 6), "score_hist": list(self.hist)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TenantDrift:
        return cls(int(d["alerts"]), int(d["out_of_scope"]), int(d.get("novel_rules", 0)),
                   [int(x) for x in d.get("score_hist", [0] * BINS)])


def psi(current: list[int], reference: list[int], eps: float = 1e-4) -> float:
    """Population stability index of two histograms (0: same shape; > 0.25 is usually read as a shift)."""
    nc, nr = sum(current), sum(reference)
    if not nc or not nr:
        return 0.0
    out = 0.0
    for c, r in zip(current, reference, strict=True):
        pc, pr = max(c / nc, eps), max(r / nr, eps)
        out += (pc - pr) * math.log(pc / pr)
    return out


def notices(current: dict[str, TenantDrift], reference: dict[str, TenantDrift] | TenantDrift
            ) -> list[dict[str, Any]]:
    """Notices for tenants whose out-of-scope share rose, or whose score distribution shifted, against a
    reference (one per tenant, or one for all: the model's training data)."""
    out = []
    for tenant, cur in sorted(current.items()):
        ref = reference if isinstance(reference, TenantDrift) else reference.get(tenant)
        if ref is None or cur.alerts < MIN_ALERTS or not ref.alerts:
            continue
        now, before = cur.out_of_scope_share, ref.out_of_scope_share
        if now - before > RISE_ABS and now > before * RISE_REL:
            out.append({"tenant": tenant, "kind": "out_of_scope_rise", "share": round(now, 4),
                        "reference": round(before, 4),
                        "text": f"tenant {tenant}: {now:.1%} of alerts are outside the noise model's scope "
                                f"(was {before:.1%}); they are all kept: retrain on this tenant's verdicts"})
        shift = psi(cur.hist, ref.hist)
        if shift > PSI_NOTICE:
            out.append({"tenant": tenant, "kind": "score_shift", "psi": round(shift, 4),
                        "text": f"tenant {tenant}: the noise model's score distribution shifted (PSI "
                                f"{shift:.2f}); check its false negatives on recent verdicts"})
    return out


def by_tenant(drift: dict[tuple[str, Any], TenantDrift]) -> dict[str, TenantDrift]:
    """Counts per (tenant, day) summed per tenant."""
    out: dict[str, TenantDrift] = {}
    for (tenant, _day), d in drift.items():
        out.setdefault(tenant, TenantDrift()).add(d)
    return out


def classifier_drift(classifier: Any) -> dict[tuple[str, Any], TenantDrift]:
    """The drift counts of the core's classifier (a NoiseClassifier, or the active model of a `Shadowed`)."""
    model = getattr(classifier, "active", classifier)
    return dict(getattr(model, "drift", None) or {})
