"""Acceptance: lab-1 replayed through the production core, then SOAR with the shipped playbooks and channels
pointing at real local servers: one ticket per incident with its playbook steps in the timeline, the
notices received (DingTalk signatures checked), a second replay adds nothing, tickets close from the CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.lab import LAB1, LabReplay, lab_core
from tests.soar.helpers import write_yaml
from tests.soar.servers import RecordingServer, Reply, Seen

ROOT = Path(__file__).resolve().parents[2]
DING_SECRET = "SEC-e2e-signing-secret"
Server = Callable[..., RecordingServer]


def run_core(path: Path) -> Any:
    """A replay of its own, through the core `mdr replay` builds (as the shared `lab1_replay` ran)."""
    from pipeline.replay import replay

    return replay([str(path)], lab_core(), "shop", "web-01")


@pytest.fixture
def lab1(lab1_replay: LabReplay) -> Any:
    if not lab1_replay.result.open_incidents:
        pytest.skip("the use cases open no incident on lab-1 yet")
    return lab1_replay.result


def dingtalk(s: Seen) -> Reply:
    ts, sign = s.query["timestamp"][0], s.query["sign"][0]
    want = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest())
    return Reply(200, {"errcode": 0 if sign == want.decode() else 310000, "errmsg": "ok"})


def thehive(s: Seen) -> Reply:
    if s.path == "/api/v1/alert":
        return Reply(201, {"_id": "~" + s.json["sourceRef"][:8]})
    if s.path.endswith("/case"):
        return Reply(201, {"_id": "~case-" + s.path.split("/")[4][1:]})
    return Reply(201, {"_id": "~comment"})


@pytest.fixture
def servers(http_server: Server, tmp_path: Path) -> dict[str, Any]:
    srv = {"customer": http_server(dingtalk), "soc": http_server(lambda s: Reply(200, "ok")),
           "casebook": http_server(thehive), "firewall": http_server(), "edr": http_server(),
           "oncall": http_server()}
    channels = {
        "customer": {"type": "dingtalk", "url": srv["customer"].url + "/robot/send?access_token=e2e",
                     "secret": DING_SECRET},
        "soc": {"type": "slack", "url": srv["soc"].url + "/services/T0/B0/e2e"},
        "casebook": {"type": "thehive", "url": srv["casebook"].url, "api_key": "hive-e2e"},
        "firewall": {"type": "response_api", "url": srv["firewall"].url, "token": "fw-e2e"},
        "edr": {"type": "response_api", "url": srv["edr"].url, "token": "edr-e2e"},
        "oncall": {"type": "webhook", "url": srv["oncall"].url, "secret": "oncall-e2e"},
        "customer-email": {"type": "email", "host": "env:MDR_TEST_UNSET_SMTP", "from": "a@b.c", "to": "x@y.z"},
    }
    srv["channels_file"] = write_yaml(tmp_path / "channels.yaml", {
        "channels": channels, "escalation": {"tiers": [["oncall"], ["oncall", "soc"], ["oncall", "soc"]]}})
    return srv


def counts(srv: dict[str, Any]) -> dict[str, int]:
    return {k: len(v.requests) for k, v in srv.items() if isinstance(v, RecordingServer)}


def test_lab1_tickets_playbooks_notices(lab1: Any, servers: dict[str, Any], db_url: str, tmp_path: Path) -> None:
    from pipeline.soar.actions import handle_replay
    from pipeline.soar.playbooks import load_playbooks

    out = tmp_path / "out"
    first = handle_replay(lab1, out, db_url, channels=servers["channels_file"], playbooks=ROOT / "playbooks")
    assert first.errors == [] and first.settled
    incidents = lab1.open_incidents
    tickets = [json.loads(line) for line in first.path.read_text().splitlines()]
    assert first.path == out / "tickets.jsonl"
    assert sorted(t["incident_id"] for t in tickets) == sorted(i.incident_id for i in incidents)
    assert first.created == len(incidents) == first.tickets
    pbs = load_playbooks(ROOT / "playbooks")
    by_incident = {i.incident_id: i for i in incidents}
    for t in tickets:
        inc = by_incident[t["incident_id"]]
        [expected] = pbs.select(inc)
        kinds = [e["kind"] for e in t["timeline"]]
        assert kinds[0] == "created" and f"playbook {expected.name} started" in [e["text"] for e in t["timeline"]]
        steps = [e for e in t["timeline"] if e["kind"] in ("step", "approval")]
        assert steps and all(e["text"].startswith(f"{expected.name}/") for e in steps)
        assert not [e for e in steps if e["status"] == "failed"], steps
        run = t["playbooks"][0]
        assert run["status"] in ("done", "waiting")
        merged = [i for i in lab1.incidents.values() if i.merged_into == inc.incident_id]
        assert kinds.count("merged") == len(merged)
    # the notices reached the servers: every DingTalk request carried a valid signature
    got = counts(servers)
    assert got["customer"] >= 1 and got["soc"] >= 1 and got["casebook"] >= 1
    assert all(r.json for r in servers["customer"].requests)
    assert {a.json["sourceRef"] for a in servers["casebook"].requests if a.path == "/api/v1/alert"} <= set(by_incident)
    step_oks = Counter(e["text"].split(" ")[0] for t in tickets for e in t["timeline"] if e["status"] == "ok"
                       and e["kind"] == "step" and "notice sent to customer" in e["text"])
    assert sum(step_oks.values()) == got["customer"]  # each notice step = one accepted request (errcode 0)

    # a second replay of the same day: the same tickets, nothing new, nothing sent again
    again = handle_replay(run_core(LAB1), out, db_url, channels=servers["channels_file"],
                          playbooks=ROOT / "playbooks")
    assert again.created == 0 and again.runs_started == 0 and again.tickets == len(incidents)
    assert counts(servers) == got
    assert [json.loads(x)["timeline"] for x in again.path.read_text().splitlines()] == [t["timeline"]
                                                                                       for t in tickets]

    # analysts close tickets from the CLI; verdicts are published
    from pipeline.cli import app

    vfile = tmp_path / "verdicts.jsonl"
    for t in tickets:
        r = CliRunner().invoke(app, ["tickets", "close", str(t["id"]), "--verdict", "true_positive", "--db", db_url,
                                     "--verdicts", str(vfile), "--by", "ana"])
        assert r.exit_code == 0, r.output
    assert len(vfile.read_text().splitlines()) == len(tickets)


def test_mdr_replay_cli_writes_tickets(lab1: Any, servers: dict[str, Any], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import app

    monkeypatch.setenv("MDR_SOAR_CHANNELS", str(servers["channels_file"]))
    monkeypatch.setenv("MDR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MDR_DB_URL", raising=False)
    out = tmp_path / "out"
    args = ["replay", str(LAB1), "--tenant", "shop", "--host", "web-01", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "home" / "soar.db").is_file() and (out / "incidents.jsonl").is_file()  # the default store
    tickets = (out / "tickets.jsonl").read_text().splitlines()
    assert len(tickets) == len(lab1.open_incidents)
    assert f"tickets: {len(tickets)} for this replay ({len(tickets)} new)" in r.output
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0 and f"tickets: {len(tickets)} for this replay (0 new)" in r.output
