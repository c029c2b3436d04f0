"""The priority function: the documented matrix, reasons, SLA, escort calendar and idempotence."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.context.loader import ContextFileError
from pipeline.context.priority import SLA, EscortPeriod, load_escort, prioritize
from pipeline.context.store import Context
from pipeline.schema import PRIORITIES, AssetRef, FusedPart, IntelHit

from .conftest import T0, incident

ESCORT = EscortPeriod("National Day", T0 - timedelta(days=1), T0 + timedelta(days=6))
STRONG = IntelHit(indicator="127.0.0.66", type="ip", field="src.ip", source="lab-feed", confidence=90)
WEAK = IntelHit(indicator="10.66.0.0/16", type="cidr", field="src.ip", source="lab-feed", confidence=30)
UNRATED = IntelHit(indicator="malware-lab.test", type="domain", field="dns.query", source="misp:CIRCL")


def _run(base, crit, outcome, intel=None, fused=False, escort=False):
    """fused: False, True (a webshell incident fused in: two stages) or the category of the fused part."""
    inc = incident(base, outcome=outcome, intel=[intel] if intel else [])
    if fused:
        _fuse(inc, "webshell" if fused is True else fused)
    asset = AssetRef(name="web-01", criticality=crit) if crit else None
    prioritize(inc, asset, ESCORT if escort else None, T0)
    return inc


def _fuse(inc, category: str, iid: str = "f9522cbef3d7aa", base: str = "P5") -> None:
    """What fusion does to a survivor: the part's id, its stages, and its record (category, base priority)."""
    inc.fused_from.append(iid)
    inc.stages = list(dict.fromkeys([*(inc.stages or [inc.category]), category]))
    inc.fused.append(FusedPart(incident_id=iid, title="part of the attack", category=category, base_priority=base,
                               use_cases=["uc-2"]))


# base, asset criticality, outcome, intel, fused, escort -> expected priority
MATRIX = [
    ("P3", None, "attempted", None, False, False, "P3"),        # no context: the use case's priority
    ("P3", "medium", "attempted", None, False, False, "P3"),
    ("P3", "high", "attempted", None, False, False, "P2"),      # high + not blocked
    ("P3", "high", "blocked", None, False, False, "P3"),        # high but blocked: no raise
    ("P3", "critical", "blocked", None, False, False, "P2"),    # critical: always
    ("P3", "critical", "attempted", None, False, False, "P2"),
    ("P3", "critical", "succeeded", None, False, False, "P1"),  # critical + succeeded
    ("P3", "high", "succeeded", None, False, False, "P1"),      # high not blocked + succeeded
    ("P3", None, "succeeded", None, False, False, "P2"),
    ("P3", "low", "blocked", None, False, False, "P4"),         # blocked on a low asset: lowered
    ("P5", "low", "blocked", None, False, False, "P5"),         # never below P5
    ("P4", "low", "attempted", None, False, False, "P4"),
    ("P3", None, "attempted", STRONG, False, False, "P2"),      # intel hit
    ("P3", None, "attempted", WEAK, False, False, "P3"),        # low-confidence intel: noted only
    ("P3", None, "attempted", UNRATED, False, False, "P2"),     # no confidence given: counts
    ("P3", "medium", "attempted", None, True, False, "P2"),     # multi-stage (fused)
    ("P4", "high", "attempted", None, "web_attack", False, "P3"),  # fused reports of one stage: no raise
    ("P4", "critical", "succeeded", STRONG, False, False, "P2"),  # context raises capped at +2
    ("P5", "critical", "succeeded", STRONG, True, False, "P3"),
    ("P4", "critical", "succeeded", STRONG, False, True, "P1"),   # escort on top of the cap
    ("P2", "high", "succeeded", None, True, False, "P1"),       # never above P1
    ("P1", "critical", "succeeded", STRONG, True, True, "P1"),
    ("P5", None, "blocked", None, False, True, "P4"),           # escort: one level up
    ("P3", "high", "blocked", None, False, True, "P2"),
    ("P3", "low", "blocked", STRONG, False, False, "P3"),       # +1 intel, -1 blocked on low
    ("P3", "low", "blocked", None, False, True, "P3"),          # -1 blocked on low, +1 escort
    ("P2", "critical", "blocked", None, False, True, "P1"),
]


@pytest.mark.parametrize(("base", "crit", "outcome", "intel", "fused", "escort", "expected"), MATRIX)
def test_priority_matrix(base, crit, outcome, intel, fused, escort, expected):
    inc = _run(base, crit, outcome, intel, fused, escort)
    assert inc.priority == expected
    assert inc.priority_reasons[0].startswith(f"base {base} ")
    assert inc.priority_reasons[-1].startswith(f"SLA {'15 min' if expected == 'P1' else ''}")
    assert inc.sla_due == T0 + SLA[expected]
    assert inc.escort == ("National Day" if escort else None)


@pytest.mark.parametrize("case", list(itertools.product(
    PRIORITIES, [None, "low", "medium", "high", "critical"], ["blocked", "attempted", "succeeded"],
    [None, STRONG, WEAK], [False, True], [False, True])))
def test_priority_properties_over_the_whole_matrix(case):
    base, crit, outcome, intel, fused, escort = case
    inc = _run(*case)
    b, p = PRIORITIES.index(base), PRIORITIES.index(inc.priority)
    assert b - p <= 3  # at most +2 from context and +1 from escort
    assert p <= b + 1  # lowered at most one level
    if escort:
        assert p == max(PRIORITIES.index(_run(base, crit, outcome, intel, fused).priority) - 1, 0)
    if intel is STRONG:
        assert p <= PRIORITIES.index(_run(base, crit, outcome, None, fused, escort).priority)
    if outcome == "blocked" and crit in ("high", "medium", None) and not (intel is STRONG or fused or escort):
        assert inc.priority == base
    again = inc.priority, list(inc.priority_reasons), inc.title, inc.sla_due
    asset = AssetRef(name="web-01", criticality=crit) if crit else None
    prioritize(inc, asset, ESCORT if escort else None, T0)
    assert (inc.priority, inc.priority_reasons, inc.title, inc.sla_due) == again


def test_reasons_read_as_an_explanation():
    inc = _run("P3", "high", "succeeded", STRONG, True, True)
    assert inc.priority_reasons == [
        "base P3 from use case 'Web attack campaign'",
        "fused with webshell incident 'part of the attack' (f9522cbef3d7)",
        "raised to P2: asset 'web-01' is high-criticality and the activity was not blocked "
        "(outcome succeeded)",
        "raised to P1: outcome succeeded: the activity took effect (successful action or host evidence)",
        "not raised (already P1): threat intel: ip '127.0.0.66' in src.ip from lab-feed, confidence 90",
        "not raised (already P1): multi-stage attack: web_attack + webshell (2 incidents fused)",
        "not raised (already P1): escort period 'National Day' (2026-11-23 – 2026-11-30)",
        "SLA 15 min: respond by 2026-11-24T06:45:00+00:00",
    ]
    assert inc.title == "Web attack [escort: National Day]"


def test_lowering_and_weak_intel_reasons():
    inc = _run("P3", "low", "blocked", WEAK)
    assert inc.priority_reasons[1:] == [
        "unchanged P3: threat intel: cidr '10.66.0.0/16' in src.ip from lab-feed, confidence 30 — all hits "
        "below confidence 50",
        "lowered to P4: all activity was blocked and asset 'web-01' is low-criticality",
        "SLA 4 h: respond by 2026-11-24T10:30:00+00:00",
    ]


@pytest.mark.parametrize(("prio", "minutes"), [("P1", 15), ("P2", 30), ("P3", 120), ("P4", 240), ("P5", 480)])
def test_sla_and_breach(prio, minutes):
    inc = incident(prio, outcome="attempted")
    prioritize(inc, None, None, T0 + timedelta(minutes=minutes))
    assert inc.sla_due == T0 + timedelta(minutes=minutes) and not inc.sla_breached
    prioritize(inc, None, None, T0 + timedelta(minutes=minutes, seconds=1))
    assert inc.sla_breached


def test_base_follows_fusion_and_escort_suffix_is_kept_once():
    """A fused part of a higher use-case priority sets the base, fusion may retitle the survivor: all recomputed
    cleanly from fusion's record."""
    inc = _run("P3", "medium", "attempted", escort=True)
    assert inc.title == "Web attack [escort: National Day]"
    _fuse(inc, "web_attack", base="P1")
    prioritize(inc, AssetRef(name="web-01", criticality="medium"), ESCORT, T0)
    assert inc.title == "Web attack [escort: National Day]"
    assert inc.base_priority == "P3"  # the survivor's own; the fused part's P1 is the base
    assert inc.priority_reasons == [
        "base P1 from fused web_attack incident 'part of the attack' (f9522cbef3d7): the highest use-case "
        "priority of the fused incidents",
        "fused with web_attack incident 'part of the attack' (f9522cbef3d7)",
        "unchanged P1: 2 incidents of one web_attack activity fused (one stage)",
        "not raised (already P1): escort period 'National Day' (2026-11-23 – 2026-11-30)",
        "SLA 15 min: respond by 2026-11-24T06:45:00+00:00",
    ]
    inc.title = "Compromise of web-01: webshell + web attack"  # fusion renames the survivor
    prioritize(inc, None, ESCORT, T0)
    assert inc.title == "Compromise of web-01: webshell + web attack [escort: National Day]"
    prioritize(inc, None, None, T0)  # the escort period was taken out of the calendar: suffix removed
    assert inc.title == "Compromise of web-01: webshell + web attack" and inc.escort is None


# ---- escort calendar ---------------------------------------------------------------------------------------
def test_escort_yaml_with_timezone(tmp_path: Path):
    f = tmp_path / "escort.yaml"
    f.write_text("timezone: Asia/Shanghai\nperiods:\n"
                 "  - name: National Day\n    start: 2026-10-01\n    end: 2026-10-07\n"
                 "  - name: Two Sessions\n    start: 2026-03-04T08:00:00\n"
                 "    end: 2026-03-11T18:00:00+08:00\n")
    cal = load_escort(f)
    nd = cal.at(datetime(2026, 10, 7, 15, 59, tzinfo=UTC))  # 23:59 in Shanghai: still inside
    assert nd is not None and nd.name == "National Day"
    assert f"{nd.start:%Y-%m-%d} – {nd.end:%Y-%m-%d}" == "2026-10-01 – 2026-10-07"  # reasons show local dates
    assert cal.at(datetime(2026, 10, 7, 16, 0, 1, tzinfo=UTC)) is None
    assert cal.at(datetime(2026, 9, 30, 16, 0, tzinfo=UTC)).name == "National Day"
    assert cal.at(datetime(2026, 3, 4, 0, 0, tzinfo=UTC)).name == "Two Sessions"
    assert cal.at(datetime(2026, 3, 3, 23, 59, tzinfo=UTC)) is None


def test_escort_csv_and_errors(tmp_path: Path):
    f = tmp_path / "escort.csv"
    f.write_text("start,end,name\n2026-11-20,2026-11-30,Shopping festival\n")
    assert load_escort(f).at(T0).name == "Shopping festival"
    f.write_text("start,end,name\n2026-11-20,2026-11-10,Backwards\n2026-13-01,2026-12-02,Bad month\n"
                 "2026-12-01,2026-12-02,\n")
    with pytest.raises(ContextFileError) as e:
        load_escort(f)
    assert str(e.value).splitlines() == ["escort.csv:2: end: before start",
                                         "escort.csv:3: start: not a date or datetime: '2026-13-01'",
                                         "escort.csv:4: name: missing period name"]
    y = tmp_path / "escort.yaml"
    y.write_text("periods:\n  - name: X\n    start: 2026-01-01\n    end: soon\n")
    with pytest.raises(ContextFileError, match=r"^escort.yaml:4: end: not a date or datetime: 'soon'$"):
        load_escort(y)


def test_context_escort_is_per_tenant(tmp_path: Path):
    f = tmp_path / "escort.csv"
    f.write_text("start,end,name\n2026-11-24,2026-11-24,Audit day\n")
    ctx = Context(clock=lambda: T0)
    assert ctx.load_escort("shop", f)
    shop, bank = incident("P3", outcome="attempted"), incident("P3", outcome="attempted", tenant_id="bank")
    ctx.prioritize(shop)
    ctx.prioritize(bank)
    assert (shop.priority, shop.escort, shop.title) == ("P2", "Audit day", "Web attack [escort: Audit day]")
    assert (bank.priority, bank.escort, bank.title) == ("P3", None, "Web attack")
    late = incident("P3", outcome="attempted", first_seen=T0 + timedelta(days=1))
    ctx.prioritize(late)
    assert late.escort is None


def test_cap_reason():
    inc = _run("P4", "critical", "succeeded", STRONG)
    assert inc.priority_reasons[1:4] == [
        "raised to P3: asset 'web-01' is critical",
        "raised to P2: outcome succeeded: the activity took effect (successful action or host evidence)",
        "not raised: threat intel: ip '127.0.0.66' in src.ip from lab-feed, confidence 90 "
        "(context raises at most 2 levels)",
    ]


def _c2(src: str = "203.0.113.9") -> object:
    """A C2 domain lookup seen by the IDS: `src` asked the tenant's resolver 10.20.5.10 (a critical asset)."""
    inc = incident("P2", outcome="attempted", category="c2", title=f"C2 lookup from {src}")
    inc.sources = {"families": ["ids"], "products": ["Suricata"]}
    inc.entities.src_ips, inc.entities.dst_ips, inc.entities.hosts = [src], ["10.20.5.10"], [src]
    return inc


def test_c2_lookup_by_an_outside_client_does_not_raise_the_resolver(tmp_path: Path):
    ctx = Context(clock=lambda: T0)
    assert ctx.load_assets("shop", Path(__file__).parent / "data" / "assets.yaml")  # 10.20.5.10 is db-01, critical
    outside = _c2()
    ctx.prioritize(outside)
    assert outside.priority == "P2", outside.priority_reasons  # the server only answered
    assert any("the host that asked (203.0.113.9) is the suspect" in r and "no inventory asset" in r
               for r in outside.priority_reasons)
    assert not any("db-01" in r for r in outside.priority_reasons)
    inside = _c2("10.20.7.7")  # an office laptop (office-lan, low) asked: it is the suspect
    ctx.prioritize(inside)
    assert any("the host that asked (office-lan)" in r for r in inside.priority_reasons)


def test_blocked_brute_force_says_so_and_is_not_raised():
    inc = _run("P4", "high", "blocked")
    assert inc.priority == "P4"
    assert any(r.startswith("unchanged P4: outcome blocked: nothing got through") and "asset 'web-01'" in r
               for r in inc.priority_reasons), inc.priority_reasons
    failed = _run("P4", "high", "failed")  # every try failed but nothing blocked the source: not blocked
    assert failed.priority == "P3" and any("outcome failed" in r for r in failed.priority_reasons)
