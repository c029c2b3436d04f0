"""Console actions go through the CLI's ticket, playbook and verdict functions: the ticket store changes as
`mdr tickets ...` would change it, approvals resume the real playbook run, verdicts land in the store's alert
verdicts that `mdr model retrain` reads and in the JSONL file that `mdr model train` reads (and both label the
alerts from them), and every action is in the audit log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pipeline.classify.train import load_data
from pipeline.console.auth import add_user
from pipeline.console.models import AuditEntry
from pipeline.soar.actions import Soar
from pipeline.soar.connectors import Channels
from pipeline.soar.models import Ticket
from pipeline.soar.playbooks import load_playbooks
from pipeline.soar.tickets import TicketStore
from pipeline.soar.verdicts import labeled_alerts, list_verdicts
from tests.console.conftest import LAB1
from tests.console.server import PASSWORD, csrf_of, login, post_form
from tests.soar.helpers import incident, playbook, write_yaml
from tests.soar.servers import RecordingServer


def _open(srv: Any, tenant: str = "shop") -> list[Ticket]:
    with srv.console.store.tx() as s:
        return list(s.scalars(select(Ticket).where(Ticket.tenant_id == tenant, Ticket.incident_status != "merged")
                              .order_by(Ticket.priority, Ticket.id)))


def test_form_actions_and_verdicts_feed_training(lab_store: str, console_server: Any, tmp_path: Path) -> None:
    verdicts = tmp_path / "verdicts.jsonl"
    srv = console_server(lab_store, verdicts_file=verdicts)
    c = srv.client()
    login(c, "ana")
    p1, fp = _open(srv)[0], _open(srv)[-1]
    assert "Compromise of web-01" in p1.title  # one name for the lab server (docs/assets.md)
    base = f"/incidents/{p1.incident_id}"
    for path, data in ((f"{base}/ack", {}), (f"{base}/assign", {"assignee": "ana"}),
                       (f"{base}/note", {"text": "webshell confirmed <b>cmd.php</b>"}),
                       (f"{base}/status", {"to": "investigating"})):
        r = post_form(c, path, data)
        assert r.status_code == 303 and r.headers["location"] == base, path
    page = c.get(base).text
    assert "Status changed." in page and "webshell confirmed &lt;b&gt;cmd.php&lt;/b&gt;" in page
    bad = post_form(c, f"{base}/status", {"to": "new"})  # refused by the ticket rules: a message, no change
    assert bad.status_code == 303 and "Not done" in c.get(base).text
    judged = p1.incident["alert_ids"][:2]
    for aid, v in zip(judged, ("true_positive", "false_positive"), strict=True):
        assert post_form(c, f"/alerts/{aid}/verdict", {"verdict": v, "ticket": str(p1.id)}).status_code == 303
    assert post_form(c, f"/incidents/{fp.incident_id}/close", {"verdict": "false_positive",
                                                               "note": "the customer's scanner"}).status_code == 303
    with srv.console.store.tx() as s:
        t1, t2 = s.get(Ticket, p1.id), s.get(Ticket, fp.id)
        assert (t1.status, t1.assignee, t1.acknowledged_at is not None) == ("investigating", "ana", True)
        assert (t2.status, t2.verdict) == ("closed", "false_positive")
        audit = [(e.action, e.outcome, e.actor, e.tenant_id) for e in s.scalars(
            select(AuditEntry).where(AuditEntry.action != "login").order_by(AuditEntry.id))]
    assert audit == [("acknowledge", "ok", "ana", "shop"), ("assign", "ok", "ana", "shop"),
                     ("note", "ok", "ana", "shop"), ("status", "ok", "ana", "shop"),
                     ("status", "refused", "ana", "shop"), ("alert_verdict", "ok", "ana", "shop"),
                     ("alert_verdict", "ok", "ana", "shop"), ("close", "ok", "ana", "shop")]
    timeline = srv.console.store.export(srv.console.store.require(p1.id))["timeline"]
    assert [e["kind"] for e in timeline if e["actor"] == "ana"] == ["status", "assign", "note", "status", "verdict",
                                                                    "verdict"]
    records = [json.loads(x) for x in verdicts.read_text().splitlines()]
    assert [(r.get("kind"), r["verdict"]) for r in records] == [("alert", "true_positive"), ("alert", "false_positive"),
                                                                (None, "false_positive")]
    assert records[2]["incident_id"] == fp.incident_id and records[2]["alert_ids"] == fp.incident["alert_ids"]

    # the store's alert verdicts (what `mdr model retrain` learns from, with the alerts' stored content)
    stored = {v.alert_id: (v.verdict, v.source, v.analyst) for v, _ in list_verdicts(srv.console.store)}
    assert stored[judged[0]] == ("true_positive", "console", "ana")
    assert stored[judged[1]] == ("false_positive", "console", "ana")
    assert all(stored[a] == ("false_positive", "ticket", "ana") for a in fp.incident["alert_ids"] if a not in judged)
    alerts, labels, missing = labeled_alerts(srv.console.store, "shop")
    assert missing == 0 and dict(zip((a.alert_id for a in alerts), labels, strict=True))[judged[0]] == 1
    page = c.get(base).text  # the incident page shows each alert's verdict from the store
    assert "verdict-true_positive" in page and "verdict-false_positive" in page
    shown = c.get(f"/api/incidents/{fp.incident_id}").json()["alerts"]
    assert shown and all(a["verdict"] == "false_positive" for a in shown if a["alert_id"] not in judged)

    # `mdr model train` reads them: the lab records as tenant shop, labeled from these verdicts
    data = tmp_path / "train"
    shutil.copytree(LAB1, data)
    shutil.copy(verdicts, data / "verdicts.jsonl")
    ds = load_data([data], tenant="shop")
    labels = dict(zip((a.alert_id for a in ds.alerts), ds.labels, strict=True))
    assert labels[judged[0]] == 1 and labels[judged[1]] == 0  # the alert verdicts win over the incident's
    assert all(labels[a] == 0 for a in fp.incident["alert_ids"] if a in labels)
    assert ds.stats["verdicts_joined"] == 3


def test_approve_and_deny_resume_the_waiting_runs(tmp_path: Path, console_server: Any) -> None:
    fw = RecordingServer()
    try:
        url = f"sqlite:///{tmp_path}/soar.db"
        pbs = write_yaml(tmp_path / "playbooks" / "contain.yaml", playbook("contain", [
            {"id": "ask", "wait_approval": {"prompt": "Block {{ incident.entities.src_ips | join(', ') }}?"}},
            {"id": "block", "when": "steps.ask.approved", "block_ip": {"channel": "fw",
                                                                      "ips": "{{ incident.entities.src_ips }}"}}]))
        chans = write_yaml(tmp_path / "channels.yaml", {"channels": {"fw": {"type": "response_api", "url": fw.url}}})
        soar = Soar(TicketStore(url), load_playbooks(pbs.parent), Channels({"channels": {"fw": {
            "type": "response_api", "url": fw.url}}}))
        yes = soar.handle([incident(1, src=["198.51.100.7"])])[0]
        no = soar.handle([incident(2, src=["198.51.100.8"])])[0]
        assert soar.runner.drain(10)
        add_user(soar.store, "ana", "analyst", ["shop"], PASSWORD)
        add_user(soar.store, "vera", "viewer", ["shop"], PASSWORD)
        soar.close()
        srv = console_server(url, playbooks=str(pbs.parent), channels=str(chans))
        vera = srv.client()
        login(vera, "vera")
        page = vera.get("/incidents/inc0001").text
        assert "Waiting for approval" in page and 'id="approve"' not in page  # a viewer sees, cannot decide
        assert vera.post("/api/tickets/inc0001/approve", json={},
                         headers={"X-CSRF-Token": csrf_of(vera)}).status_code == 403
        ana = srv.client()
        login(ana, "ana")
        assert 'id="approve"' in ana.get("/incidents/inc0001").text
        assert post_form(ana, "/incidents/inc0001/approve", {"comment": "go"}).status_code == 303
        r = ana.post(f"/api/tickets/{no.ticket_id}/deny", json={"comment": "customer's own"},
                     headers={"X-CSRF-Token": csrf_of(ana)})
        assert r.status_code == 200 and r.json()["runs"]
        runner = srv.console.runner()
        assert runner.drain(15)
        assert [q.json["ip"] for q in fw.requests] == ["198.51.100.7"]
        store = srv.console.store
        assert [x.status for x in store.runs(yes.ticket_id)] == ["done"]
        assert [x.status for x in store.runs(no.ticket_id)] == ["denied"]
        page = ana.get("/incidents/inc0001").text
        assert "approved by ana: go" in page and "Waiting for approval" not in page
        assert post_form(ana, "/incidents/inc0001/approve", {}).status_code == 303  # nothing waits any more
        assert "no playbook run is waiting" in ana.get("/incidents/inc0001").text
    finally:
        fw.close()


def test_unsuppress_records_a_true_positive(lab_store: str, console_server: Any, tmp_path: Path) -> None:
    verdicts = tmp_path / "v.jsonl"
    srv = console_server(lab_store, verdicts_file=verdicts)
    c = srv.client()
    login(c, "ana")
    page = c.get("/suppressed", params={"tenant": "shop"}).text
    rows = c.get("/api/suppressed", params={"tenant": "shop"}).json()
    assert rows and all(r["score"] < r["threshold"] for r in rows) and rows[0]["contributions"]
    assert "top contributions" in page and rows[0]["model_version"] in page and rows[0]["alert_id"] in page
    aid = rows[0]["alert_id"]
    assert post_form(c, f"/suppressed/{aid}/unsuppress", {"tenant": "shop"}).status_code == 303
    assert "recorded as a true positive" in c.get("/suppressed", params={"tenant": "shop"}).text
    again = post_form(c, f"/suppressed/{aid}/unsuppress", {"tenant": "shop"})
    assert again.status_code == 303 and "already released" in c.get("/suppressed").text
    [rec] = [json.loads(x) for x in verdicts.read_text().splitlines()]
    assert rec["alert_ids"] == [aid] and rec["verdict"] == "true_positive" and rec["source"] == "unsuppress"
    released = c.get("/api/suppressed", params={"tenant": "shop", "status": "unsuppressed"}).json()
    assert [r["alert_id"] for r in released] == [aid]
    assert c.get("/suppressed", params={"tenant": "acme"}).status_code == 404
