"""What the worker's agents do, without Faust: normalize ingest messages, run the core on a partition.

    ingest message --unpack/normalize--> Item(alert, ingest position) --by tenant--> PartitionWork --core-->

`IngestStage` (the worker's ingest stage, around the per-format normalizers' `NormalizeStage`) is stateless but
for the auditd assembly (ingest messages are keyed by host, or by tenant, so a host's records stay in order in one
partition). `PartitionWork` holds one partition of the by-tenant topic (with `--tenant-keyed`, also the same
partition of the ingest topics): its pending alerts, its `PartitionState` and a `Core` over it. Pending alerts
are fed in event-time order when the partition has been quiet for a moment, or they waited `max_hold`, so the
stream sees the order `mdr replay` sees as far as the arrival allows; or once `max_run` of them wait, so that a
backlog runs in bounded runs (with `--tenant-keyed` the worker normalizes a large read in `slices` of about that
many alerts and runs the partitions due between them).
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from pipeline.assemble import build_core
from pipeline.core.engine import Core, Outputs, error_text
from pipeline.core.incidents import IdSets
from pipeline.normalize.base import Origin, RawRecord
from pipeline.normalize.stage import NormalizeResult, NormalizeStage, dead_letter, utf8_prefix
from pipeline.rules.usecase import UseCaseSet
from pipeline.schema import Alert, DeadLetter, Incident
from pipeline.stream.config import WorkerConfig
from pipeline.stream.envelope import Message, unpack
from pipeline.stream.state import Encoded, PartitionState

if TYPE_CHECKING:
    from pipeline.context.store import Context

FEED_CHUNK = 2048  # alerts per core.feed_alerts call, as in `mdr replay`
FLUSH_SEQ = 1 << 30  # sequence numbers of alerts emitted by an idle flush (after the record's own)


class Item(msgspec.Struct, array_like=True, gc=False):
    """One normalized alert and the ingest position that produced it (for idempotent application)."""

    alert: Alert
    src: str  # ingest "topic:partition"
    off: int
    seq: int
    t_in: float  # ingest message timestamp (epoch seconds), for end-to-end latency


class Batch(msgspec.Struct, gc=False):
    tenant: str
    items: list[Item]


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Batch)


def pack(batch: Batch) -> bytes:
    return _enc.encode(batch)


def unpack_batch(data: bytes) -> Batch:
    return _dec.decode(data)


@dataclass(slots=True)
class Normalized:
    by_tenant: dict[str, list[Item]] = field(default_factory=dict)  # for the by-tenant topic
    # tenant-keyed ingest: alerts read from their tenant's own partition, for that partition's core:
    # (partition, tenant, items, index of the message they came from, or None after an idle flush)
    direct: list[tuple[int, str, list[Item], int | None]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)  # by topic


class IngestStage:
    """Ingest messages -> alerts grouped by tenant, and dead letters.

    With `route` (tenant -> partition: the ingest topics are keyed by tenant), a message read from its tenant's
    partition gives `direct` alerts, which that partition's core runs without the by-tenant topic; any other
    message's alerts still go by the by-tenant topic (a producer that keys otherwise loses nothing)."""

    def __init__(self, bindings: dict[str, str], route: Callable[[str], int] | None = None):
        self.bindings = bindings
        self.route = route
        self.stage = NormalizeStage()
        # (tenant, host) -> (src, offset, t_in, monotonic time) of its last record; flushed ones are removed
        self._last: dict[tuple[str, str | None], tuple[str, int, float, float]] = {}
        self._offsets: dict[tuple[str, str], int] = {}  # (tenant, src) -> offset of its last message
        self._flushes = time.time_ns() // 1000  # idle-flush sequence numbers grow, across restarts too

    def ingest(self, msgs: list[Message]) -> Normalized:
        return next(self.slices(msgs, 0))[1]

    def slices(self, msgs: list[Message], alerts: int) -> Iterator[tuple[int, Normalized]]:
        """`msgs` normalized in slices of consecutive messages: a slice ends with the message that brings its
        alerts to `alerts` (0: one slice of all). Yields (index after the slice's last message, its result);
        message indexes in `direct` count from the start of `msgs`. The caller may run the core between slices
        (the stage's buffers are consistent at every message boundary)."""
        out, n = Normalized(), 0
        now = time.monotonic()
        for i, m in enumerate(msgs):
            out.records[m.topic] += 1
            try:
                n += self._message(m, i, now, out)
            except Exception as e:  # a bug outside the stage's per-record containment: this message only
                out.dead.append(message_letter(m.topic, m.partition, m.offset, m.value, "normalizer_error",
                                               error_text(e)))
            if alerts and n >= alerts and i + 1 < len(msgs):
                yield i + 1, out
                out, n = Normalized(), 0
                now = time.monotonic()
        yield len(msgs), out

    def _message(self, m: Message, index: int, now: float, out: Normalized) -> int:
        """Normalize one message into `out`; the number of its alerts."""
        u = unpack(m, self.bindings)
        if u.dead is not None:
            out.dead.append(u.dead)
            return 0
        res = NormalizeResult()
        for rec in u.records:
            self.stage.process(rec, u.fmt, res)
        out.dead.extend(res.dead)
        out.skipped.update(res.skipped)
        src = f"{m.topic}:{m.partition}"
        t_in = (m.timestamp_ms or 0) / 1000 or time.time()
        first = u.records[0]
        self._last[(first.tenant_id, first.host)] = (src, m.offset, t_in, now)
        self._offsets[(first.tenant_id, src)] = m.offset
        if res.alerts:
            items = [Item(a, src, m.offset, seq, t_in) for seq, a in enumerate(res.alerts)]
            self._place(first.tenant_id, m.partition, items, index, out)
        return len(res.alerts)

    def _place(self, tenant: str, partition: int, items: list[Item], index: int | None, out: Normalized) -> None:
        if self.route is not None and self.route(tenant) == partition:
            out.direct.append((partition, tenant, items, index))
        else:
            out.by_tenant.setdefault(tenant, []).extend(items)

    def flush_idle(self, idle: float) -> Normalized:
        """Alerts that stateful normalizers (auditd, the ModSecurity error log) still buffer for a tenant and
        host whose records stopped `idle` seconds ago: the end of a stream has no end-of-file."""
        out = Normalized()
        now = time.monotonic()
        quiet = {k: v for k, v in self._last.items() if now - v[3] >= idle}
        if not quiet:
            return out
        for (tenant, host), (src, _, t_in, _) in quiet.items():
            res = self.stage.flush(  # the lambda's default binds the loop's key
                where=lambda fmt, t, h, key=(tenant, host): (t, h) == key)  # type: ignore[misc]
            out.dead.extend(res.dead)
            off = self._offsets[(tenant, src)]  # at or after every alert of this tenant already sent from src
            items = []
            for a in res.alerts:
                self._flushes += 1
                items.append(Item(a, src, off, FLUSH_SEQ + self._flushes, t_in))
            if items:
                self._place(tenant, int(src.rpartition(":")[2]), items, None, out)
        for k in quiet:
            del self._last[k]
        return out


def message_letter(topic: str, partition: int, offset: int, value: bytes | None, reason: str,
                   detail: str) -> DeadLetter:
    """Dead letter of a whole ingest message (the first bytes of its value, as oversized inputs keep)."""
    rec = RawRecord("", "", datetime.now(UTC), origin=Origin(topic=topic, partition=partition, offset=offset))
    d = dead_letter(rec, reason, detail, raw=utf8_prefix(value or b""), tenant_id=None)
    d.stage = "normalize"
    return d


@dataclass(slots=True)
class Flushed:
    """The result of running one partition's pending alerts through the core."""

    out: Outputs
    alerts: list[Alert]  # representatives whose state changed (final counts converge by key)
    writes: list[tuple[bytes, bytes | None]]  # table records persisting the state change (None: delete)
    encoded: Encoded  # the JSON of the alerts and incidents the state change encoded, for the outputs
    events: list[Any]  # the consumed messages to ack once the outputs are durable
    t_in: list[float]  # of every alert fed
    t_joined: list[float]  # of the alerts that joined an incident in this run
    fed: int
    redelivered: int
    state_seconds: float = 0.0  # of the time in run(): encoding the state change


@dataclass(slots=True)
class CoreHooks:
    """What each partition's core is built with beside the use cases (`pipeline.assemble.build_core`, as in
    `mdr replay`): the context (assets, intel, escort calendars of all tenants) and the noise classifier, shared
    by the partitions (each classifier bound to its own state)."""

    context: Context | None = None  # enricher and prioritizer
    classifier: Any = None  # a loaded NoiseClassifier, or None

    def classifier_for(self, state: PartitionState) -> Any:
        if self.classifier is None:
            return None
        c = copy.copy(self.classifier)
        c.reset(state.classifier)
        return c


class PartitionWork:
    """One partition of the by-tenant topic: pending alerts, their state, and the core over it."""

    def __init__(self, partition: int, cfg: WorkerConfig, usecases: UseCaseSet, state: PartitionState,
                 hooks: CoreHooks | None = None):
        self.partition = partition
        self.cfg = cfg
        self.pstate = state
        self.hooks = hooks or CoreHooks()
        self.classifier = self.hooks.classifier_for(state)
        self.core = self._core(usecases)
        self.pending: list[Item] = []
        self.events: list[Any] = []
        self.first_at = 0.0
        self.last_at = 0.0
        self.redelivered = 0
        self.started = time.monotonic()
        self.tenant_at: dict[str, float] = {}  # tenant -> monotonic time of its last input

    def _core(self, usecases: UseCaseSet) -> Core:
        return build_core(usecases, self.hooks.context, self.classifier, state=self.pstate.state,
                          dedup_window=self.cfg.dedup_window, lateness=self.cfg.lateness)

    def reload(self, usecases: UseCaseSet) -> None:
        """Run on a new use-case set, keeping the state."""
        self.core = self._core(usecases)

    def add(self, batch: Batch, event: Any, now: float) -> None:
        """Alerts of one consumed message (`event`: acked once they ran; None: nothing to ack)."""
        fresh = [it for it in batch.items if self.pstate.fresh(batch.tenant, it.src, it.off, it.seq)]
        self.redelivered += len(batch.items) - len(fresh)
        self._arrived(now)
        self.tenant_at[batch.tenant] = now
        self.pending.extend(fresh)
        if event is not None:
            self.events.append(event)

    def attach(self, events: list[Any], now: float) -> None:
        """Ack `events` after the next run (their alerts are pending here, or ran already)."""
        self._arrived(now)
        self.events.extend(events)

    def _arrived(self, now: float) -> None:
        if not self.waiting:
            self.first_at = now
        self.last_at = now

    @property
    def waiting(self) -> bool:
        """Alerts to run or messages to ack."""
        return bool(self.pending or self.events)

    def due(self, now: float) -> bool:
        if not self.waiting:
            return self.held_due(now)
        return (now - self.last_at >= self.cfg.quiet or now - self.first_at >= self.cfg.max_hold
                or 0 < self.cfg.max_run <= len(self.pending))

    def _quiet_tenants(self, now: float) -> set[str]:
        """Tenants holding error-log lines for their audit records whose input stopped `pair_hold` seconds ago
        (monotonic clock; for a tenant restored from the table, since this work began): nothing will move their
        event time, so the lines are matched alone at the next run."""
        held = self.pstate.maps["held"]
        if not held:
            return set()
        hold = self.core.pair_hold
        return {a.tenant_id for a in dict.values(held) if now - self.tenant_at.get(a.tenant_id, self.started) >= hold}

    def held_due(self, now: float) -> bool:
        """Whether a run without input is due: error-log lines of a quiet tenant."""
        return bool(self._quiet_tenants(now))

    def run(self) -> Flushed:
        """Feed the pending alerts in event-time order (the core moves the tenants' watermarks and expires),
        and take the delta."""
        items, self.pending = self.pending, []
        events, self.events = self.events, []
        redelivered, self.redelivered = self.redelivered, 0
        items.sort(key=lambda it: it.alert.time)
        core = self.core
        out = Outputs()
        for i in range(0, len(items), FEED_CHUNK):
            core.feed_alerts([it.alert for it in items[i:i + FEED_CHUNK]])
            out.add(core.take())
        if quiet := self._quiet_tenants(time.monotonic()):
            core.release_held(quiet)
            out.add(core.take())
        if out.dead:
            _locate(out.dead, items)
        dedup = self.pstate.maps["dedup"]
        changed = {a.alert_id: a for a in out.alerts}
        for fp in dedup.touched:
            rep = dict.get(dedup, fp)
            if rep is not None:
                changed[rep.alert_id] = rep
        t0 = time.perf_counter()
        encoded: Encoded = {}
        writes = self.pstate.writes(self.pstate.delta(encoded))
        joined = _joined(items, out.incidents.values(), core.idsets)
        return Flushed(out, list(changed.values()), writes, encoded, events, [it.t_in for it in items], joined,
                       len(items), redelivered, time.perf_counter() - t0)


def _locate(dead: list[DeadLetter], items: list[Item]) -> None:
    """Give the core's dead letters the ingest position of the alert that failed."""
    by_id = {it.alert.alert_id: it for it in items}
    for d in dead:
        it = by_id.get(d.alert_id) if d.alert_id and d.topic is None else None
        if it is not None:
            topic, _, part = it.src.rpartition(":")
            d.topic, d.partition, d.offset = topic, int(part), it.off


def _joined(items: list[Item], incidents: Iterable[Incident], idsets: IdSets) -> list[float]:
    """Ingest times of the alerts that are now part of one of `incidents` (alert -> incident latency)."""
    sets = [idsets.of(inc) for inc in incidents if inc.status != "merged"]
    if not sets:
        return []
    fed = {it.alert.alert_id for it in items}
    joined: set[str] = set()
    for s in sets:
        joined |= fed & s
    return [it.t_in for it in items if it.alert.alert_id in joined]
