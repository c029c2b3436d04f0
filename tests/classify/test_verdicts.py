"""Learning from verdicts on the running system: alert verdicts (CLI, tickets, the console's API), retraining from
the store, shadow mode, the promotion gate, per-tenant thresholds, drift, and the learning curve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from pipeline.classify.drift import TenantDrift, notices, psi
from pipeline.classify.evaluate import learning_curve
from pipeline.classify.metrics import core_view
from pipeline.classify.model import ModelError, NoiseClassifier
from pipeline.classify.registry import Registry, RegistryError, gate, load_classifier, read_shadow
from pipeline.classify.train import Dataset, dataset_from_alerts, tenant_thresholds
from pipeline.cli import app
from pipeline.soar import evidence
from pipeline.soar.tickets import TicketError, TicketStore
from pipeline.soar.verdicts import close, labeled_alerts, list_verdicts, record_incident_verdict, record_verdict
from tests.soar.helpers import incident

from .conftest import SAMPLE, TEST_RECALL, older_schema_copy
from .test_cli import one_line_error

runner = CliRunner(env={"COLUMNS": "200"})


def _labels() -> dict[str, int]:
    rows = [json.loads(x) for x in (SAMPLE / "labels.jsonl").read_text().splitlines()]
    return {r["transaction_id"]: 1 if r["label"] == "attack" else 0 for r in rows}


def _replay(home: Path, out: str, model: Path | None) -> Path:
    args = ["replay", str(SAMPLE / "modsec_audit.jsonl.gz"), "--out", str(home / out),
            "--db", f"sqlite:///{home / out / 'soar.db'}"]  # the tickets beside the outputs
    r = runner.invoke(app, [*args, *(["--model", str(model)] if model else [])])
    assert r.exit_code == 0, r.output
    return home / out


def _suppressed(out: Path) -> set[tuple[str, float, str]]:
    return {(d["alert"]["alert_id"], d["score"], d["model_version"]) for d in
            map(json.loads, (out / "suppressed.jsonl").read_text().splitlines())}


# ---- recording ----------------------------------------------------------------------------------------------
def test_record_verdict_takes_content_from_the_evidence_and_keeps_the_latest(home: Path, sample_ds: Dataset) -> None:
    store = TicketStore(f"sqlite:///{home / 'v.db'}")
    a, b, c = sample_ds.alerts[:3]
    evidence.record(store, [a, b])  # as mdr replay / the worker store them; c is not in the store
    rec = record_verdict(store, "default", [a.alert_id, b.alert_id, c.alert_id], "false_positive", "ana",
                         source="console", path=home / "verdicts.jsonl")
    assert (rec.alerts, rec.with_content, rec.outranked, rec.path) == (3, 2, 0, home / "verdicts.jsonl")
    assert record_verdict(store, "default", [b.alert_id], "true_positive", "bob", publish_record=False).alerts == 1
    rows = list_verdicts(store, content=True)
    assert [(r.alert_id, r.verdict, r.label, r.analyst, doc is not None) for r, doc in rows] == [
        (a.alert_id, "false_positive", 0, "ana", True), (c.alert_id, "false_positive", 0, "ana", False),
        (b.alert_id, "true_positive", 1, "bob", True)]
    alerts, labels, missing = labeled_alerts(store)
    assert [x.alert_id for x in alerts] == [a.alert_id, b.alert_id] and labels == [0, 1] and missing == 1
    assert alerts[0].extra == a.extra and alerts[0].raw == ""  # the stored fields; raw records are not learned from
    [pub] = [json.loads(x) for x in (home / "verdicts.jsonl").read_text().splitlines()]
    assert pub["kind"] == "alert" and pub["source"] == "console" and "incident_id" not in pub
    assert pub["alert_ids"] == [a.alert_id, b.alert_id, c.alert_id]
    with pytest.raises(TicketError, match="unknown verdict"):
        record_verdict(store, "default", [a.alert_id], "maybe", "ana")
    with pytest.raises(TicketError, match="no alert"):
        record_verdict(store, "default", [], "benign", "ana")
    store.close()


def test_an_alerts_own_verdict_outranks_its_incidents(home: Path) -> None:
    """Closing a ticket (or `mdr verdict incident`) judges every alert of the incident, except those an analyst
    judged on their own; an alert's own verdict replaces an incident verdict."""
    store = TicketStore(f"sqlite:///{home / 'v.db'}")
    store.upsert_incident(incident(1))
    t = store.require(1)
    first, *rest = t.incident["alert_ids"]
    record_verdict(store, t.tenant_id, [first], "true_positive", "ana", ticket_id=t.id, source="console",
                   path=home / "v.jsonl")
    done = record_incident_verdict(store, t.id, "benign", "ana", path=home / "v.jsonl")
    assert (done.alerts, done.outranked) == (len(rest) + 1, 1)
    closed = close(store, t.id, "false_positive", "bob", "scanner", home / "v.jsonl")
    assert closed.ticket.status == "closed" and closed.alerts and closed.alerts.outranked == 1
    got = {r.alert_id: (r.verdict, r.source, r.incident_id) for r, _ in list_verdicts(store)}
    assert got[first] == ("true_positive", "console", None)
    assert all(got[x] == ("false_positive", "ticket", t.incident_id) for x in rest)
    record_verdict(store, t.tenant_id, [rest[0]], "true_positive", "ana", publish_record=False)
    assert {r.alert_id: r.verdict for r, _ in list_verdicts(store)}[rest[0]] == "true_positive"
    kinds = [(e["kind"], e["actor"]) for e in store.export(store.require(t.id))["timeline"]]
    assert kinds.count(("verdict", "ana")) == 2  # the alert's verdict and the incident's, on the timeline
    pub = [json.loads(x) for x in (home / "v.jsonl").read_text().splitlines()]
    assert [(r.get("kind"), bool(r.get("incident_id"))) for r in pub] == [("alert", False), ("incident", True),
                                                                          (None, True)]
    with pytest.raises(TicketError):
        record_incident_verdict(store, "no-such-incident", "benign", "ana")
    store.close()


def test_cli_alert_and_incident_verdicts_and_ticket_close(home: Path) -> None:
    """`mdr verdict alert`, `mdr verdict incident` and `mdr tickets close` record alert verdicts; the alerts'
    content is what `mdr replay` stored with the tickets."""
    out = _replay(home, "o", None)
    incidents = [json.loads(x) for x in (out / "incidents.jsonl").read_text().splitlines()]
    db = f"sqlite:///{out / 'soar.db'}"
    inc = next(i for i in incidents if i.get("status", "open") != "merged" and len(i["alert_ids"]) > 1)
    own = inc["alert_ids"][0]
    r = runner.invoke(app, ["verdict", "alert", own, "--verdict", "false_positive", "--db", db, "--by", "ana"])
    assert r.exit_code == 0 and "1 alert verdicts recorded (1 with their content)" in r.output, r.output
    r = runner.invoke(app, ["verdict", "incident", inc["incident_id"], "--verdict", "true_positive", "--db", db])
    assert r.exit_code == 0 and "1 keep their own alert verdict" in r.output, r.output
    r = runner.invoke(app, ["tickets", "close", inc["incident_id"], "--verdict", "true_positive", "--db", db,
                            "--by", "bob"])
    assert r.exit_code == 0 and f"{len(inc['alert_ids'])} alert verdicts" in r.output, r.output
    store = TicketStore(db)
    rows = {x.alert_id: (x, doc) for x, doc in list_verdicts(store, content=True)}
    store.close()
    assert rows[own][0].verdict == "false_positive" and rows[own][1] is not None
    for aid in inc["alert_ids"][1:]:
        v, doc = rows[aid]
        assert v.verdict == "true_positive" and v.source == "ticket" and doc is not None
    r = runner.invoke(app, ["verdict", "list", "--db", db, "--json"])
    assert r.exit_code == 0 and r.output.count('"has_content": true') == len(rows)
    r = runner.invoke(app, ["verdict", "alert", "nope", "--verdict", "benign", "--db", db])
    assert r.exit_code == 1 and "tenant" in r.output
    r = runner.invoke(app, ["verdict", "alert", "nope", "--verdict", "benign", "--db", db, "--tenant", "default"])
    assert r.exit_code == 0 and "1 alert verdicts recorded (0 with their content)" in r.output


# ---- retrain, shadow, gate, promote --------------------------------------------------------------------------
def test_gate_rules() -> None:
    dec = {("t", f"a{i}"): {"suppress": i < 2} for i in range(100)}
    verdicts = [("t", f"a{i}", 1) for i in range(100)]
    r = gate(dec, verdicts, last_n=100, max_fn=0.005, min_attacks=20)
    assert not r["passed"] and r["false_negatives"] == 2 and "above" in r["reason"]
    r = gate(dec, verdicts, last_n=98, max_fn=0.005, min_attacks=20)  # the two FNs are older than the last 98
    assert r["passed"] and r["attacks"] == 98
    r = gate(dec, verdicts[:10], min_attacks=20)
    assert not r["passed"] and "only 10" in r["reason"]
    benign = [("t", f"a{i}", 0) for i in range(100)]
    r = gate(dec, benign + verdicts[50:], last_n=200, min_attacks=20)
    assert r["noise_reduction"] == pytest.approx(0.02) and r["fn_rate"] == 0.0


def test_shadow_mode_leads_to_promotion(home: Path, sample_model_dir: Path) -> None:
    """Day 1 runs model A; analysts' verdicts retrain model B, which runs in shadow on day 2 (it suppresses
    nothing: day 2's outputs are those of A alone) and logs its decisions; the gate judges B on day 2's
    verdicts and promotes it; `mdr replay --model REGISTRY` then runs B."""
    reg_dir = home / "registry"
    reg = Registry.create(reg_dir)
    a_version = reg.add(sample_model_dir, shadow=False)
    reg.promote(a_version, force=True)
    day1 = _replay(home, "day1", reg_dir)
    db = f"sqlite:///{day1 / 'soar.db'}"
    labels = _labels()
    store = TicketStore(db)
    with store.tx() as s:
        day1_alerts = evidence.tenant_alerts(s, "default")
    for a in day1_alerts:  # analysts judge every alert of day 1 the store holds (representatives and suppressed)
        v = "true_positive" if labels[a.extra["transaction_id"]] else "false_positive"
        record_verdict(store, "default", [a.alert_id], v, "ana", source="console")
    store.close()
    r = runner.invoke(app, ["model", "retrain", "--registry", str(reg_dir), "--db", db, "--target-recall",
                            str(TEST_RECALL), "--dedup-window", "600", "--kind", "linear"])  # one family: quick
    assert r.exit_code == 0 and "in shadow" in r.output, r.output
    b_version = reg.shadow
    assert b_version and b_version != a_version and reg.active == a_version

    shutil.copy(day1 / "soar.db", home / "keep.db")
    day2 = _replay(home, "day2", reg_dir)  # the same traffic stands in for the next day
    a_only = _replay(home, "a_only", reg_dir / a_version)
    assert _suppressed(day2) == _suppressed(a_only)
    shadow = read_shadow(reg.shadow_log(b_version))
    assert shadow and all(d["model_version"] == b_version for d in shadow.values())

    r = runner.invoke(app, ["model", "promote", "--registry", str(reg_dir), "--db", db, "--max-fn", "0.0",
                            "--last-n", "1"])
    assert r.exit_code == 1 and "only" in r.output and reg.active == a_version  # one verdict is not enough
    r = runner.invoke(app, ["model", "promote", "--registry", str(reg_dir), "--db", db, "--max-fn", "0.05"])
    assert r.exit_code == 0 and f"model {b_version} promoted" in r.output, r.output
    assert reg.active == b_version and reg.shadow is None
    assert [e["event"] for e in reg.state()["events"]][-1] == "promoted"
    clf = load_classifier(reg_dir)
    assert isinstance(clf, NoiseClassifier) and clf.version == b_version
    r = runner.invoke(app, ["model", "status", "--registry", str(reg_dir)])
    assert r.exit_code == 0 and f"active: {b_version}" in r.output
    with pytest.raises(RegistryError, match="no shadow"):
        reg.promote()


# ---- per-tenant thresholds -------------------------------------------------------------------------------------
def test_a_model_of_another_feature_schema_is_never_promoted(home: Path, sample_model_dir: Path) -> None:
    """A registry an earlier build filled: its schema-2 model in shadow is refused by `mdr model promote`, even
    forced, and the active model stays; a schema-2 active model stops `mdr replay --model REGISTRY` with one line
    that says how to retrain into the registry (forced: an active model that cannot run shadows nothing)."""
    reg = Registry.create(home / "registry")
    new = reg.add(sample_model_dir, shadow=False)
    reg.promote(new, force=True)
    old = reg.add(older_schema_copy(sample_model_dir, home / "old"), shadow=True)
    db = f"sqlite:///{home / 'soar.db'}"
    for force in ([], ["--force"]):
        line = one_line_error(runner.invoke(app, ["model", "promote", "--registry", str(reg.root), "--db", db,
                                                  *force]))
        assert str(reg.root / old / "manifest.json") in line and "feature schema 2" in line, line
        assert f"mdr model retrain --registry {reg.root}, then mdr model promote --registry {reg.root}" in line
        assert not line.endswith("--force")  # the active model runs: the new one can pass the gate
        assert reg.active == new and reg.shadow == old
    with pytest.raises(ModelError, match="feature schema 2"):
        reg.promote(old, force=True)
    assert reg.active == new and not [e for e in reg.state()["events"] if e["event"] == "promoted" and
                                      e["version"] == old]

    st = reg.state()  # as an earlier build's `mdr model promote` left it
    st.update(active=old, shadow=None)
    (reg.root / "registry.json").write_text(json.dumps(st))
    line = one_line_error(runner.invoke(app, ["replay", str(SAMPLE), "--model", str(reg.root), "--out",
                                              str(home / "o")]))
    assert str(reg.root / old / "manifest.json") in line and line.endswith(f"promote --registry {reg.root} --force")


def test_per_tenant_thresholds(sample_ds: Dataset, sample_model: NoiseClassifier) -> None:
    """Two tenants with their own validation verdicts get their own thresholds; assess uses them."""
    alerts = [msgspec.structs.replace(a, tenant_id="t2" if i % 2 else "t1", alert_id=f"{a.alert_id}{i % 2}")
              for i, a in enumerate(sample_ds.alerts)]
    ds = dataset_from_alerts(alerts, sample_ds.labels)
    X = sample_model.extractor.transform(ds.alerts)[:, sample_model.columns]
    va = ds.mask("validation")
    out = tenant_thresholds(ds, va, sample_model.estimator.predict_proba, X, core_view(ds, None), TEST_RECALL,
                            min_attacks=5)
    assert set(out) == {"t1", "t2"}
    sample_model.tenants = {"t1": {"threshold": 0.0}, "t2": {"threshold": 1.0}}
    assert sample_model.thresholds("t1")[0] == 0.0
    assert sample_model.thresholds("default")[0] == sample_model.threshold
    sample_model.reset()
    _, dec = sample_model.assess(ds.alerts, [[] for _ in ds.alerts])
    assert not any(d for d, a in zip(dec, ds.alerts, strict=True) if a.tenant_id == "t1")
    assert any(d for d, a in zip(dec, ds.alerts, strict=True) if a.tenant_id == "t2")


# ---- drift ---------------------------------------------------------------------------------------------------
def test_drift_notice_when_out_of_scope_share_rises() -> None:
    before = TenantDrift(1000, 20, 5, [900, 50, 20, 10, 5, 5, 3, 3, 2, 2])
    same = TenantDrift(1000, 25, 5, [890, 55, 20, 12, 5, 5, 3, 3, 3, 4])
    rise = TenantDrift(1000, 300, 250, [300, 50, 20, 10, 5, 5, 3, 3, 2, 602])
    assert notices({"acme": same}, {"acme": before}) == []
    got = notices({"acme": rise}, {"acme": before})
    assert {n["kind"] for n in got} == {"out_of_scope_rise", "score_shift"}
    assert "30.0%" in got[0]["text"] and psi(rise.hist, before.hist) > 0.25
    assert notices({"acme": TenantDrift(10, 9, 0, [10] + [0] * 9)}, {"acme": before}) == []  # too few alerts
    assert TenantDrift.from_dict(rise.to_dict()) == rise


def test_replay_writes_drift_and_the_weekly_report_shows_it(home: Path, sample_model_dir: Path) -> None:
    out = _replay(home, "o", sample_model_dir)
    drift = json.loads((out / "drift.json").read_text())
    d = drift["tenants"]["default"]
    assert d["alerts"] > 0 and sum(d["score_hist"]) == d["alerts"]
    r = runner.invoke(app, ["report", "--tenant", "default", "--period", "week", "--from", "2026-11-24",
                            "--db", f"sqlite:///{out / 'soar.db'}", "--out", str(home / "rep.md"), "--format", "md"])
    assert r.exit_code == 0, r.output
    md = (home / "rep.md").read_text()
    assert "## Noise model" in md and "Outside the model's scope" in md


# ---- learning curve --------------------------------------------------------------------------------------------
def test_learning_curve_points(sample_ds: Dataset) -> None:
    pts = learning_curve(sample_ds, (20, 200), TEST_RECALL, kinds=("linear",))
    assert [p["verdicts"] for p in pts] == [20, 200]
    assert pts[0]["model"] is None and pts[0]["suppressed_benign"] == 0  # too few verdicts: suppress nothing
    assert pts[1]["benign"] == int((sample_ds.y[sample_ds.mask("heldout")] == 0).sum())
    assert all(0.0 <= p["fn_rate"] <= 1.0 for p in pts)
    assert learning_curve(sample_ds, (10_000,)) == []  # more verdicts than the data has: no point


def test_learning_curve_cli(home: Path) -> None:
    """The command's plumbing (the curve itself: test_learning_curve_points); one family keeps it quick."""
    r = runner.invoke(app, ["model", "evaluate", "--data", str(SAMPLE), "--learning-curve", "20,200",
                            "--kind", "linear", "--report-dir", str(home / "rep")])
    assert r.exit_code == 0 and "200 verdicts" in r.output, r.output
    points = json.loads((home / "rep" / "learning_curve.json").read_text())
    assert [p["verdicts"] for p in points] == [20, 200] and points[1]["model"].startswith("linear"), points
