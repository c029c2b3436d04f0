"""Per-alert feature contributions, in log-odds of "attack" (negative = pushes towards noise).

- Linear model (StandardScaler + LogisticRegression): contribution_j = coef_j * (x_j - mean_j) / scale_j; with the
  intercept they sum exactly to the model's logit.
- Gradient boosting (HistGradientBoostingClassifier): the Saabas / "tree interpreter" path attribution, a cheap
  approximation of SHAP values. Each tree node gets the count-weighted mean of its leaves' values; walking an
  alert's path, each step's change of that value is credited to the feature the parent node split on. With the
  per-tree root means and the baseline they sum exactly to the raw score, but credit is biased towards features
  split near the root (SHAP would average over feature orderings). Vectorized over alerts and trees: cost
  O(depth) numpy steps per batch.

Contributions explain the uncalibrated score; calibration is a monotone map of it (sigmoid), so the sign and the
ranking of the reasons carry over to the calibrated probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline


class LinearExplainer:
    def __init__(self, pipe: Pipeline):
        scaler, lr = pipe.steps[0][1], pipe.steps[-1][1]
        self.mean = np.asarray(scaler.mean_, dtype=np.float64)
        self.weight = lr.coef_[0] / scaler.scale_
        self.bias = float(lr.intercept_[0])

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) * self.weight


class TreeExplainer:
    """Saabas attribution over all trees of a binary HistGradientBoostingClassifier (numeric features)."""

    def __init__(self, model: HistGradientBoostingClassifier):
        feats, thr, left, right, leaf, miss, val, roots = [], [], [], [], [], [], [], []
        base = 0
        for (pred,) in model._predictors:
            nodes = pred.nodes
            n = len(nodes)
            roots.append(base)
            feats.append(nodes["feature_idx"].astype(np.int64))
            thr.append(nodes["num_threshold"].astype(np.float64))
            left.append(nodes["left"].astype(np.int64) + base)
            right.append(nodes["right"].astype(np.int64) + base)
            leaf.append(nodes["is_leaf"].astype(bool))
            miss.append(nodes["missing_go_to_left"].astype(bool))
            val.append(_node_means(nodes))
            base += n
        self.feat = np.concatenate(feats)
        self.thr = np.concatenate(thr)
        self.left = np.concatenate(left)
        self.right = np.concatenate(right)
        self.leaf = np.concatenate(leaf)
        self.miss_left = np.concatenate(miss)
        self.val = np.concatenate(val)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.bias = float(np.ravel(model._baseline_prediction)[0] + self.val[self.roots].sum())

    def contributions(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        m, d = X.shape
        out = np.zeros(m * d, dtype=np.float64)
        cur = np.tile(self.roots, m)
        rows = np.repeat(np.arange(m, dtype=np.int64), len(self.roots))
        active = ~self.leaf[cur]
        while active.any():
            node, r = cur[active], rows[active]
            f = self.feat[node]
            x = X[r, f]
            go_left = np.where(np.isnan(x), self.miss_left[node], x <= self.thr[node])
            nxt = np.where(go_left, self.left[node], self.right[node])
            out += np.bincount(r * d + f, weights=self.val[nxt] - self.val[node], minlength=m * d)
            cur[active] = nxt
            active = ~self.leaf[cur]
        return out.reshape(m, d)


def _node_means(nodes: np.ndarray) -> np.ndarray:
    """Count-weighted mean leaf value below each node (children always come after their parent)."""
    val = nodes["value"].astype(np.float64).copy()
    cnt = nodes["count"].astype(np.float64)
    for i in range(len(nodes) - 1, -1, -1):
        if not nodes["is_leaf"][i]:
            lft, rgt = nodes["left"][i], nodes["right"][i]
            tot = cnt[lft] + cnt[rgt]
            val[i] = (val[lft] * cnt[lft] + val[rgt] * cnt[rgt]) / tot if tot else 0.0
    return val


def explainer_for(estimator: Any) -> LinearExplainer | TreeExplainer:
    """The explainer for a fitted base estimator (the calibrated model's refit base)."""
    if isinstance(estimator, HistGradientBoostingClassifier):
        return TreeExplainer(estimator)
    if isinstance(estimator, Pipeline):
        return LinearExplainer(estimator)
    raise TypeError(f"no explainer for {type(estimator).__name__}")
