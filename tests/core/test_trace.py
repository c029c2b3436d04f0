"""Every raw alert's fate is recorded (fates.jsonl) and `mdr trace` answers for any alert of a replay; a duplicate
of a suppressed representative is judged on its own, in the same batch as its representative or later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.authoring import alert_from_dict
from pipeline.cli import app
from pipeline.core.engine import Core
from pipeline.replay import ReplayResult, write_outputs
from pipeline.rules.usecase import load_usecases
from pipeline.schema import Alert
from pipeline.trace import Outputs, fate_of
from tests.core.test_noise_dedup import QueryWordClassifier, _alert
from tests.lab import LabReplay

ROOT = Path(__file__).resolve().parents[2]
LAB1 = ROOT / "samples" / "lab-1"
runner = CliRunner(env={"COLUMNS": "200"})
SQLI = "id=1%27+UNION+SELECT+password+FROM+users--"


def _fates(core: Core) -> dict[str, tuple]:
    return {f.alert_id: (f.fate, f.of, f.judged_alone, f.score) for f in core.take().fates}


@pytest.mark.parametrize("same_batch", [True, False])
def test_attack_duplicate_of_a_suppressed_benign_representative(same_batch: bool) -> None:
    """The case of the issue: one suppressed benign-looking representative stood for many transactions, among
    them an SQL injection. Each duplicate is judged alone: the attack is kept as an alert of its own, the
    benign look-alikes merge into the suppressed representative with their own recorded decision."""
    core = Core(load_usecases(str(ROOT / "usecases")), classifier=QueryWordClassifier())
    rep, twin, attack = _alert(0, "q=benign"), _alert(1, "q=benign+shoes"), _alert(2, SQLI)
    attack.extra = {"transaction_id": "tx-attack", "anomaly_score": 94}
    if same_batch:
        core.feed_alerts([rep, twin, attack])
        out = core.take()
    else:
        core.feed_alerts([rep])
        first = core.take()
        core.feed_alerts([twin, attack])
        out = core.take()
        out.fates[:0] = first.fates
        out.suppressed[:0] = first.suppressed
    fates = {f.alert_id: f for f in out.fates}
    assert len(fates) == 3 and len(out.fates) == 3  # one fate per raw alert
    assert fates[rep.alert_id].fate == "suppressed" and not fates[rep.alert_id].judged_alone
    assert (fates[twin.alert_id].fate, fates[twin.alert_id].of, fates[twin.alert_id].judged_alone) == (
        "suppressed", rep.alert_id, True)
    assert fates[twin.alert_id].score == 0.01 and fates[twin.alert_id].model_version == "word"
    a = fates[attack.alert_id]
    assert (a.fate, a.judged_alone, a.record_id) == ("representative", True, "tx-attack")
    assert attack.alert_id in {x.alert_id for x in out.alerts}  # an alert of its own, not merged
    assert [s.alert.alert_id for s in out.suppressed] == [rep.alert_id] and out.suppressed[0].alert.count == 2


def test_plain_duplicates_and_same_event_point_to_their_representative() -> None:
    core = Core(load_usecases(str(ROOT / "usecases")))
    a, b = _alert(0, "x=1"), _alert(1, "x=2")
    core.feed_alerts([a, b])
    got = _fates(core)
    assert got[a.alert_id][0] == "representative" and got[b.alert_id][:2] == ("duplicate", a.alert_id)


@pytest.fixture
def lab_out(lab1_replay: LabReplay) -> Path:
    return lab1_replay.out


def test_every_alert_of_a_replay_has_exactly_one_final_fate(lab1_replay: LabReplay) -> None:
    lab_out, res = lab1_replay.out, lab1_replay.result
    fates = [json.loads(x) for x in (lab_out / "fates.jsonl").read_text().splitlines()]
    same: dict[str, dict] = {}
    for f in fates:  # byte-identical records (e.g. one packet's alerts) share an alert id, and their fate
        assert same.setdefault(f["alert_id"], f) == f
    assert len(fates) == res.alerts_raw == len(res.fates)
    o = Outputs.load(lab_out)
    finals = {}
    for aid in same:
        chain = fate_of(o, aid)
        assert chain[-1]["fate"] in ("incident", "kept", "suppressed"), chain
        finals[aid] = chain[-1]["fate"]
    assert "incident" in finals.values() and "kept" in finals.values()
    kinds = {f["fate"] for f in fates}
    assert {"representative", "duplicate", "same_event"} <= kinds


def test_trace_cli_by_alert_id_and_by_transaction_id(lab_out: Path) -> None:
    fates = [json.loads(x) for x in (lab_out / "fates.jsonl").read_text().splitlines()]
    dup = next(f for f in fates if f["fate"] == "duplicate" and f.get("record_id"))
    r = runner.invoke(app, ["trace", dup["record_id"], "--out", str(lab_out)])
    assert r.exit_code == 0, r.output
    assert f"duplicate of alert {dup['of']}" in r.output and "-> alert" in r.output
    r = runner.invoke(app, ["trace", dup["alert_id"], "--out", str(lab_out), "--json"])
    chain = json.loads(r.output)[dup["alert_id"]]
    assert chain[0]["of"] == dup["of"] and chain[-1]["fate"] in ("incident", "kept")
    r = runner.invoke(app, ["trace", "no-such-alert", "--out", str(lab_out)])
    assert r.exit_code == 1 and "no alert" in r.output
    r = runner.invoke(app, ["trace", "x", "--out", str(lab_out / "nope")])
    assert r.exit_code == 2 and "fates.jsonl" in r.output



def test_a_dead_lettered_alert_is_traced_to_its_dead_letter(tmp_path: Path) -> None:
    """An alert the core failed on has the fate dead_letter with its stage (one fate, like any alert), and
    trace says so."""
    ok = alert_from_dict({"src": {"ip": "198.51.100.7"}, "rule": {"id": "942100"}, "http": {"url": "/ok?x=1"}}, 0)
    bad = alert_from_dict({"src": {"ip": "198.51.100.8"}, "rule": {"id": "942100"}, "http": {"url": "/b?x=1"}}, 1)

    def enrich(a: Alert) -> None:
        if a.alert_id == bad.alert_id:
            raise RuntimeError("enrichment down")

    core = Core(load_usecases(str(ROOT / "usecases")), enricher=enrich)
    core.feed_alerts([ok, bad])
    out = core.take()
    assert [(d.alert_id, d.stage) for d in out.dead] == [(bad.alert_id, "enrich")]
    assert {(f.alert_id, f.fate, f.stage) for f in out.fates} == {
        (ok.alert_id, "representative", None), (bad.alert_id, "dead_letter", "enrich")} and len(out.fates) == 2
    write_outputs(ReplayResult(alerts=out.alerts, dead=out.dead, fates=out.fates, incidents=out.incidents), tmp_path)
    chain = fate_of(Outputs.load(tmp_path), bad.alert_id)
    assert [(s["fate"], s["stage"]) for s in chain] == [("dead_letter", "enrich")]
    assert "dead letter" in chain[0]["text"] and "enrich" in chain[0]["text"]
    r = runner.invoke(app, ["trace", bad.alert_id, "--out", str(tmp_path)])
    assert r.exit_code == 0 and "dead letter" in r.output, r.output
