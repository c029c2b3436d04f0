"""The core: one object that every adapter drives (`mdr replay`, the Faust worker, tests).

    normalize -> dedup -> enrich -> match -> classify -> correlate -> incident -> fuse -> prioritize

`Core.feed(record)` / `Core.feed_alert(alert)` take input; results accumulate in `Core.out` (an `Outputs`) that
the adapter drains with `take()`. All state lives in `CoreState` (plain mappings): `mdr replay` uses dicts, the
streaming worker hands in its partitioned tables. Nothing here knows about files or Kafka.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.dedup import DEFAULT_WINDOW as DEDUP_WINDOW
from pipeline.dedup import DUPLICATE, NEW, Dedup
from pipeline.fusion import Fusion
from pipeline.incidents import IncidentBuilder, entity_getter, entity_value, group_key
from pipeline.normalize.base import RawRecord
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.rules.correlate import CorrelationHit, Correlator
from pipeline.rules.usecase import UseCase, UseCaseSet
from pipeline.schema import Alert, DeadLetter, Fate, Incident, Suppressed

Enricher = Callable[[Alert], None]
Prioritizer = Callable[[Incident], None]


class Classifier:
    """Interface of the noise classifier stage: decide which new alerts are noise (batch call)."""

    def decide(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        raise NotImplementedError

    def judge_alone(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        """Decide duplicates of suppressed representatives on their own (they are not representatives: a
        classifier with history may score them without recording them)."""
        return self.decide(alerts, matched)


@dataclass(slots=True)
class CoreState:
    """Every piece of state the core keeps, as mappings an adapter may back with persistent tables."""

    dedup: MutableMapping[str, Alert] = field(default_factory=dict)
    dedup_events: MutableMapping[str, str] = field(default_factory=dict)
    correlation: MutableMapping[str, Any] = field(default_factory=dict)
    incidents: MutableMapping[str, Incident] = field(default_factory=dict)  # open, by group key
    fusion: MutableMapping[str, Incident] = field(default_factory=dict)
    alerts: MutableMapping[str, Alert] = field(default_factory=dict)  # recent alerts, by id
    matched: MutableMapping[str, list[str]] = field(default_factory=dict)  # alert id -> use case ids
    suppressed: MutableMapping[str, float] = field(default_factory=dict)  # suppressed alert id -> event time
    watermark: dict[str, float] = field(default_factory=dict)  # tenant -> max event time


@dataclass(slots=True)
class Outputs:
    alerts: list[Alert] = field(default_factory=list)  # new representatives (counts may still grow)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    suppressed: list[Suppressed] = field(default_factory=list)
    fates: list[Fate] = field(default_factory=list)  # one per raw alert fed (see `Fate`)
    incidents: dict[str, Incident] = field(default_factory=dict)  # latest state of each updated incident
    matches: Counter[str] = field(default_factory=Counter)  # use case id -> matches / correlation firings
    records: int = 0
    duplicates: int = 0
    same_event: int = 0  # alerts of a secondary log merged into the primary log's alert of the same event

    def add(self, other: Outputs) -> None:
        """Accumulate another batch's outputs (incidents: the latest state of each wins)."""
        self.alerts.extend(other.alerts)
        self.dead.extend(other.dead)
        self.skipped.update(other.skipped)
        self.suppressed.extend(other.suppressed)
        self.fates.extend(other.fates)
        self.incidents.update(other.incidents)
        self.matches.update(other.matches)
        self.records += other.records
        self.duplicates += other.duplicates
        self.same_event += other.same_event


class Core:
    def __init__(self, usecases: UseCaseSet, state: CoreState | None = None, *,
                 dedup_window: float = DEDUP_WINDOW, lateness: float = 600.0,
                 enricher: Enricher | None = None, prioritizer: Prioritizer | None = None,
                 classifier: Classifier | None = None, forced_format: str | None = None):
        self.usecases = usecases
        self.state = state or CoreState()
        self.normalize = NormalizeStage(forced_format)
        self.dedup = Dedup(dedup_window, self.state.dedup, self.state.dedup_events)
        self.correlator = Correlator(self.state.correlation)
        self.builder = IncidentBuilder(self.state.incidents)
        self.fusion = Fusion(state=self.state.fusion)
        self.enricher = enricher
        self.prioritizer = prioritizer
        self.classifier = classifier
        self.lateness = timedelta(seconds=lateness)
        self.out = Outputs()
        self._windows = {u.id: u.mdr.window for u in usecases.usecases}
        self._retention = timedelta(seconds=max([dedup_window, *self._windows.values(),
                                                 *(u.correlation.timespan.seconds for u in usecases.correlations)],
                                                default=dedup_window))
        for uc in usecases.correlations:
            try:
                self.correlator.add(uc.id, uc.correlation, self._resolve, entity_getter)  # type: ignore[arg-type]
            except (KeyError, ValueError) as e:  # a broken correlation is reported and skipped
                usecases.reject(uc, f"correlation: {e}")
        self._since_expire = 0

    def _resolve(self, ref: str) -> tuple[str, str | None]:
        uc = self.usecases.get(ref)
        if uc is None:
            raise KeyError(ref)
        return uc.id, uc.name

    # ---- input -------------------------------------------------------------------------------------
    def feed(self, rec: RawRecord, fmt: str | None = None) -> None:
        """Normalize one raw record and run its alerts through the rest of the pipeline."""
        res = NormalizeResult()
        self.normalize.process(rec, fmt, res)
        self._absorb_normalized(res)

    def _absorb_normalized(self, res: NormalizeResult) -> None:
        self.out.records += res.records
        self.out.dead.extend(res.dead)
        self.out.skipped.update(res.skipped)
        self.feed_alerts(res.alerts)

    def feed_alerts(self, alerts: list[Alert]) -> None:
        """Dedup, enrich, match, classify (batched), then correlate and build incidents. Every alert's fate is
        recorded (`Outputs.fates`). A duplicate whose representative is suppressed (earlier, or in this batch)
        is judged on its own: noise must not hide an attack that looks alike (same rule, source, path)."""
        fresh: list[Alert] = []
        later: list[tuple[Alert, Alert]] = []  # (duplicate, representative) of representatives in this batch
        alone: list[tuple[Alert, Alert]] = []  # (duplicate, suppressed representative): judged on its own
        new_ids: set[int] = set()
        last: datetime | None = None  # event time of the last alert classified (drives periodic expiry)
        for a in alerts:
            rep, kind = self.dedup.process(a)
            if kind == NEW:
                fresh.append(rep)
                new_ids.add(id(rep))
                last = a.time
            elif kind == DUPLICATE and id(rep) in new_ids:
                later.append((a, rep))
            elif kind == DUPLICATE and rep.alert_id in self.state.suppressed:
                alone.append((a, rep))
                last = a.time
            elif kind == DUPLICATE:
                self.out.duplicates += 1
                self._fate(a, "duplicate", rep)
                self._repeat(rep, a)
            else:
                self.out.same_event += 1
                self._fate(a, "same_event", rep)
        if self.dedup.upgraded:
            self._rematch([r for r in self.dedup.upgraded if id(r) not in new_ids])
            self.dedup.upgraded.clear()
        if fresh:
            matched = [self._enrich_match(a) for a in fresh]
            decisions = self.classifier.decide(fresh, matched) if self.classifier else [None] * len(fresh)
            for a, ucs, dec in zip(fresh, matched, decisions, strict=True):
                self.out.alerts.append(a)
                if dec is not None:
                    self._suppress(a, dec)
                    continue
                self._fate(a, "representative")
                self._correlate(a, ucs)
        for a, rep in later:  # their counts are in the representative's (it was correlated with them)
            if rep.alert_id in self.state.suppressed:
                alone.append((a, rep))
            else:
                self.out.duplicates += 1
                self._fate(a, "duplicate", rep)
        if alone:
            self._judge_alone(alone)
        if last is not None:
            self._maybe_expire(last)

    def _judge_alone(self, pairs: list[tuple[Alert, Alert]]) -> None:
        """Duplicates of suppressed representatives: each is classified on its own; noise like its
        representative merges into it after all, anything else becomes an alert of its own."""
        dups = []
        for a, rep in pairs:
            rep.count -= a.count
            a.first_seen = a.last_seen = a.time
            dups.append(a)
        matched = [self._enrich_match(a) for a in dups]
        decisions = self.classifier.judge_alone(dups, matched) if self.classifier else [None] * len(dups)
        for (a, rep), ucs, dec in zip(pairs, matched, decisions, strict=True):
            if dec is not None:
                rep.count += a.count
                rep.last_seen = max(rep.last_seen or a.time, a.time)
                self.out.duplicates += 1
                self.out.fates.append(Fate(alert_id=a.alert_id, tenant_id=a.tenant_id, record_id=_record_ref(a),
                                           time=a.time, fate="suppressed", of=rep.alert_id, judged_alone=True,
                                           score=dec.score, threshold=dec.threshold,
                                           model_version=dec.model_version))
                continue
            self.out.alerts.append(a)
            self._fate(a, "representative")
            self.out.fates[-1].judged_alone = True
            self._correlate(a, ucs)

    def _enrich_match(self, a: Alert) -> list[UseCase]:
        if self.enricher is not None:
            self.enricher(a)
        return self._match(a)

    def _suppress(self, a: Alert, dec: Suppressed) -> None:
        self.out.suppressed.append(dec)
        self.state.suppressed[a.alert_id] = a.time.timestamp()
        self.out.fates.append(Fate(alert_id=a.alert_id, tenant_id=a.tenant_id, record_id=_record_ref(a), time=a.time,
                                   fate="suppressed", score=dec.score, threshold=dec.threshold,
                                   model_version=dec.model_version))

    def _fate(self, a: Alert, fate: str, rep: Alert | None = None) -> None:
        self.out.fates.append(Fate(alert_id=a.alert_id, tenant_id=a.tenant_id, record_id=_record_ref(a),
                                   time=a.time, fate=fate, of=rep.alert_id if rep is not None else None))

    def flush(self) -> None:
        """End of input: emit what stateful normalizers still buffer."""
        self._absorb_normalized(self.normalize.flush())

    def take(self) -> Outputs:
        out, self.out = self.out, Outputs()
        return out

    def _rematch(self, reps: list[Alert]) -> None:
        """Representatives that took their primary log's content after they were matched on the secondary
        log's (the two lines came in different calls): correlate the use cases they match now."""
        for rep in reps:
            done = set(self.state.matched.get(rep.alert_id, ()))
            ucs = [u for u in self._match(rep) if u.id not in done]
            if ucs and not (self.classifier and self.classifier.decide([rep], [ucs])[0] is not None):
                self._correlate(rep, ucs)

    # ---- stages ------------------------------------------------------------------------------------
    def _match(self, a: Alert) -> list[UseCase]:
        index = self.usecases.index
        if index is None:
            return []
        by_id = self.usecases.by_ref
        return [by_id[r.id] for r in index.match(a) if r.id in by_id]

    def _correlate(self, a: Alert, ucs: list[UseCase]) -> None:
        if not ucs:
            return
        self.state.alerts[a.alert_id] = a
        self.state.matched[a.alert_id] = [*self.state.matched.get(a.alert_id, ()), *(u.id for u in ucs)]
        for uc in ucs:
            self.out.matches[uc.id] += 1
            if uc.mdr.incident:
                group = {g: _scalar(entity_value(a, g)) for g in uc.mdr.group_by}
                conds = {k: [a.alert_id] for k, v in uc.compiled.explain(a).items() if v} if uc.compiled else {}
                self._emit(*self.builder.add(uc, a.tenant_id, group, [a], conditions=conds))
            for hit in self.correlator.observe(uc.id, a, a.count):
                self._hit(hit)

    def _repeat(self, rep: Alert, dup: Alert) -> None:
        """A duplicate merged into `rep`: count it in correlations and in the incidents rep belongs to."""
        for uc_id in self.state.matched.get(rep.alert_id, ()):
            uc = self.usecases.get(uc_id)
            if uc is None:
                continue
            if uc.mdr.incident:
                group = [_scalar(entity_value(rep, g)) for g in uc.mdr.group_by]
                inc = self.builder.bump_count(group_key(rep.tenant_id, uc.id, group), dup.count, dup.time)
                if inc is not None:
                    self._emit(inc, None)
            for hit in self.correlator.observe(uc.id, dup, dup.count, alert_ids=[rep.alert_id]):
                self._hit(hit)

    def _hit(self, hit: CorrelationHit) -> None:
        self.out.matches[hit.correlation_id] += 1
        uc = self.usecases.get(hit.correlation_id)
        if uc is None or not uc.mdr.incident:
            return
        alerts = [self.state.alerts[i] for i in hit.alert_ids if i in self.state.alerts]
        if not alerts:
            return
        group = {k: _scalar(v) for k, v in hit.group.items()}
        self._emit(*self.builder.add(uc, hit.tenant_id, group, alerts, correlation=hit.details))

    def _emit(self, inc: Incident, closed: Incident | None) -> None:
        if closed is not None:
            self.out.incidents[closed.incident_id] = closed
        if self.prioritizer is not None:
            self.prioritizer(inc)
        for changed in self.fusion.process(inc):
            if changed is not inc and self.prioritizer is not None and changed.status != "merged":
                self.prioritizer(changed)
            self.out.incidents[changed.incident_id] = changed

    # ---- time --------------------------------------------------------------------------------------
    def _maybe_expire(self, t: datetime) -> None:
        self._since_expire += 1
        if self._since_expire < 5000:
            return
        self._since_expire = 0
        self.expire(t - self.lateness)

    def expire(self, watermark: datetime) -> None:
        """Close windows that ended before `watermark` (event time minus allowed lateness)."""
        self.dedup.expire(watermark)
        for hit in self.correlator.expire(watermark.timestamp()):
            self._hit(hit)
        for inc in self.builder.expire(watermark, self._windows):
            self.out.incidents[inc.incident_id] = inc
        self.fusion.expire(watermark)
        horizon = watermark - self._retention
        for aid in [k for k, a in self.state.alerts.items() if (a.last_seen or a.time) < horizon]:
            del self.state.alerts[aid]
            self.state.matched.pop(aid, None)
        cut = horizon.timestamp()
        for aid in [k for k, t in self.state.suppressed.items() if t < cut]:
            del self.state.suppressed[aid]


_RECORD_KEYS = ("transaction_id", "record_id", "event_id")


def _record_ref(a: Alert) -> str | None:
    """The product's own id of the record behind an alert, when it has one."""
    for k in _RECORD_KEYS:
        v = a.extra.get(k) if a.extra else None
        if isinstance(v, str | int) and v != "":
            return str(v)
    return None


def _scalar(v: Any) -> Any:
    if isinstance(v, list):
        return v[0] if len(v) == 1 else (",".join(map(str, v)) if v else None)
    return v
