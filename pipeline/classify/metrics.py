"""Shared evaluation pieces: the core's view of a labeled stream, the recall threshold, noise / FN rates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from pipeline.core.dedup import Dedup
from pipeline.schema import Alert

if TYPE_CHECKING:
    from pipeline.classify.train import Dataset


def representatives(alerts: Sequence[Alert], window: float | None) -> list[str]:
    """The alert id of the representative the core's dedup (this window) merges each alert into."""
    if window is None:
        return [a.alert_id for a in alerts]
    dd = Dedup(window)
    return [dd.merge(msgspec.structs.replace(a))[0].alert_id for a in alerts]


@dataclass(slots=True)
class CoreView:
    """The alerts as the core's classifier meets them: only dedup representatives are classified, and each
    decision covers the representative's whole group (every alert merged into it)."""

    rep: np.ndarray  # index of each alert's representative
    w_attack: np.ndarray  # labeled attack alerts a representative's decision covers (0 for the others)
    w_benign: np.ndarray  # labeled benign alerts likewise

    @property
    def is_rep(self) -> np.ndarray:
        return self.rep == np.arange(len(self.rep))


def core_view(ds: Dataset, window: float | None) -> CoreView:
    index = {a.alert_id: i for i, a in enumerate(ds.alerts)}
    rep = np.zeros(len(ds.alerts), dtype=np.int64)
    for start, end in ds.streams:
        rep[start:end] = [index[r] for r in representatives(ds.alerts[start:end], window)]
    y = ds.y
    n = len(rep)
    return CoreView(rep, np.bincount(rep[y == 1], minlength=n), np.bincount(rep[y == 0], minlength=n))


def recall_threshold(attack_scores: np.ndarray, target: float, weights: np.ndarray | None = None) -> float:
    """Suppress scores strictly below the returned threshold; split-conformal choice for the target recall.

    With n attack scores sorted ascending, the threshold is the k-th of them, k = floor((1 - target) * (n + 1)).
    If attack scores are exchangeable, a new attack falls below it with probability <= k / (n + 1) <= 1 - target:
    the recall guarantee holds in expectation. k = 0 (too few attacks) suppresses nothing. With `weights` (the
    attack alerts each scored representative stands for) every unit of weight counts as one attack: the threshold
    is the highest score that leaves at most k - 1 units strictly below it, k = floor((1 - target) * (W + 1))."""
    s = np.asarray(attack_scores, dtype=np.float64)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    s, w = s[order], w[order]
    k = math.floor((1.0 - target) * (w.sum() + 1) + 1e-9)
    if k < 1 or not len(s):
        return float("-inf")
    below = np.concatenate(([0.0], np.cumsum(w)[:-1]))  # weight strictly before each position
    m = int(np.searchsorted(below, k - 1 + 1e-9, side="right")) - 1
    return float(s[m])


def choose_threshold(scores: np.ndarray, y: np.ndarray, mask: np.ndarray, view: CoreView, target: float
                     ) -> float:
    """The threshold meeting the target recall on the `mask` alerts both per alert and as the core decides
    (representatives weighted by the attack alerts they cover): the lower of the two `recall_threshold`s."""
    att = mask & (y == 1) & ~np.isnan(scores)
    reps = att & view.is_rep
    return min(recall_threshold(scores[att], target), recall_threshold(scores[reps], target, view.w_attack[reps]))


def rates(sup: np.ndarray, y: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Per alert: noise reduction and FN rate of a suppression decision over the alerts in `mask`."""
    ben, att = mask & (y == 0), mask & (y == 1)
    nb, na = int(ben.sum()), int(att.sum())
    sb, sa = int((sup & ben).sum()), int((sup & att).sum())
    return {"benign": nb, "attack": na, "suppressed_benign": sb, "suppressed_attack": sa,
            "noise_reduction": sb / nb if nb else 0.0, "fn_rate": sa / na if na else 0.0}


def core_rates(sup: np.ndarray, y: np.ndarray, mask: np.ndarray, view: CoreView) -> dict[str, Any]:
    """As the core decides: representatives in `mask`, weighted by the labeled alerts their decision covers."""
    reps = mask & view.is_rep
    wb = view.w_benign * reps
    wa_att = view.w_attack * (reps & (y == 1))
    wa_hidden = view.w_attack * (reps & (y == 0))
    nb, na = int(wb.sum()), int(wa_att.sum())
    sb, sa = int((wb * sup).sum()), int((wa_att * sup).sum())
    return {"representatives": int(reps.sum()), "benign": nb, "attack": na, "suppressed_benign": sb,
            "suppressed_attack": sa, "noise_reduction": sb / nb if nb else 0.0, "fn_rate": sa / na if na else 0.0,
            "attack_in_benign_groups": int(wa_hidden.sum()),
            "attack_in_benign_groups_suppressed": int((wa_hidden * sup).sum())}


