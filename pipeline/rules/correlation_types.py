"""Sigma correlation types (specification v2): one class per type behind one interface.

`compile_correlation` turns a `SigmaCorrelationRule` into the `Correlation` subclass of its type, once, when the
use cases load. The subclass decides one thing, `holds(events, totals)`: whether the condition holds over a
group's window, and the measure it compared. The window itself (events in time order, running totals, expiry)
is the Correlator's and the same for every type (correlate.py). Adding a type is adding a class to `TYPES`.

    event_count       events in the window                       EventCount
    value_count       distinct values of condition.field         ValueCount
    temporal          which referenced rules fired (any order)   Temporal
    temporal_ordered  ... in the order the rule lists them       TemporalOrdered
    value_sum / value_avg / value_median / value_percentile      ValueSum, ValueAvg, ValueMedian, ValuePercentile

A correlation holds no state: a group's window lives in the Correlator's state mapping (per partition).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

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

from pipeline.rules.values import Getter

Op = SigmaCorrelationConditionOperator
Event = list[Any]  # [event time (epoch s), alert ids, ref, value, weight]

_OPS: dict[Op, Callable[[float, float], bool]] = {
    Op.LT: lambda a, b: a < b,
    Op.LTE: lambda a, b: a <= b,
    Op.GT: lambda a, b: a > b,
    Op.GTE: lambda a, b: a >= b,
    Op.EQ: lambda a, b: a == b,
    Op.NEQ: lambda a, b: a != b,
}
_ABSENCE = {Op.LT, Op.LTE}


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
class Correlation:
    """One compiled correlation rule: what every type shares. A subclass per Sigma type implements `holds`."""

    sigma_type: ClassVar[SigmaCorrelationType]
    measured: ClassVar[str] = "value"  # what a threshold condition counts, in `describe`
    needs_field: ClassVar[bool] = False  # the condition names the field whose values it measures

    id: str
    refs: list[str]  # canonical references (ids) of the rules it consumes
    aliases: dict[str, list[str]]  # canonical ref -> alias names
    timespan: float
    group_by: list[str]
    group_getters: dict[str, list[Getter]]  # canonical ref -> getters in group_by order
    value_getter: Getter | None
    op: Op | None
    threshold: float
    percentile: float | None
    expr: Any | None  # extended boolean condition for temporal types
    ref_names: dict[str, str]  # canonical ref -> name used in the extended condition
    absence: bool = False  # lt/lte: decided when the window closes, not as events arrive
    condition: str = ""  # `describe()`, computed once (a hit carries it)
    type_name: str = ""  # the Sigma type's name (`event_count`), computed once (a hit carries it)
    _test: Callable[[float, float], bool] | None = None  # `_OPS[op]`, looked up once (an Enum hashes in Python)

    def __post_init__(self) -> None:
        self.condition = self.describe()
        self.type_name = self.sigma_type.name.lower()
        self._test = _OPS.get(self.op) if self.op is not None else None

    @classmethod
    def default_condition(cls, refs: list[str]) -> tuple[Op | None, float]:
        """The condition of a rule that states none: (operator, threshold)."""
        return None, 0.0

    def holds(self, ev: list[Event], totals: dict[str, Any]) -> tuple[bool, Any]:
        """Whether the condition holds over a group's window (`ev` in time order; `totals`: the window's
        running event weight `n` and distinct values `vals`), and the measure compared."""
        raise NotImplementedError

    def compare(self, measure: float) -> bool:
        return self._test(measure, self.threshold)  # type: ignore[misc]  # set for every type that compares

    def describe(self) -> str:
        if self.expr is not None:
            return str(self.expr)
        return f"{self.measured} {self.op.name.lower() if self.op else '?'} {self.threshold:g}"

    def hit(self, tenant: str, values: list[Any], alert_ids: list[str], ev: list[Event], measure: Any,
            continuation: bool) -> CorrelationHit:
        return CorrelationHit(
            self.id, tenant, dict(zip(self.group_by, values, strict=True)), alert_ids, ev[0][0], ev[-1][0],
            {"type": self.type_name, "value": measure, "timespan": self.timespan, "condition": self.condition,
             "events": len(ev), "continuation": continuation})


class EventCount(Correlation):
    __slots__ = ()
    sigma_type = SigmaCorrelationType.EVENT_COUNT
    measured = "events"

    def holds(self, ev: list[Event], totals: dict[str, Any]) -> tuple[bool, Any]:
        n = totals["n"]
        return self.compare(n), n


class ValueCount(Correlation):
    __slots__ = ()
    sigma_type = SigmaCorrelationType.VALUE_COUNT
    measured = "distinct values"
    needs_field = True

    def holds(self, ev: list[Event], totals: dict[str, Any]) -> tuple[bool, Any]:
        n = len(totals["vals"])
        return self.compare(n), n


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


class Temporal(Correlation):
    """The referenced rules that fired in the window, in any order; by default all of them."""

    __slots__ = ()
    sigma_type = SigmaCorrelationType.TEMPORAL

    @classmethod
    def default_condition(cls, refs: list[str]) -> tuple[Op | None, float]:
        return Op.GTE, float(len(refs))

    def seen(self, ev: list[Event]) -> set[str]:
        return {e[2] for e in ev}

    def holds(self, ev: list[Event], totals: dict[str, Any]) -> tuple[bool, Any]:
        seen = self.seen(ev)
        if self.expr is not None:
            present = {self.ref_names.get(r, r) for r in seen} | seen
            return _cond_eval(self.expr, present), sorted(seen)
        n = len(seen & set(self.refs))
        return self.compare(n), n


class TemporalOrdered(Temporal):
    """Temporal, counting only the referenced rules that fired in the order the rule lists them."""

    __slots__ = ()
    sigma_type = SigmaCorrelationType.TEMPORAL_ORDERED

    def seen(self, ev: list[Event]) -> set[str]:
        """The longest prefix of `refs` found as a time-ordered subsequence of the window."""
        refs, i = self.refs, 0
        for e in ev:
            if i < len(refs) and e[2] == refs[i]:
                i += 1
        return set(refs[:i])


def _number(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


class ValueAggregate(Correlation):
    """A numeric aggregate of condition.field over the window's events (values that are not numbers skipped)."""

    __slots__ = ()
    needs_field = True

    def aggregate(self, nums: list[float]) -> float:
        raise NotImplementedError

    def holds(self, ev: list[Event], totals: dict[str, Any]) -> tuple[bool, Any]:
        nums = [x for x in (_number(e[3]) for e in ev) if x is not None]
        if not nums:
            return False, None
        v = self.aggregate(nums)
        return self.compare(v), v


class ValueSum(ValueAggregate):
    __slots__ = ()
    sigma_type = SigmaCorrelationType.VALUE_SUM

    def aggregate(self, nums: list[float]) -> float:
        return sum(nums)


class ValueAvg(ValueAggregate):
    __slots__ = ()
    sigma_type = SigmaCorrelationType.VALUE_AVG

    def aggregate(self, nums: list[float]) -> float:
        return sum(nums) / len(nums)


class ValueMedian(ValueAggregate):
    __slots__ = ()
    sigma_type = SigmaCorrelationType.VALUE_MEDIAN

    def aggregate(self, nums: list[float]) -> float:
        return statistics.median(nums)


class ValuePercentile(ValueAggregate):
    """Nearest-rank percentile (condition.percentile, 50 when absent)."""

    __slots__ = ()
    sigma_type = SigmaCorrelationType.VALUE_PERCENTILE

    def aggregate(self, nums: list[float]) -> float:
        p = self.percentile if self.percentile is not None else 50.0
        s = sorted(nums)
        return s[max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))]


TYPES: dict[SigmaCorrelationType, type[Correlation]] = {
    k.sigma_type: k for k in (EventCount, ValueCount, Temporal, TemporalOrdered, ValueSum, ValueAvg, ValueMedian,
                              ValuePercentile)
}


def _one_field(ref: str | list[str]) -> str:
    """The one field a value condition counts over (Sigma allows a list; this engine counts one field)."""
    if isinstance(ref, str):
        return ref
    if len(ref) != 1:
        raise ValueError(f"condition.field: one field, not {len(ref)}")
    return ref[0]


def compile_correlation(corr_id: str, rule: SigmaCorrelationRule, resolve: Callable[[str], tuple[str, str | None]],
                        getter: Callable[[str], Getter]) -> Correlation:
    """The Correlation of a rule. `resolve(ref)` gives (canonical id, name) of a referenced rule; `getter(field)`
    an alert-field getter. ValueError for a type without a class or a condition the type cannot evaluate."""
    kind = TYPES.get(rule.type)
    if kind is None:
        raise ValueError(f"unsupported correlation type {rule.type.name.lower()}")
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
    if kind.needs_field and value_getter is None:
        raise ValueError(f"{rule.type.name.lower()} needs condition.field")
    if op is None and expr is None:
        op, threshold = kind.default_condition(refs)
    return kind(id=corr_id, refs=refs, aliases={k: list(v) for k, v in aliases.items()},
                timespan=float(rule.timespan.seconds), group_by=group_by, group_getters=group_getters,
                value_getter=value_getter, op=op, threshold=threshold, percentile=percentile, expr=expr,
                ref_names=names, absence=op in _ABSENCE)
