"""The correlation types behind one interface: a class per Sigma type chosen when a correlation is added, the
hits each type gives (the details incidents carry), and state held only in the mapping the Correlator is given."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule, SigmaCorrelationType

from pipeline.authoring import alert_from_dict
from pipeline.rules import getter
from pipeline.rules.correlate import Correlator
from pipeline.rules.correlation_types import (
    TYPES,
    Correlation,
    EventCount,
    TemporalOrdered,
    ValuePercentile,
    compile_correlation,
)
from pipeline.schema import Alert
from tests.core.test_correlate import BASE, CORR

IDS = {"rule_a": "id-a", "rule_b": "id-b"}  # resolve(): canonical ids of BASE's rules
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rule(ctype: str, rules: str, cond: str) -> SigmaCorrelationRule:
    return SigmaCollection.from_yaml(BASE + CORR.format(type=ctype, rules=rules, cond=cond)).rules[-1]


def resolve(ref: str) -> tuple[str, str | None]:
    return IDS.get(ref, ref), ref if ref in IDS else None


def correlator(ctype: str, rules: str = "[rule_a]", cond: str = "  condition: {gte: 2}",
               state: dict[str, Any] | None = None) -> Correlator:
    c = Correlator(state)
    c.add("corr", rule(ctype, rules, cond), resolve, getter)
    return c


def alert(n: int, src: str = "203.0.113.1", **kw: Any) -> Alert:
    return alert_from_dict({"src": {"ip": src}, "time": (T0 + timedelta(seconds=10 * n)).isoformat(), **kw}, n)


def test_every_sigma_correlation_type_has_its_class() -> None:
    assert set(TYPES) == set(SigmaCorrelationType)
    assert all(cls.sigma_type is t for t, cls in TYPES.items())


@pytest.mark.parametrize(("ctype", "rules", "cond", "cls"), [
    ("event_count", "[rule_a]", "  condition: {gte: 3}", EventCount),
    ("temporal_ordered", "[rule_a, rule_b]", "", TemporalOrdered),
    ("value_percentile", "[rule_a]", "  condition: {field: network.bytes, percentile: 90, gte: 90}",
     ValuePercentile),
])
def test_the_class_is_chosen_when_the_correlation_is_compiled(ctype: str, rules: str, cond: str,
                                                               cls: type[Correlation]) -> None:
    c = compile_correlation("corr", rule(ctype, rules, cond), resolve, getter)
    assert type(c) is cls and c.refs == [IDS[r] for r in rules.strip("[]").split(", ")]


def test_a_temporal_rule_without_condition_needs_every_rule() -> None:
    c = compile_correlation("corr", rule("temporal", "[rule_a, rule_b]", ""), resolve, getter)
    assert c.describe() == "value gte 2" and not c.absence


@pytest.mark.parametrize(("ctype", "rules", "cond", "events", "details"), [
    ("event_count", "[rule_a]", "  condition: {gte: 3}", [("id-a", {})] * 3,
     {"type": "event_count", "value": 3, "condition": "events gte 3"}),
    ("value_count", "[rule_a]", "  condition: {field: user, gte: 2}",
     [("id-a", {"user": "x"}), ("id-a", {"user": "x"}), ("id-a", {"user": "y"})],
     {"type": "value_count", "value": 2, "condition": "distinct values gte 2"}),
    ("temporal", "[rule_a, rule_b]", "", [("id-b", {}), ("id-a", {})],
     {"type": "temporal", "value": 2, "condition": "value gte 2"}),
    ("temporal_ordered", "[rule_a, rule_b]", "", [("id-a", {}), ("id-b", {})],
     {"type": "temporal_ordered", "value": 2, "condition": "value gte 2"}),
    ("value_sum", "[rule_a]", "  condition: {field: network.bytes, gt: 100}",
     [("id-a", {"network": {"bytes": 60}})] * 2, {"type": "value_sum", "value": 120.0, "condition": "value gt 100"}),
    ("value_avg", "[rule_a]", "  condition: {field: network.bytes, gte: 50}",
     [("id-a", {"network": {"bytes": b}}) for b in (40, 60)],
     {"type": "value_avg", "value": 50.0, "condition": "value gte 50"}),
    ("value_median", "[rule_a]", "  condition: {field: network.bytes, gte: 50}",
     [("id-a", {"network": {"bytes": b}}) for b in (10, 50, 90)],
     {"type": "value_median", "value": 50.0, "condition": "value gte 50"}),
    ("value_percentile", "[rule_a]", "  condition: {field: network.bytes, percentile: 90, gte: 90}",
     [("id-a", {"network": {"bytes": b}}) for b in (10, 20, 30, 40, 90)],
     {"type": "value_percentile", "value": 90.0, "condition": "value gte 90"}),
])
def test_each_type_fires_with_its_measure(ctype: str, rules: str, cond: str, events: list, details: dict) -> None:
    c = correlator(ctype, rules, cond)
    hits = [h for n, (ref, kw) in enumerate(events) for h in c.observe(ref, alert(n, **kw))]
    assert len(hits) == 1
    hit = hits[0]
    assert hit.details == {**details, "timespan": 300.0, "events": len(events), "continuation": False}
    assert hit.group == {"src.ip": "203.0.113.1"} and len(hit.alert_ids) == len(set(hit.alert_ids))


def test_an_absence_is_decided_when_the_window_closes() -> None:
    c = correlator("event_count", cond="  condition: {lt: 3}")
    tenant = alert(0).tenant_id
    assert c.observe("id-a", alert(0)) == [] and c.observe("id-a", alert(1)) == []
    assert c.expire({tenant: T0.timestamp() + 300}) == []
    (hit,) = c.expire({tenant: T0.timestamp() + 301})
    assert hit.details["condition"] == "events lt 3" and hit.details["value"] == 2 and not c.state


def test_a_new_type_is_a_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """What adding a type takes: a class in TYPES (here one firing on every other event, in place of event_count)."""

    class EveryOther(Correlation):
        __slots__ = ()
        sigma_type = SigmaCorrelationType.EVENT_COUNT

        def holds(self, ev: list[list[Any]], totals: dict[str, Any]) -> tuple[bool, Any]:
            return len(ev) % 2 == 0, len(ev)

    monkeypatch.setitem(TYPES, SigmaCorrelationType.EVENT_COUNT, EveryOther)
    c = correlator("event_count")
    fired = [bool(c.observe("id-a", alert(n))) for n in range(4)]
    assert fired == [False, True, False, True]


def test_the_state_mapping_holds_all_of_it() -> None:
    """A correlator rebuilt on a copy of another's state (a restart, another worker taking the partition) goes on
    exactly as the first; two correlators on their own state share nothing."""
    cond = "  condition: {field: user, gte: 3}"
    first = correlator("value_count", cond=cond)
    other = correlator("value_count", cond=cond)
    for n, user in enumerate(["x", "y"]):
        first.observe("id-a", alert(n, user=user))
    assert not other.state
    restarted = correlator("value_count", cond=cond, state=copy.deepcopy(dict(first.state)))
    nxt = alert(2, user="z")
    assert first.observe("id-a", nxt) == restarted.observe("id-a", nxt) != []
    assert first.state == restarted.state
