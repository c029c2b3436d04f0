"""The authorization matrix of the JSON API (and the pages that show the same objects): every endpoint, asked
by every role and tenant scope about an object of each tenant, with the expected status and data.

Principals: anonymous; `root` (admin, every tenant); `shop-admin` (admin restricted to shop); `ana` (analyst
of shop, by session and by API token); `bob` (analyst of acme); `vera` (viewer of shop). Another tenant's
object answers 404 (never its data); a viewer's write answers 403; state conflicts 409.
Writes are checked in the store and the verdicts file too: a refused write changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from pipeline.console.auth import add_user, new_token
from pipeline.console.models import AuditEntry
from pipeline.soar.evidence import SuppressedAlert
from pipeline.soar.models import Ticket, TimelineEvent
from pipeline.soar.tickets import TicketStore
from tests.console.conftest import LAB1, TENANTS, USERS, replay_into
from tests.console.server import PASSWORD, ConsoleServer, csrf_of, login
from tests.pg import new_database

WHO = ("anon", "root", "shop-admin", "ana", "ana-token", "bob", "vera")
SEES = {"anon": set(), "root": {"shop", "acme"}, "shop-admin": {"shop"}, "ana": {"shop"}, "ana-token": {"shop"},
        "bob": {"acme"}, "vera": {"shop"}}
ACTS = {"root", "shop-admin", "ana", "ana-token", "bob"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "out" / "test-artifacts" / "console"

# (endpoint, tenant of the object) -> expected status for WHO, in order.
#                                                        anon root sadm  ana  tok  bob vera
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("GET /api/incidents", "shop"):                      (401, 200, 200, 200, 200, 200, 200),
    ("GET /api/incidents/{incident}", "shop"):           (401, 200, 200, 200, 200, 404, 200),
    ("GET /api/incidents/{incident}", "acme"):           (401, 200, 404, 404, 404, 200, 404),
    ("GET /incidents/{incident}", "shop"):               (303, 200, 200, 200, 200, 404, 200),
    ("GET /incidents/{incident}", "acme"):               (303, 200, 404, 404, 404, 200, 404),
    ("GET /alerts/{alert}/raw", "shop"):                 (303, 200, 200, 200, 200, 404, 200),
    ("GET /alerts/{alert}/raw", "acme"):                 (303, 200, 404, 404, 404, 200, 404),
    ("POST /api/tickets/{ticket}/ack", "shop"):          (401, 200, 200, 200, 200, 404, 403),
    ("POST /api/tickets/{ticket}/ack", "acme"):          (401, 200, 404, 404, 404, 200, 404),
    ("POST /api/tickets/{ticket}/ack (again)", "shop"):  (401, 409, 409, 409, 409, 404, 403),
    ("POST /api/tickets/{ticket}/assign", "shop"):       (401, 200, 200, 200, 200, 404, 403),
    ("POST /api/tickets/{ticket}/note", "shop"):         (401, 200, 200, 200, 200, 404, 403),
    ("POST /api/tickets/{ticket}/note", "acme"):         (401, 200, 404, 404, 404, 200, 404),
    ("POST /api/tickets/{ticket}/status", "shop"):       (401, 200, 200, 200, 200, 404, 403),
    ("POST /api/tickets/{ticket}/approve", "shop"):      (401, 409, 409, 409, 409, 404, 403),
    ("POST /api/alerts/{alert}/verdict", "shop"):        (401, 200, 200, 200, 200, 404, 403),
    ("POST /api/alerts/{alert}/verdict", "acme"):        (401, 200, 404, 404, 404, 200, 404),
    ("POST /api/tickets/{ticket}/close", "shop"):        (401, 200, 200, 200, 200, 404, 403),
    ("POST /api/tickets/{ticket}/close", "acme"):        (401, 200, 404, 404, 404, 200, 404),
    ("POST /api/tickets/{ticket}/close (again)", "shop"): (401, 409, 409, 409, 409, 404, 403),
    ("GET /api/suppressed?tenant={tenant}", "shop"):     (401, 200, 200, 200, 200, 404, 200),
    ("GET /api/suppressed?tenant={tenant}", "acme"):     (401, 200, 404, 404, 404, 200, 404),
    ("POST /api/suppressed/{suppressed}/unsuppress", "shop"): (401, 200, 200, 200, 200, 404, 403),
    ("POST /api/suppressed/{suppressed}/unsuppress", "acme"): (401, 200, 404, 404, 404, 200, 404),
    ("GET /api/health", "-"):                            (401, 200, 200, 200, 200, 200, 200),
    ("GET /api/openapi.json", "-"):                      (401, 200, 200, 200, 200, 200, 200),
}
BODIES = {"close": {"verdict": "false_positive", "note": "scanner of the customer"}, "assign": {"assignee": "ana"},
          "note": {"text": "looked at it"}, "status": {"status": "investigating"}, "approve": {"comment": "go"},
          "verdict": {"verdict": "false_positive"}, "unsuppress": {"comment": "real attack"}}


class Objects:
    """Per tenant: the tickets each acting principal works on (its own, so that statuses are predictable), an
    untouched ticket the others try, an alert and suppressed alerts."""

    def __init__(self, store: TicketStore):
        with store.tx() as s:
            self.tickets = {t: list(s.scalars(select(Ticket).where(
                Ticket.tenant_id == t, Ticket.incident_status != "merged").order_by(Ticket.id))) for t in TENANTS}
            self.suppressed = {t: list(s.scalars(select(SuppressedAlert.alert_id).where(
                SuppressedAlert.tenant_id == t).order_by(SuppressedAlert.alert_id))) for t in TENANTS}
        self.mine: dict[tuple[str, str], Ticket] = {}
        for t in TENANTS:
            actors = [w for w in WHO if w in ACTS and t in SEES[w]]
            for i, w in enumerate(actors):
                self.mine[(w, t)] = self.tickets[t][i]
        self.untouched = {t: self.tickets[t][-1] for t in TENANTS}

    def ticket(self, who: str, tenant: str) -> Ticket:
        return self.mine.get((who, tenant), self.untouched[tenant])

    def alert(self, tenant: str) -> str:
        return str(self.tickets[tenant][0].incident["alert_ids"][0])

    def suppressed_alert(self, who: str, tenant: str) -> str:
        return self.suppressed[tenant][WHO.index(who)]


def _call(client: httpx.Client, endpoint: str, tenant: str, who: str, objs: Objects, csrf: str | None
          ) -> httpx.Response:
    method, path = endpoint.split(" ")[:2]
    t = objs.ticket(who, tenant) if tenant != "-" else None
    path = path.format(incident=t.incident_id if t else "", ticket=t.id if t else "", tenant=tenant,
                       alert=objs.alert(tenant) if t else "",
                       suppressed=objs.suppressed_alert(who, tenant) if t else "")
    if method == "GET":
        return client.get(path)
    action = path.rsplit("/", 1)[1]
    body = dict(BODIES.get(action, {}))
    if action == "verdict":
        body["ticket"] = str(objs.tickets[tenant][0].id)
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    return client.post(path, json=body, headers=headers)


def _check_data(endpoint: str, tenant: str, who: str, r: httpx.Response, objs: Objects) -> None:
    """What a 200 must carry: the right tenant's data, and only data of tenants `who` sees."""
    if endpoint == "GET /api/incidents":
        got = {i["tenant_id"] for i in r.json()["incidents"]}
        assert got == SEES[who], (who, got)
    elif endpoint == "GET /api/incidents/{incident}":
        d = r.json()
        assert d["ticket"]["tenant_id"] == tenant and d["alerts"] and all(a["raw"] for a in d["alerts"])
        assert all(a["fields"]["tenant_id"] == tenant for a in d["alerts"])
    elif endpoint == "GET /incidents/{incident}":
        assert objs.ticket(who, tenant).incident_id in r.text
    elif endpoint == "GET /alerts/{alert}/raw":
        assert r.headers["content-type"].startswith("text/plain") and r.text
    elif endpoint == "GET /api/suppressed?tenant={tenant}":
        assert r.json() and {x["tenant_id"] for x in r.json()} == {tenant}
        assert all(x["score"] < x["threshold"] or x["score"] >= 0 for x in r.json())
    elif endpoint == "GET /api/health":
        assert set(r.json()["store"]["dead_letters_7d"]) <= SEES[who]


def test_role_tenant_endpoint_matrix(lab_store: str, console_server: Any, tmp_path: Path) -> None:
    verdicts = tmp_path / "verdicts.jsonl"
    srv: ConsoleServer = console_server(lab_store, verdicts_file=verdicts)
    store = srv.console.store
    objs = Objects(store)
    clients: dict[str, httpx.Client] = {}
    csrf: dict[str, str | None] = {}
    for who in WHO:
        c = clients[who] = srv.client()
        csrf[who] = None
        if who == "ana-token":
            c.headers["Authorization"] = f"Bearer {new_token(store, 'ana')}"
        elif who != "anon":
            assert login(c, who).status_code == 303
            csrf[who] = csrf_of(c)
    got: dict[tuple[str, str], tuple[int, ...]] = {}
    for endpoint, tenant in MATRIX:
        row = []
        for who in WHO:
            r = _call(clients[who], endpoint, tenant, who, objs, csrf[who])
            row.append(r.status_code)
            if r.status_code == 200:
                _check_data(endpoint, tenant, who, r, objs)
            if r.status_code == 404:
                body = r.text
                for t in objs.tickets[tenant]:  # a 404 never carries the object's data
                    assert t.title not in body and t.incident_id not in body
        got[(endpoint, tenant)] = tuple(row)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "api-matrix.txt").write_text(_table(got), encoding="utf-8")
    assert got == MATRIX, "\n" + _table(got)

    # the writes landed where the CLI's would, and the refused ones changed nothing
    with store.tx() as s:
        for who, t in objs.mine.items():
            now = s.get(Ticket, t.id)
            assert now.status == "closed" and now.verdict == "false_positive", who
            assert now.assignee == ("ana" if who[1] == "shop" else who[0]), who  # assigned, else the acknowledger
        for t in objs.untouched.values():
            assert s.get(Ticket, t.id).status == "new"
            actors = set(s.scalars(select(TimelineEvent.actor).where(TimelineEvent.ticket_id == t.id)))
            assert actors <= {"system"} or all(a.startswith(("system", "playbook:")) for a in actors), actors
        refused = list(s.scalars(select(AuditEntry).where(AuditEntry.outcome == "refused", AuditEntry.actor == "vera")))
        assert {e.action for e in refused} >= {"acknowledge", "close", "alert_verdict", "unsuppress"}
        released = {r for r in s.scalars(select(SuppressedAlert.alert_id).where(
            SuppressedAlert.status == "unsuppressed"))}
    records = [json.loads(line) for line in verdicts.read_text().splitlines()]
    closes = [r for r in records if r.get("incident_id")]
    assert sorted(r["analyst"] for r in closes) == ["ana", "ana", "bob", "root", "root", "shop-admin"]
    alert_verdicts = [r for r in records if r.get("kind") == "alert" and r["source"] == "console"]
    assert sorted(r["analyst"] for r in alert_verdicts) == ["ana", "ana", "bob", "root", "root", "shop-admin"]
    tps = [r for r in records if r.get("source") == "unsuppress"]
    assert all(r["verdict"] == "true_positive" for r in tps) and {r["alert_ids"][0] for r in tps} == released
    assert len(released) == 6


def _table(got: dict[tuple[str, str], tuple[int, ...]]) -> str:
    head = f"{'endpoint':<52} {'tenant':<6} " + " ".join(f"{w:>10}" for w in WHO)
    lines = [head, "-" * len(head)]
    lines += [f"{e:<52} {t:<6} " + " ".join(f"{s:>10}" for s in row) for (e, t), row in got.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.postgres
def test_scoping_on_postgresql(console_server: Any, tmp_path: Path, pg_base_url: str) -> None:
    """The same queries on PostgreSQL: queue, incident, cross-tenant 404, an action."""
    url = new_database(pg_base_url)
    for tenant in TENANTS:
        replay_into(url, tmp_path / tenant, tenant, LAB1, "web-01")
    store = TicketStore(url)
    for name in ("ana", "bob"):
        add_user(store, name, *USERS[name], PASSWORD)
    objs = Objects(store)
    store.close()
    srv = console_server(url)
    ana, bob = srv.client(), srv.client()
    login(ana, "ana")
    login(bob, "bob")
    q = ana.get("/api/incidents", params={"text": "compromise"}).json()
    assert q["total"] == 1 and q["incidents"][0]["tenant_id"] == "shop" and q["incidents"][0]["priority"] == "P1"
    shop_inc = objs.tickets["shop"][0].incident_id
    assert ana.get(f"/api/incidents/{shop_inc}").status_code == 200
    assert bob.get(f"/api/incidents/{shop_inc}").status_code == 404
    assert bob.get(f"/incidents/{shop_inc}").status_code == 404
    r = ana.post(f"/api/tickets/{objs.tickets['shop'][0].id}/ack", headers={"X-CSRF-Token": csrf_of(ana)})
    assert r.status_code == 200 and r.json()["ticket"]["status"] == "acknowledged"
    assert ana.get("/queue").status_code == 200 and "Compromise of web-01" in ana.get("/queue").text
