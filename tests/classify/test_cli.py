"""`mdr model train / evaluate` and `mdr replay --model` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline import paths
from pipeline.classify.model import ModelError, NoiseClassifier
from pipeline.cli import app
from pipeline.core.engine import Core
from pipeline.replay import replay
from pipeline.rules.usecase import load_usecases

from .conftest import SAMPLE, TEST_RECALL, older_schema_copy

runner = CliRunner(env={"COLUMNS": "200"})
PNG = b"\x89PNG\r\n\x1a\n"


def test_train_and_evaluate(home: Path) -> None:
    model = home / "m"
    r = runner.invoke(app, ["model", "train", "--data", str(SAMPLE), "--out", str(model), "--target-recall",
                            str(TEST_RECALL), "--kind", "linear"])
    assert r.exit_code == 0, r.output
    assert "linear-nohistory" in r.output and (model / "manifest.json").exists()
    rep = home / "report"
    r = runner.invoke(app, ["model", "evaluate", "--model", str(model), "--data", str(SAMPLE), "--report-dir",
                            str(rep), "--split", "all"])
    assert r.exit_code == 0, r.output
    assert "baseline" in r.output and "noise reduction" in r.output and "0 of" in r.output
    for png in ("pr_curve.png", "confusion_matrix.png", "confusion_matrix_baseline.png", "tradeoff.png"):
        assert (rep / png).read_bytes().startswith(PNG)
    report = json.loads((rep / "report.json").read_text())
    assert report["model_metrics"]["benign"] + report["model_metrics"]["attack"] == 400
    assert report["pipeline"]["decisions_differing"] == 0
    assert (rep / "per_rule.csv").read_text().startswith("rule,category,name,alerts")
    assert "False negatives" in (rep / "report.md").read_text()


def test_usage_errors(home: Path, sample_model_dir: Path) -> None:
    r = runner.invoke(app, ["model", "train", "--data", str(home / "nope"), "--out", str(home / "m")])
    assert r.exit_code == 2 and "not a data directory" in r.output
    r = runner.invoke(app, ["model", "evaluate", "--model", str(home / "nope"), "--data", str(SAMPLE)])
    assert r.exit_code == 2 and "cannot read" in r.output
    r = runner.invoke(app, ["replay", str(SAMPLE / "modsec_audit.jsonl.gz"), "--model", str(home / "nope"),
                            "--out", str(home / "o")])
    assert r.exit_code != 0 and "cannot read" in r.output


def one_line_error(r: Any) -> str:
    """The one line `mdr` printed for a failed command (no traceback)."""
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def test_a_model_of_another_feature_schema_fails_as_one_line(home: Path, sample_model_dir: Path) -> None:
    """A model an earlier build wrote (feature schema 2) given to `mdr replay`, `mdr model evaluate` or `mdr worker`
    (before the broker is asked: nothing listens on the address given): one line that names its manifest, its
    schema, the schema this build reads and the command that retrains it."""
    old = older_schema_copy(sample_model_dir, home / "old")
    for args in (["replay", str(SAMPLE), "--model", str(old), "--out", str(home / "o")],
                 ["model", "evaluate", "--model", str(old), "--data", str(SAMPLE)],
                 ["worker", "--model", str(old), "--bootstrap", "127.0.0.1:1", "--broker-wait", "0"]):
        line = one_line_error(runner.invoke(app, args))
        assert str(old / "manifest.json") in line and "feature schema 2" in line, line
        assert "reads feature schema 3" in line and f"mdr model train --data {SAMPLE} --out {old}" in line, line
    assert not (home / "o" / "suppressed.jsonl").exists()
    m = json.loads((old / "manifest.json").read_text())
    del m["features"]["version"], m["training_data"]["dirs"]  # older still: no schema recorded
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match=r"feature schema unknown, .* mdr model train --data DIR --out"):
        NoiseClassifier.load(old)


def test_replay_model_equals_direct_core(home: Path, sample_model_dir: Path) -> None:
    """`mdr replay --model` and a Core with the classifier suppress the same alerts, with the same reasons."""
    src = SAMPLE / "modsec_audit.jsonl.gz"
    r = runner.invoke(app, ["replay", str(src), "--model", str(sample_model_dir), "--out", str(home / "o")])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (home / "o" / "suppressed.jsonl").read_text().splitlines()]
    core = Core(load_usecases(str(paths.usecases_dir())), classifier=NoiseClassifier.load(sample_model_dir))
    direct = replay([str(src)], core, "default").suppressed

    from_cli = {x["alert"]["alert_id"]: (x["score"], x["threshold"], x["model_version"], x["contributions"])
                for x in lines}
    from_core = {s.alert.alert_id: (s.score, s.threshold, s.model_version, s.contributions) for s in direct}
    assert from_cli and from_cli == from_core
    assert all(x["alert"]["raw"].startswith('{"transaction"') for x in lines)
    assert "suppressed as noise" in r.output
