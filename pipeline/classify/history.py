"""Streaming state of the noise classifier: per-source alert history and per-tenant rule frequencies.

Semantics: an alert at event time t sees exactly the alerts of its key with time < t (strictly earlier, so alerts
with equal times never depend on arrival order). Callers process alerts in event-time order (replay sorts, the
feature extractor sorts each batch), so replay and a streaming worker fed one source's alerts in order compute
the same values. An alert that arrives after a later one of its key (out of order) sees what arrived before it
and is inserted at its time position; the later alerts keep the values they already had.

The state is two plain mappings (`ClassifierState`) that an adapter may back with tables partitioned by key:
`sources` keyed `tenant \\x1f source`, `tenants` keyed by tenant. Values are reassigned after every update, so
table-backed mappings persist them.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from itertools import repeat

WINDOWS = (300.0, 3600.0)
WINDOW_NAMES = ("5m", "1h")
GAP_CAP = 86400.0
RARITY_TAU = 86400.0  # time constant of the tenant rule frequencies
RARITY_STEP = 60.0  # decay is applied in steps of this many seconds
HISTORY_FEATURES = (*(f"src_{kind}_{w}" for w in WINDOW_NAMES for kind in ("alerts", "rules", "targets")),
                    "src_gap")
NO_HISTORY = [0.0] * (len(HISTORY_FEATURES) - 1) + [math.log1p(GAP_CAP)]
_COMPACT = 256


class SourceHistory:
    """One source's alerts in the last `WINDOWS`: log1p(count), distinct primary rules, distinct targets, and
    log1p(seconds since its previous alert) (`HISTORY_FEATURES` order).

    Committed entries (older than the newest time seen) stay sorted for the longest window; each window keeps
    its start index and multisets of rules and targets, so an in-order alert costs O(1) amortized. Entries at
    the newest time wait in `pend` until a later time arrives."""

    __slots__ = ("lo", "pend", "pend_t", "rc", "rules", "targets", "tc", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.rules: list[str] = []
        self.targets: list[str] = []
        self.lo = [0] * len(WINDOWS)
        self.rc: list[dict[str, int]] = [{} for _ in WINDOWS]  # rule -> entries in the window
        self.tc: list[dict[str, int]] = [{} for _ in WINDOWS]  # target -> entries in the window
        self.pend: list[tuple[str, str]] = []
        self.pend_t = -math.inf

    def observe(self, t: float, rule: str, target: str, record: bool = True) -> list[float]:
        """Features of an alert at time t, then record it (unless `record` is false: a look without a trace)."""
        if t < self.pend_t:
            return self._late(t, rule, target, record)
        if t > self.pend_t:
            if self.pend:
                for r, tg in self.pend:
                    self._append(self.pend_t, r, tg)
                self.pend = []
            self.pend_t = t
        out: list[float] = []
        times, rules, targets, n = self.times, self.rules, self.targets, len(self.times)
        los = self.lo
        for w, (span, rc, tc) in enumerate(zip(WINDOWS, self.rc, self.tc, strict=True)):
            lo, cut = los[w], t - span
            while lo < n and times[lo] < cut:
                _drop(rc, rules[lo])
                _drop(tc, targets[lo])
                lo += 1
            los[w] = lo
            out += (math.log1p(n - lo), float(len(rc)), float(len(tc)))
        out.append(math.log1p(min(t - times[-1], GAP_CAP) if n else GAP_CAP))
        if record:
            self.pend.append((rule, target))
        if self.lo[-1] >= _COMPACT:
            k = self.lo[-1]
            del self.times[:k], self.rules[:k], self.targets[:k]
            self.lo = [x - k for x in self.lo]
        return out

    def _append(self, t: float, rule: str, target: str) -> None:
        self.times.append(t)
        self.rules.append(rule)
        self.targets.append(target)
        for rc, tc in zip(self.rc, self.tc, strict=True):
            rc[rule] = rc.get(rule, 0) + 1
            tc[target] = tc.get(target, 0) + 1

    def _late(self, t: float, rule: str, target: str, record: bool) -> list[float]:
        """An out-of-order alert: scan the committed entries, then insert it at its time position."""
        out: list[float] = []
        hi = bisect_left(self.times, t)
        for span in WINDOWS:
            lo = bisect_left(self.times, t - span, 0, hi)
            out += (math.log1p(hi - lo), float(len(set(self.rules[lo:hi]))),
                    float(len(set(self.targets[lo:hi]))))
        out.append(math.log1p(min(t - self.times[hi - 1], GAP_CAP) if hi else GAP_CAP))
        if not record:
            return out
        i = bisect_right(self.times, t)
        self.times.insert(i, t)
        self.rules.insert(i, rule)
        self.targets.insert(i, target)
        for w in range(len(WINDOWS)):
            if i < self.lo[w]:
                self.lo[w] += 1
            else:  # inside the window, or just before it: the next in-order alert evicts it then
                self.rc[w][rule] = self.rc[w].get(rule, 0) + 1
                self.tc[w][target] = self.tc[w].get(target, 0) + 1
        return out

    def newest(self) -> float:
        return self.pend_t if self.pend else (self.times[-1] if self.times else -math.inf)


def _drop(c: dict[str, int], key: str) -> None:
    v = c[key] - 1
    if v:
        c[key] = v
    else:
        del c[key]


class TenantRules:
    """A tenant's rule frequencies, decayed in event time (time constant `RARITY_TAU`, in `RARITY_STEP` steps).

    Rarity of a rule = log(1 + decayed tenant alerts) - log(1 + decayed tenant alerts carrying the rule). Counts
    are kept in units of the current step: an alert adds 1 to each of its rules, and crossing k steps multiplies
    everything by exp(-k * RARITY_STEP / RARITY_TAU). Alerts at the newest time wait in `pend` (strictly-earlier
    semantics). A late alert is added with its own step's weight but sees the counts as they stand, later alerts
    included (a documented approximation for out-of-order input)."""

    __slots__ = ("counts", "pend", "pend_t", "step", "total")

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}
        self.total = 0.0
        self.step: int | None = None
        self.pend: list[tuple[str, ...]] = []
        self.pend_t = -math.inf

    def observe(self, t: float, rules: tuple[str, ...], record: bool = True) -> tuple[float, float]:
        """(rarity of the first rule, rarity of the rarest rule) at time t, then record the alert (if `record`)."""
        if t > self.pend_t:
            c = self.counts
            for rules_ in self.pend:
                for r in rules_:
                    c[r] = c.get(r, 0.0) + 1.0
            self.total += len(self.pend)
            self.pend = []
            self.pend_t = t
            step = int(t // RARITY_STEP)
            if step != self.step:
                self._advance(step)
        if rules:
            base = math.log1p(self.total)
            seen = list(map(self.counts.get, rules, repeat(0.0)))
            first, rarest = base - math.log1p(seen[0]), base - math.log1p(min(seen))
        else:
            first = rarest = 0.0
        if record and t < self.pend_t:
            w = math.exp(-(self.step - int(t // RARITY_STEP)) * RARITY_STEP / RARITY_TAU)  # type: ignore[operator]  # t is a number here
            for r in rules:
                self.counts[r] = self.counts.get(r, 0.0) + w
            self.total += w
        elif record:
            self.pend.append(rules)
        return first, rarest

    def _advance(self, step: int) -> None:
        if self.step is not None and step > self.step:
            f = math.exp(-(step - self.step) * RARITY_STEP / RARITY_TAU)
            self.counts = {k: v * f for k, v in self.counts.items() if v * f > 1e-6}
            self.total *= f
        if self.step is None or step > self.step:
            self.step = step


@dataclass(slots=True)
class ClassifierState:
    """The classifier's streaming state, as plain mappings an adapter may back with partitioned tables."""

    sources: MutableMapping[str, SourceHistory] = field(default_factory=dict)  # tenant \x1f source
    tenants: MutableMapping[str, TenantRules] = field(default_factory=dict)  # tenant

    def expire(self, now: float) -> int:
        """Drop the histories of sources quiet for more than `GAP_CAP` before event time `now`: their features
        are then those of a new source, so expiring never changes a result. Returns how many were dropped."""
        idle = [k for k, h in self.sources.items() if h.newest() < now - GAP_CAP]
        for k in idle:
            del self.sources[k]
        return len(idle)
