"""The Faust worker on a real Kafka 4 broker runs exactly the core of `mdr replay`.

Each test uses its own topic prefix and consumer group on the session broker (fixture `kafka_broker`), and
runs `mdr worker` as a subprocess. `PARITY` makes the worker hold a partition's alerts (however many) until the
input has been quiet for a few seconds, so a finite input is fed in event-time order as `mdr replay` feeds it.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from pipeline.normalize.stage import DLQ_PREFIX_BYTES
from pipeline.replay import ReplayResult
from pipeline.schema import decode_alert
from pipeline.stream.app import ensure_topics
from pipeline.stream.broker import free_port
from pipeline.stream.config import Topics
from pipeline.stream.envelope import envelope
from pipeline.stream.partitions import partition_of
from tests.lab import LabReplay
from tests.stream.fixtures_worker import (
    INGEST,
    LAB1,
    TWO_WAYS,
    Ingest,
    latest_incidents,
    produce_lab,
    read_topic,
    replay_lab,
    settle,
    start_worker,
    summary,
    wait_until,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
PARITY = ("--quiet", "3", "--max-hold", "120", "--max-run", "0", "--idle-flush", "1")
# two workers normalize for each other: a tenant's alerts cross the by-tenant topic from the other worker, and
# on a loaded machine (2 cores, load 9) 3 s without input came between a tenant's IDS and WAF alerts in 2 of 3
# runs, so its partition ran on part of them; 10 s held every run together (3 of 3 at the same load)
SCALE_OUT = ("--quiet", "10", "--max-hold", "120", "--max-run", "0", "--idle-flush", "1")


def final_state(bootstrap: str, prefix: str, quiet: float = 6.0, timeout: float = 120.0) -> dict:
    """The compacted incident topic once it stopped changing."""
    return settle(lambda: summary(latest_incidents(bootstrap, f"{prefix}incidents")), quiet, timeout)


def alert_counts(bootstrap: str, prefix: str) -> dict[str, int]:
    return {r.key.decode(): decode_alert(r.value).count for r in read_topic(bootstrap, f"{prefix}alerts.normalized")}


@pytest.fixture
def lab_replay(lab1_replay: LabReplay) -> ReplayResult:
    """The day replayed as `mdr replay` does it (the worker's core configuration): the shared replay."""
    return lab1_replay.result


@pytest.mark.parametrize("ingest", INGEST, ids=lambda i: i.name)
def test_parity_with_replay(kafka_broker, tmp_path: Path, lab_replay, ingest: Ingest) -> None:
    """The worker's incidents and alert counts are those of `mdr replay`, whether a tenant's alerts take the
    by-tenant topic, run where a tenant-keyed ingest topic delivers them, or both (a producer keying some
    topics by host: those alerts take the by-tenant topic, and say so in the log)."""
    b, prefix = kafka_broker.bootstrap, f"mdr.parity-{ingest.name}."
    w = start_worker(b, tmp_path, "--prefix", prefix, *PARITY, *ingest.worker_args, app_id=f"parity-{ingest.name}")
    try:
        produce_lab(b, "shop", prefix=prefix, key_by=ingest.key_by)
        got = final_state(b, prefix)
        want = summary(lab_replay.incidents)
        assert set(got) == set(want), w.tail()
        assert got == want
        assert alert_counts(b, prefix) == {a.alert_id: a.count for a in lab_replay.alerts}
        assert not read_topic(b, f"{prefix}dlq")
        hopped = bool(read_topic(b, f"{prefix}internal.by-tenant", timeout=5))
        assert hopped == (ingest.name != "tenant-keyed")
        assert ("is not keyed by tenant" in w.log.read_text()) == (ingest.name == "tenant-keyed-mixed")
    finally:
        assert w.stop() == 0, w.tail()


@pytest.mark.parametrize("ingest", TWO_WAYS, ids=lambda i: i.name)
def test_crash_and_restart(kafka_broker, tmp_path: Path, lab_replay, ingest: Ingest) -> None:
    """kill -9 while the worker writes its first state; the restarted worker loses and doubles nothing:
    incidents, alert counts, tickets and their playbook runs all equal one clean pass."""
    b, prefix, app = kafka_broker.bootstrap, f"mdr.crash-{ingest.name}.", f"crash-{ingest.name}"
    db = f"sqlite:///{tmp_path / 'tickets.db'}"
    args = ("--prefix", prefix, "--db", db, *PARITY, *ingest.worker_args)
    w = start_worker(b, tmp_path, *args, app_id=app)
    changelog = f"{app}-state-changelog"
    try:
        produce_lab(b, "shop", prefix=prefix, key_by=ingest.key_by)
        assert wait_until(lambda: bool(read_topic(b, changelog, timeout=2)), 90, every=0.1), w.tail()
        w.kill()
        mark = len(w.log.read_text())  # the log file goes on: what the restarted worker writes starts here
        w = start_worker(b, tmp_path, *args, app_id=app)
        # ready once it loaded its 4 partitions (counted in its own lines: the crashed worker may have logged
        # a rebalance's worth more than 4): the crashed worker sent its flush's outputs before its state, so
        # they may all be there already; the test must not read them before the restart
        assert wait_until(lambda: w.log.read_text()[mark:].count("state loaded") >= 4, 120), w.tail()
        got = final_state(b, prefix)
        assert got == summary(lab_replay.incidents), w.tail()
        assert alert_counts(b, prefix) == {a.alert_id: a.count for a in lab_replay.alerts}
        restored = [int(n) for n in re.findall(r"state loaded \((\d+) keys\)", w.log.read_text()[mark:])]
        assert any(restored), "the restarted worker did not restore the crashed one's state"
    finally:
        w.stop()
    assert_tickets(db, lab_replay.incidents, read_topic(b, f"{prefix}tickets"))


# kill -9 the worker right after a flush's state reached the changelog, before its messages are acked
KILL_AFTER_STATE = '''
import os

from pipeline.stream.app import Runtime

_persist = Runtime._persist_retrying


async def _persist_retrying(self, fl, partition):
    await _persist(self, fl, partition)
    if fl.out.incidents:
        await self.app.producer.flush()  # the state change is on the broker
        os._exit(9)


Runtime._persist_retrying = _persist_retrying
'''


def test_a_crash_once_the_state_is_written_loses_no_ticket(kafka_broker, tmp_path: Path, lab_replay) -> None:
    """A flush writes outputs, then tickets, then its state: a worker killed right after its first state write
    (before the ack) has written that flush's tickets already; the restarted worker, whose state says the
    alerts were applied, skips them, and the tickets equal one clean pass. (With the state written before the
    tickets, the tickets of that flush were lost.)"""
    b, prefix, app = kafka_broker.bootstrap, "mdr.order.", "order"
    db = f"sqlite:///{tmp_path / 'tickets.db'}"
    args = ("--prefix", prefix, "--db", db, *PARITY)
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(KILL_AFTER_STATE)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")]))}
    w = start_worker(b, tmp_path, *args, app_id=app, env=env)
    try:
        produce_lab(b, "shop", prefix=prefix)
        assert w.proc.wait(120) == 9, w.tail()
        w = start_worker(b, tmp_path, *args, app_id=app, name="w2")
        assert wait_until(lambda: w.log.read_text().count("state loaded") >= 4, 120), w.tail()
        got = final_state(b, prefix)
        assert got == summary(lab_replay.incidents), w.tail()
        assert alert_counts(b, prefix) == {a.alert_id: a.count for a in lab_replay.alerts}
        assert any(int(n) for n in re.findall(r"state loaded \((\d+) keys\)", w.log.read_text())), w.tail()
    finally:
        w.stop()
    assert_tickets(db, lab_replay.incidents, read_topic(b, f"{prefix}tickets"))


def assert_tickets(db: str, incidents: dict, snapshots: list) -> None:
    """One ticket per incident (merged ones noted on their survivor's), each holding the incident's final
    state, one run per selected playbook, and ticket snapshots on the ticket topic for each of them."""
    from pipeline.soar.tickets import TicketStore

    store = TicketStore(db)
    try:
        tickets = store.list(limit=10_000)
        by_incident = Counter(t.incident_id for t in tickets)
        assert max(by_incident.values()) == 1
        survivors = {i.incident_id: i for i in incidents.values() if i.status != "merged"}
        assert set(by_incident) >= set(survivors)
        for t in tickets:
            if t.incident_id in survivors:
                assert t.incident["alert_count"] == survivors[t.incident_id].alert_count, t.incident_id
                assert t.priority == survivors[t.incident_id].priority
            runs = Counter(r.playbook for r in store.runs(t.id))
            assert not runs or max(runs.values()) == 1
        assert sum(len(store.runs(t.id)) for t in tickets) > 0
    finally:
        store.close()
    keys = {r.key.decode() for r in snapshots}
    assert set(survivors) <= keys


def test_bad_input_and_tenant_isolation(kafka_broker, tmp_path: Path) -> None:
    b, prefix = kafka_broker.bootstrap, "mdr.bad."
    waf = f"{prefix}alerts.waf"
    ensure_topics(b, Topics(prefix=prefix), 4)
    w = start_worker(b, tmp_path, "--prefix", prefix, "--bind", "host=bound", *PARITY, app_id="bad")
    line = (LAB1 / "ids" / "eve_attack.jsonl").read_text().splitlines()
    alert_lines = [x for x in line if '"event_type":"alert"' in x.replace(" ", "")][:20]
    p = KafkaProducer(bootstrap_servers=b, max_request_size=4 * 1024 * 1024)
    try:
        p.send(waf, b'{"tenant": "shop", "record": 42}')  # malformed envelope
        p.send(waf, b"x" * 1_100_000, headers=[("tenant", b"shop")])  # oversized
        p.send(waf, b"\xff\xfe\x00binary\x80", headers=[("tenant", b"shop")])  # not UTF-8
        p.send(waf, alert_lines[0].encode())  # no tenant anywhere
        p.send(waf, envelope([alert_lines[0]], "_global"))  # a reserved name is no tenant id
        p.send(waf, alert_lines[0].encode(), headers=[("tenant", b"a b")])  # would have shared a_b's folder
        for tenant in ("acme", "globex"):  # identical records of two tenants
            for x in alert_lines:
                p.send(f"{prefix}alerts.firewall", envelope([x], tenant, "suricata", "sensor-1"), key=b"sensor-1")
        p.send(f"{prefix}alerts.host", alert_lines[0].encode())  # tenant from the topic binding
        p.flush()
        assert wait_until(lambda: len(read_topic(b, f"{prefix}dlq", timeout=2)) >= 6, 60), w.tail()
        dead = [orjson.loads(r.value) for r in read_topic(b, f"{prefix}dlq")]
        assert Counter(d["reason"] for d in dead) == Counter(
            {"bad_envelope": 1, "oversized": 1, "not_utf8": 1, "missing_tenant": 1, "bad_tenant": 2})
        assert all("tenant_id" not in d for d in dead if d["reason"] == "bad_tenant")
        big = next(d for d in dead if d["reason"] == "oversized")  # a prefix, the length and the hash
        assert (big["raw_length"], big["raw_sha256"]) == (1_100_000, hashlib.sha256(b"x" * 1_100_000).hexdigest())
        assert len(big["raw"]) == DLQ_PREFIX_BYTES
        assert all(d["topic"] == waf and d["offset"] is not None and d["partition"] is not None for d in dead)
        assert next(d for d in dead if d["reason"] == "not_utf8")["raw_encoding"] == "base64"
        # the worker kept going: both tenants' records became alerts and incidents, separately
        incidents = latest_incidents(b, f"{prefix}incidents")
        assert wait_until(lambda: {i.tenant_id for i in latest_incidents(b, f"{prefix}incidents").values()}
                          >= {"acme", "globex"}, 60), w.tail()
        incidents = latest_incidents(b, f"{prefix}incidents")
        by_tenant = {t: sorted((i.title, i.alert_count) for i in incidents.values() if i.tenant_id == t)
                     for t in ("acme", "globex")}
        assert by_tenant["acme"] == by_tenant["globex"]
        ids = {t: {i.incident_id for i in incidents.values() if i.tenant_id == t} for t in ("acme", "globex")}
        assert ids["acme"].isdisjoint(ids["globex"])
        alerts = [decode_alert(r.value) for r in read_topic(b, f"{prefix}alerts.normalized")]
        assert {a.tenant_id for a in alerts} == {"acme", "globex", "bound"}
    finally:
        p.close()
        assert w.stop() == 0, w.tail()


def test_tenant_keyed_refuses_ingest_topics_of_another_partition_count(kafka_broker, tmp_path: Path) -> None:
    """With an ingest topic of 2 partitions and a by-tenant topic of 4, a tenant's key lands elsewhere than its
    state: `--tenant-keyed` is a usage error (exit 2) that names the topic, before anything is consumed."""
    from pipeline.stream.broker import create_topics

    b, prefix = kafka_broker.bootstrap, "mdr.keyed-bad."
    topics = Topics(prefix=prefix)
    create_topics(b, [topics.ingest_topic("waf")], partitions=2)
    w = start_worker(b, tmp_path, "--prefix", prefix, "--tenant-keyed", app_id="keyed-bad")
    assert w.proc.wait(120) == 2, w.tail()
    assert f"{topics.ingest_topic('waf')} has 2" in w.log.read_text(), w.tail()


def _holds_tenant_partitions(log: str) -> bool:
    lines = [ln for ln in log.splitlines() if "partitions assigned" in ln]
    return bool(lines) and "by-tenant" in lines[-1]


def test_tenant_keyed_backlog_runs_in_bounded_runs(kafka_broker, tmp_path: Path) -> None:
    """A backlog (the day is in the topics before the worker starts, so it reads large takes) is normalized in
    slices of about `--max-run` alerts and the partition runs between them: no run holds more than the bound
    plus one slice, and every alert is applied once (state, marks and acks as for one run)."""
    b, prefix = kafka_broker.bootstrap, "mdr.bounded."
    produce_lab(b, "shop", prefix=prefix, key_by="tenant", per_message=10)
    port = free_port()
    w = start_worker(b, tmp_path, "--prefix", prefix, "--tenant-keyed", "--max-run", "100", "--quiet", "3",
                     "--max-hold", "120", "--idle-flush", "600",  # no idle flush: it runs what a quiet host left
                     "--metrics-port", str(port), app_id="bounded")
    try:
        def counts() -> tuple[float, ...]:  # alerts normalized, applied, skipped as redelivered
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                return 0.0, -1.0, -1.0
            return tuple(sum(map(float, re.findall(rf"^mdr_{name}_total(?:{{[^}}]*}})? (\S+)$", body, re.M)))
                         for name in ("alerts", "alerts_applied", "alerts_redelivered"))
        assert wait_until(lambda: (c := counts())[0] > 2000 and c[0] == c[1], 120), w.tail()
        runs = [int(n) for n in re.findall(r"partition \d+: (\d+) alerts -> ", w.log.read_text())]
        assert len(runs) > 10 and max(runs) <= 2 * 100 + 10 * 4, runs  # a record gives at most a few alerts
        n = counts()[0]
        assert settle(counts, 3.0, 30.0) == (n, n, 0.0)  # each alert applied once
    finally:
        w.stop()


@pytest.mark.parametrize("ingest", TWO_WAYS, ids=lambda i: i.name)
def test_scale_out_two_workers(kafka_broker, tmp_path: Path, ingest: Ingest) -> None:
    """Two workers share 4 partitions; each tenant's incidents, ids included, equal its own replay (the one
    worker of the parity test gives the same): adding a worker changes no incident and no id."""
    b, prefix = kafka_broker.bootstrap, f"mdr.scale-{ingest.name}."
    # tenant -> its sensor host: by-tenant partitions 0, 1, 2, 3, ingest partitions (keyed by host) 1, 2, 3, 0.
    # Each tenant has its own host, as real tenants do: with one host key for all, one ingest partition would
    # hold every tenant's records, its WAF backlog would reach the last tenant seconds after that tenant's IDS
    # and host alerts, and its partition would run (quiet) on those alone, hours of event time apart (a
    # backlog skew that no worker count causes or mends)
    tenants = {"shop": "web-08", "t-c": "web-02", "gamma": "web-01", "t-a": "web-03"}
    assert [(partition_of(t.encode(), 4), partition_of(h.encode(), 4)) for t, h in tenants.items()] == \
        [(0, 1), (1, 2), (2, 3), (3, 0)]
    ws = [start_worker(b, tmp_path, "--prefix", prefix, *SCALE_OUT, *ingest.worker_args,
                       app_id=f"scale-{ingest.name}", name=f"w{i}") for i in (1, 2)]
    try:
        # input arrives only once the group is stable: each worker holds some of the tenant partitions
        # (a rebalance in the middle of the stream is the crash test's subject, not this one's)
        assert wait_until(lambda: all(_holds_tenant_partitions(w.log.read_text()) for w in ws), 120), \
            [w.tail() for w in ws]
        time.sleep(2)
        for t, host in tenants.items():
            produce_lab(b, t, host, prefix=prefix, key_by=ingest.key_by)
        got = final_state(b, prefix, quiet=14.0, timeout=240)
        want: dict = {}
        for t, host in tenants.items():
            want |= summary(replay_lab(t, host).incidents)
        assert got == want
        logs = [w.log.read_text() for w in ws]
        assert all("incident updates" in log for log in logs), "one worker got no work"
    finally:
        for w in ws:
            w.stop()


def test_broker_restart(kafka_broker, tmp_path: Path, lab_replay) -> None:
    b, prefix = kafka_broker.bootstrap, "mdr.restart."
    w = start_worker(b, tmp_path, "--prefix", prefix, *PARITY, app_id="restart")
    try:
        produce_lab(b, "shop", prefix=prefix)
        kafka_broker.restart()  # while the worker normalizes the input
        got = final_state(b, prefix, timeout=180)
        assert got == summary(lab_replay.incidents), w.tail()
        assert w.proc.poll() is None
    finally:
        w.stop()


def _committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    """The group committed every message of `topic` (held messages were released once emitted)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        end = c.end_offsets(tps)
        return all(end[tp] == 0 or c.committed(tp) == end[tp] for tp in tps)
    finally:
        c.close()


@pytest.mark.parametrize("ingest", TWO_WAYS, ids=lambda i: i.name)
def test_records_a_normalizer_buffers_survive_a_crash(kafka_broker, tmp_path: Path, ingest: Ingest) -> None:
    """ModSecurity error-log lines of a transaction whose closing line has not come yet are buffered by the
    normalizer; their ingest offsets must not be committed, so a worker killed meanwhile does not lose them:
    the restarted worker reads them again and emits the transaction's alert (tenant-keyed: its messages are
    committed once the partition ran the alert)."""
    b, prefix, group = kafka_broker.bootstrap, f"mdr.buffered-{ingest.name}.", f"buf-{ingest.name}"
    key = b"shop" if ingest.key_by == "tenant" else b"web-01"
    topics = Topics(prefix=prefix)
    ensure_topics(b, topics, 4)
    lines = (LAB1 / "waf" / "apache_error.log").read_text().splitlines()
    uid = 'unique_id "awUxD03R2MqInzbJfVSqNwAAAAA"'
    tx = [ln for ln in lines if uid in ln and not re.search(r'\[id "9(49|59|80)\d+"\]', ln)]
    assert len(tx) >= 3
    w = start_worker(b, tmp_path, "--prefix", prefix, "--idle-flush", "600", "--metrics-port", "0",
                     *ingest.worker_args, app_id=group)
    p = KafkaProducer(bootstrap_servers=b)
    try:
        assert wait_until(lambda: "partitions assigned" in w.log.read_text(), 90), w.tail()
        for ln in tx:
            p.send(topics.ingest_topic("waf"), envelope([ln], "shop", "modsec_error", "web-01"), key=key)
        p.flush()
        time.sleep(4)  # read, normalized into the buffer, and several commit intervals passed
        assert not read_topic(b, f"{prefix}alerts.normalized", timeout=2)
        w.kill()
        w = start_worker(b, tmp_path, "--prefix", prefix, "--idle-flush", "1", *ingest.worker_args, app_id=group,
                         name="w2")
        assert wait_until(lambda: bool(read_topic(b, f"{prefix}alerts.normalized", timeout=2)), 90), w.tail()
        alerts = [decode_alert(r.value) for r in read_topic(b, f"{prefix}alerts.normalized")]
        assert len(alerts) == 1 and alerts[0].source.format == "modsec_error"
        assert alerts[0].extra["unique_id"] == uid.split('"')[1]
        assert len(alerts[0].raw.splitlines()) == len(tx)  # every buffered line came back
        assert wait_until(lambda: _committed_to_end(b, group, topics.ingest_topic("waf")), 30), w.tail()
    finally:
        p.close()
        w.stop()


@pytest.mark.parametrize("ingest", TWO_WAYS, ids=lambda i: i.name)
def test_noise_classifier_parity_with_replay(kafka_broker, tmp_path: Path, ingest: Ingest) -> None:
    """`mdr worker --model` suppresses exactly the alerts `mdr replay --model` suppresses (same scores), and the
    classifier's per-source history is part of the partition state."""
    from pipeline.classify.model import NoiseClassifier
    from pipeline.classify.train import train
    from pipeline.replay import replay
    from pipeline.stream.producer import produce
    from tests.stream.fixtures_worker import replay_core

    sample = Path(__file__).resolve().parents[1] / "fixtures" / "labeled" / "waf-pl4-sample"
    model, _, _ = train([sample], 0.95, ("linear",), tenant="shop")  # one family: the test is about parity
    model_dir = model.save(tmp_path / "model")
    src = sample / "modsec_audit.jsonl.gz"
    want = replay([str(src)], replay_core(classifier=NoiseClassifier.load(model_dir)), "shop")
    assert want.suppressed  # the sample has noise the model suppresses

    b, prefix, app = kafka_broker.bootstrap, f"mdr.noise-{ingest.name}.", f"noise-{ingest.name}"
    ensure_topics(b, Topics(prefix=prefix), 4)
    w = start_worker(b, tmp_path, "--prefix", prefix, "--model", str(model_dir), *PARITY, *ingest.worker_args,
                     app_id=app)
    try:
        produce(b, [str(src)], f"{prefix}alerts.waf", "shop", key_by=ingest.key_by)
        got = final_state(b, prefix)
        assert got == summary(want.incidents), w.tail()
        suppressed = {(s["alert"]["alert_id"], s["score"]) for s in
                      (orjson.loads(r.value) for r in read_topic(b, f"{prefix}suppressed"))}
        assert suppressed == {(s.alert.alert_id, s.score) for s in want.suppressed}
        changelog = [r.key for r in read_topic(b, f"{app}-state-changelog")]
        assert changelog and "noise classifier" in w.log.read_text()
    finally:
        assert w.stop() == 0, w.tail()
