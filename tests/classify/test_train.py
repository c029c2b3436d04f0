"""Training: label and verdict joins, the deterministic split, the recall threshold, held-out isolation."""

from __future__ import annotations

import gzip
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.classify.metrics import core_view, recall_threshold, representatives
from pipeline.classify.train import Dataset, load_data, split_of, train

from .conftest import SAMPLE, TEST_RECALL


def test_split_is_deterministic_and_proportioned() -> None:
    ids = [f"tx-{i}" for i in range(20000)]
    counts = Counter(map(split_of, ids))
    assert [split_of(i) for i in ids[:50]] == [split_of(i) for i in ids[:50]]
    for name, share in (("train", 0.6), ("validation", 0.2), ("heldout", 0.2)):
        assert abs(counts[name] / len(ids) - share) < 0.015


def test_sample_labels_join(sample_ds: Dataset) -> None:
    assert len(sample_ds.alerts) == 400 and sample_ds.stats["labels_unmatched"] == 0
    assert Counter(sample_ds.labels) == {0: 246, 1: 154}
    assert {k for k in sample_ds.kinds if k} <= {"norm", "sqli", "xss", "cmdi", "path-traversal"}
    assert sample_ds.record_ids[0] == sample_ds.alerts[0].extra["transaction_id"]
    times = [a.time for a in sample_ds.alerts]
    assert times == sorted(times)


@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=300), st.sampled_from([0.9, 0.95, 0.995]))
@settings(max_examples=200, deadline=None)
def test_recall_threshold_bound(scores: list[float], target: float) -> None:
    s = np.asarray(scores)
    thr = recall_threshold(s, target)
    k = math.floor((1 - target) * (len(s) + 1) + 1e-9)
    assert (s < thr).sum() <= max(k - 1, 0)
    if k >= 1:
        assert thr in s and (s <= thr).sum() >= k
    w = np.ones(len(s)) * 3
    thr_w = recall_threshold(s, target, w)
    kw = math.floor((1 - target) * (w.sum() + 1) + 1e-9)
    assert (w * (s < thr_w)).sum() <= max(kw - 1, 0)


def test_recall_threshold_examples() -> None:
    s = np.arange(1, 201, dtype=float)  # 200 attack scores 1..200
    assert recall_threshold(s, 0.99) == 2.0  # k = floor(0.01 * 201) = 2: suppress below the 2nd lowest
    assert recall_threshold(s[:50], 0.99) == float("-inf")  # k = 0: nothing may be suppressed
    assert recall_threshold([5.0, 1.0, 3.0], 0.5, [1, 10, 1]) == 1.0  # the heavy lowest one must stay


def test_dedup_view(sample_ds: Dataset) -> None:
    view = core_view(sample_ds, 600.0)
    reps = representatives(sample_ds.alerts, 600.0)
    assert view.is_rep.sum() == len(set(reps)) < len(sample_ds.alerts)
    assert view.w_attack.sum() + view.w_benign.sum() == len(sample_ds.alerts)
    none = core_view(sample_ds, None)
    assert none.is_rep.all() and (none.w_attack == (sample_ds.y == 1)).all()


def _copy_records(dst: Path) -> None:
    dst.mkdir()
    shutil.copy(SAMPLE / "modsec_audit.jsonl.gz", dst)


def test_verdicts_join(tmp_path: Path, sample_ds: Dataset) -> None:
    d = tmp_path / "tickets"
    _copy_records(d)
    a = sample_ds.alerts
    inc = {"incident_id": "inc-1", "alert_ids": [a[3].alert_id, a[4].alert_id]}
    (d / "incidents.jsonl").write_text(json.dumps(inc) + "\n")
    lines = [{"alert_ids": [a[0].alert_id, a[1].alert_id], "verdict": "false_positive"},
             {"alert_ids": [a[2].alert_id], "verdict": "true_positive"},
             {"incident_id": "inc-1", "verdict": "malicious"},  # resolved through incidents.jsonl
             {"alert_ids": [a[4].alert_id], "verdict": "benign"},  # alert verdict beats the incident verdict
             {"ticket_id": 7, "incident_id": "inc-2", "alert_ids": [a[6].alert_id], "verdict": "duplicate"},
             {"ticket_id": 8, "incident_id": "inc-3", "alert_ids": [a[7].alert_id], "verdict": "false_positive"},
             {"incident_id": "nope", "verdict": "false_positive"}, {"alert_ids": [a[5].alert_id], "verdict": "?"}]
    (d / "verdicts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ds = load_data([d])
    got = {al.alert_id: lab for al, lab in zip(ds.alerts, ds.labels, strict=True) if lab >= 0}
    assert got == {a[0].alert_id: 0, a[1].alert_id: 0, a[2].alert_id: 1, a[3].alert_id: 1, a[4].alert_id: 0,
                   a[7].alert_id: 0}
    assert ds.stats["verdicts_unresolved"] == 1 and ds.stats["verdicts_unusable"] == 2
    assert ds.stats["labeled_by_verdict"] == 6 and ds.stats["unlabeled_alerts"] == 394


def test_labels_take_precedence_over_verdicts(tmp_path: Path, sample_ds: Dataset) -> None:
    d = tmp_path / "both"
    _copy_records(d)
    shutil.copy(SAMPLE / "labels.jsonl", d)
    first = sample_ds.alerts[0]
    flipped = "true_positive" if sample_ds.labels[0] == 0 else "false_positive"
    (d / "verdicts.jsonl").write_text(json.dumps({"alert_ids": [first.alert_id], "verdict": flipped}) + "\n")
    assert load_data([d]).labels == sample_ds.labels


def test_heldout_labels_are_never_used(tmp_path: Path, sample_ds: Dataset) -> None:
    """Flipping every held-out label changes nothing in the trained model."""
    d = tmp_path / "flipped"
    _copy_records(d)
    held = {rid for rid, s in zip(sample_ds.record_ids, sample_ds.splits, strict=True) if s == "heldout"}
    with open(SAMPLE / "labels.jsonl") as src, open(d / "labels.jsonl", "w") as dst:
        for line in src:
            row = json.loads(line)
            if row["transaction_id"] in held:
                row["label"] = "benign" if row["label"] == "attack" else "attack"
            dst.write(json.dumps(row) + "\n")
    a, _, _ = train([SAMPLE], TEST_RECALL, kinds=("linear",), ds=sample_ds)
    b, ds_b, _ = train([d], TEST_RECALL, kinds=("linear",))
    assert ds_b.labels != sample_ds.labels
    assert a.threshold == b.threshold and a.used == b.used
    np.testing.assert_array_equal(a.base_estimator.steps[-1][1].coef_, b.base_estimator.steps[-1][1].coef_)


def test_training_needs_both_labels(tmp_path: Path) -> None:
    d = tmp_path / "onlybenign"
    d.mkdir()
    with gzip.open(SAMPLE / "modsec_audit.jsonl.gz", "rt") as fh, open(SAMPLE / "labels.jsonl") as lf:
        labels = [json.loads(x) for x in lf]
        benign = {x["transaction_id"] for x in labels if x["label"] == "benign"}
        (d / "audit.jsonl").write_text("".join(ln for ln in fh if json.loads(ln)["transaction"]["transaction_id"]
                                               in benign))
    (d / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels if x["label"] == "benign"))
    with pytest.raises(ValueError, match="both labels"):
        train([d])
