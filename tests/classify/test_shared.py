"""The committed default model on the full shared labeled set (skips when /work/shared is absent)."""

from __future__ import annotations

import json

import pytest

from pipeline.classify.evaluate import evaluate
from pipeline.classify.model import NoiseClassifier
from pipeline.classify.train import Dataset, load_data

from .conftest import DEFAULT_MODEL, shared_set


@pytest.fixture(scope="module")
def shared_ds() -> Dataset:
    return load_data([shared_set()])


@pytest.fixture(scope="module")
def report(shared_ds: Dataset) -> dict:
    return evaluate(DEFAULT_MODEL, [shared_set()], ds=shared_ds)


def test_default_model_was_built_from_the_shared_set(shared_ds: Dataset) -> None:
    m = json.loads((DEFAULT_MODEL / "manifest.json").read_text())
    assert m["training_data"]["sha256"] == shared_ds.data_hash
    assert m["target_recall"] == 0.995 and m["history_view"]["dedup_window_s"] == 600.0
    assert sum(f.stat().st_size for f in DEFAULT_MODEL.iterdir()) < 5_000_000
    assert NoiseClassifier.load(DEFAULT_MODEL).version == m["model_version"]


def test_heldout_goal_met_and_above_baseline(report: dict) -> None:
    assert report["data"]["same_data_as_training"] and report["data"]["split"] == "heldout"
    for model, base in (("model_metrics", "baseline"), ("model_core", "baseline_core")):
        m, b = report[model], report[base]
        assert m["attack"] > 1000 and m["benign"] > 500
        assert m["noise_reduction"] >= 0.95 and m["fn_rate"] <= 0.005, (model, m)
        assert m["noise_reduction"] >= b["noise_reduction"] + 0.2, (m, b)


def test_real_core_makes_the_same_decisions(report: dict) -> None:
    assert report["pipeline"]["decisions_differing"] == 0
    assert report["pipeline"]["suppressed_by_core"] > 1000
