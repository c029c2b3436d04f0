"""The core: one object that every adapter drives (`mdr replay`, the Faust worker, tests).

    alerts -> dedup -> name -> enrich -> match -> classify -> correlate -> incident -> fuse -> prioritize

`Core.feed_alerts(alerts)` takes normalized alerts (`pipeline.normalize.source` turns files into them, the
worker's normalize agent messages); results accumulate in `Core.out` (an `Outputs`) that the adapter drains with
`take()`. Alerts update incidents one by one; fusion and priority run at the end of the call, once for each
incident the call changed (`_settle`), so their cost follows the incidents, not the alerts they absorb.
All state lives in `CoreState` (plain mappings): `mdr replay` uses dicts, the streaming worker hands in its
partitioned tables. Nothing here knows about files or Kafka.

Time is event time, kept per tenant in `CoreState.watermark`: a tenant's watermark is the newest event time of
its alerts (one that became a dead letter does not move it). `feed_alerts` moves the watermarks and expires the
windows of a tenant that closed more than `lateness` before its watermark (dedup, correlation, open incidents,
fusion, the alerts kept for correlation): one tenant's clock never closes another tenant's windows, and
`mdr replay` and the worker expire alike because the core does it. An expiry pass scans the state, so it runs
when a tenant's watermark crosses a multiple of EXPIRE_STEP and something of the tenant may be due (see the
time section below).


One alert's failure stays with that alert: an exception in any stage becomes a dead letter (reason `core_error`,
the stage, the raw record) and the batch goes on. The dedup window the alert opened is dropped, so its repeats
are judged on their own instead of merging into an alert that was never matched; what it had already changed
(an incident it joined before the failing step) is kept; its fate is `dead_letter`. A noise classifier that fails
fails open: its batch is decided again alert by alert, and an alert it cannot judge is not suppressed
(`extra.classifier_error`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import traceback
from collections import Counter
from collections.abc import Callable, Collection, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.context.priority import prioritize
from pipeline.core.dedup import DEFAULT_WINDOW as DEDUP_WINDOW
from pipeline.core.dedup import (
    DUPLICATE,
    NEW,
    UPGRADE,
    Dedup,
    Tally,
    event_key,
    secondary,
    secondary_format,
    set_tally,
    tally,
)
from pipeline.core.fusion import Fusion
from pipeline.core.hooks import Classifier, Enricher, Prioritizer
from pipeline.core.incidents import IdSets, IncidentBuilder, entity_getter, entity_value, group_key
from pipeline.naming import HostNames
from pipeline.rules.correlate import CorrelationHit, Correlator
from pipeline.rules.usecase import UseCase, UseCaseSet
from pipeline.schema import UNRATED, Alert, DeadLetter, Fate, Incident, Suppressed

log = logging.getLogger("mdr.core")
CORE_ERROR = "core_error"
# An alert that changed an incident in this call: (the alert, the representative it merged into or None, whether
# a fate of this call records it), blamed when the incident's fusion or priority fails at the end of the call.
Cause = tuple[Alert, Alert | None, bool]
EXPIRE_STEP = 60.0  # seconds of a tenant's event time between two expiry passes, at most one each
# Seconds of a tenant's event time a secondary log's alert (a ModSecurity error-log line) waits for its primary
# log's record of the same event (the audit record) before it is matched on its own: lab-1's 1,058 pairs are at
# most 4 ms apart (docs/streaming.md, "Pairs of logs").
PAIR_HOLD = 5.0


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
    suppressed: MutableMapping[str, list[Any]] = field(default_factory=dict)  # alert id -> [tenant, event time]
    hosts: MutableMapping[str, str] = field(default_factory=dict)  # tenant + address -> host name (naming.py)
    watermark: MutableMapping[str, float] = field(default_factory=dict)  # tenant -> newest event time (epoch s)
    held: MutableMapping[str, Alert] = field(default_factory=dict)  # event key -> secondary alert awaiting its pair


@dataclass(slots=True)
class Outputs:
    alerts: list[Alert] = field(default_factory=list)  # new representatives (counts may still grow)
    dead: list[DeadLetter] = field(default_factory=list)
    suppressed: list[Suppressed] = field(default_factory=list)
    fates: list[Fate] = field(default_factory=list)  # one per raw alert fed (see `Fate`)
    incidents: dict[str, Incident] = field(default_factory=dict)  # latest state of each updated incident
    matches: Counter[str] = field(default_factory=Counter)  # use case id -> matches / correlation firings
    duplicates: int = 0
    same_event: int = 0  # alerts of a secondary log merged into the primary log's alert of the same event

    def add(self, other: Outputs) -> None:
        """Accumulate another batch's outputs (incidents: the latest state of each wins)."""
        self.alerts.extend(other.alerts)
        self.dead.extend(other.dead)
        self.suppressed.extend(other.suppressed)
        self.fates.extend(other.fates)
        self.incidents.update(other.incidents)
        self.matches.update(other.matches)
        self.duplicates += other.duplicates
        self.same_event += other.same_event


class Core:
    def __init__(self, usecases: UseCaseSet, state: CoreState | None = None, *,
                 dedup_window: float = DEDUP_WINDOW, lateness: float = 600.0,
                 enricher: Enricher | None = None, prioritizer: Prioritizer | None = None,
                 classifier: Classifier | None = None, pair_hold: float = PAIR_HOLD):
        self.usecases = usecases
        self.state = state or CoreState()
        self.dedup = Dedup(dedup_window, self.state.dedup, self.state.dedup_events)
        self.correlator = Correlator(self.state.correlation)
        self.idsets = IdSets()  # membership sets of the incidents' alert-id lists (derived, of this core only)
        self.builder = IncidentBuilder(self.state.incidents, self.idsets)
        self.fusion = Fusion(state=self.state.fusion, idsets=self.idsets)
        self.names = HostNames(self.state.hosts)
        self.enricher = enricher
        self.prioritizer = prioritizer
        self.classifier = classifier
        self.lateness = timedelta(seconds=lateness)
        self.pair_hold = pair_hold
        self.out = Outputs()
        self._windows = {u.id: u.mdr.window for u in usecases.usecases}
        spans = [dedup_window, *self._windows.values(),
                 *(u.correlation.timespan.seconds for u in usecases.correlations if u.correlation is not None)]
        self._retention = timedelta(seconds=max(spans))
        # The shortest time anything stays after the event time that put it in the state, and per tenant a time
        # before which nothing of it can expire: derived, a lower bound; unknown for state handed in (a table).
        self._shortest = min([*spans, self.fusion.window.total_seconds(), IncidentBuilder.DEFAULT_WINDOW])
        self._due: dict[str, float] = {}
        self._due_unknown = state is not None
        for uc in usecases.correlations:
            try:
                self.correlator.add(uc.id, uc.correlation, self._resolve, entity_getter)  # type: ignore[arg-type]  # correlations have one
            except (KeyError, ValueError) as e:  # a broken correlation is reported and skipped
                usecases.reject(uc, f"correlation: {e}")
        self._failed_now: set[int] = set()  # id() of the alerts of the current call that became dead letters
        self._touched: dict[str, Incident] = {}  # incidents changed in this call, to fuse and prioritize (`_settle`)
        self._blame: dict[str, list[Cause]] = {}  # incident id -> the alerts that changed it in this call
        self._cause: Cause | None = None  # the alert being correlated
        self._at = "correlate"  # the step `_correlate` is in (named in the dead letter should it fail)

    def _resolve(self, ref: str) -> tuple[str, str | None]:
        uc = self.usecases.get(ref)
        if uc is None:
            raise KeyError(ref)
        return uc.id, uc.name

    # ---- input -------------------------------------------------------------------------------------
    def feed_alerts(self, alerts: list[Alert]) -> None:
        """Dedup, name, enrich, match, classify (batched), then correlate and build incidents. Every alert's fate is
        recorded (`Outputs.fates`). A duplicate whose representative is suppressed (earlier, or in this batch)
        is judged on its own: noise must not hide an attack that looks alike (same rule, source, path). The
        incidents the call changed are fused and prioritized once each (`_settle`). Then the tenants' watermarks
        move and what closed before them expires."""
        try:
            self._feed(self._pair(alerts))
        finally:
            self._settle()
            self._advance(alerts)
            self._settle()

    def release_held(self, tenants: Collection[str] | None = None) -> None:
        """Feed the secondary logs' alerts still waiting for their pair: all of them (the end of a finite input),
        or those of `tenants` (the worker's: tenants whose input stopped, so their event time stands still)."""
        self._play_held([k for k, a in self.state.held.items() if tenants is None or a.tenant_id in tenants])

    def _play_held(self, keys: list[str]) -> None:
        """Feed the held alerts of event keys `keys` outside a call (the end of input, expiry, a quiet tenant)."""
        if not keys:
            return
        try:
            self._feed(self._released(keys))
        finally:
            self._failed_now = set()
            self._settle()

    # ---- pairs of logs -----------------------------------------------------------------------------
    # A secondary log's alert that has an event key (a ModSecurity error-log line; its audit record is the
    # primary's) is held in `CoreState.held` instead of being matched on its own, then matched once: upgraded to
    # the primary's content at the primary's turn, or as it is once the tenant's event time (the newest time of
    # its alerts in input order, from the watermark on) is more than `pair_hold` past it, just before the alert
    # that moved it there. Both depend only on the input order, so calls of any size and a restart (the held
    # alerts are state) release at the same alert.
    def _pair(self, alerts: list[Alert]) -> list[Alert]:
        """The call's alerts in the order they are played: secondary alerts that wait for their pair left out,
        held ones put back where they are released (an upgraded one just before its primary's alert)."""
        held = self.state.held
        if not held and not any(secondary(a) for a in alerts):
            return alerts
        due: dict[str, float] = {}  # tenant -> the earliest time one of its held alerts is released at
        for line in held.values():
            due[line.tenant_id] = min(due.get(line.tenant_id, math.inf), line.time.timestamp() + self.pair_hold)
        clock: dict[str, float] = {}
        primaries: set[str] = set()  # event keys of this call's primary alerts
        out: list[Alert] = []
        for a in alerts:
            tenant, t = a.tenant_id, a.time.timestamp()
            now = clock.get(tenant)
            if now is None:
                now = self.state.watermark.get(tenant, -math.inf)
            if t > now:
                now = t
            clock[tenant] = now
            ek = event_key(a)
            mate = None
            if ek is not None:
                if not secondary_format(a.source.format):
                    primaries.add(ek)
                    mate = held.pop(ek) if ek in held else None  # (a miss must not mark the key written)
                elif ek not in held and ek not in primaries and not self._has_event(ek):
                    held[ek] = a
                    due[tenant] = min(due.get(tenant, math.inf), t + self.pair_hold)
                    a = None  # type: ignore[assignment]  # held: played later
            if due.get(tenant, math.inf) < now:
                ready = [k for k, line in held.items()
                         if line.tenant_id == tenant and line.time.timestamp() + self.pair_hold < now]
                out.extend(self._released(ready))
                due[tenant] = min((line.time.timestamp() + self.pair_hold for line in held.values()
                                   if line.tenant_id == tenant), default=math.inf)
            if mate is not None:
                mate.first_seen = mate.first_seen or mate.time
                mate.last_seen = mate.last_seen or mate.time
                self.dedup.upgrade(mate, a)
                out.append(mate)
            if a is not None:
                out.append(a)
        return out

    def _has_event(self, ek: str) -> bool:
        """Whether dedup holds an alert of this event already (the secondary alert merges into it)."""
        fp = self.dedup.events.get(ek)
        return fp is not None and fp in self.dedup.state

    def _released(self, keys: object) -> list[Alert]:
        """The held alerts of event keys `keys`, out of the state, in event-time order (ids break ties)."""
        held = self.state.held
        lines = sorted((held.pop(k) for k in list(keys)), key=lambda line: (line.time, line.alert_id))  # type: ignore[call-overload]  # an iterable of keys
        for line in lines:
            self._lower_due(line.tenant_id, line.time.timestamp())  # an earlier call's alert, played now
        return lines

    def _feed(self, alerts: list[Alert]) -> None:
        """Dedup merges the whole call first (its windows decide which alerts are new); the new representatives
        are named, enriched, matched and classified as one batch, and so are the duplicates judged on their
        own; then the call is played in input order, each alert counted and correlated as if it had come in a
        call of its own. Until its turn, every representative the call touched is put back to the tally
        (count, first and last seen) it had at that point of the input: a repeat counts at its own time and
        with its own weight whether it came in its representative's call or a later one, so a correlation
        reaches its threshold at the same alert, and an incident gets the same alerts and counts, whatever
        the size of the calls (`mdr replay` feeds big chunks, the worker what has arrived)."""
        self.names.learn(alerts)
        before: dict[int, tuple[Alert, Tally]] = {}
        steps: list[tuple[Alert, str, Alert, Tally | None]] = []  # (alert, kind, representative, its tally after)
        for a in alerts:
            try:
                rep, kind = self.dedup.merge(a, before)
            except Exception as e:
                self._failed(a, "dedup", e)
                continue
            steps.append((a, kind, rep, tally(rep) if kind == DUPLICATE else None))
        for rep, t in before.values():  # back to where the input was when the call began (or it was new)
            set_tally(rep, t)
        fresh = [a for a, kind, _, _ in steps if kind == NEW]
        ok, matched = self._enrich_match(fresh)
        judged = {id(a): (ucs, dec) for a, ucs, dec in zip(ok, matched, self._decide(ok, matched), strict=True)}
        alone = [a for a, kind, rep, _ in steps if kind == DUPLICATE and self._suppressed(rep, judged)]
        for a in alone:
            a.first_seen = a.last_seen = a.time
        ok, matched = self._enrich_match(alone)
        apart = {id(a): (ucs, dec) for a, ucs, dec in zip(ok, matched, self._decide(ok, matched, alone=True),
                                                          strict=True)}
        alone_ids = {id(a) for a in alone}
        taken: Counter[int] = Counter()  # id(rep) -> counts of its duplicates of this call kept apart from it
        for a, kind, rep, after in steps:
            if kind == NEW:
                got = judged.get(id(a))
                if got is None:
                    continue  # a dead letter already (`_enrich_match`)
                if got[1] is not None:
                    self._suppress(a, got[1])
                else:
                    self._keep(a, got[0])
            elif kind == DUPLICATE:
                set_tally(rep, after)  # type: ignore[arg-type]  # a duplicate's step has its tally
                if taken:  # (usually empty: no lookup)
                    rep.count -= taken[id(rep)]
                if id(a) in alone_ids:
                    self._alone(a, rep, apart.get(id(a)), taken)
                else:
                    self._duplicate(a, rep)
            else:
                self.out.same_event += 1
                self._fate(a, "same_event", rep)
                if kind == UPGRADE and id(rep) not in self._failed_now and self.dedup.upgrade(rep, a):
                    self._rematch(rep)

    def _suppressed(self, rep: Alert, judged: dict[int, tuple[list[UseCase], Suppressed | None]]) -> bool:
        """Whether representative `rep` is held back as noise (decided in this call, or earlier)."""
        got = judged.get(id(rep))
        return got[1] is not None if got is not None else rep.alert_id in self.state.suppressed

    def _duplicate(self, a: Alert, rep: Alert) -> None:
        """A repeat of a kept representative: counted in its incidents and correlations at its own time."""
        self.out.duplicates += 1
        self._cause = (a, rep, True)
        try:
            self._repeat(rep, a)
        except Exception as e:
            self._failed(a, self._at, e, rep)
            return
        finally:
            self._cause = None
        self._fate(a, "duplicate", rep)

    def _alone(self, a: Alert, rep: Alert, got: tuple[list[UseCase], Suppressed | None] | None,
               taken: Counter[int]) -> None:
        """A duplicate of a suppressed representative, judged on its own (`got`: its use cases and decision;
        None: it became a dead letter): noise like its representative stays merged into it, anything else is
        an alert of its own (its count leaves the representative's)."""
        if got is None or got[1] is None:
            rep.count -= a.count
            taken[id(rep)] += a.count
            if got is not None:
                self._keep(a, got[0], judged_alone=True)
            return
        dec = got[1]
        self.out.duplicates += 1
        self._fate(a, "suppressed", rep, judged_alone=True, score=dec.score, threshold=dec.threshold,
                   model_version=dec.model_version)

    def _enrich_match(self, alerts: list[Alert]) -> tuple[list[Alert], list[list[UseCase]]]:
        """(the alerts that were enriched and matched, their use cases); one that fails is a dead letter."""
        ok: list[Alert] = []
        matched: list[list[UseCase]] = []
        for a in alerts:
            stage = "name"
            try:
                self.names.name(a)
                stage = "enrich"
                if self.enricher is not None:
                    self.enricher(a)
                stage = "match"
                matched.append(self._match(a))
            except Exception as e:
                self._dropped(a, stage, e)
                continue
            ok.append(a)
        return ok, matched

    def _suppress(self, a: Alert, dec: Suppressed) -> None:
        self.out.alerts.append(a)
        self.out.suppressed.append(dec)
        self.state.suppressed[a.alert_id] = [a.tenant_id, a.time.timestamp()]
        self._fate(a, "suppressed", score=dec.score, threshold=dec.threshold, model_version=dec.model_version)

    def _keep(self, a: Alert, ucs: list[UseCase], judged_alone: bool = False) -> None:
        """A representative kept: correlated (a failure there makes it a dead letter), then an output."""
        self._cause = (a, None, True)
        try:
            self._correlate(a, ucs)
        except Exception as e:
            self._dropped(a, self._at, e)
            return
        finally:
            self._cause = None
        self.out.alerts.append(a)
        self._fate(a, "representative", judged_alone=judged_alone)

    def _fate(self, a: Alert, fate: str, rep: Alert | None = None, *, judged_alone: bool = False,
              score: float | None = None, threshold: float | None = None, model_version: str | None = None,
              stage: str | None = None) -> None:
        """Record what became of alert `a` (`Fate`; `rep`: the representative it concerns). Every field is passed
        by name: a `Fate(**detail)` call takes a slower path (~1 us more per alert)."""
        self.out.fates.append(Fate(alert_id=a.alert_id, tenant_id=a.tenant_id, record_id=_record_ref(a),
                                   time=a.time, fate=fate, of=rep.alert_id if rep is not None else None,
                                   judged_alone=judged_alone, score=score, threshold=threshold,
                                   model_version=model_version, stage=stage))

    def take(self) -> Outputs:
        out, self.out = self.out, Outputs()
        return out

    def _rematch(self, rep: Alert) -> None:
        """A representative that took its primary log's content after it was matched on the secondary log's
        (the two lines came in different calls): correlate the use cases it matches now."""
        self._at = "name"
        self._lower_due(rep.tenant_id, rep.time.timestamp())  # an earlier call's alert, correlated now
        self._cause = (rep, None, False)
        try:
            self.names.name(rep)
            self._at = "match"
            done = set(self.state.matched.get(rep.alert_id, ()))
            ucs = [u for u in self._match(rep) if u.id not in done]
            if ucs and self._decide([rep], [ucs])[0] is None:
                self._correlate(rep, ucs)
        except Exception as e:
            self._failed(rep, self._at, e, fate=False)
        finally:
            self._cause = None

    def _decide(self, alerts: list[Alert], matched: list[list[UseCase]], alone: bool = False
                ) -> list[Suppressed | None]:
        """The classifier's decisions (`alone`: of duplicates judged on their own); when the batch call fails,
        alert by alert, and an alert it cannot judge is kept (a noise filter must not hide an alert because of
        its own failure)."""
        if self.classifier is None or not alerts:
            return [None] * len(alerts)
        decide = self.classifier.judge_alone if alone else self.classifier.decide
        try:
            return decide(alerts, matched)
        except Exception as e:
            if len(alerts) == 1:
                return [self._undecided(alerts[0], e)]
            log.warning("classifier failed on a batch of %d alerts (%s); deciding them one by one",
                        len(alerts), error_text(e))
        out: list[Suppressed | None] = []
        for a, ucs in zip(alerts, matched, strict=True):
            try:
                out.append(decide([a], [ucs])[0])
            except Exception as e:
                out.append(self._undecided(a, e))
        return out

    @staticmethod
    def _undecided(a: Alert, e: Exception) -> None:
        log.warning("classifier failed on alert %s (%s); kept unsuppressed", a.alert_id, error_text(e))
        a.extra = {**a.extra, "classifier_error": error_text(e)}

    # ---- failures ----------------------------------------------------------------------------------
    def _failed(self, a: Alert, stage: str, e: Exception, rep: Alert | None = None, fate: bool = True) -> None:
        """Dead letter for an alert that failed in `stage` (its fate, unless it has one already: `fate` false);
        the rest of the batch goes on. `rep`: the representative a duplicate had merged into."""
        log.warning("alert %s of tenant %s failed in %s: %s", a.alert_id, a.tenant_id, stage, error_text(e))
        self._failed_now.add(id(a))
        self.out.dead.append(DeadLetter(
            reason=CORE_ERROR, detail=error_text(e), source=a.source.format or a.source.product, stage=stage,
            alert_id=a.alert_id, tenant_id=a.tenant_id, raw=a.raw))
        if fate:
            self._fate(a, "dead_letter", rep, stage=stage)

    def _dropped(self, a: Alert, stage: str, e: Exception) -> None:
        """A new alert failed before it was counted anywhere: a dead letter, and the dedup window it opened goes,
        so that its repeats do not merge into an alert that never reached the use cases."""
        self._failed(a, stage, e)
        self._forget_window(a)

    def _forget_window(self, a: Alert) -> None:
        """Drop the dedup window a new alert opened (it failed: its repeats are judged on their own)."""
        fp = a.fingerprint
        if fp and self.dedup.state.get(fp) is a:
            del self.dedup.state[fp]
            ek = event_key(a)
            if ek is not None and self.dedup.events.get(ek) == fp:
                del self.dedup.events[ek]

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
        self._at = "correlate"
        self.state.alerts[a.alert_id] = a
        self.state.matched[a.alert_id] = [*self.state.matched.get(a.alert_id, ()), *(u.id for u in ucs)]
        for uc in ucs:
            self.out.matches[uc.id] += 1
            if uc.mdr.incident:
                self._at = "incident"
                group = {g: _scalar(entity_value(a, g)) for g in uc.mdr.group_by}
                conds = {k: [a.alert_id] for k, v in uc.compiled.explain(a).items() if v} if uc.compiled else {}
                inc, closed = self.builder.add(uc, a.tenant_id, group, [a], conditions=conds)
                self._emit(inc, closed)
            self._at = "correlate"
            for hit in self.correlator.observe(uc.id, a, a.count):
                self._hit(hit)

    def _repeat(self, rep: Alert, dup: Alert) -> None:
        """A duplicate merged into `rep`: count it in correlations and in the incidents rep belongs to. It is named
        first (pipeline/naming.py), as its representative was: a correlation groups it by its own entities."""
        self._at = "name"
        self.names.name(dup)
        self._at = "correlate"
        for uc_id in self.state.matched.get(rep.alert_id, ()):
            uc = self.usecases.get(uc_id)
            if uc is None:
                continue
            if uc.mdr.incident:
                self._at = "incident"
                group = [_scalar(entity_value(rep, g)) for g in uc.mdr.group_by]
                inc = self.builder.bump_count(group_key(rep.tenant_id, uc.id, group), dup.count, dup.time)
                if inc is not None:
                    self._emit(inc, None)
            self._at = "correlate"
            for hit in self.correlator.observe(uc.id, dup, dup.count, alert_ids=[rep.alert_id]):
                self._hit(hit, dup.count if hit.details.get("continuation") else 0)

    def _hit(self, hit: CorrelationHit, repeats: int = 0) -> None:
        """A correlation fired or goes on holding; `repeats`: the weight of the repeat it goes on holding on
        (counted in its incident: the alert it repeats is there already)."""
        self.out.matches[hit.correlation_id] += 1
        self._lower_due(hit.tenant_id, hit.first_time)  # a hit of an expiry pass is about earlier alerts
        uc = self.usecases.get(hit.correlation_id)
        if uc is None or not uc.mdr.incident:
            return
        alerts = [self.state.alerts[i] for i in hit.alert_ids if i in self.state.alerts]
        if not alerts:
            return
        group = {k: _scalar(v) for k, v in hit.group.items()}
        self._at = "incident"
        inc, closed = self.builder.add(uc, hit.tenant_id, group, alerts, correlation=hit.details, repeats=repeats)
        self._emit(inc, closed)
        self._at = "correlate"

    def _emit(self, inc: Incident, closed: Incident | None) -> None:
        """`inc` changed (and `closed` closed): both are settled at the end of the call, once each."""
        if closed is not None:
            self._closed(closed)
        iid = inc.incident_id
        self._touched[iid] = inc
        if self._cause is not None:
            self._blame.setdefault(iid, []).append(self._cause)

    def _closed(self, inc: Incident) -> None:
        """An incident closed: emitted as it is (its priority is that of its last change). One never rated (its
        priority failed, and its alerts are dead letters) was never emitted and is not now either."""
        if inc.priority != UNRATED or inc.incident_id in self._touched:
            self.out.incidents[inc.incident_id] = inc

    def _settle(self) -> None:
        """Fuse each incident the call changed, then prioritize each incident that changed (fusion's survivors
        included), once each, and emit them: the per-call cost of fusion and priority no longer grows with the
        alerts an incident absorbed. An incident whose fusion or priority fails is not emitted and the alerts
        that changed it in this call become dead letters (stage `fusion` / `prioritize`)."""
        if not self._touched:
            return
        touched, self._touched = self._touched, {}
        blame, self._blame = self._blame, {}
        rate: dict[str, Incident] = {}
        causes: dict[str, list[Cause]] = {}
        for iid, inc in touched.items():
            mine = blame.get(iid, [])
            try:
                changed = self.fusion.fuse(inc)
            except Exception as e:
                self._unsettled(inc, "fusion", e, mine)
                continue
            rate[iid] = inc
            causes.setdefault(iid, []).extend(mine)
            for c in changed:
                if c is not inc and c.status != "merged":
                    rate[c.incident_id] = c
                    causes.setdefault(c.incident_id, []).extend(mine)
                elif c is not inc:
                    self.out.incidents[c.incident_id] = c
        rate_one = self.prioritizer or prioritize
        for iid, inc in rate.items():
            try:
                rate_one(inc)
            except Exception as e:
                self._unsettled(inc, "prioritize", e, causes.get(iid, []))
                continue
            self.out.incidents[iid] = inc

    def _unsettled(self, inc: Incident, stage: str, e: Exception, causes: list[Cause]) -> None:
        """The fusion or priority of `inc` failed: the alerts that changed it in this call become dead letters
        (what they changed stays); without one (an expiry's correlation hit), a dead letter of the core."""
        self.out.incidents.pop(inc.incident_id, None)
        if not causes:
            log.warning("%s of incident %s failed: %s", stage, inc.incident_id, error_text(e))
            self.out.dead.append(DeadLetter(reason=CORE_ERROR, detail=error_text(e), source="core", stage=stage,
                                            tenant_id=inc.tenant_id))
        for a, rep, has_fate in causes:
            if id(a) in self._failed_now:
                continue
            if has_fate:
                self._unfate(a, rep)
            self._failed(a, stage, e, rep, fate=has_fate)
            if has_fate and rep is None:
                self._forget_window(a)

    def _unfate(self, a: Alert, rep: Alert | None) -> None:
        """Take back the output and the fate this call gave alert `a` (it becomes a dead letter)."""
        fates, kind = self.out.fates, "representative" if rep is None else "duplicate"
        for i in range(len(fates) - 1, -1, -1):
            if fates[i].alert_id == a.alert_id and fates[i].fate == kind:
                del fates[i]
                break
        if rep is None:
            alerts = self.out.alerts
            for i in range(len(alerts) - 1, -1, -1):
                if alerts[i] is a:
                    del alerts[i]
                    break

    # ---- time --------------------------------------------------------------------------------------
    # A tenant's state is expired when its watermark crosses a multiple of EXPIRE_STEP (less the lateness) and
    # something of it may be due (`_due`). Both depend only on the watermarks and on what was fed, never on how
    # the input was cut into calls nor on a restart, and each expiry pass costs a scan of the state: so a pass
    # runs at most once per step of a tenant's event time, and never while nothing can expire.
    def _lower_due(self, tenant: str, t: float) -> None:
        """Something of `tenant` entered the state at event time `t` (or later): it cannot expire before
        t + the shortest span. `_advance` does this for the oldest alert of each call, which covers what the
        call's alerts put in the state; the two other ways in are lowered where they happen."""
        known = self._due.get(tenant)
        if known is None and self._due_unknown:
            return  # stays unknown until an expiry pass
        d = t + self._shortest
        if known is None or d < known:
            self._due[tenant] = d

    def _may_expire(self, tenant: str, horizon: float) -> bool:
        d = self._due.get(tenant)
        if d is None:
            return self._due_unknown
        return horizon > d

    def _advance(self, alerts: list[Alert]) -> None:
        """Move each tenant's watermark to the newest event time among its alerts of this call (dead-lettered
        ones left out) and expire the tenants that are due."""
        failed, self._failed_now = self._failed_now, set()
        times = _times_by_tenant(alerts)
        kept = _times_by_tenant([a for a in alerts if id(a) not in failed]) if failed else times
        wm, late = self.state.watermark, self.lateness.total_seconds()
        cut: dict[str, datetime] = {}
        for tenant, ts in times.items():
            self._lower_due(tenant, min(ts).timestamp())  # what this call may have put in the state
            if tenant not in kept:
                continue
            newest = max(kept[tenant]).timestamp()
            old = wm.get(tenant)
            if old is not None and newest <= old:
                continue
            wm[tenant] = newest
            horizon = newest - late
            if (old is None or horizon // EXPIRE_STEP > (old - late) // EXPIRE_STEP) \
                    and self._may_expire(tenant, horizon):
                with contextlib.suppress(OverflowError, OSError, ValueError):  # no datetime: nothing to close
                    cut[tenant] = datetime.fromtimestamp(horizon, UTC)
        if cut:
            self._expire(cut)

    def expire(self, until: datetime) -> None:
        """Close the windows of every tenant that ended before `until` (tests; the end of a finite input), after
        playing the held secondary alerts that `until` releases."""
        stamp = until.timestamp() - self.pair_hold
        self._play_held([k for k, line in self.state.held.items() if line.time.timestamp() < stamp])
        self._expire(dict.fromkeys(self.state.watermark, until))
        self._settle()

    def _expire(self, cut: dict[str, datetime]) -> None:
        """Close, per tenant in `cut`, the windows that ended before its time there. A step that fails is
        reported as a dead letter (stage `expire:<step>`) and the others still run."""
        for tenant, h in cut.items():
            self._due[tenant] = h.timestamp()  # all that stays ends after it (lowered by what expiry adds)
        steps: tuple[tuple[str, Callable[[dict[str, datetime]], object]], ...] = (
            ("dedup", self.dedup.expire), ("correlate", self._expire_correlations),
            ("incident", self._expire_incidents), ("fusion", self.fusion.expire), ("retention", self._expire_alerts))
        for name, step in steps:
            try:
                step(cut)
            except Exception as e:
                log.warning("expiring %s state failed: %s", name, error_text(e))
                self.out.dead.append(DeadLetter(reason=CORE_ERROR, detail=error_text(e), source="core",
                                                stage=f"expire:{name}"))
                for tenant in cut:  # what failed to expire is still there: no bound is known
                    self._due[tenant] = -math.inf

    def _expire_correlations(self, cut: dict[str, datetime]) -> None:
        for hit in self.correlator.expire({t: h.timestamp() for t, h in cut.items()}):
            self._hit(hit)

    def _expire_incidents(self, cut: dict[str, datetime]) -> None:
        fused = self.fusion.incidents
        for inc in self.builder.expire(cut, self._windows):
            if fused.get(inc.incident_id) is inc:
                fused[inc.incident_id] = inc  # write back: the fusion table holds the incident just closed
            self._closed(inc)

    def _expire_alerts(self, cut: dict[str, datetime]) -> None:
        """The alerts kept for correlation hits, and the suppressed marks, of the tenant's retention span."""
        horizon = {t: h - self._retention for t, h in cut.items()}
        alerts = self.state.alerts
        for aid in [k for k, a in alerts.items() if a.tenant_id in horizon and
                    (a.last_seen or a.time) < horizon[a.tenant_id]]:
            del alerts[aid]
            self.state.matched.pop(aid, None)
        stamp = {t: h.timestamp() for t, h in horizon.items()}
        for aid in [k for k, (tenant, t) in self.state.suppressed.items() if t < stamp.get(tenant, float("-inf"))]:
            del self.state.suppressed[aid]


_RECORD_KEYS = ("transaction_id", "record_id", "event_id")
_REF_TYPES = (str, int)  # (a tuple: `str | int` builds a union object on every call)


def _record_ref(a: Alert) -> str | None:
    """The product's own id of the record behind an alert, when it has one."""
    extra = a.extra
    if not extra:
        return None
    for k in _RECORD_KEYS:
        v = extra.get(k)
        if isinstance(v, _REF_TYPES) and v != "":
            return str(v)
    return None


def _times_by_tenant(alerts: list[Alert]) -> dict[str, list[datetime]]:
    tenants = {a.tenant_id for a in alerts}
    if len(tenants) == 1:  # the usual call: one tenant (cheaper without the loop below)
        return {tenants.pop(): [a.time for a in alerts]}
    out: dict[str, list[datetime]] = {}
    for a in alerts:
        ts = out.get(a.tenant_id)
        if ts is None:
            out[a.tenant_id] = [a.time]
        else:
            ts.append(a.time)
    return out


def error_text(e: BaseException) -> str:
    """`Type: message (file.py:line in function)` of the innermost frame, for a dead letter or a log line."""
    tb = traceback.extract_tb(e.__traceback__)
    at = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return f"{type(e).__name__}: {e}"[:300] + at


def _scalar(v: Any) -> Any:
    if isinstance(v, list):
        return v[0] if len(v) == 1 else (",".join(map(str, v)) if v else None)
    return v
