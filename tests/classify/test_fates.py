"""Fates with the trained noise model: `mdr trace` of a suppressed alert, and each duplicate of a suppressed
representative judged on its own with its decision recorded."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.core.engine import Core
from pipeline.rules.usecase import load_usecases
from pipeline.schema import Alert

from .conftest import ROOT, SAMPLE

runner = CliRunner(env={"COLUMNS": "200"})


def test_trace_of_a_suppressed_alert_names_score_threshold_and_model(tmp_path: Path, sample_model_dir: Path
                                                                     ) -> None:
    out = tmp_path / "o"
    r = runner.invoke(app, ["replay", str(SAMPLE / "modsec_audit.jsonl.gz"), "--model", str(sample_model_dir),
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    sup = json.loads((out / "suppressed.jsonl").read_text().splitlines()[0])
    r = runner.invoke(app, ["trace", sup["alert"]["extra"]["transaction_id"], "--out", str(out)])
    assert r.exit_code == 0 and "suppressed as noise" in r.output and sup["model_version"] in r.output


def test_a_real_model_records_its_own_decision_for_each_duplicate(sample_model_dir: Path) -> None:
    """With the trained model, a duplicate of a suppressed representative carries its own score."""
    from pipeline.classify.model import NoiseClassifier
    from pipeline.classify.train import load_data

    ds = load_data([SAMPLE])
    model = NoiseClassifier.load(sample_model_dir)
    core = Core(load_usecases(str(ROOT / "usecases")), classifier=model)
    core.feed_alerts(list(ds.alerts))
    sup = core.take().suppressed
    assert sup
    rep: Alert = sup[0].alert
    dup = msgspec.structs.replace(rep, alert_id="dup-" + rep.alert_id, fingerprint="", count=1,
                                  first_seen=None, last_seen=None,
                                  extra={**rep.extra, "transaction_id": "tx-dup", "anomaly_score": 94,
                                         "matched_data": ["ARGS:id=1' UNION SELECT password FROM users--"]})
    core.feed_alerts([dup])
    f = core.take().fates
    assert len(f) == 1 and f[0].judged_alone and f[0].record_id == "tx-dup"
    assert f[0].fate == "representative" or (f[0].fate == "suppressed" and f[0].score is not None
                                             and f[0].of == rep.alert_id)
