"""Shared fixtures of the noise-classifier tests: the labeled sample, a model trained on it, use cases."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.classify.model import NoiseClassifier
from pipeline.classify.train import Dataset, load_data, train
from pipeline.rules.usecase import UseCaseSet, load_usecases

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "fixtures" / "labeled" / "waf-pl4-sample"
SHARED = Path(os.environ.get("MDR_SHARED", ROOT.parent / "shared"))
SHARED_SET = SHARED / "labeled" / "waf-pl4-train"
DEFAULT_MODEL = ROOT / "models" / "noise-default"
TEST_RECALL = 0.95  # the sample's validation split has ~30 attacks: 0.995 could not suppress anything


def shared_set() -> Path:
    if not (SHARED_SET / "labels.jsonl").exists():
        pytest.skip(f"shared labeled set not available: {SHARED_SET}")
    return SHARED_SET


@pytest.fixture(scope="session")
def sample_ds() -> Dataset:
    return load_data([SAMPLE])


@pytest.fixture(scope="session")
def sample_model_dir(tmp_path_factory: pytest.TempPathFactory, sample_ds: Dataset) -> Path:
    """A model trained (both families, both variants) on the sample and saved."""
    model, _, _ = train([SAMPLE], TEST_RECALL, ds=sample_ds)
    return model.save(tmp_path_factory.mktemp("model") / "noise")


@pytest.fixture
def sample_model(sample_model_dir: Path) -> NoiseClassifier:
    return NoiseClassifier.load(sample_model_dir)


def older_schema_copy(model_dir: Path, dest: Path, schema: str = "2") -> Path:
    """A copy of a saved model as an earlier build wrote it: its manifest names feature schema `schema` (and a
    version of its own, so that a registry keeps both)."""
    shutil.copytree(model_dir, dest)
    m = json.loads((dest / "manifest.json").read_text())
    m["features"]["version"] = m["feature_schema_version"] = schema
    m["model_version"] = f"noise-linear-schema{schema}"
    (dest / "manifest.json").write_text(json.dumps(m))
    return dest


def usecases_from(tmp_path: Path, yaml_text: str) -> UseCaseSet:
    """Load use cases from YAML text through the real loader (errors fail the test)."""
    p = tmp_path / "usecases.yml"
    p.write_text(yaml_text, encoding="utf-8")
    ucs = load_usecases(str(p))
    assert not ucs.errors, ucs.errors
    return ucs
