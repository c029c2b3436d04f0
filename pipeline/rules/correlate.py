"""Sigma correlation rules (specification v2) over matched alerts, with explicit windowed state.

State is a mapping `key -> {"ev": [[t, alert_id, ref, value, weight], ...], "fired": bool}` where the key
is tenant + correlation id + group-by values, so a streaming worker can partition it by that key and keep
it in a changelog-backed table; `mdr replay` keeps it in a dict. Times are event times (epoch seconds).

Types: event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile,
value_median. A correlation fires when its condition holds over the events of the last `timespan`; while it
keeps holding, each new event is emitted as a continuation so the open incident absorbs it. Correlations may
reference correlations (chaining): a firing correlation is an event for the ones that reference it.
Conditions `lt`/`lte` (absence) are decided when the window closes (`expire`).
"""

from __future__ import annotations

import bisect
import math
import operator
import statistics
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)

from pipeline.schema import Alert

Getter = Callable[[Alert], Any]
_time = operator.itemgetter(0)  # an event's time
_OPS: dict[SigmaCorrelationConditionOperator, Callable[[float, float], bool]] = {
    SigmaCorrelationConditionOperator.LT: lambda a, b: a < b,
    SigmaCorrelationConditionOperator.LTE: lambda a, b: a <= b,
    SigmaCorrelationConditionOperator.GT: lambda a, b: a > b,
    SigmaCorrelationConditionOperator.GTE: lambda a, b: a >= b,
    SigmaCorrelationConditionOperator.EQ: lambda a, b: a == b,
    SigmaCorrelationConditionOperator.NEQ: lambda a, b: a != b,
}
_ABSENCE = {SigmaCorrelationConditionOperator.LT, SigmaCorrelationConditionOperator.LTE}
_VALUE_TYPES = {
    SigmaCorrelationType.VALUE_COUNT, SigmaCorrelationType.VALUE_SUM, SigmaCorrelationType.VALUE_AVG,
    SigmaCorrelationType.VALUE_PERCENTILE, SigmaCorrelationType.VALUE_MEDIAN,
}


@dataclass(slots=True)
class CorrelationHit:
    """A correlation that fired (or continues to hold) for one group."""

    correlation_id: str
    tenant_id: str
    group: dict[str, Any]
    alert_ids: list[str]  # the alerts this hit adds (all of the window on the first firing)
    first_time: float
    last_time: float
    details: dict[str, Any] = field(default_factory=dict)  # type, count/value, timespan, condition


@dataclass(slots=True)
class _Compiled:
    id: str
    refs: list[str]  # canonical references (ids) of the rules it consumes
    aliases: dict[str, list[str]]  # canonical ref -> alias names
    type: SigmaCorrelationType
    timespan: float
    group_by: list[str]
    group_getters: dict[str, list[Getter]]  # canonical ref -> getters in group_by order
    value_getter: Getter | None
    op: SigmaCorrelationConditionOperator | None
    threshold: float
    percentile: float | None
    expr: Any | None  # extended boolean condition for temporal types
    ref_names: dict[str, str]  # canonical ref -> name used in the extended condition
    type_name: str = ""  # derived: the type's name in a hit, and the condition in words (`_describe`)
    condition: str = ""


def _cond_eval(node: Any, present: set[str]) -> bool:
    if isinstance(node, SigmaRuleReference):
        return node.reference in present
    if isinstance(node, CorrelationConditionAND):
        return all(_cond_eval(a, present) for a in node.args)
    if isinstance(node, CorrelationConditionOR):
        return any(_cond_eval(a, present) for a in node.args)
    if isinstance(node, CorrelationConditionNOT):
        return not _cond_eval(node.args[0], present)
    raise ValueError(f"unsupported correlation condition node {node!r}")


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _one_field(ref: str | list[str]) -> str:
    """The one field a value condition counts over (Sigma allows a list; this engine counts one field)."""
    if isinstance(ref, str):
        return ref
    if len(ref) != 1:
        raise ValueError(f"condition.field: one field, not {len(ref)}")
    return ref[0]


class Correlator:
    """Evaluates correlation rules. Feed it rule matches with `observe`; it returns the hits."""

    def __init__(self, state: MutableMapping[str, Any] | None = None):
        self.state: MutableMapping[str, Any] = state if state is not None else {}
        self._by_ref: dict[str, list[_Compiled]] = {}
        self._compiled: dict[str, _Compiled] = {}

    def add(self, corr_id: str, rule: SigmaCorrelationRule, resolve: Callable[[str], tuple[str, str | None]],
            getter: Callable[[str], Getter]) -> None:
        """Register a correlation. `resolve(ref)` gives (canonical id, name) of a referenced rule;
        `getter(field)` gives an alert-field getter (from the field mapping)."""
        refs: list[str] = []
        names: dict[str, str] = {}
        for r in rule.rules or ():
            cid, name = resolve(str(r.reference))
            refs.append(cid)
            names[cid] = str(r.reference)
            if name:
                names.setdefault(cid, name)
        aliases: dict[str, dict[str, str]] = {}
        for alias, fa in (rule.aliases.aliases.items() if rule.aliases else []):
            for ref, fld in fa.mapping.items():
                cid, _ = resolve(str(ref.reference))
                aliases.setdefault(cid, {})[alias] = fld
        group_by = [str(g) for g in (rule.group_by or [])]
        group_getters = {cid: [getter(aliases.get(cid, {}).get(g, g)) for g in group_by] for cid in refs}
        cond = rule.condition
        op, threshold, percentile, expr, value_getter = None, 0.0, None, None, None
        if isinstance(cond, SigmaExtendedCorrelationCondition):
            expr = cond.parsed
        elif cond is not None:
            op, threshold = cond.op, float(cond.count)
            percentile = float(cond.percentile) if cond.percentile is not None else None
            if cond.fieldref:
                value_getter = getter(_one_field(cond.fieldref))
        if rule.type in _VALUE_TYPES and value_getter is None:
            raise ValueError(f"{rule.type.name.lower()} needs condition.field")
        if rule.type in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED) and op is None \
                and expr is None:
            op, threshold = SigmaCorrelationConditionOperator.GTE, float(len(refs))
        c = _Compiled(corr_id, refs, {k: list(v) for k, v in aliases.items()}, rule.type,
                      float(rule.timespan.seconds), group_by, group_getters, value_getter, op, threshold,
                      percentile, expr, names)
        c.type_name, c.condition = c.type.name.lower(), self._describe(c)
        self._compiled[corr_id] = c
        for cid in dict.fromkeys(refs):
            self._by_ref.setdefault(cid, []).append(c)

    def observe(self, ref: str, alert: Alert, weight: int = 1, group: dict[str, Any] | None = None,
                alert_ids: list[str] | None = None) -> list[CorrelationHit]:
        """One event of rule `ref` (a detection match, or a chained correlation hit carrying `group`)."""
        hits: list[CorrelationHit] = []
        for c in self._by_ref.get(ref, ()):
            hit = self._observe_one(c, ref, alert, weight, group, alert_ids)
            if hit is not None:
                hits.append(hit)
                hits.extend(self.observe(c.id, alert, 1, hit.group, hit.alert_ids))
        return hits

    def _observe_one(self, c: _Compiled, ref: str, alert: Alert, weight: int, group: dict[str, Any] | None,
                     alert_ids: list[str] | None) -> CorrelationHit | None:
        values = ([group.get(g) for g in c.group_by] if group is not None
                  else [g(alert) for g in c.group_getters[ref]])
        if any(v is None or v == "" for v in values):
            return None
        values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in values]
        key = orjson.dumps([alert.tenant_id, c.id, values], default=str).decode()
        t = alert.time.timestamp()
        st = self.state.get(key) or {"ev": [], "fired": False, "n": 0, "vals": {}}
        value = c.value_getter(alert) if c.value_getter is not None else None
        if isinstance(value, list):
            value = value[0] if value else None
        ids = alert_ids if alert_ids is not None else [alert.alert_id]
        ev = st["ev"]
        if not ev or ev[-1][0] <= t:  # in time order (the usual case): no search
            ev.append([t, ids, ref, value, weight])
        else:
            bisect.insort(ev, [t, ids, ref, value, weight], key=_time)
        self._count(st, value, weight, 1)
        horizon = ev[-1][0] - c.timespan
        if ev[0][0] < horizon:
            cut = bisect.bisect_left(ev, horizon, key=_time)
            for e in ev[:cut]:
                self._count(st, e[3], e[4], -1)
            del ev[:cut]
        ok, measure = self._holds(c, ev, st)
        if c.op in _ABSENCE:
            ok = False  # decided at window close
        was = st["fired"]
        st["fired"] = ok
        self.state[key] = st
        if not ok:
            return None
        new_ids = ids if was else list(dict.fromkeys(i for e in ev for i in e[1]))
        return CorrelationHit(
            c.id, alert.tenant_id, dict(zip(c.group_by, values, strict=True)), new_ids, ev[0][0], ev[-1][0],
            {"type": c.type_name, "value": measure, "timespan": c.timespan,
             "condition": c.condition, "events": len(ev), "continuation": was},
        )

    @staticmethod
    def _count(st: dict[str, Any], value: Any, weight: int, sign: int) -> None:
        """Running totals of a window (event weight, distinct values), so a condition costs O(1) per event."""
        st["n"] = st.get("n", 0) + sign * weight
        if value is not None:
            vals = st.setdefault("vals", {})
            k = orjson.dumps(value, default=str).decode()
            left = vals.get(k, 0) + sign
            if left > 0:
                vals[k] = left
            else:
                vals.pop(k, None)

    def _holds(self, c: _Compiled, ev: list[list[Any]], st: dict[str, Any]) -> tuple[bool, Any]:
        t = c.type
        if t == SigmaCorrelationType.EVENT_COUNT:
            n = st["n"]
            return _OPS[c.op](n, c.threshold), n  # type: ignore[index]  # op is set for this type
        if t == SigmaCorrelationType.VALUE_COUNT:
            n = len(st["vals"])
            return _OPS[c.op](n, c.threshold), n  # type: ignore[index]  # as above
        if t in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED):
            if t == SigmaCorrelationType.TEMPORAL_ORDERED:
                seen = self._ordered_prefix(c.refs, ev)
            else:
                seen = {e[2] for e in ev}
            if c.expr is not None:
                present = {c.ref_names.get(r, r) for r in seen} | seen
                return _cond_eval(c.expr, present), sorted(seen)
            n = len(seen & set(c.refs))
            return _OPS[c.op](n, c.threshold), n  # type: ignore[index]  # as above
        nums = [x for x in (_number(e[3]) for e in ev) if x is not None]
        if not nums:
            return False, None
        if t == SigmaCorrelationType.VALUE_SUM:
            v = sum(nums)
        elif t == SigmaCorrelationType.VALUE_AVG:
            v = sum(nums) / len(nums)
        elif t == SigmaCorrelationType.VALUE_MEDIAN:
            v = statistics.median(nums)
        else:  # percentile, nearest-rank
            p = c.percentile if c.percentile is not None else 50.0
            s = sorted(nums)
            v = s[max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))]
        return _OPS[c.op](v, c.threshold), v  # type: ignore[index]  # as above

    @staticmethod
    def _ordered_prefix(refs: list[str], ev: list[list[Any]]) -> set[str]:
        """Refs matched in order (longest prefix of `refs` found as a time-ordered subsequence)."""
        i = 0
        for e in ev:
            if i < len(refs) and e[2] == refs[i]:
                i += 1
        return set(refs[:i])

    @staticmethod
    def _describe(c: _Compiled) -> str:
        if c.expr is not None:
            return str(c.expr)
        what = {"value_count": "distinct values", "event_count": "events"}.get(c.type.name.lower(), "value")
        return f"{what} {c.op.name.lower() if c.op else '?'} {c.threshold:g}"

    def expire(self, cut: Mapping[str, float]) -> list[CorrelationHit]:
        """Drop the groups no later event can join: their newest event is more than the timespan before their
        tenant's time in `cut` (epoch seconds; tenants not in it keep theirs). An absence condition (lt/lte) is
        decided when the window of the group's first event closes. Reading does not write: a table behind
        `state` sees only the groups dropped."""
        hits: list[CorrelationHit] = []
        for key, st in list(self.state.items()):
            ev = st["ev"]
            if not ev:
                continue
            tenant, cid, values = orjson.loads(key)
            horizon = cut.get(tenant)
            if horizon is None:
                continue
            c = self._compiled.get(cid)
            if c is None:
                del self.state[key]
                continue
            absence = c.op in _ABSENCE
            if (ev[0][0] if absence else ev[-1][0]) + c.timespan >= horizon:
                continue
            if absence:
                ok, measure = self._holds(c, ev, st)
                if ok:
                    hits.append(CorrelationHit(
                        c.id, tenant, dict(zip(c.group_by, values, strict=True)),
                        list(dict.fromkeys(i for e in ev for i in e[1])), ev[0][0], ev[-1][0],
                        {"type": c.type_name, "value": measure, "timespan": c.timespan,
                         "condition": c.condition, "events": len(ev), "continuation": False}))
            del self.state[key]
        return hits
