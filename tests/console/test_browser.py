"""The console in a real browser (headless Chromium from Debian's packages, see browser.py): the lab day's
queue by SLA, the compromise incident's explanation and reasons, acknowledging and closing with a verdict,
raw records on demand, hostile records that must render as text, and the live queue.

Screenshots of the queue and the incident page are kept in out/test-artifacts/console/.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from pipeline.console import audit
from pipeline.console.auth import add_user
from pipeline.schema import Alert, Endpoint, Entities, Http, MatchExplanation, Source, Suppressed
from pipeline.soar import evidence
from pipeline.soar.models import Ticket, utcnow
from pipeline.soar.tickets import TicketStore
from tests.console.browser import chromium, dialog_open, foreign, requested_urls, screenshot, sign_in, wait_for
from tests.console.server import PASSWORD
from tests.soar.helpers import incident
from tests.soar.servers import RecordingServer

pytestmark = pytest.mark.browser


def _rows(driver: Any) -> list[tuple[str, str, bool]]:
    """(title, data-due, breached) of the queue rows, top to bottom."""
    from selenium.webdriver.common.by import By

    return [(r.find_element(By.CSS_SELECTOR, "a.title").text, r.get_attribute("data-due"),
             "breached" in (r.get_attribute("class") or ""))
            for r in driver.find_elements(By.CSS_SELECTOR, "#queue-rows tr[data-ticket]")]


def test_lab_day_in_the_browser(lab_store: str, console_server: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    verdicts = tmp_path / "verdicts.jsonl"
    srv = console_server(lab_store, verdicts_file=verdicts)
    store = srv.console.store
    with store.tx() as s:
        # the lab day is in the past, so all its deadlines are (docs/priority.md "One clock"): move them to
        # the hours ahead, as for a live day, keeping their order
        shop = list(s.scalars(select(Ticket).where(Ticket.tenant_id == "shop")))
        shift = utcnow() + timedelta(hours=1) - min(t.sla_due for t in shop)
        for t in shop:
            s.execute(update(Ticket).where(Ticket.id == t.id).values(sla_due=t.sla_due + shift))
        # one ticket's response time has run out: it must lead the queue
        late = s.scalars(select(Ticket).where(Ticket.tenant_id == "shop", Ticket.priority == "P5")
                             .order_by(Ticket.id)).first()
        s.execute(update(Ticket).where(Ticket.id == late.id).values(sla_due=utcnow() - timedelta(minutes=5)))
    with chromium() as d:
        sign_in(d, srv.url, "ana", PASSWORD)
        assert wait_for(lambda: d.find_element(By.ID, "live").get_attribute("data-state") == "on")
        rows = _rows(d)
        assert rows[0][0] == late.title and rows[0][2] and not any(b for _, _, b in rows[1:])
        dues = [datetime.fromisoformat(due) for _, due, _ in rows[1:]]
        assert dues == sorted(dues) and len(rows) == 9  # shop only: 6 lab incidents + 3 of the WAF sample
        assert "overdue" in d.find_element(By.CSS_SELECTOR, "#queue-rows tr .countdown").text
        screenshot(d, "queue")

        d.find_element(By.PARTIAL_LINK_TEXT, "Compromise of web-01").click()
        assert wait_for(lambda: d.find_elements(By.ID, "explanation"))
        expl = d.find_element(By.ID, "explanation").text
        assert "Web server account ran a shell" in expl and "alerts matched" in expl
        reasons = [li.text for li in d.find_elements(By.CSS_SELECTOR, "#reasons li")]
        assert any(r.startswith("raised to P1") for r in reasons) and any("fused with" in r for r in reasons)
        assert len(d.find_elements(By.CSS_SELECTOR, "ul.fused a")) >= 5
        link = d.find_element(By.CSS_SELECTOR, "a.raw-link")
        link.click()  # the raw record, fetched on demand and shown as text
        pre = d.find_element(By.CSS_SELECTOR, f"pre.raw[data-raw-for='{link.get_attribute('data-alert')}']")
        assert wait_for(lambda: pre.is_displayed() and len(pre.text) > 20)
        screenshot(d, "incident")
        compromise = d.current_url.rsplit("/", 1)[1]

        d.find_element(By.ID, "ack").click()
        assert wait_for(lambda: "Acknowledged." in d.find_element(By.CSS_SELECTOR, ".flash").text)
        d.get(f"{srv.url}/queue")
        d.find_element(By.PARTIAL_LINK_TEXT, "Scanning of web-01 from 127.0.0.1").click()
        assert wait_for(lambda: d.find_elements(By.ID, "close-form"))
        Select(d.find_element(By.ID, "verdict")).select_by_value("false_positive")
        d.find_element(By.CSS_SELECTOR, "#close-form input[name=note]").send_keys("our own health check")
        d.find_element(By.ID, "close").click()
        assert wait_for(lambda: "verdict is recorded" in d.find_element(By.CSS_SELECTOR, ".flash").text)
        closed = d.current_url.rsplit("/", 1)[1]
        assert dialog_open(d) is None
    with store.tx() as s:
        assert s.scalars(select(Ticket.status).where(Ticket.incident_id == compromise)).one() == "acknowledged"
        t = s.scalars(select(Ticket).where(Ticket.incident_id == closed)).one()
        assert (t.status, t.verdict) == ("closed", "false_positive")
    [rec] = [json.loads(x) for x in verdicts.read_text().splitlines()]
    assert (rec["incident_id"], rec["verdict"], rec["analyst"], rec["comment"]) == (
        closed, "false_positive", "ana", "our own health check")
    assert rec["alert_ids"] == t.incident["alert_ids"]


# ---- hostile records ---------------------------------------------------------------------------------------
def payloads(foreign_url: str) -> list[str]:
    return [
        '<script>alert("xss-script")</script>',
        '<img src=x onerror=alert("xss-img")>',
        '<svg onload=alert("xss-svg")>',
        '<svg><script>alert("xss-svg-script")</script></svg>',
        f'"><img src="{foreign_url}/img.png"><b id="injected">markup</b>',
        f"<iframe src={foreign_url}/frame></iframe><link rel=stylesheet href={foreign_url}/x.css>",
        "javascript:alert('xss-js')",
        "{{ 7*7 }}{% raw %}",
    ]


def _hostile(store: TicketStore, foreign_url: str, tenant: str = "shop") -> list[str]:
    """Incidents and alerts whose titles, URLs, user agents, user names, messages and raw records carry the
    payloads, written as the pipeline writes them (evidence, then tickets). Returns the incident ids."""
    ids = []
    t0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    for n, p in enumerate(payloads(foreign_url)):
        aid = f"hostile-{n}"
        a = Alert(alert_id=aid, tenant_id=tenant, time=t0, received_at=t0,
                  source=Source(product="ModSecurity", vendor="OWASP", family="waf", format="modsec_audit"),
                  message=p, user=p, src=Endpoint(ip="203.0.113.9"),
                  http=Http(method="GET", url=f"/search?q={p}", host=p, user_agent=p), raw=f'{{"uri": "{p}"}}')
        inc = incident(900 + n, tenant=tenant, title=f"Web attack {p}", alert_ids=[aid],
                       entities=Entities(src_ips=["203.0.113.9"], users=[p], urls=[p], hosts=[p]),
                       priority_reasons=[f"reason {p}"],
                       explanation=[MatchExplanation(use_case="uc-web", title=f"rule {p}", alert_ids=[aid],
                                                     conditions={f"sel {p}": [aid]},
                                                     correlation={"group_by": {"src.ip": p}})])
        ids.append(inc.incident_id)
        s = Suppressed(alert=Alert(**{**{f: getattr(a, f) for f in a.__struct_fields__}, "alert_id": aid + "-s"}),
                       score=0.01, threshold=0.2, model_version=p[:60], reason="noise",
                       contributions={p: -0.5})
        evidence.record(store, [a], [s])
        store.upsert_incident(inc)
        store.note(inc.incident_id, f"analyst note {p}", actor="system")
    return ids


def test_hostile_records_render_as_text(lab_store: str, console_server: Any) -> None:
    from selenium.webdriver.common.by import By

    trap = RecordingServer()  # a foreign origin: nothing may ever reach it
    try:
        srv = console_server(lab_store)
        store = srv.console.store
        ids = _hostile(store, trap.url)
        for p in payloads(trap.url)[:3]:  # attacker-chosen names tried at the login form land in the audit log
            audit.log(store, p, "login", "failed", client="203.0.113.9")
        add_user(store, "ops", "admin", [], PASSWORD)
        with chromium() as d:
            sign_in(d, srv.url, "ops", PASSWORD)
            pages = ["/queue", *(f"/incidents/{i}" for i in ids), "/suppressed?tenant=shop", "/audit",
                     "/queue?text=%3Cscript%3E"]
            for path in pages:
                d.get(srv.url + path)
                assert dialog_open(d) is None, path
                for link in d.find_elements(By.CSS_SELECTOR, "a.raw-link")[:3]:
                    link.click()
                assert dialog_open(d) is None, path
                assert not d.find_elements(By.ID, "injected"), path
                assert d.execute_script("return document.scripts.length") == 1, path  # console.js only
                assert not d.find_elements(By.CSS_SELECTOR, "main svg, main iframe, main img, main link"), path
                if path.startswith("/incidents/"):
                    text = d.find_element(By.TAG_NAME, "main").text
                    assert "<script>alert(" in text or "<img src=" in text or "javascript:" in text or "{{ 7*7 }}" \
                        in text or "<svg" in text or "<iframe" in text, path
                    title = d.find_element(By.ID, "incident-title").text  # {{ 7*7 }} not evaluated; the
                    assert "49" not in title.replace(trap.url, "")  # trap's random port may hold a 49
            d.get(f"{srv.url}/incidents/{ids[1]}")
            assert d.find_element(By.ID, "incident-title").text == 'Web attack <img src=x onerror=alert("xss-img")>'
            link = d.find_element(By.CSS_SELECTOR, "a.raw-link")
            link.click()
            pre = d.find_element(By.CSS_SELECTOR, "pre.raw")
            assert wait_for(lambda: pre.text == '{"uri": "<img src=x onerror=alert("xss-img")>"}')
            screenshot(d, "hostile-incident")
            d.get(f"{srv.url}/alerts/{link.get_attribute('data-alert')}/raw")  # opened directly: still text
            assert dialog_open(d) is None and not d.find_elements(By.TAG_NAME, "img")
            urls = requested_urls(d)
        assert urls and foreign(urls, srv.url) == []
        assert trap.requests == []
    finally:
        trap.close()


# ---- live queue ----------------------------------------------------------------------------------------------
def test_queue_updates_live_from_the_store(lab_store: str, console_server: Any) -> None:
    from selenium.webdriver.common.by import By

    srv = console_server(lab_store)
    with chromium() as d:
        sign_in(d, srv.url, "ana", PASSWORD)
        assert wait_for(lambda: d.find_element(By.ID, "live").get_attribute("data-state") == "on")
        before = len(_rows(d))
        writer = TicketStore(lab_store)  # another process's store connection: the worker, replay, the CLI
        try:
            writer.upsert_incident(incident(500, tenant="acme", title="Not yours", priority="P1"))
            t0 = time.monotonic()
            writer.upsert_incident(incident(501, tenant="shop", title="Fresh P1 from the stream", priority="P1"))
        finally:
            writer.close()
        assert wait_for(lambda: any(t == "Fresh P1 from the stream" for t, _, _ in _rows(d)), timeout=10)
        seen = time.monotonic() - t0
        rows = _rows(d)
        assert len(rows) == before + 1 and all(t != "Not yours" for t, _, _ in rows)
        dues = [datetime.fromisoformat(due) for _, due, _ in rows]
        assert dues == sorted(dues)  # in its place by time left
        assert d.find_element(By.ID, "queue-total").text == str(before + 1)
    assert seen < 5.0
