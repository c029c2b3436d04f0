"""Fusion: incidents that are parts of one attack become one incident.

Three links, each within `window` (default 1 h) and inside one tenant:
- same category, same actor: incidents of one category that share a source address (an SSH brute force
  and the account guessing and the fail2ban ban of the same source; two scan use cases for one scanner);
- compromise incidents (webshell, malware, defacement, c2, account compromise) that share an asset or a file
  (auditd, AIDE and ClamAV each see part of one webshell drop);
- a compromise absorbs web-attack campaigns against the same asset (the attacker's web activity minutes
  before the webshell appeared), so the fused incident names the actor.
Scans, exploits and brute force of different categories stay incidents of their own (their playbooks differ).

The earliest incident of the highest-ranked category survives and keeps its id; the others are emitted once
more with status `merged` and `merged_into`. Later alerts of a merged incident flow into its survivor.
State: the incidents of the fusion window, keyed by incident id (the worker partitions it by tenant).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from datetime import datetime, timedelta

import msgspec

from pipeline.context.priority import ESCORT_SUFFIX
from pipeline.core.incidents import (
    MAX_ENTITIES,
    MAX_IDS,
    IdSets,
    _add,
    add_alert_ids,
    merge_outcome,
)
from pipeline.schema import CATEGORY_CLASS, FusedPart, Incident, MatchExplanation, network_c2

# Compromise categories, most telling first: the survivor of a fusion takes the first category present.
COMPROMISE = ("webshell", "account_compromise", "c2", "malware", "defacement")
ABSORBED = frozenset({"web_attack"})
DEFAULT_WINDOW = 3600.0


def _assets(inc: Incident, with_files: bool) -> set[str]:
    """Asset keys of an incident. Network-only C2 (an IDS saw a host beacon or look up a C2 domain) is about
    its source host, not the server it talked to."""
    if network_c2(inc):
        return {f"h:{h}" for h in inc.entities.hosts}
    keys = {f"h:{h}" for h in inc.entities.hosts}
    if with_files:
        keys |= {f"f:{f}" for f in inc.entities.files}
    return keys


def _extend(lst: list[str], values: list[str], cap: int = MAX_ENTITIES, have: set[str] | None = None) -> None:
    """Append the values not yet in `lst` (order kept, up to `cap`): one set build, not a scan per value.
    `have`, when given, is the set of `lst` (it is kept up to date)."""
    if len(lst) >= cap or values is lst:
        return
    if have is None:
        have = set(lst)
    for v in values:
        if v not in have:
            lst.append(v)
            have.add(v)
            if len(lst) >= cap:
                return


def _record(survivor: Incident, part: Incident) -> None:
    """Record in the survivor what it merged: `part`, and the parts `part` had merged before (once each;
    `prioritize` reads the record)."""
    have = {p.incident_id for p in survivor.fused}
    if part.incident_id not in have:
        survivor.fused.append(FusedPart(incident_id=part.incident_id, title=ESCORT_SUFFIX.sub("", part.title),
                                        category=part.category, base_priority=part.base_priority,
                                        use_cases=list(part.use_cases)))
    survivor.fused.extend(msgspec.structs.replace(p) for p in part.fused
                          if p.incident_id not in have and p.incident_id != survivor.incident_id)


def _rank(inc: Incident) -> tuple[int, datetime, str]:
    cat = COMPROMISE.index(inc.category) if inc.category in COMPROMISE else len(COMPROMISE)
    return cat, inc.first_seen, inc.incident_id


def related(a: Incident, b: Incident, source_sets: IdSets) -> bool:
    """Whether two incidents (already known to be close in time) are parts of one attack. Never across
    tenants. `source_sets`: membership sets of the incidents' source-address lists."""
    if a.tenant_id != b.tenant_id:
        return False
    if a.category == b.category and a.entities.src_ips and b.entities.src_ips and not \
            source_sets.of_list(a.incident_id, a.entities.src_ips).isdisjoint(
                source_sets.of_list(b.incident_id, b.entities.src_ips)):
        return True
    a_comp, b_comp = a.category in COMPROMISE, b.category in COMPROMISE
    if a_comp and b_comp:
        return bool(_assets(a, True) & _assets(b, True))
    if (a_comp and b.category in ABSORBED) or (b_comp and a.category in ABSORBED):
        return bool(_assets(a, False) & _assets(b, False))
    return False


class Fusion:
    """Fuses the incidents of `state` (incident id -> incident). Besides the state it keeps derived caches
    (membership sets, what was merged already), its own: forgetting them changes no result."""

    def __init__(self, window: float = DEFAULT_WINDOW, state: MutableMapping[str, Incident] | None = None,
                 idsets: IdSets | None = None):
        self.window = timedelta(seconds=window)
        self.incidents: MutableMapping[str, Incident] = state if state is not None else {}
        self._live: dict[str, dict[str, Incident]] | None = None  # tenant -> its unmerged incidents (derived)
        self.idsets = idsets if idsets is not None else IdSets()  # of the incidents' alert-id lists
        self.source_sets = IdSets()  # of the incidents' source-address lists
        self.explanation_sets = IdSets()  # of the explanations' alert-id lists
        self._merged: dict[str, tuple[list[str], int]] = {}  # merge key -> (a part's id list, how much was merged)

    def _candidates(self, tenant: str) -> dict[str, Incident]:
        """The tenant's unmerged incidents; an index derived from `incidents` (built on first use, kept up to
        date here), read without touching the state mapping."""
        if self._live is None:
            self._live = {}
            for o in self.incidents.values():
                if not o.merged_into:
                    self._live.setdefault(o.tenant_id, {})[o.incident_id] = o
        return self._live.setdefault(tenant, {})

    def _put(self, inc: Incident) -> None:
        self.incidents[inc.incident_id] = inc
        live = self._candidates(inc.tenant_id)
        if inc.merged_into:
            live.pop(inc.incident_id, None)
        else:
            live[inc.incident_id] = inc

    def _near(self, a: Incident, b: Incident) -> bool:
        return a.first_seen - b.last_seen <= self.window and b.first_seen - a.last_seen <= self.window

    def fuse(self, inc: Incident) -> list[Incident]:
        """Take an incident update; returns the incidents whose state changed (including `inc`)."""
        self._put(inc)
        if inc.merged_into:
            survivor = self.incidents.get(inc.merged_into)
            if survivor is None:
                return [inc]
            self._merge(survivor, inc)
            return [inc, survivor]
        group = [inc, *sorted((o for o in self._candidates(inc.tenant_id).values()
                               if o is not inc and self._near(inc, o) and related(inc, o, self.source_sets)),
                              key=_rank)]
        if len(group) == 1:
            return [inc]
        survivor = min(group, key=_rank)
        changed = [survivor]
        for other in group:
            if other is not survivor:
                self._merge(survivor, other)
                changed.append(other)
                for sub_id in other.fused_from:  # parts it had absorbed move along
                    sub = self.incidents.get(sub_id)
                    if sub is not None and sub is not survivor:
                        sub.merged_into = survivor.incident_id
                        self._candidates(sub.tenant_id).pop(sub_id, None)
                        survivor.fused_counts.setdefault(sub_id, 0)
                        _add(survivor.fused_from, sub_id)
        return changed

    def _merge(self, survivor: Incident, other: Incident) -> None:
        """Fold `other` into `survivor` (idempotent: re-merging an updated incident adds only what is new)."""
        pair = f"{survivor.incident_id}\x1f{other.incident_id}"
        add_alert_ids(survivor, self._new_tail(pair, other.alert_ids), self.idsets)
        own_parts = other.fused_counts.get(other.incident_id, None)
        count = other.alert_count if own_parts is None else own_parts
        survivor.alert_count += count - survivor.fused_counts.get(other.incident_id, 0)
        survivor.fused_counts[other.incident_id] = count
        if other.incident_id not in survivor.fused_from:
            survivor.fused_from.append(other.incident_id)
        _record(survivor, other)
        _extend(survivor.use_cases, other.use_cases)
        self._merge_explanations(survivor.explanation, other.explanation, pair)
        for k, vals in other.sources.items():
            _extend(survivor.sources.setdefault(k, []), vals)
        for name in ("src_ips", "dst_ips", "hosts", "users", "files", "urls", "processes", "domains"):
            _extend(getattr(survivor.entities, name), getattr(other.entities, name))
        _extend(survivor.attack, other.attack)
        survivor.first_seen = min(survivor.first_seen, other.first_seen)
        if other.detected_at is not None:  # the attack was known from its first detected part on
            survivor.detected_at = min(survivor.detected_at or other.detected_at, other.detected_at)
        survivor.last_seen = max(survivor.last_seen, other.last_seen)
        survivor.outcome = merge_outcome(survivor.outcome, other.outcome)
        if survivor.asset is None:
            survivor.asset = other.asset
        seen = {(h.indicator, h.field) for h in survivor.intel}
        survivor.intel.extend(h for h in other.intel if (h.indicator, h.field) not in seen)
        for cat in (survivor.category, *other.stages, other.category):
            _add(survivor.stages, cat)
        self._retitle(survivor)
        survivor.version += 1
        other.status = "merged"
        other.merged_into = survivor.incident_id
        other.version += 1
        self._put(survivor)
        self._put(other)

    def _retitle(self, survivor: Incident) -> None:
        """A fused compromise is named for the asset and every stage it holds."""
        stages = survivor.stages
        if survivor.category not in COMPROMISE or len(stages) == 1:
            return
        asset = next((h for h in survivor.entities.hosts), "unknown asset")
        actors = ", ".join(survivor.entities.src_ips[:3])
        survivor.title = (f"Compromise of {asset}: {' + '.join(s.replace('_', ' ') for s in stages)}"
                          + (f" (actor {actors})" if actors else ""))
        survivor.class_ = CATEGORY_CLASS[survivor.category]

    def expire(self, cut: Mapping[str, datetime]) -> None:
        """Forget the incidents quiet for longer than the window before their tenant's time in `cut` (tenants
        not in it keep theirs)."""
        gone = [i for i, inc in self.incidents.items()
                if inc.tenant_id in cut and cut[inc.tenant_id] - inc.last_seen > self.window]
        for iid in gone:
            inc = self.incidents.pop(iid)
            if self._live is not None:
                self._live.get(inc.tenant_id, {}).pop(iid, None)
            self.idsets.forget(iid)
            self.source_sets.forget(iid)
        if gone:
            self._forget_pairs(set(gone))

    def _forget_pairs(self, gone: set[str]) -> None:
        """Drop what the merge caches hold for pairs with an incident that left (they hold its id lists)."""
        def stale(key: str) -> bool:
            survivor, other = key.split("\x1f", 2)[:2]
            return survivor in gone or other in gone

        for key in [k for k in self._merged if stale(k)]:
            del self._merged[key]
        self.explanation_sets.forget_if(stale)

    def _new_tail(self, key: str, ids: list[str]) -> list[str]:
        """The part of `ids` (a list that only grows) not merged under `key` before; all of it when the list is
        not the one seen last time (a restart, a new incident). A cache: forgetting it changes no result."""
        merged = self._merged
        hit = merged.get(key)
        start = hit[1] if hit is not None and hit[0] is ids and hit[1] <= len(ids) else 0
        if len(merged) >= IdSets.MAX:
            merged.clear()
        merged[key] = (ids, len(ids))
        return ids[start:] if start else ids

    def _merge_explanations(self, into: list[MatchExplanation], other: list[MatchExplanation], key: str) -> None:
        """Fold `other`'s match explanations into `into` by use case, as copies (never shared objects, so the
        result does not depend on whether the two incidents came from memory or from a state store)."""
        have = {x.use_case: x for x in into}
        for x in other:
            y = have.get(x.use_case)
            if y is None:
                into.append(MatchExplanation(x.use_case, x.title, list(x.alert_ids),
                                             {k: list(v) for k, v in x.conditions.items()},
                                             dict(x.correlation) if x.correlation is not None else None))
                continue
            k = f"{key}\x1f{x.use_case}"
            self._union(y.alert_ids, self._new_tail(k, x.alert_ids), k)
            for cond, ids in x.conditions.items():
                ck = f"{k}\x1f{cond}"
                self._union(y.conditions.setdefault(cond, []), self._new_tail(ck, ids), ck)
            if x.correlation is not None and (y.correlation is None or
                                              x.correlation.get("events", 0) >= y.correlation.get("events", 0)):
                y.correlation = dict(x.correlation)

    def _union(self, into: list[str], more: list[str], key: str) -> None:
        """Append the ids of `more` that `into` lacks (up to MAX_IDS), in order; the set of `into` is cached."""
        seen = self.explanation_sets.of_list(key, into)
        _extend(into, more, MAX_IDS, seen if len(seen) == len(into) else None)  # a list with repeats: no cache
