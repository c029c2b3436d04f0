"""Reports rendered from the fixture store: the numbers read back from the Markdown and from the HTML's data
attributes equal what the store and the replays hold; one tenant's report holds none of another's data; the
PDF has real, non-blank pages."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.report.data import collect
from pipeline.report.period import resolve
from pipeline.report.render import KEY_LABELS, render_html, render_markdown, write
from pipeline.schema import PRIORITIES
from pipeline.soar.models import Ticket
from tests.report.conftest import ACME, LAB, NOW, SHOP_DAY2, Fixture

WEEK = resolve("week", date(2026, 11, 24))


class DataAttrs(HTMLParser):
    """Every element's data-* attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = {k[5:]: v or "" for k, v in attrs if k.startswith("data-")}
        if d:
            self.rows.append(d)

    def having(self, *keys: str) -> list[dict[str, str]]:
        return [r for r in self.rows if all(k in r for k in keys)]


def parse_html(html: str) -> DataAttrs:
    p = DataAttrs()
    p.feed(html)
    return p


def md_figures(md: str) -> dict[str, str]:
    """The key-figure table of the Markdown, by key."""
    by_label = {v: k for k, v in KEY_LABELS.items()}
    section = md.split("| Key figure | Value |", 1)[1].split("\n\n", 1)[0]
    out = {}
    for line in section.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        out[by_label[cells[0]]] = cells[1].replace(",", "")
    return out


def tickets(fx: Fixture, tenant: str) -> list[Ticket]:
    with Session(fx.store.engine) as s:
        return list(s.scalars(select(Ticket).where(Ticket.tenant_id == tenant,
                                                   Ticket.incident_status != "merged")))


def expected(fx: Fixture, tenant: str) -> dict[str, Any]:
    """The key figures computed independently from the replays and the ticket rows."""
    res, ts = fx.results[tenant], tickets(fx, tenant)
    breached = sum((t.acknowledged_at or NOW) > t.sla_due for t in ts)
    closed = sum(t.status == "closed" for t in ts)
    return {
        "funnel_records": sum(r.records for r in res),
        "funnel_alerts_raw": sum(r.alerts_raw for r in res),
        "funnel_alerts": sum(len(r.alerts) for r in res),
        "funnel_suppressed": sum(len(r.suppressed) for r in res),
        "funnel_incidents": sum(len(r.open_incidents) for r in res),
        "incidents_total": len(ts),
        **{f"incidents_{p}": sum(t.priority == p for t in ts) for p in PRIORITIES},
        "sla_breached": breached,
        "sla_met": len(ts) - breached,
        "closed_tickets": closed,
        "open_tickets": len(ts) - closed,
        "overdue_tickets": sum(t.status == "new" and t.sla_due < NOW for t in ts),
        "escort_incidents": sum(bool(t.incident.get("escort")) for t in ts),
        "intel_alerts": sum(bool(a.intel) for r in res for a in r.alerts),
    }


@pytest.fixture(scope="module")
def week(report_store: Fixture):
    return collect(report_store.store, "shop", WEEK, NOW)


def test_markdown_numbers_match_the_store(report_store: Fixture, week) -> None:
    figs = md_figures(render_markdown(week))
    exp = expected(report_store, "shop")
    assert exp["incidents_total"] == exp["funnel_incidents"] > 0
    assert exp["sla_breached"] > 0 and exp["open_tickets"] > 0 and exp["escort_incidents"] > 0
    assert {k: int(figs[k]) for k in exp} == exp
    assert float(figs["closure_pct"]) == round(100 * exp["closed_tickets"] / exp["incidents_total"], 1)


def test_html_numbers_match_the_store(report_store: Fixture, week) -> None:
    html = parse_html(render_html(week))
    exp = expected(report_store, "shop")
    figs = {r["figure"]: r["value"] for r in html.having("figure", "value")}
    assert {k: int(figs[k]) for k in exp} == exp
    funnel = {r["funnel"]: int(r["value"]) for r in html.having("funnel")}
    assert funnel == {k[len("funnel_"):]: v for k, v in exp.items() if k.startswith("funnel_")}
    ts = tickets(report_store, "shop")
    timing = {r["timing"]: r for r in html.having("timing")}
    for p in PRIORITIES:
        mine = [t for t in ts if t.priority == p]
        assert int(timing[p]["n"]) == len(mine)
        assert int(timing[p]["breached"]) == sum((t.acknowledged_at or NOW) > t.sla_due for t in mine)
    cats = {r["category"]: int(r["now"]) for r in html.having("category", "now")}
    assert cats == dict(Counter(t.category for t in ts))


def test_verdicts_per_use_case(report_store: Fixture, week) -> None:
    html = parse_html(render_html(week))
    exp: dict[str, Counter[str]] = {}
    for t in tickets(report_store, "shop"):
        for uc in t.incident["use_cases"] if t.verdict else []:
            exp.setdefault(uc, Counter())[t.verdict] += 1
    got = {r["usecase"]: Counter({"true_positive": int(r["tp"]), "false_positive": int(r["fp"]),
                                  "benign": int(r["benign"]), "duplicate": int(r["duplicate"])})
           for r in html.having("usecase", "tp")}
    assert got.keys() == exp.keys() and exp
    assert all(+got[k] == exp[k] for k in exp)
    tune = [v for v in week.verdicts if v.needs_tuning]
    assert tune and all(v.false_positive >= v.true_positive for v in tune)


def test_daily_report_trends_against_the_previous_day(report_store: Fixture) -> None:
    d = collect(report_store.store, "shop", resolve("day", date(2026, 11, 24)), NOW)
    html = parse_html(render_html(d))
    ts = tickets(report_store, "shop")
    today = Counter(t.priority for t in ts if t.first_seen.date() == date(2026, 11, 24))
    before = Counter(t.priority for t in ts if t.first_seen.date() == date(2026, 11, 23))
    assert today and before
    rows = {r["priority"]: r for r in html.having("priority", "now", "prev")}
    assert {p: (int(r["now"]), int(r["prev"])) for p, r in rows.items()} == {
        p: (today[p], before[p]) for p in PRIORITIES}
    # the escort period covered 24 November only: all of that day's escort incidents, none of the 23rd's
    assert d.escort and all(i.first_seen.date() == date(2026, 11, 24) for i in d.escort)


def _tenant_strings(fx: Fixture, tenant: str, other: str) -> set[str]:
    """Literals of `tenant`'s data that `other`'s data does not contain (titles, ids, addresses)."""
    mine = {t.title for t in tickets(fx, tenant)} | {t.incident_id for t in tickets(fx, tenant)}
    mine |= {a.src.ip for r in fx.results[tenant] for a in r.alerts if a.src.ip}
    theirs = {t.title for t in tickets(fx, other)} | {a.src.ip for r in fx.results[other] for a in r.alerts
                                                       if a.src.ip}
    return {s for s in mine - theirs if len(s) > 6}


@pytest.mark.parametrize(("tenant", "other", "own"), [("shop", "acme", SHOP_DAY2.attacker),
                                                      ("acme", "shop", ACME.attacker)])
def test_a_report_holds_one_tenant_only(report_store: Fixture, tenant: str, other: str, own: str) -> None:
    d = collect(report_store.store, tenant, WEEK, NOW)
    foreign = _tenant_strings(report_store, other, tenant)
    assert len(foreign) > 10, foreign
    for text in (render_html(d), render_markdown(d)):
        assert own in text  # the tenant's own attacker is there ...
        leaked = sorted(s for s in foreign if s in text)
        assert not leaked, leaked  # ... and nothing of the other tenant
    assert {i.incident_id for i in d.incidents} == {t.incident_id for t in tickets(report_store, tenant)}


def test_pdf_pages_exist_and_are_not_blank(report_store: Fixture, week, tmp_path: Path) -> None:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed: make system-deps")
    pdf = write(week, "pdf", tmp_path / "week.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 3
    for p in pages:
        var = ImageStat.Stat(Image.open(p).convert("L")).var[0]
        assert var > 50, (p.name, var)
    text = subprocess.run(["pdftotext", "-l", "1", str(pdf), "-"], capture_output=True, text=True, check=True)
    assert "Security operations report" in text.stdout
    assert re.search(rf"\b{len(week.incidents)}\b", text.stdout)


def test_cli_writes_each_format(report_store: Fixture, tmp_path: Path) -> None:
    runner = CliRunner()
    for fmt in ("md", "html"):
        out = tmp_path / f"r.{fmt}"
        r = runner.invoke(app, ["report", "--tenant", "shop", "--period", "week", "--from", "2026-11-23",
                                "--format", fmt, "--out", str(out), "--db", report_store.url])
        assert r.exit_code == 0, r.output
        assert "app-server" in out.read_text()  # the second day's server, by its collection point's name
    assert (tmp_path / "r_charts" / "funnel.png").stat().st_size > 1000
    bad = runner.invoke(app, ["report", "--tenant", "shop", "--period", "year", "--db", report_store.url])
    assert bad.exit_code == 2


def test_top_attackers_are_the_sources_of_incidents(report_store: Fixture, week) -> None:
    sources = {ip for i in week.incidents for ip in i.src_ips}
    listed = {ip for ip, _, _ in week.top_attackers}
    assert listed and listed <= sources
    assert LAB.benign not in listed and SHOP_DAY2.benign not in listed  # a benign client with WAF alerts
    assert all(n >= 1 for _, _, n in week.top_attackers)
