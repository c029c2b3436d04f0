"""The Faust worker: thin agents around `processor` (normalize, repartition by tenant, core, emit).

    mdr.alerts.{waf,firewall,host,ddos}  --normalize agent-->  mdr.internal.by-tenant (key tenant)
    mdr.internal.by-tenant  --core agent (state in the `state` table: changelog + RocksDB)-->
        mdr.incidents (compacted, key incident id), mdr.alerts.normalized, mdr.suppressed, mdr.dlq, mdr.tickets

All correlation, incident and fusion state of a tenant lives in one partition of the by-tenant topic, so the
worker scales out across tenants and partitions (a single tenant's analysis runs on one worker at a time).
Ingest messages are keyed by host, so a host's records stay in order for the stateful auditd assembly.
With `--tenant-keyed` the ingest topics are keyed by tenant (and have the by-tenant topic's partitions): a
tenant's alerts run in the partition they are read from, without the by-tenant hop (alerts of a message a
producer keyed otherwise still take it). Outputs go to the producer as one batch per topic partition
(`outbox`), with Kafka's key partitioning. A flush sends its outputs, then writes its tickets, then its state,
then acks: a crash never leaves the state ahead of the outputs and tickets it implies.
With `--db`, the flush's incidents go to `Soar.handle` (tickets, playbooks), and a timer runs the SOAR clock
(`Soar.tick`: SLA escalation, playbook resumption) in the one worker holding its lease (pipeline/soar/clock.py).
Delivery is at least once; outputs are idempotent (deterministic ids, compacted incident topic, ingest
high-water marks in the state so redelivered alerts do not count twice).

Outputs are redacted: every configured secret (pipeline/redact.py; `mdr worker` registers the SOAR channels'
and store's secrets at start) is masked in the values of the output topics, whatever alert text carried it. The
by-tenant topic and the state changelog are the worker's own working data (the alerts as received, as the core
must match them) and are not outputs: docs/security.md.

Failures: a bad record or alert becomes a dead letter where it fails (normalize stage, core) and the stream goes
on. An error that escapes an agent or timer (`Runtime.fail`) keeps the messages in hand from being committed,
counts an attempt for each (`poison.Attempts`), turns /healthz to 503 and stops the worker with a non-zero exit;
after the restart a message that failed `--max-attempts` times goes to the dead letters instead of running again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust
from faust.streams import _current_event

from pipeline.core.engine import error_text
from pipeline.normalize.stage import dead_letter
from pipeline.rules.usecase import UseCaseSet
from pipeline.schema import DeadLetter, encode
from pipeline.stream.config import Topics, WorkerConfig
from pipeline.stream.envelope import Message
from pipeline.stream.metrics import Metrics
from pipeline.stream.outbox import Outbox
from pipeline.stream.partitions import TenantPartitions
from pipeline.stream.poison import POISON, Attempts
from pipeline.stream.processor import (
    Batch,
    CoreHooks,
    Flushed,
    IngestStage,
    Item,
    Normalized,
    PartitionWork,
    message_letter,
    pack,
    unpack_batch,
)
from pipeline.stream.state import PartitionState, encode_once
from pipeline.stream.usecases import UseCaseFeed

if TYPE_CHECKING:
    from pipeline.soar.actions import Soar
    from pipeline.soar.clock import Clock

log = logging.getLogger("mdr.worker")
MAX_MESSAGE = 16 * 1024 * 1024
ITEMS_PER_MESSAGE = 1000
FLUSH_TICK = 0.05
CONTEXT_POLL = 2.0  # seconds between looks at the saved context's files
RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0)  # ~24 s: a broker restart or a leader change passes
COMPRESSION = "zstd"  # alerts are ~3 KB of repetitive JSON: zstd cuts broker, network and changelog bytes ~10x


def faust_settings(cfg: WorkerConfig) -> dict[str, Any]:
    """Faust tuned for throughput and a quick group join (see tests/stream/test_broker.py)."""
    from pipeline.stream.outage import register_transport

    return {
        "broker": f"{register_transport()}://{cfg.bootstrap}",  # aiokafka with a longer retry back-off
        "store": "rocksdb://",
        "datadir": str(cfg.data_dir),
        "autodiscover": False,
        "web_enabled": False,
        "topic_partitions": cfg.partitions,
        "topic_replication_factor": 1,
        "table_standby_replicas": 0,
        "consumer_auto_offset_reset": "earliest",
        "stream_buffer_maxsize": 65536,
        "broker_max_poll_records": 5000,
        "stream_wait_empty": False,
        "stream_recovery_delay": 0.1,
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        "broker_rebalance_timeout": 15.0,
        "broker_commit_interval": 0.5,
        "producer_max_request_size": MAX_MESSAGE,
        "producer_linger_ms": 5,
        "producer_max_batch_size": 1 << 20,  # per partition: few large compressed batches
        "producer_compression_type": COMPRESSION,
    }


class Runtime:
    """The worker's shared objects: config, metrics, ingest stage, per-partition work, use cases, topics."""

    def __init__(self, cfg: WorkerConfig, usecases: UseCaseSet, metrics: Metrics | None = None):
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.partition_of = TenantPartitions(cfg.partitions)
        self.ingest_stage = IngestStage(cfg.tenant_bindings, self.partition_of if cfg.tenant_keyed else None)
        self._misrouted: set[str] = set()  # tenant-keyed ingest topics that carried a tenant off its partition
        self.context_sig = context_signature()
        self.hooks = core_hooks(cfg)
        self.model_sig = model_signature(cfg)
        self.usecases = usecases
        self.parts: dict[int, PartitionWork] = {}
        self.normalizing = asyncio.Lock()
        self.running = asyncio.Lock()  # one partition run (core, outputs, tickets, state, acks) at a time
        self._observers: set[asyncio.Future] = set()
        self.held: dict[tuple[str, int], list] = {}  # ingest messages kept from commit (see `hold`)
        self.last_ingest = 0.0
        self.ready = False
        self.app: faust.App = faust.App(cfg.app_id, **faust_settings(cfg))
        self.table = self.app.Table("state", partitions=cfg.partitions,
                                    key_type=bytes, value_type=bytes,  # raw serializers
                                    extra_topic_configs={"max.message.bytes": str(MAX_MESSAGE)})
        self.soar: Soar | None = None  # the ticket store and playbooks (--db)
        self.clock: Clock | None = None  # the SOAR clock, ticked by whichever worker holds its lease
        self.feed = UseCaseFeed(cfg, self._reloaded, self._rejected)
        self.attempts = Attempts(cfg.data_dir / "attempts.json", cfg.max_attempts)
        self.failure: str | None = None  # set once an error escaped an agent or timer: /healthz fails
        self.in_flight: list[Any] = []  # the ingest events being normalized (a failure counts against them)
        self.shutdown: Callable[[], None] = lambda: None  # asks the worker to stop (`mdr worker`: SIGTERM)

    def use_soar(self, soar: Soar) -> None:
        """Write tickets with `soar` and run its clock every `--soar-tick` seconds (when holding its lease)."""
        from pipeline.soar.clock import Clock

        self.soar, self.clock = soar, Clock(soar, self.cfg.soar_tick)

    # ---- health and failures -------------------------------------------------------------------------
    def failed(self) -> bool:
        """An error stopped the worker (ours, or a crash inside Faust)."""
        return self.failure is not None or getattr(self.app, "crash_reason", None) is not None

    def health(self) -> tuple[bool, str]:
        """(healthy, why) for /healthz: failed, crashed (Faust), starting, or ok."""
        if self.failure is not None:
            return False, f"failed: {self.failure}"
        if self.failed():
            return False, f"crashed: {self.app.crash_reason!r}"
        return (True, "ok") if self.ready else (False, "starting")

    def fail(self, where_: str, e: BaseException, events: Iterable[Any] = ()) -> None:
        """An error escaped the handling of `events`: count a failed attempt for each, report unhealthy and stop
        the worker. (The caller keeps them from being committed: `_keep` for a stream that acks by itself.)"""
        events = list(events)
        if events:
            self.attempts.failed([_position(ev) for ev in events], error_text(e))
        if self.failure is None:
            self.failure = f"{where_}: {error_text(e)}"
            self.metrics.failures.labels(where_).inc()
            log.critical("worker failed in %s; stopping: %s", where_, self.failure, exc_info=e)
            self.shutdown()

    def guarded(self, name: str, fun: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A timer or task body that reports an escaping error through `fail` (and does nothing once failed)."""
        async def run() -> None:
            if self.failure is not None:
                return
            try:
                await fun()
            except Exception as e:
                self.fail(name, e)
        run.__name__ = run.__qualname__ = fun.__name__
        return run

    def suspect(self, ev: Any) -> int:
        """Failed attempts of the message behind `ev` (0 for almost all: a dict lookup only after a failure)."""
        if not self.attempts.entries:
            return 0
        m = ev.message
        return self.attempts.count(m.topic, m.partition, m.offset)

    def poisoned(self, ev: Any) -> str | None:
        """Why the message behind `ev` is not run again (it failed `--max-attempts` times), or None."""
        n = self.suspect(ev)
        if n < self.attempts.limit:
            return None
        m = ev.message
        return f"failed {n} times: {self.attempts.error(m.topic, m.partition, m.offset)}"

    async def send_poison(self, ev: Any, dead: list[DeadLetter]) -> None:
        """The dead letters of a poisoned message (the caller acks it)."""
        await self.send_dead_now(dead)
        self.attempts.forget([_position(ev)])
        m = ev.message
        log.error("message %s:%d:%d dead-lettered after %d failed attempts", m.topic, m.partition, m.offset,
                  self.attempts.limit)

    # ---- ingest: normalize, then repartition by tenant -----------------------------------------------
    async def normalize(self, events: list[Any]) -> None:
        """One batch of ingest events. Messages that failed before are dead-lettered (`--max-attempts`) or run
        alone; an error escaping a batch goes to `fail` (the stream must not ack the batch then)."""
        self.in_flight = []
        if self.attempts.entries:
            normal = []
            for ev in events:
                why = self.poisoned(ev)
                if why is not None:
                    await self.send_poison(ev, [_poison_letter(ev, why)])
                elif self.suspect(ev):
                    await self._alone(ev)
                else:
                    normal.append(ev)
                if self.failure is not None:
                    return
            events = normal
        if events:
            await self._normalize(events)

    async def _alone(self, ev: Any) -> None:
        """A message that failed before: normalized alone; with tenant-keyed ingest its alerts also run alone
        (what is pending runs first), so that a failure counts against it only."""
        if self.cfg.tenant_keyed:
            await self.flush_due(force=True)
        if self.failure is None:
            await self._normalize([ev])
        if self.cfg.tenant_keyed and self.failure is None:
            await self.flush_due(force=True)

    async def _normalize(self, events: list[Any]) -> None:
        t0 = time.perf_counter()
        now = time.time()
        ingest_wait = self.metrics.wait.labels("ingest").observe
        for ev in events:
            if ev.message.timestamp:
                ingest_wait(max(0.0, now - ev.message.timestamp))
        msgs = [Message(ev.message.value, ev.message.topic, ev.message.partition, ev.message.offset,
                        int(ev.message.timestamp * 1000) if ev.message.timestamp else None,
                        ev.message.headers or ()) for ev in events]
        self.in_flight = events
        # tenant-keyed: the batch in slices of about --max-run alerts, and the partitions due run between them,
        # so that a large take (a worker that fell behind) neither waits for the whole batch to be normalized
        # nor runs the core on all of it at once (the hop's core agent interleaves through the by-tenant topic)
        cap = self.cfg.max_run if self.cfg.tenant_keyed else 0
        start = 0
        async with self.normalizing:  # idle flushes come after, never between, a batch and its sending
            for end, res in self.ingest_stage.slices(msgs, cap):
                self.metrics.stage.labels("normalize").observe(time.perf_counter() - t0)
                await self.dispatch(res, events)
                self.hold(events[start:end])  # before take_events acks them
                if cap:
                    await self.flush_due()
                    await asyncio.sleep(0)  # the consumer and the timers get their turn
                    t0, start = time.perf_counter(), end
        self.last_ingest = time.monotonic()
        if self.attempts.entries:
            self.attempts.forget([_position(ev) for ev in events])

    # ---- outputs ------------------------------------------------------------------------------------
    async def produce(self, out: Outbox) -> list:
        """Queue an outbox's records on the producer, batched per topic partition; their delivery futures."""
        if not out.count:
            return []
        producer: Any = self.app.producer  # Faust's; its aiokafka producer is under Faust's flush
        return await out.send(producer._ensure_producer())

    async def dispatch(self, res: Normalized, events: Sequence[Any] = ()) -> None:
        """A normalized batch on its way: alerts read from their tenant's own partition (`--tenant-keyed`)
        straight to that partition's core, whose run acks their messages; the others to the by-tenant topic;
        dead letters to mdr.dlq. Returns once the broker has the records sent."""
        out = Outbox()
        t = self.cfg.topics
        now = time.monotonic()
        alerts = self.metrics.alerts
        owned = self.owned() if res.direct else set()
        for p, tenant, items, i in res.direct:
            ev = events[i] if i is not None else None
            if p not in owned:  # revoked meanwhile: the next owner reads the message again
                continue
            if ev is not None:
                ev.message.incref()  # committed once acked by the stream and by the partition's run
            self.work(p).add(Batch(tenant, items), ev, now)
            alerts.labels(tenant).inc(len(items))
        for tenant, items in res.by_tenant.items():
            for i in range(0, len(items), ITEMS_PER_MESSAGE):  # the worker's own hop: alerts as the core sees them
                out.add(t.internal, tenant, pack(Batch(tenant, items[i:i + ITEMS_PER_MESSAGE])))
            alerts.labels(tenant).inc(len(items))
        if self.cfg.tenant_keyed and res.by_tenant:
            self._rerouted(res)
        self.send_dead(res.dead, out)
        for topic, n in res.records.items():
            self.metrics.records.labels(topic).inc(n)
        await asyncio.gather(*await self.produce(out))

    def _rerouted(self, res: Normalized) -> None:
        """Count alerts a tenant-keyed ingest topic carried on another partition than their tenant's (they
        took the by-tenant topic); warn once per ingest topic."""
        for items in res.by_tenant.values():
            self.metrics.rerouted.inc(len(items))
            topic = items[0].src.rpartition(":")[0]
            if topic not in self._misrouted:
                self._misrouted.add(topic)
                log.warning("%s is not keyed by tenant (tenant %s on partition %s): such alerts take the "
                            "by-tenant topic", topic, items[0].alert.tenant_id, items[0].src.rpartition(":")[2])

    async def send_dead_now(self, dead: Iterable[DeadLetter]) -> None:
        """Dead letters on their own, delivered before this returns."""
        out = Outbox()
        self.send_dead(dead, out)
        await asyncio.gather(*await self.produce(out))

    def send_dead(self, dead: Iterable[DeadLetter], out: Outbox) -> None:
        for d in dead:
            key = f"{d.topic}:{d.partition}:{d.offset}" if d.topic else None
            out.output(self.cfg.topics.dlq, key, encode(d))
            self.metrics.dead.labels(d.reason).inc()

    # ---- ingest messages whose records a normalizer still buffers ------------------------------------
    def hold(self, events: list) -> None:
        """Keep the ingest messages whose records a stateful normalizer (auditd, the ModSecurity error log)
        still buffers from being committed: a crash would lose those records. Releases what is done."""
        floor = self.ingest_stage.stage.buffered_floor()
        for ev in events:
            m = ev.message
            tp = (m.topic, m.partition)
            if tp in floor and m.offset >= floor[tp]:
                m.incref()  # take_events' ack then leaves it pending until `release`
                self.held.setdefault(tp, []).append(ev)
        self.release(floor)

    def release(self, floor: dict[tuple[str, int], int] | None = None) -> None:
        """Ack the held messages no buffered record comes from any more (tenant-keyed ingest: after the next
        run of their partition, which runs the alerts their records gave)."""
        if not self.held:
            return
        floor = self.ingest_stage.stage.buffered_floor() if floor is None else floor
        now = time.monotonic()
        owned = self.owned() if self.cfg.tenant_keyed else set()
        for tp, evs in list(self.held.items()):
            low = floor.get(tp)
            keep = []
            for ev in evs:
                if low is not None and ev.message.offset >= low:
                    keep.append(ev)
                elif tp[1] in owned:
                    self.work(tp[1]).attach([ev], now)
                else:
                    ev.ack()
            if keep:
                self.held[tp] = keep
            else:
                del self.held[tp]

    # ---- the core, per partition --------------------------------------------------------------------
    def owned(self) -> set[int]:
        """Partitions of the by-tenant topic (and of the state) assigned to this worker now."""
        internal = self.cfg.topics.internal
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == internal}

    def work(self, partition: int) -> PartitionWork:
        w = self.parts.get(partition)
        if w is None:
            st = PartitionState()
            n = st.load(_partition_items(self.table, partition))
            log.info("partition %d: state loaded (%d keys)", partition, n)
            w = self.parts[partition] = PartitionWork(partition, self.cfg, self.usecases, st, self.hooks)
        return w

    def revoked(self, tps: Iterable[Any]) -> None:
        ingest = {(tp.topic, tp.partition) for tp in tps if tp.topic in self.cfg.topics.ingest}
        self.ingest_stage.stage.discard_from(ingest)  # uncommitted: the next owner reads them again
        for tp in ingest:
            self.held.pop(tp, None)
        core = {self.cfg.topics.internal, *(self.cfg.topics.ingest if self.cfg.tenant_keyed else ())}
        for tp in tps:
            if tp.topic in core and self.parts.pop(tp.partition, None) is not None:
                log.info("partition %d revoked: state dropped from memory", tp.partition)

    async def add(self, ev: Any) -> None:
        """An event of the by-tenant topic: pending for its partition; a message that failed before runs alone,
        or is dead-lettered alert by alert once it failed `--max-attempts` times."""
        p = ev.message.partition
        batch = unpack_batch(ev.message.value)
        if self.attempts.entries and self.suspect(ev):
            why = self.poisoned(ev)
            if why is not None:
                await self.send_poison(ev, [_poison_alert(it, batch.tenant, why) for it in batch.items])
                ev.ack()
                return
            w = self.work(p)
            if w.waiting:
                await self.flush(p, w)
                if self.failure is not None:
                    return
            self.work(p).add(batch, ev, time.monotonic())
            await self.flush(p, self.work(p))
            return
        self.work(p).add(batch, ev, time.monotonic())

    async def flush_due(self, force: bool = False) -> None:
        now = time.monotonic()
        for p, w in list(self.parts.items()):
            if (force and w.waiting) or w.due(now):  # without input: error-log lines of a quiet tenant
                await self.flush(p, w)

    async def flush(self, partition: int, w: PartitionWork) -> None:
        """`_flush`, one at a time (a run's outputs, tickets and state go out before the next run's: the
        timer's flushes and those between ingest slices interleave at their awaits); on an escaping error the
        partition's state is dropped from memory (it may be half changed; the table has the last good one) and
        its messages are failed (not acked, counted)."""
        async with self.running:
            if self.parts.get(partition) is not w or self.failure is not None:  # revoked or failed meanwhile
                return
            events = list(w.events)
            try:
                await self._flush(partition, w)
            except Exception as e:
                self.parts.pop(partition, None)
                self.fail("core", e, events)
                return
        if self.attempts.entries:
            self.attempts.forget([_position(ev) for ev in events])

    async def _flush(self, partition: int, w: PartitionWork) -> None:
        """Run a partition's pending alerts through the core, send the outputs, write the tickets, and then
        persist its state.

        The state change goes last: a crash never leaves the state ahead of the outputs and tickets it implies.
        The consumed messages are acked after it: Faust flushes the producer (outputs and state changelog)
        before it commits their offsets, so a crash before that redelivers them; where the state got through,
        its high-water marks make the redelivery a no-op, and otherwise the core, run again from the last
        state, gives the same outputs (deterministic ids) and the same ticket updates (upserts by incident).
        End-to-end latency is observed when the broker has acknowledged the outputs."""
        t0 = time.perf_counter()
        if w.waiting:
            self.metrics.wait.labels("hold").observe(time.monotonic() - w.first_at)
        fl = w.run()
        t1 = time.perf_counter()
        out = Outbox()
        t = self.cfg.topics
        enc = fl.encoded  # what the state change encoded already
        priorities: Counter[str] = Counter()
        for inc in sorted(fl.out.incidents.values(), key=lambda i: i.status == "merged"):
            out.output(t.incidents, inc.incident_id, encode_once(inc, enc))
            priorities[inc.priority] += 1
        for a in fl.alerts:
            out.output(t.alerts, a.alert_id, encode_once(a, enc))
        for s in fl.out.suppressed:
            out.output(t.suppressed, s.alert.alert_id, encode(s))
        for f in fl.out.fates:
            out.output(t.fates, f.alert_id, encode(f))
        self.send_dead(fl.out.dead, out)
        futures = await self.produce(out)
        if self.soar is not None and (fl.out.incidents or fl.alerts or fl.out.suppressed):
            futures += await self._tickets(fl)
        t2 = time.perf_counter()
        await self._persist_retrying(fl, partition)
        t3 = time.perf_counter()
        for prio, n in priorities.items():
            self.metrics.incidents.labels(prio).inc(n)
        for ev in fl.events:
            ev.ack()
        m = self.metrics
        m.stage.labels("core").observe(t1 - t0 - fl.state_seconds)
        m.stage.labels("state").observe(fl.state_seconds + t3 - t2)  # encode the change, write it to the table
        m.stage.labels("emit").observe(t2 - t1 + time.perf_counter() - t3)
        m.applied.inc(fl.fed)
        m.alerts_new.inc(len(fl.out.alerts))
        m.suppressed.inc(len(fl.out.suppressed))
        m.redelivered.inc(fl.redelivered)
        m.observe_drift(drain_drift(w.classifier))
        task = asyncio.ensure_future(self._delivered(futures, fl.t_in, fl.t_joined))
        self._observers.add(task)
        task.add_done_callback(self._observers.discard)
        if fl.out.incidents:
            log.info("partition %d: %d alerts -> %d incident updates", partition, fl.fed, len(fl.out.incidents))

    async def _delivered(self, futures: list, t_in: list[float], t_joined: list[float]) -> None:
        """Observe end-to-end latency once the broker acknowledged a flush's outputs."""
        try:
            await asyncio.gather(*futures)
        except Exception as e:  # the commit's producer flush surfaces delivery errors; here only latency
            log.warning("output delivery failed: %s", e)
            return
        done = time.time()
        observe = self.metrics.e2e.observe
        for x in t_in:
            observe(max(0.0, done - x))
        observe = self.metrics.to_incident.observe
        for x in t_joined:
            observe(max(0.0, done - x))

    async def _persist_retrying(self, fl: Flushed, partition: int) -> None:
        """`_persist`, tried again while the broker is away (the table checks its changelog topic on each write;
        the writes set keys, so writing them again is harmless); the last failure escapes to `flush`."""
        for delay in (*RETRY_DELAYS, None):
            try:
                self._persist(fl, partition)
                return
            except Exception as e:
                if delay is None:
                    raise
                log.warning("state write failed (%s); retrying in %g s", error_text(e), delay)
                await asyncio.sleep(delay)

    def _persist(self, fl: Flushed, partition: int) -> None:
        """Write the state records to the table, in `partition` (Faust's table takes it from the current event:
        one of the by-tenant topic's partition stands in, whether the alerts came that way or not)."""
        if not fl.writes:
            return
        stand_in: Any = _PartitionEvent(self.cfg.topics.internal, partition)
        token = _current_event.set(weakref.ref(stand_in))
        try:
            table = self.table
            for k, v in fl.writes:
                if v is not None:
                    table[k] = v
                else:
                    with contextlib.suppress(KeyError):
                        del table[k]
        finally:
            _current_event.reset(token)

    async def _tickets(self, fl: Flushed) -> list:
        """The flush's incidents as tickets, then its alerts, suppressed alerts and fused parts as evidence,
        into the SOAR store (--db); ticket snapshots to mdr.tickets; their delivery futures. Tickets first: a
        ticket matters more than its evidence (the console shows a ticket without its alerts until they are
        written). The flush's state is written after both, so a crash here has the flush run again."""
        import orjson

        from pipeline.soar import evidence
        from pipeline.soar.actions import failed_updates

        assert self.soar is not None  # called only with a SOAR store in use (use_soar)

        loop = asyncio.get_running_loop()
        incidents = list(fl.out.incidents.values())
        futures: list = []
        if incidents:
            results = await loop.run_in_executor(None, self.soar.handle, incidents)
            out = Outbox()
            self.send_dead(failed_updates(incidents, results), out)
            for r in results:
                body = {k: getattr(r, k) for k in getattr(r, "__dataclass_fields__", {})}
                out.output(self.cfg.topics.tickets, str(body.get("incident_id")), orjson.dumps(body, default=str))
            futures = await self.produce(out)
        await loop.run_in_executor(None, evidence.record, self.soar.store, fl.alerts, fl.out.suppressed, incidents)
        return futures

    # ---- the SOAR clock ------------------------------------------------------------------------------------
    async def tick_soar(self) -> None:
        """One beat of the SOAR clock (`soar.clock`: escalate overdue tickets, resume due playbook runs) in the
        worker holding its lease. A beat that fails (the store unreachable) is logged and counted; the next beat
        tries again, and no escalation is lost meanwhile (it happens late)."""
        if self.clock is None:
            return
        try:
            done = await asyncio.get_running_loop().run_in_executor(None, self.clock.tick)
        except Exception as e:
            self.metrics.soar_ticks.labels("failed").inc()
            log.error("SOAR clock: tick failed (next in %g s): %s", self.cfg.soar_tick, error_text(e))
            return
        self.metrics.soar_ticks.labels("standby" if done is None else "ticked").inc()
        if done is not None:
            for esc in done.escalations:
                self.metrics.escalations.labels(esc.priority).inc()
            self.metrics.runs_resumed.inc(done.resumed)

    # ---- context (`mdr assets import`, `mdr intel import` write it under MDR_HOME) -------------------
    async def watch_context(self) -> None:
        """Reload the saved context when its files changed, and the noise model when the registry of `--model`
        names another active or shadow model; the partitions' cores use them from the next alert."""
        loop = asyncio.get_running_loop()
        msig = await loop.run_in_executor(None, model_signature, self.cfg)
        if msig != self.model_sig:
            await self.reload_model(msig)
        sig = await loop.run_in_executor(None, context_signature)
        if sig == self.context_sig:
            return
        hooks = await loop.run_in_executor(None, core_hooks, self.cfg, self.hooks.classifier)
        self.context_sig, self.hooks = sig, hooks
        ctx = hooks.context
        assert ctx is not None  # core_hooks always loads the saved context
        for w in self.parts.values():
            w.hooks = hooks
            w.core.enricher, w.core.prioritizer = ctx.enrich, ctx.prioritize
        self.metrics.context_reloads.inc()
        log.info("context reloaded (%d files)", len(sig))

    async def reload_model(self, sig: tuple) -> None:
        """Load the registry's models (a promoted model becomes active without a restart); each partition's
        classifier is rebound to its own state (the source history carries over: it does not depend on the
        model). A registry that cannot be loaded keeps the running model."""
        from pipeline.classify.model import ModelError
        from pipeline.classify.registry import RegistryError, load_classifier

        try:
            classifier = await asyncio.get_running_loop().run_in_executor(
                None, load_classifier, self.cfg.model)  # type: ignore[arg-type]  # set: a registry changed
        except (ModelError, RegistryError, OSError) as e:
            self.metrics.model_reloads.labels("failed").inc()
            log.warning("noise model reload failed, keeping the running one: %s", e)
            self.model_sig = sig
            return
        self.model_sig = sig
        self.hooks = CoreHooks(self.hooks.context, classifier)
        for w in self.parts.values():
            w.hooks = self.hooks
            w.classifier = self.hooks.classifier_for(w.pstate)
            w.core.classifier = w.classifier
        self.metrics.model_reloads.labels("ok").inc()
        log.info("noise model reloaded: %s", sig)

    # ---- use cases ----------------------------------------------------------------------------------
    def _reloaded(self, ucs: UseCaseSet) -> None:
        self.usecases = ucs
        for w in self.parts.values():
            w.reload(ucs)
        self.metrics.usecase_reloads.labels("ok").inc()
        log.info("use cases reloaded: %d use cases", len(ucs.usecases))

    async def _rejected(self, name: str, reason: str, text: str) -> None:
        d = dead_letter(None, "usecase_rejected", f"{name}: {reason}", source="usecase", raw=text)
        d.topic = self.cfg.topics.usecases
        await self.send_dead_now([d])
        self.metrics.usecase_reloads.labels("rejected").inc()
        log.warning("use case file %s rejected, keeping the last good set: %s", name, reason)


class _PartitionEvent:
    """What Faust's table reads of the current event to place a write: its message's topic and partition."""

    __slots__ = ("__weakref__", "message")  # the current event is held by weak reference

    def __init__(self, topic: str, partition: int):
        self.message = _Where(topic, partition)


@dataclass(slots=True)
class _Where:
    topic: str
    partition: int


def _position(ev: Any) -> tuple[str, int, int]:
    m = ev.message
    return m.topic, m.partition, m.offset


def _poison_letter(ev: Any, why: str) -> DeadLetter:
    m = ev.message
    return message_letter(m.topic, m.partition, m.offset, m.value, POISON, why)


def _poison_alert(it: Item, tenant: str, why: str) -> DeadLetter:
    """The dead letter of one alert of a poisoned by-tenant message, with the ingest position it came from."""
    topic, _, part = it.src.rpartition(":")
    a = it.alert
    return DeadLetter(reason=POISON, detail=why[:500], source=a.source.format or a.source.product, stage="core",
                      alert_id=a.alert_id, tenant_id=tenant, topic=topic, partition=int(part), offset=it.off,
                      raw=a.raw)


def context_signature() -> tuple:
    """What the saved context under MDR_HOME looks like on disk (names, sizes, modification times)."""
    from pipeline.context.store import mdr_home

    root = mdr_home() / "context"
    if not root.is_dir():
        return ()
    return tuple(sorted((str(p), st.st_size, st.st_mtime_ns) for p in root.rglob("*")
                        if p.is_file() and (st := p.stat())))


def drain_drift(classifier: Any) -> dict:
    """The per-tenant drift counts a partition's classifier gathered since the last call (then reset)."""
    model = getattr(classifier, "active", classifier)
    drift = getattr(model, "drift", None)
    if not drift:
        return {}
    model.drift = {}
    return drift


def model_signature(cfg: WorkerConfig) -> tuple:
    """(active, shadow) of the registry of `--model`; () for a plain model directory or none."""
    from pipeline.classify.registry import Registry, RegistryError, is_registry

    if cfg.model is None or not is_registry(cfg.model):
        return ()
    try:
        st = Registry(cfg.model).state()
    except RegistryError:
        return ()
    return (st.get("active"), st.get("shadow"))


def core_hooks(cfg: WorkerConfig, classifier: Any = None) -> CoreHooks:
    """The context saved under MDR_HOME (every tenant's assets and escort calendar, intel) and the noise
    classifier of `--model` (or `classifier`, already loaded: a context reload keeps it), as `mdr replay`
    uses them."""
    from pipeline.context.store import Context

    if classifier is None and cfg.model is not None:
        from pipeline.classify.registry import load_classifier

        classifier = load_classifier(cfg.model)
        log.info("noise classifier %s loaded", cfg.model)
    return CoreHooks(Context.from_state(), classifier)


def _partition_items(table: Any, partition: int) -> Iterable[tuple[bytes, bytes]]:
    store = table.data
    if hasattr(store, "_db_for_partition"):
        return store._db_for_partition(partition).items()
    return list(store.items())


def ensure_topics(bootstrap: str, topics: Topics, partitions: int) -> None:
    """Create the worker's topics (existing ones are left alone): ingest and outputs with `partitions`
    partitions, the by-tenant topic with room for many alerts per message, compacted incidents and use cases."""
    from pipeline.stream.broker import create_topics

    create_topics(bootstrap, topics.ingest, partitions=partitions,  # room for records just over the limit
                  configs={"max.message.bytes": str(4 * 1024 * 1024)})
    create_topics(bootstrap, topics.plain, partitions=partitions)
    create_topics(bootstrap, [topics.internal], partitions=partitions,
                  configs={"max.message.bytes": str(MAX_MESSAGE)})
    create_topics(bootstrap, topics.compacted, partitions=1, compacted=True)


def tenant_keyed_problem(bootstrap: str, topics: Topics, partitions: int) -> str | None:
    """Why `--tenant-keyed` cannot work on these topics, or None. A tenant-keyed worker runs what it reads on
    ingest partition p in state partition p; Kafka assigns both to the same worker only when every ingest
    topic has as many partitions as the by-tenant topic (and then a tenant's key lands in its partition)."""
    from pipeline.stream.broker import topic_partitions

    counts = topic_partitions(bootstrap, [*topics.ingest, topics.internal])
    want = counts.get(topics.internal, partitions)
    bad = {t: n for t, n in counts.items() if n != want}
    if not bad:
        return None
    return (f"--tenant-keyed needs every ingest topic with the {want} partitions of {topics.internal}; "
            + ", ".join(f"{t} has {n}" for t, n in sorted(bad.items())))


def build(cfg: WorkerConfig, usecases: UseCaseSet, metrics: Metrics | None = None) -> Runtime:
    """The Faust app with its agents and timers."""
    rt = Runtime(cfg, usecases, metrics)
    app, t = rt.app, cfg.topics
    ingest = app.topic(*t.ingest, key_serializer="raw", value_serializer="raw")
    internal = app.topic(t.internal, partitions=cfg.partitions, key_serializer="raw", value_serializer="raw")
    verdicts = app.topic(t.verdicts, key_serializer="raw", value_serializer="raw")

    @app.agent(ingest, name="normalize")
    async def normalize(stream: faust.StreamT) -> None:
        async for events in stream.take_events(  # type: ignore[attr-defined]  # faust's Stream; StreamT lacks it
                cfg.normalize_batch, within=cfg.normalize_within):
            if rt.failure is not None:  # stopping: leave them uncommitted
                _keep(events)
                continue
            try:
                await rt.normalize(events)
            except Exception as e:
                rt.fail("normalize", e, rt.in_flight)  # the messages run alone count, not their batch
                _keep(events)

    @app.agent(internal, name="core")
    async def core(stream: faust.StreamT) -> None:
        internal_wait = rt.metrics.wait.labels("internal").observe
        async for ev in stream.noack().events():  # type: ignore[attr-defined]  # faust's Stream; StreamT lacks it
            if rt.failure is not None:
                continue
            if ev.message.timestamp:
                internal_wait(max(0.0, time.time() - ev.message.timestamp))
            try:
                await rt.add(ev)
            except Exception as e:
                rt.fail("core", e, [ev])

    @app.agent(verdicts, name="verdicts")
    async def verdict(stream: faust.StreamT) -> None:
        async for ev in stream.events():
            if rt.failure is not None:
                _keep([ev])
                continue
            rt.metrics.verdicts.inc()
            try:
                _verdict(cfg, ev.message.value)
            except Exception as e:
                rt.fail("verdicts", e, [ev])
                _keep([ev])

    async def flusher() -> None:
        await rt.flush_due()

    async def idle_flush() -> None:
        async with rt.normalizing:
            res = rt.ingest_stage.flush_idle(cfg.idle_flush)
            if res.by_tenant or res.direct or res.dead:
                await rt.dispatch(res)
            rt.release()
        _lag(rt)

    async def context_watch() -> None:
        await rt.watch_context()

    async def soar_clock() -> None:
        await rt.tick_soar()

    async def usecase_feed() -> None:
        await rt.feed.run()

    app.timer(FLUSH_TICK)(rt.guarded("flush", flusher))
    app.timer(0.5)(rt.guarded("idle flush", idle_flush))
    app.timer(CONTEXT_POLL)(rt.guarded("context reload", context_watch))
    app.timer(cfg.soar_tick)(rt.guarded("SOAR clock", soar_clock))
    app.task(rt.guarded("use-case feed", usecase_feed))

    @rt.table.on_recover
    async def recovered() -> None:  # the state of assigned partitions is ready before their first event
        for tp in app.consumer.assignment():
            if tp.topic == t.internal:
                rt.work(tp.partition)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's handler type asks for a signal keyword
    async def on_revoked(sender: Any, revoked: Any = (), **kw: Any) -> None:
        rt.revoked(revoked)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's handler type asks for a signal keyword
    async def on_shutdown(sender: Any, **kw: Any) -> None:  # the consumer has stopped: finish ticket work
        loop = asyncio.get_running_loop()
        if rt.clock is not None:  # another worker takes the clock over at its next beat
            await loop.run_in_executor(None, rt.clock.close)
        if rt.soar is not None:
            await loop.run_in_executor(None, rt.soar.close)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's handler type asks for a signal keyword
    async def on_assigned(sender: Any, assigned: Any = (), **kw: Any) -> None:
        rt.ready = True
        rt.metrics.assigned.clear()
        for topic, n in Counter(tp.topic for tp in app.consumer.assignment()).items():
            rt.metrics.assigned.labels(topic).set(n)
        log.info("partitions assigned: %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))

    return rt


def _keep(events: Iterable[Any]) -> None:
    """Keep events a stream acks by itself from being committed (the worker is stopping after a failure)."""
    for ev in events:
        ev.message.incref()


def _verdict(cfg: WorkerConfig, value: bytes | None) -> None:
    import orjson

    try:
        rec = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        log.warning("verdict is not JSON; ignored")
        return
    log.info("verdict %s for incident %s", rec.get("verdict"), rec.get("incident_id"))
    if cfg.verdicts_file is not None:  # only the file: the sinks are where verdicts come from (no echo)
        from pipeline.soar.verdicts import append

        append(rec, cfg.verdicts_file)


def _lag(rt: Runtime) -> None:
    """Consumer lag per assigned partition (highwater minus the position of the consumer)."""
    consumer = getattr(rt.app, "_consumer", None)
    if consumer is None:
        return
    try:
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            pos = consumer._read_offset.get(tp)  # last offset read (Faust keeps it per partition)
            if hw is not None:
                rt.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - (pos + 1 if pos is not None
                                                                                   else 0)))
    except Exception as e:  # lag is best effort; never stop the worker for it
        log.debug("lag: %s", e)
