"""Sigma correlation rules (specification v2) over matched alerts, with explicit windowed state.

State is a mapping `key -> {"ev": [[t, alert_ids, ref, value, weight], ...], "fired": bool, "n": weight,
"vals": {value: events}}` where the key is tenant + correlation id + group-by values, so a streaming worker can
partition it by that key and keep it in a changelog-backed table; `mdr replay` keeps it in a dict. Times are
event times (epoch seconds).

The Correlator keeps each group's window (events in time order, running totals, expiry), the same for every
type; what a type decides, whether its condition holds over the window, is its class in correlation_types.py,
chosen once when the correlation is added. A correlation fires when its condition holds over the events of the
last `timespan`; while it keeps holding, each new event is emitted as a continuation so the open incident
absorbs it. Correlations may reference correlations (chaining): a firing correlation is an event for the ones
that reference it. Conditions `lt`/`lte` (absence) are decided when the window closes (`expire`).
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import orjson
from sigma.correlations import SigmaCorrelationRule

from pipeline.rules.correlation_types import Correlation, CorrelationHit, compile_correlation
from pipeline.rules.values import Getter
from pipeline.schema import Alert

__all__ = ["CorrelationHit", "Correlator"]
_time = operator.itemgetter(0)  # an event's time


def _window_ids(ev: list[list[Any]]) -> list[str]:
    """Every alert id of a window, once, in event order."""
    return list(dict.fromkeys(i for e in ev for i in e[1]))


class Correlator:
    """Evaluates correlation rules. Feed it rule matches with `observe`; it returns the hits."""

    def __init__(self, state: MutableMapping[str, Any] | None = None):
        self.state: MutableMapping[str, Any] = state if state is not None else {}
        self._by_ref: dict[str, list[Correlation]] = {}
        self._compiled: dict[str, Correlation] = {}

    def add(self, corr_id: str, rule: SigmaCorrelationRule, resolve: Callable[[str], tuple[str, str | None]],
            getter: Callable[[str], Getter]) -> None:
        """Register a correlation. `resolve(ref)` gives (canonical id, name) of a referenced rule;
        `getter(field)` gives an alert-field getter (from the field mapping)."""
        c = compile_correlation(corr_id, rule, resolve, getter)
        self._compiled[corr_id] = c
        for cid in dict.fromkeys(c.refs):
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

    def _observe_one(self, c: Correlation, ref: str, alert: Alert, weight: int, group: dict[str, Any] | None,
                     alert_ids: list[str] | None) -> CorrelationHit | None:
        values = ([group.get(g) for g in c.group_by] if group is not None
                  else [g(alert) for g in c.group_getters[ref]])
        if None in values or "" in values:  # a group-by field the alert lacks
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
        ok, measure = c.holds(ev, st)
        if c.absence:
            ok = False  # decided at window close
        was = st["fired"]
        st["fired"] = ok
        self.state[key] = st
        if not ok:
            return None
        new_ids = ids if was else _window_ids(ev)
        return c.hit(alert.tenant_id, values, new_ids, ev, measure, was)

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
            if (ev[0][0] if c.absence else ev[-1][0]) + c.timespan >= horizon:
                continue
            if c.absence:
                ok, measure = c.holds(ev, st)
                if ok:
                    hits.append(c.hit(tenant, values, _window_ids(ev), ev, measure, False))
            del self.state[key]
        return hits
