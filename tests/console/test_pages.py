"""The other pages: reports (HTML and PDF downloads through pipeline/report), use cases (7-day hits and the
reports' tune flags), fused parts, health without a broker, and the live event stream's tenant filter."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx
from sqlalchemy import select

from pipeline.soar.models import Ticket, utcnow
from pipeline.soar.tickets import TicketStore
from tests.console.server import csrf_of, login, post_form
from tests.soar.helpers import incident


def _tickets(srv: Any, tenant: str) -> list[Ticket]:
    with srv.console.store.tx() as s:
        return list(s.scalars(select(Ticket).where(Ticket.tenant_id == tenant, Ticket.incident_status != "merged")
                              .order_by(Ticket.id)))


def test_reports_download(lab_store: str, console_server: Any) -> None:
    srv = console_server(lab_store)
    vera = srv.client()  # a viewer may read reports
    login(vera, "vera")
    today = utcnow().date().isoformat()
    assert 'name="tenant"' in vera.get("/reports").text
    r = post_form(vera, "/reports", {"tenant": "shop", "period": "week", "from": today, "format": "html"})
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment; filename=")
    assert r.headers["content-security-policy"].startswith("sandbox") and "shop" in r.text and "<html" in r.text
    r = post_form(vera, "/reports", {"tenant": "shop", "period": "week", "from": today, "format": "pdf"})
    assert r.status_code == 200 and r.content.startswith(b"%PDF") and r.headers["content-type"] == "application/pdf"
    assert post_form(vera, "/reports", {"tenant": "acme", "period": "week", "format": "html"}).status_code == 404
    assert post_form(vera, "/reports", {"tenant": "shop", "period": "year", "format": "html"}).status_code == 400
    assert vera.post("/reports", data={"tenant": "shop"}, headers={"Origin": srv.url}).status_code == 403  # CSRF


def test_usecases_hits_and_tune_flags(lab_store: str, console_server: Any) -> None:
    srv = console_server(lab_store)
    ana = srv.client()
    login(ana, "ana")
    campaign = [t for t in _tickets(srv, "shop") if t.title.startswith("Web attack campaign")]
    assert len(campaign) >= 2
    for t in campaign[:2]:  # two false positives of one use case: the report flags it for tuning
        assert post_form(ana, f"/incidents/{t.incident_id}/close", {"verdict": "false_positive"}).status_code == 303
    page = ana.get("/usecases").text
    row = next(r for r in re.findall(r"<tr class=\"tune\">.*?</tr>", page, re.S) if "Web attack campaign" in r)
    assert "tune</span> shop: 100 % FP of 2" in row
    counts = re.findall(r"<td>(\d+)(?: <span class=\"muted\">\(\d+ tenants\)</span>)?</td>\s*<td>(\d+)</td>", row)
    assert counts and int(counts[0][0]) == len(campaign)
    root = srv.client()
    login(root, "root")  # both tenants' hits, acme's incidents not judged: still flagged for shop only
    row = next(r for r in re.findall(r"<tr class=\"tune\">.*?</tr>", root.get("/usecases").text, re.S)
               if "Web attack campaign" in r)
    assert "(2 tenants)" in row and "acme:" not in row


def test_fused_part_page_and_health_without_broker(lab_store: str, console_server: Any) -> None:
    srv = console_server(lab_store)
    ana, bob = srv.client(), srv.client()
    login(ana, "ana")
    login(bob, "bob")
    p1 = next(t for t in _tickets(srv, "shop") if t.priority == "P1")
    part = p1.incident["fused_from"][0]
    page = ana.get(f"/incidents/{part}").text
    assert "Fused into" in page and f"/incidents/{p1.incident_id}" in page and "alert-" in page
    assert bob.get(f"/incidents/{part}").status_code == 404
    h = ana.get("/health").text
    assert "No broker configured" in h and "No worker metrics configured" in h and "sqlite" in h
    health = ana.get("/api/health").json()
    assert health["store"]["open_tickets"] == len(_tickets(srv, "shop"))
    assert health["consumer_lag"]["group"] is None and health["workers"] == []


def test_event_stream_carries_only_the_askers_tenants(lab_store: str, console_server: Any) -> None:
    srv = console_server(lab_store)
    bob = httpx.Client(base_url=srv.url, timeout=None)
    login(bob, "bob")
    assert csrf_of(bob)
    seen: list[int] = []
    ready = threading.Event()

    def listen() -> None:
        with bob.stream("GET", "/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    seen.extend(json.loads(line[6:])["ids"])
                    return

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    assert ready.wait(10)
    store = TicketStore(lab_store)
    try:
        shop = store.upsert_incident(incident(700, tenant="shop")).ticket.id
        time.sleep(1.5)  # a poll passes with only shop's change: nothing may reach bob
        acme = store.upsert_incident(incident(701, tenant="acme")).ticket.id
    finally:
        store.close()
    th.join(10)
    assert seen == [acme] and shop not in seen
