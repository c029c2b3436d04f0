"""Dedup: alerts with the same fingerprint inside a window merge into one alert with count/first_seen/last_seen.

The window is anchored at the first occurrence (event time): a duplicate within `window` seconds of its
representative's `first_seen` merges into it; a later one starts a new representative. Decisions depend only on
event times and fingerprints, so the same input in any chunking gives the same output.

State is a plain mapping fingerprint -> representative Alert (a dict in `mdr replay`; the streaming worker keeps
one per partition, keyed so that one fingerprint always lands in one partition).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator, Mapping, MutableMapping
from datetime import datetime, timedelta

from pipeline.normalize.base import make_id
from pipeline.normalize.registry import flag
from pipeline.schema import Alert

DEFAULT_WINDOW = 600.0
NEW, DUPLICATE, SAME_EVENT, UPGRADE = "new", "duplicate", "same_event", "upgrade"


def fingerprint(a: Alert) -> str:
    """What makes two alerts "the same": tenant, product, rule, source, target, and the object acted on.

    Source ports, timestamps and query strings vary between repetitions and are left out; the URL path, user,
    file, command line and DNS query are kept (a different one is different evidence).
    """
    if a.fingerprint:
        return a.fingerprint
    http, dst = a.http, a.dst
    path = None
    if http is not None and http.url:
        path = http.url.split("?", 1)[0]
    return make_id(
        a.tenant_id, a.source.format or a.source.product, a.rule.id, a.src.ip, dst.ip,
        dst.hostname or (http.host if http else None), str(dst.port) if dst.port else None,
        a.host.name if a.host else None, a.user, path,
        a.file.path if a.file else None, a.process.cmdline if a.process else None,
        a.dns.query if a.dns else None, a.action,
    )


def event_key(a: Alert) -> str | None:
    """Identity of the product event behind an alert when two logs of one product report it (ModSecurity's
    audit log and Apache's error log share the transaction id)."""
    tx = a.extra.get("transaction_id") if a.extra else None
    return f"{a.tenant_id}\x1f{a.source.product}\x1f{tx}" if tx else None


@functools.cache
def secondary_format(fmt: str) -> bool:
    """Whether format `fmt` is a secondary log of its product (cached: asked for every alert)."""
    return flag(fmt, "secondary")


def secondary(a: Alert) -> bool:
    """Whether `a` comes from a secondary log of its product with an event key (its primary log's alert of the
    same event carries more: a ModSecurity error-log line and the audit record of its transaction)."""
    return secondary_format(a.source.format) and event_key(a) is not None


def _upgrades(rep: Alert, a: Alert) -> bool:
    """Whether `a`, of the event of `rep`, is the primary log's view of a secondary log's representative."""
    return secondary_format(rep.source.format) and not secondary_format(a.source.format)


_KEEP = frozenset({"alert_id", "fingerprint", "count", "first_seen", "last_seen"})
_TAKEN = tuple(f for f in Alert.__struct_fields__ if f not in _KEEP)  # what an upgrade copies, in field order
_take = operator.attrgetter(*_TAKEN)
Tally = tuple[int, datetime | None, datetime | None]  # a representative's count, first_seen, last_seen


def tally(a: Alert) -> Tally:
    return a.count, a.first_seen, a.last_seen


def set_tally(a: Alert, t: Tally) -> None:
    a.count, a.first_seen, a.last_seen = t


class Dedup:
    """Merges repeated alerts. `process` returns (representative, kind), kind one of NEW, DUPLICATE (counted)
    or SAME_EVENT (another log's view of an event already held: not counted again).

    A representative is final once it has left the state (`holds` is then False): when a later alert replaces
    it, on `expire`, or on `drain()`. Until then its count, last_seen and (see below) content may still change.
    When the representative came from a secondary log and the primary log's alert for the same event arrives,
    the representative takes the primary's content (keeping its id, count and times) and is put in `upgraded`
    (the caller matches it again: it may have been matched on the secondary's content in an earlier call); a
    caller that merges a batch before handling it (`merge(a, before)`, the core) applies the upgrade itself at
    the primary's turn (`upgrade`), as if the alerts had come one by one.
    """

    def __init__(self, window: float = DEFAULT_WINDOW, state: MutableMapping[str, Alert] | None = None,
                 events: MutableMapping[str, str] | None = None):
        self.window = timedelta(seconds=window)
        self.state: MutableMapping[str, Alert] = state if state is not None else {}
        self.events: MutableMapping[str, str] = events if events is not None else {}
        self.upgraded: list[Alert] = []

    def merge(self, a: Alert, before: dict[int, tuple[Alert, Tally]] | None = None) -> tuple[Alert, str]:
        """Merge the alert into its dedup window: (its representative, NEW, DUPLICATE or SAME_EVENT).

        `before` is for a caller that merges a whole batch first and then handles it alert by alert: it keeps
        the tally each representative had before the first duplicate merged into it (by the representative's
        id(): the representative and its tally), and a primary log's alert that would upgrade a secondary
        representative is returned as UPGRADE, the upgrade left to the caller at its turn (`upgrade`)."""
        ek = event_key(a)
        if ek is not None:
            fp = self.events.get(ek)
            rep = self.state.get(fp) if fp is not None else None
            if rep is not None:
                if before is not None and _upgrades(rep, a):
                    return rep, UPGRADE
                if self.upgrade(rep, a):
                    self.upgraded.append(rep)
                return rep, SAME_EVENT
        fp = a.fingerprint = fingerprint(a)
        rep = self.state.get(fp)
        if rep is not None and abs(a.time - rep.first_seen) <= self.window:  # type: ignore[operator]  # a representative's first_seen is set
            if before is not None and id(rep) not in before:
                before[id(rep)] = (rep, tally(rep))
            rep.count += a.count
            if a.time > rep.last_seen:  # type: ignore[operator]  # as above
                rep.last_seen = a.time
            elif a.time < rep.first_seen:  # type: ignore[operator]  # as above
                rep.first_seen = a.time
            if ek is not None:
                self.events[ek] = fp
            return rep, DUPLICATE
        a.first_seen = a.first_seen or a.time
        a.last_seen = a.last_seen or a.time
        self.state[fp] = a
        if ek is not None:
            self.events[ek] = fp
        return a, NEW

    def upgrade(self, rep: Alert, a: Alert) -> bool:
        """A secondary log's representative takes the content of `a`, the primary log's alert of its event
        (keeping its id, count and times); False when there is nothing to upgrade."""
        if not _upgrades(rep, a):
            return False
        for name, value in zip(_TAKEN, _take(a), strict=True):
            setattr(rep, name, value)
        if rep.fingerprint and self.state.get(rep.fingerprint) is rep:
            self.state[rep.fingerprint] = rep  # write back (tables need the assignment)
        return True

    def holds(self, a: Alert) -> bool:
        """Whether `a` is still a representative here (its count may still grow)."""
        return bool(a.fingerprint) and self.state.get(a.fingerprint) is a

    def expire(self, cut: Mapping[str, datetime]) -> list[Alert]:
        """Representatives whose window closed before their tenant's time in `cut` (event time; tenants not in
        it keep theirs); they leave the state."""
        done = [fp for fp, rep in self.state.items()
                if rep.tenant_id in cut and cut[rep.tenant_id] - rep.first_seen > self.window]  # type: ignore[operator]  # a representative's first_seen is set
        gone = set(done)
        for ek in [k for k, fp in self.events.items() if fp in gone]:
            del self.events[ek]
        return [self.state.pop(fp) for fp in done]

    def drain(self) -> Iterator[Alert]:
        """Everything still held (end of input)."""
        self.events.clear()
        while self.state:
            _, rep = self.state.popitem()
            yield rep
