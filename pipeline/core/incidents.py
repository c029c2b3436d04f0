"""Incidents: alerts of one use case and one entity group join an open incident until it goes quiet.

Key = tenant + use case + group-by values. The incident id is derived from that key and the event time of the
alert that opened it, so replaying the same input gives the same ids. An incident absorbs matching alerts while
they come within its use case's `window` of its last alert; a later burst opens a new incident.
State: `open` maps the group key to the incident (a dict in replay, a partitioned table in the worker).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import datetime, timedelta
from typing import Any

from pipeline.normalize.base import make_id
from pipeline.rules.fieldmap import resolve_field
from pipeline.rules.usecase import UseCase, techniques
from pipeline.rules.values import getter
from pipeline.schema import (
    CATEGORY_CLASS,
    HOST_FAMILIES,
    UNRATED,
    Alert,
    Entities,
    Incident,
    MatchExplanation,
)

MAX_IDS = 10_000
MAX_ENTITIES = 200
_TEMPLATE = re.compile(r"\{([A-Za-z_][\w.]*)\}")


def asset_of(a: Alert) -> str | None:
    """The asset an alert is about: the inventory asset when enriched, else the host for host products and
    the targeted host (named by the core, pipeline/naming.py), site or address for network products."""
    if a.asset is not None:
        return a.asset.name
    if a.source.family in HOST_FAMILIES and a.host is not None and a.host.name:
        return a.host.name
    if a.dst.hostname:
        return a.dst.hostname
    if a.http is not None and a.http.host:
        return a.http.host
    return a.dst.ip or (a.host.name if a.host else None)


@functools.cache
def entity_getter(name: str) -> Callable[[Alert], Any]:
    """Getter for a group-by / title field: `asset`, a normalized path, or a Sigma field name."""
    if name == "asset":
        return asset_of
    paths = resolve_field(name)
    if not paths:
        raise KeyError(f"unknown field {name!r}")
    return getter(paths[0])


def entity_value(a: Alert, name: str) -> Any:
    return entity_getter(name)(a)


def group_key(tenant: str, uc_id: str, values: Iterable[Any]) -> str:
    return "\x1f".join([tenant, uc_id, *map(str, values)])


def render_title(template: str, group: dict[str, Any], alert: Alert | None) -> str:
    def sub(m: re.Match[str]) -> str:
        k = m.group(1)
        v = group.get(k)
        if v is None and alert is not None:
            v = entity_value(alert, k)
        if isinstance(v, list):
            v = ", ".join(map(str, v[:3]))
        return str(v) if v not in (None, "") else "unknown"
    return _TEMPLATE.sub(sub, template)


def _add(lst: list[str], v: Any, cap: int = MAX_ENTITIES) -> None:
    if v in (None, "") or len(lst) >= cap:
        return
    v = str(v)
    if v not in lst:
        lst.append(v)


def source_is_suspect(category: str, a: Alert) -> bool:
    """Network evidence of C2 (an IDS saw a host beacon or look up a C2 domain) is about the host that asked,
    its source, not the server it talked to: a DNS server that answers a lookup is not infected."""
    return category == "c2" and a.source.family not in HOST_FAMILIES


def add_entities(e: Entities, a: Alert, suspect_source: bool = False) -> None:
    _add(e.src_ips, a.src.ip)
    _add(e.dst_ips, a.dst.ip)
    # the asset hit (a network sensor's own host name is not an entity); for network C2, the host that asked
    _add(e.hosts, (a.src.hostname or a.src.ip) if suspect_source else asset_of(a))
    _add(e.users, a.user)
    if a.file is not None:
        _add(e.files, a.file.path)
    if a.http is not None and a.http.url:
        _add(e.urls, f"{a.http.host or a.dst.ip or ''}{a.http.url}"[:300])
    if a.process is not None:
        _add(e.processes, a.process.cmdline or a.process.exe)
    if a.dns is not None:
        _add(e.domains, a.dns.query)


# failed < blocked: tries that failed, then a control that blocked their source, add up to "blocked"
_OUTCOME_RANK = {"unknown": 0, "failed": 1, "blocked": 2, "attempted": 3, "succeeded": 4}
_BLOCK_STATUS = {403, 406, 429, 444, 495, 496}


def alert_outcome(a: Alert) -> str:
    """blocked: the product (or the WAF in front, seen as a 403 answer) stopped it, or blocked its source (a
    ban); succeeded: a successful action or host evidence of the act (a file written, a command run); failed:
    the try failed at the target (a wrong password); attempted: it reached the target."""
    if a.action == "blocked" or (a.http is not None and a.http.status in _BLOCK_STATUS):
        return "blocked"
    if a.action == "succeeded" or (a.source.family in ("host", "fim", "av") and a.action != "failed"):
        return "succeeded"
    return "failed" if a.action == "failed" else "attempted"


def merge_outcome(current: str, new: str) -> str:
    """An incident is blocked when nothing of it got through: every part was blocked, or its tries failed and
    a control blocked the source (a brute force whose source fail2ban banned). Failed tries alone stay
    `failed` (nothing stopped them yet); any part that reached the target or succeeded wins."""
    return new if _OUTCOME_RANK[new] > _OUTCOME_RANK[current] else current


def _time(a: Alert) -> datetime:
    return a.time


@functools.lru_cache(maxsize=256)
def _span(seconds: float) -> timedelta:
    """A use case's window as a timedelta (one per window length, not one per alert)."""
    return timedelta(seconds=seconds)


class IdSets:
    """Membership sets of incidents' alert-id lists, derived state kept beside them (never persisted): the lists
    only grow, so a set is brought up to date from the list's new tail instead of being rebuilt per alert.
    Each core holds its own (state is per partition); forgetting one changes no result."""

    MAX = 100_000  # entries before the cache starts over (it is rebuilt lazily)

    def __init__(self) -> None:
        self._sets: dict[str, tuple[set[str], list[str]]] = {}

    def of(self, inc: Incident) -> set[str]:
        return self.of_list(inc.incident_id, inc.alert_ids)

    def of_list(self, key: str, ids: list[str]) -> set[str]:
        """The set of `ids`, a list that only grows, cached under `key`."""
        hit = self._sets.get(key)
        if hit is None or hit[1] is not ids or len(hit[0]) > len(ids):
            if len(self._sets) >= self.MAX:
                self._sets.clear()
            known = set(ids)
            self._sets[key] = (known, ids)
            return known
        known = hit[0]
        if len(known) < len(ids):
            known.update(ids[len(known):])
        return known

    def forget(self, incident_id: str) -> None:
        self._sets.pop(incident_id, None)

    def forget_if(self, stale: Callable[[str], bool]) -> None:
        for key in [k for k in self._sets if stale(k)]:
            del self._sets[key]


def add_alert_ids(inc: Incident, ids: Iterable[str], idsets: IdSets) -> list[str]:
    """Append the ids the incident does not hold yet (up to MAX_IDS); returns the ones added."""
    known = idsets.of(inc)
    added = []
    for i in ids:
        if i not in known and len(inc.alert_ids) < MAX_IDS:
            inc.alert_ids.append(i)
            known.add(i)
            added.append(i)
    return added


def _explanation(inc: Incident, uc: UseCase) -> MatchExplanation:
    """The incident's explanation of use case `uc`, added when it has none yet."""
    for x in inc.explanation:
        if x.use_case == uc.id:
            return x
    expl = MatchExplanation(use_case=uc.id, title=uc.title, alert_ids=[])
    inc.explanation.append(expl)
    return expl


class IncidentBuilder:
    """Groups use-case matches into incidents. `add` returns the incident it updated."""

    DEFAULT_WINDOW = 1800.0  # seconds, for an incident of a use case no longer loaded

    def __init__(self, state: MutableMapping[str, Incident] | None = None, idsets: IdSets | None = None):
        self.open: MutableMapping[str, Incident] = state if state is not None else {}
        self.idsets = idsets if idsets is not None else IdSets()
        # of the alert-id lists of each open incident's explanation and its conditions (derived; `_absorb`)
        self.explained = IdSets()

    def add(self, uc: UseCase, tenant: str, group: dict[str, Any], alerts: list[Alert],
            conditions: dict[str, list[str]] | None = None, correlation: dict[str, Any] | None = None,
            repeats: int = 0) -> tuple[Incident, Incident | None]:
        """Add the alerts of one match; returns (the updated incident, an incident it closed or None).
        `repeats`: raw alerts merged into an alert the incident holds already (a correlation that goes on
        holding on a repeat): counted, as a use case's own incident counts its alerts' repeats."""
        key = group_key(tenant, uc.id, group.values())
        first = alerts[0] if len(alerts) == 1 else min(alerts, key=_time)
        window = _span(uc.mdr.window)
        inc = self.open.get(key)
        closed = None
        if inc is not None and not (-window <= first.time - inc.first_seen and first.time - inc.last_seen <= window):
            inc.status = "closed"
            closed = inc
            self._forget_explained(inc)
            inc = None
        if inc is None:
            inc = self._new(uc, tenant, group, first)
            inc.detected_at = max(a.last_seen or a.time for a in alerts)  # when the use case fired
            self.open[key] = inc
        self._absorb(inc, uc, alerts, conditions, correlation, repeats)
        self.open[key] = inc  # write back (tables need the assignment)
        return inc, closed

    @staticmethod
    def _new(uc: UseCase, tenant: str, group: dict[str, Any], first: Alert) -> Incident:
        iid = make_id(tenant, uc.id, *(str(v) for v in group.values()), first.time.isoformat())
        return Incident(
            incident_id=iid, tenant_id=tenant, title=render_title(uc.mdr.title, group, first),
            category=uc.mdr.category, class_=CATEGORY_CLASS[uc.mdr.category], priority=UNRATED,
            base_priority=uc.mdr.priority,
            use_cases=[uc.id], first_seen=first.time, last_seen=first.time, alert_count=0, alert_ids=[],
            playbook=uc.mdr.playbook, version=0,
        )

    def _absorb(self, inc: Incident, uc: UseCase, alerts: list[Alert], conditions: dict[str, list[str]] | None,
                correlation: dict[str, Any] | None, repeats: int = 0) -> None:
        expl = _explanation(inc, uc)
        families = inc.sources.setdefault("families", [])
        products = inc.sources.setdefault("products", [])
        held, ids = self.idsets.of(inc), inc.alert_ids
        explained, expl_ids = self.explained.of_list(inc.incident_id, expl.alert_ids), expl.alert_ids
        category = uc.mdr.category
        for a in alerts:
            aid = a.alert_id
            if aid not in held and len(ids) < MAX_IDS:
                ids.append(aid)
                held.add(aid)
                inc.alert_count += a.count
            elif aid in held:
                inc.alert_count += repeats
            if aid not in explained and len(expl_ids) < MAX_IDS:
                expl_ids.append(aid)
                explained.add(aid)
            if a.time < inc.first_seen:
                inc.first_seen = a.time
            last = a.last_seen or a.time
            if last > inc.last_seen:
                inc.last_seen = last
            _add(families, a.source.family)
            _add(products, a.source.product)
            suspect_source = source_is_suspect(category, a)
            add_entities(inc.entities, a, suspect_source)
            inc.outcome = merge_outcome(inc.outcome, alert_outcome(a))
            for t in a.attack:
                _add(inc.attack, t)
            if inc.asset is None and not suspect_source:  # the inventory asset of the target
                inc.asset = a.asset
            if a.intel:
                seen = {(h.indicator, h.field) for h in inc.intel}
                inc.intel.extend(h for h in a.intel if (h.indicator, h.field) not in seen)
        for t in techniques(tuple(uc.tags)):
            _add(inc.attack, t)
        for cond, cids in (conditions or {}).items():
            lst = expl.conditions.setdefault(cond, [])
            have = self.explained.of_list(f"{inc.incident_id}\x1f{cond}", lst)
            for i in cids:
                if i not in have and len(lst) < MAX_IDS:
                    lst.append(i)
                    have.add(i)
        if correlation is not None:
            expl.correlation = correlation
        inc.version += 1

    def _forget_explained(self, inc: Incident) -> None:
        """Drop the cached sets of a closed incident's lists (`_absorb`)."""
        self.explained.forget(inc.incident_id)
        for x in inc.explanation:
            for cond in x.conditions:
                self.explained.forget(f"{inc.incident_id}\x1f{cond}")

    def bump_count(self, key: str, n: int, when: datetime) -> Incident | None:
        """Count `n` more raw alerts (duplicates of an alert it holds) in the open incident of `key`."""
        inc = self.open.get(key)
        if inc is not None:
            inc.alert_count += n
            inc.last_seen = max(inc.last_seen, when)
            inc.version += 1
            self.open[key] = inc
        return inc

    def expire(self, cut: Mapping[str, datetime], windows: dict[str, float]) -> list[Incident]:
        """Close incidents quiet for longer than their use case's window before their tenant's time in `cut`
        (event time; tenants not in it keep theirs). Reading does not write: a table behind `open` sees only
        the incidents closed."""
        closed = []
        for key, inc in list(self.open.items()):
            horizon = cut.get(inc.tenant_id)
            if horizon is None:
                continue
            w = windows.get(inc.use_cases[0], self.DEFAULT_WINDOW)
            if horizon - inc.last_seen > timedelta(seconds=w):
                inc.status = "closed"
                inc.version += 1
                closed.append(inc)
                self._forget_explained(inc)
                del self.open[key]
        return closed
