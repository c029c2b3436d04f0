"""Evaluation figures (matplotlib, Agg backend): PR curve, confusion matrix, noise-reduction / FN trade-off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def pr_png(path: Path, y: np.ndarray, p: np.ndarray, base: np.ndarray, split: str) -> None:
    """Precision / recall of "attack" for the model score and the anomaly-score baseline."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, s in (("model P(attack)", p), ("CRS anomaly score", base)):
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{name} (AP {average_precision_score(y, s):.4f})")
    ax.set(xlabel="recall (attack)", ylabel="precision (attack)",
           title=f"Precision-recall, {split} split (recall >= 0.9)", xlim=(0.9, 1.002))
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_png(path: Path, y: np.ndarray, sup: np.ndarray, title: str) -> None:
    """Kept / suppressed against attack / benign, with counts."""
    m = np.array([[int(((y == 1) & ~sup).sum()), int(((y == 1) & sup).sum())],
                  [int(((y == 0) & ~sup).sum()), int(((y == 0) & sup).sum())]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="black" if v < m.max() / 2 else "white")
    ax.set_xticks([0, 1], ["kept", "suppressed"])
    ax.set_yticks([0, 1], ["attack", "benign"])
    ax.set_title(f"Confusion matrix: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FN rate, noise reduction) when suppressing below each distinct score."""
    ts = np.unique(s)
    att, ben = np.sort(s[y == 1]), np.sort(s[y == 0])
    fn = np.searchsorted(att, ts, side="left") / max(len(att), 1)
    nr = np.searchsorted(ben, ts, side="left") / max(len(ben), 1)
    return fn, nr


def tradeoff_png(path: Path, y: np.ndarray, p: np.ndarray, base: np.ndarray, report: dict[str, Any],
                 split: str) -> None:
    """Noise reduction against FN rate for every threshold, operating points marked."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, s, key in (("model", p, "model_metrics"), ("anomaly-score baseline", base, "baseline")):
        fn, nr = _curve(y, s)
        line, = ax.step(fn * 100, nr * 100, where="post", label=name)
        pt = report[key]
        ax.plot(pt["fn_rate"] * 100, pt["noise_reduction"] * 100, "o", color=line.get_color())
    ax.axvline(100 * (1 - report["model"]["target_recall"]), color="grey", ls=":", label="FN budget")
    ax.set(xlabel="false negatives: attack alerts suppressed (%)", ylabel="noise reduction: benign suppressed (%)",
           title=f"Noise reduction vs false negatives, {split} split", xlim=(0, 3), ylim=(0, 101))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
