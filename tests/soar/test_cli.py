"""`mdr tickets ...` and `mdr playbooks ...` through Typer's CliRunner on a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import encode
from pipeline.soar import verdicts
from pipeline.soar.tickets import TicketStore
from tests.soar.helpers import T0, incident, playbook, write_yaml
from tests.soar.servers import RecordingServer

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner(env={"COLUMNS": "250"})


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/out/soar.db"
    s = TicketStore(url)
    s.upsert_incident(incident(1, category="web_attack", priority="P3"))
    s.upsert_incident(incident(2, category="brute_force", priority="P1"))
    s.close()
    return url


def mdr(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_list_show_ack_note_status_close(db: str, tmp_path: Path) -> None:
    r = mdr("tickets", "list", "--db", db)
    assert r.exit_code == 0 and "web_attack #1" in r.output and "brute_force #2" in r.output
    r = mdr("tickets", "list", "--db", db, "--priority", "P1", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["incident_id"] == "inc0002"
    assert mdr("tickets", "ack", "1", "--db", db, "--by", "ana").exit_code == 0
    again = mdr("tickets", "ack", "1", "--db", db, "--by", "ana")
    assert again.exit_code == 1 and "acknowledged -> acknowledged is not allowed" in again.output
    assert mdr("tickets", "note", "inc0001", "WAF blocked all of it", "--db", db, "--by", "ana").exit_code == 0
    assert mdr("tickets", "status", "1", "investigating", "--db", db, "--by", "ana").exit_code == 0
    assert mdr("tickets", "assign", "1", "bob", "--db", db).exit_code == 0
    received: list[dict[str, Any]] = []
    verdicts.register_sink(received.append)  # where the streaming worker plugs in the mdr.verdicts topic
    try:
        vfile = tmp_path / "verdicts.jsonl"
        r = mdr("tickets", "close", "1", "--verdict", "false_positive", "--comment", "scanner of the customer",
                "--verdicts", str(vfile), "--db", db, "--by", "ana")
        assert r.exit_code == 0, r.output
    finally:
        verdicts.unregister_sink(received.append)
    [rec] = [json.loads(line) for line in vfile.read_text().splitlines()]
    assert rec["verdict"] == "false_positive" and rec["incident_id"] == "inc0001" and rec["analyst"] == "ana"
    assert rec["alert_ids"] == ["a1-1", "a1-2", "a1-3"] and received == [rec]
    bad = mdr("tickets", "close", "2", "--verdict", "probably", "--db", db)
    assert bad.exit_code == 2 and "'probably' is not one of" in bad.output  # a choice, checked before any work
    r = mdr("tickets", "close", "2", "--verdict", "true_positive", "--db", db)  # default verdicts file
    assert r.exit_code == 0 and (tmp_path / "out" / "verdicts.jsonl").is_file()
    show = mdr("tickets", "show", "1", "--db", db)
    assert show.exit_code == 0
    for text in ("new -> acknowledged", "WAF blocked all of it", "assigned to bob",
                 "investigating -> closed (false_positive): scanner of the customer"):
        assert text in show.output
    d = json.loads(mdr("tickets", "show", "1", "--db", db, "--json").output)
    assert d["status"] == "closed" and d["verdict"] == "false_positive" and d["assignee"] == "bob"
    assert mdr("tickets", "show", "999", "--db", db).exit_code == 1


def test_escalate_now(db: str, tmp_path: Path, http_server: Callable[..., RecordingServer]) -> None:
    pager = http_server()
    chans = write_yaml(tmp_path / "channels.yaml", {"channels": {"pager": {"type": "webhook", "url": pager.url}},
                                                   "escalation": {"tiers": [["pager"]]}})
    when = (T0 + timedelta(minutes=16)).isoformat()  # 16 min after the P1 incident was detected
    r = mdr("tickets", "escalate", "--now", when, "--db", db, "--channels", str(chans))
    assert r.exit_code == 0 and "ticket 2: P1 escalated to tier 1 (pager: ok)" in r.output
    assert "1 escalation(s)" in r.output and len(pager.requests) == 1
    r = mdr("tickets", "escalate", "--now", when, "--db", db, "--channels", str(chans))
    assert "0 escalation(s)" in r.output and len(pager.requests) == 1


def test_approve_and_deny_resume_runs(tmp_path: Path, http_server: Callable[..., RecordingServer]) -> None:
    fw = http_server()
    chans = write_yaml(tmp_path / "channels.yaml", {"channels": {"fw": {"type": "response_api", "url": fw.url}}})
    pbs = tmp_path / "pb"
    write_yaml(pbs / "c.yaml", playbook("contain", [
        {"id": "ask", "wait_approval": {"prompt": "Block?"}},
        {"id": "block", "when": "steps.ask.approved",
         "block_ip": {"channel": "fw", "ips": "{{ incident.entities.src_ips }}"}}]))
    db = f"sqlite:///{tmp_path}/soar.db"
    for n in (1, 2):
        f = tmp_path / f"inc{n}.json"
        f.write_bytes(encode(incident(n, src=[f"198.51.100.{n}"])))
        r = mdr("playbooks", "run", str(f), "--no-dry-run", "--db", db, "--playbooks", str(pbs), "--channels",
                str(chans))
        assert r.exit_code == 0 and "playbooks started: contain" in r.output
    assert fw.requests == []
    opts = ["--db", db, "--playbooks", str(pbs), "--channels", str(chans), "--by", "ana"]
    r = mdr("tickets", "approve", "1", *opts, "--comment", "confirmed attacker")
    assert r.exit_code == 0, r.output
    assert "approved by ana: confirmed attacker" in r.output and "block_ip: 198.51.100.1 via fw" in r.output
    r = mdr("tickets", "deny", "inc0002", *opts)
    assert r.exit_code == 0 and "denied by ana" in r.output
    assert [q.json["ip"] for q in fw.requests] == ["198.51.100.1"]
    r = mdr("tickets", "approve", "1", *opts)
    assert r.exit_code == 1 and "no playbook run is waiting" in r.output


def test_playbooks_validate(tmp_path: Path) -> None:
    r = mdr("playbooks", "validate", str(ROOT / "playbooks"), "--channels", str(ROOT / "playbooks" / "channels.yaml"))
    assert r.exit_code == 0 and "12 playbooks loaded from 12 files, 0 problems" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - frobnicate: {}\n")
    r = mdr("playbooks", "validate", str(bad))
    assert r.exit_code == 1 and f"{bad}:3: steps[0]: unknown key 'frobnicate'" in r.output


def test_playbooks_dry_run_shows_what_would_be_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDR_DINGTALK_URL", "https://oapi.dingtalk.com/robot/send?access_token=SECRET-TOKEN-1")
    monkeypatch.setenv("MDR_DINGTALK_SECRET", "SEC-signing-secret")
    monkeypatch.setenv("MDR_FIREWALL_URL", "https://fw.shop.example/api")
    monkeypatch.setenv("MDR_FIREWALL_TOKEN", "fw-token-123")
    f = tmp_path / "inc.json"
    f.write_bytes(encode(incident(7, category="exploit", priority="P2", outcome="attempted")))
    r = mdr("playbooks", "run", str(f), "--dry-run")
    assert r.exit_code == 0, r.output
    out = r.output
    assert "-> playbook exploit" in out
    assert "notify_customer        notify        dry-run  would send POST https://oapi.dingtalk.com/***" in out
    assert "casebook               ticket        skipped  channel unavailable" in out
    assert "approve_block          wait_approval dry-run  would wait for approval" in out
    assert '"ip": "203.0.113.7"' in out and "SECRET-TOKEN-1" not in out and "fw-token-123" not in out


@pytest.mark.parametrize("ref", ["99999999999999999999999", "2147483648", "0", "x" * 65])
def test_a_ref_that_cannot_be_a_ticket_is_one_line_and_exit_2(db: str, ref: str) -> None:
    """`mdr tickets show 99999999999999999999999` ended in an OverflowError traceback."""
    for cmd in (["show", ref], ["ack", ref], ["note", ref, "text"], ["close", ref, "--verdict", "benign"]):
        r = mdr("tickets", *cmd, "--db", db)
        assert r.exit_code == 2, (cmd, r.output)
        assert r.output.startswith("error: ") and r.output.count("\n") == 1 and "Traceback" not in r.output


def test_store_lookups_with_impossible_refs(db: str) -> None:
    from pipeline.soar.tickets import TicketRefError

    s = TicketStore(db)
    try:
        assert s.get("99999999999999999999999") is None and s.get(2**63) is None and s.get("") is None
        with pytest.raises(TicketRefError):
            s.require("99999999999999999999999")
        with pytest.raises(TicketRefError):
            s.acknowledge(2**40, "ana")
        assert s.get("２") is None  # a non-ASCII digit is an (unknown) incident id, not a number
        assert s.require(2147483647 - 2147483646).incident_id == "inc0001"
    finally:
        s.close()
