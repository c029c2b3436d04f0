"""Sigma correlation types over the real core (use cases written inline, events fed in order)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.authoring import alert_from_dict
from pipeline.core.engine import Core
from pipeline.rules.usecase import load_usecases

BASE = """
title: base a
id: 00000000-0000-4000-8000-00000000000a
name: rule_a
logsource: {product: mdr}
detection: {sel: {rule.id: a}, condition: sel}
level: low
mdr: {incident: false}
---
title: base b
id: 00000000-0000-4000-8000-00000000000b
name: rule_b
logsource: {product: mdr}
detection: {sel: {rule.id: b}, condition: sel}
level: low
mdr: {incident: false}
---
"""


def core_with(tmp_path: Path, corr: str) -> Core:
    f = tmp_path / "uc.yml"
    f.write_text(BASE + corr)
    ucs = load_usecases(str(f))
    assert not ucs.errors, ucs.errors
    return Core(ucs)


def fire(core: Core, events: list[dict]) -> list:
    for n, e in enumerate(events):
        core.feed_alerts([alert_from_dict(e, n * 10)])
    return [i for i in core.take().incidents.values() if i.status != "merged"]


def ev(rule: str, src: str = "203.0.113.1", **kw) -> dict:
    return {"rule": {"id": rule}, "src": {"ip": src}, **kw}


CORR = """title: corr
id: 00000000-0000-4000-8000-0000000000cc
correlation:
  type: {type}
  rules: {rules}
  group-by: [src.ip]
  timespan: 5m
{cond}
level: high
mdr: {{priority: P3, category: other, title: "corr {{src.ip}}"}}
"""


@pytest.mark.parametrize(("ctype", "rules", "cond", "events", "fires"), [
    ("event_count", "[rule_a]", "  condition: {gte: 3}", [ev("a"), ev("a"), ev("a")], True),
    ("event_count", "[rule_a]", "  condition: {gte: 3}", [ev("a"), ev("a"), ev("a", "198.51.100.1")], False),
    ("value_count", "[rule_a]", "  condition: {field: user, gte: 2}",
     [ev("a", user="x"), ev("a", user="y")], True),
    ("value_count", "[rule_a]", "  condition: {field: user, gte: 2}",
     [ev("a", user="x"), ev("a", user="x")], False),
    ("value_count", "[rule_a]", "  condition: {field: [user], gte: 2}",  # Sigma's list form, one field
     [ev("a", user="x"), ev("a", user="y")], True),
    ("temporal", "[rule_a, rule_b]", "", [ev("b"), ev("a")], True),
    ("temporal", "[rule_a, rule_b]", "", [ev("a"), ev("a")], False),
    ("temporal_ordered", "[rule_a, rule_b]", "", [ev("a"), ev("b")], True),
    ("temporal_ordered", "[rule_a, rule_b]", "", [ev("b"), ev("a")], False),
    ("temporal", "[rule_a, rule_b]", "  condition: rule_a and not rule_b", [ev("a")], True),
    ("value_sum", "[rule_a]", "  condition: {field: network.bytes, gt: 100}",
     [ev("a", network={"bytes": 60}), ev("a", network={"bytes": 60})], True),
    ("value_avg", "[rule_a]", "  condition: {field: network.bytes, gt: 100}",
     [ev("a", network={"bytes": 60}), ev("a", network={"bytes": 60})], False),
    ("value_median", "[rule_a]", "  condition: {field: network.bytes, gte: 50}",
     [ev("a", network={"bytes": 10}), ev("a", network={"bytes": 50}), ev("a", network={"bytes": 90})], True),
    ("value_percentile", "[rule_a]", "  condition: {field: network.bytes, percentile: 90, gte: 90}",
     [ev("a", network={"bytes": x}) for x in (10, 20, 30, 40, 90)], True),
])
def test_correlation_types(tmp_path: Path, ctype: str, rules: str, cond: str, events: list, fires: bool) -> None:
    core = core_with(tmp_path, CORR.format(type=ctype, rules=rules, cond=cond))
    got = fire(core, events)
    assert bool(got) is fires
    if fires:
        inc = got[0]
        assert inc.use_cases == ["00000000-0000-4000-8000-0000000000cc"]
        assert inc.explanation[0].correlation["type"] == ctype


def test_a_value_condition_over_several_fields_is_rejected_not_fatal(tmp_path: Path) -> None:
    f = tmp_path / "uc.yml"
    f.write_text(BASE + CORR.format(type="value_count", rules="[rule_a]",
                                    cond="  condition: {field: [user, src.ip], gte: 2}"))
    core = Core(load_usecases(str(f)))  # the other use cases still run
    assert [e.message for e in core.usecases.errors] == ["correlation: condition.field: one field, not 2"]
    assert not core.usecases.correlations and fire(core, [ev("a", user="x"), ev("a", user="y")]) == []


def test_window_expiry(tmp_path: Path) -> None:
    core = core_with(tmp_path, CORR.format(type="event_count", rules="[rule_a]", cond="  condition: {gte: 2}"))
    a1 = alert_from_dict(ev("a"), 0)
    a2 = alert_from_dict(ev("a", http={"url": "/other"}), 1)
    a2.time = a1.time.replace(hour=a1.time.hour + 1)  # an hour later: outside the 5 minute timespan
    core.feed_alerts([a1])
    core.feed_alerts([a2])
    assert not core.take().incidents


def test_tenants_correlate_separately(tmp_path: Path) -> None:
    core = core_with(tmp_path, CORR.format(type="event_count", rules="[rule_a]", cond="  condition: {gte: 2}"))
    assert not fire(core, [ev("a", tenant_id="t1"), ev("a", tenant_id="t2", http={"url": "/x"})])


def test_expiry_keeps_a_group_whose_newest_event_is_still_in_the_window(tmp_path: Path) -> None:
    """A group is dropped when no later event can join it: by its newest event, not its oldest. Events of 203.0.113.1
    at 0 and 25 min, another source's alert moves the clock to 40 min (the first event's 30 minute window has
    closed, the second's has not), then 44 and 50 min: the window 20-50 min holds three events."""
    core = core_with(tmp_path, CORR.format(type="event_count", rules="[rule_a]", cond="  condition: {gte: 3}")
                     .replace("timespan: 5m", "timespan: 30m"))
    core.lateness = timedelta(0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for n, (minute, src) in enumerate([(0, "203.0.113.1"), (25, "203.0.113.1"), (40, "198.51.100.7"),
                                       (44, "203.0.113.1"), (50, "203.0.113.1")]):
        core.feed_alerts([alert_from_dict(ev("a", src, http={"url": f"/{n}"},
                                             time=(t0 + timedelta(minutes=minute)).isoformat()), n)])
    fired = [i for i in core.take().incidents.values() if i.status != "merged"]
    assert len(fired) == 1 and fired[0].alert_count == 3 and fired[0].entities.src_ips == ["203.0.113.1"]
