"""The project's Kafka 4 broker (pipeline/stream/broker.py) against the real clients the pipeline uses:
aiokafka produce/consume, kafka-python 3 admin, Faust agents and RocksDB tables, broker restart and stop paths.

Measured figures are printed (`pytest -s`): broker start, Faust join and table recovery times.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from pipeline.stream.broker import (
    Broker,
    BrokerError,
    ContainerBroker,
    KafkaBroker,
    check_jars,
    docker_available,
    ensure_jars,
    random_cluster_id,
)
from tests.stream.conftest import faust_app, jar_broker_skip

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    """Non-default configs of a topic, via kafka-python 3's dict-shaped describe_configs."""
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {k: v["value"] for k, v in res["topic"][topic].items()}


def partition_count(bootstrap: str, topic: str) -> int:
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        (meta,) = admin.describe_topics([topic])
    return len(meta["partitions"])


async def until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `pred()` holds; fails the test after `timeout`."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"{what} not reached in {timeout:.0f}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


# ---------------------------------------------------------------- jars (no broker needed)


def test_ensure_jars_without_maven_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrokerError, match="mvn"):
        ensure_jars(tmp_path / "lib")


def test_check_jars_wants_one_slf4j_1_7(tmp_path: Path) -> None:
    for name in ("kafka_2.13-4.1.1.jar", "slf4j-api-1.7.36.jar"):
        (tmp_path / name).touch()
    check_jars(tmp_path)
    (tmp_path / "slf4j-api-2.0.17.jar").touch()
    with pytest.raises(BrokerError, match="slf4j"):
        check_jars(tmp_path)


def test_cluster_ids_are_kraft_shaped() -> None:
    ids = {random_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(c) == 22 and not c.startswith("-") for c in ids)
    assert all(len(base64.urlsafe_b64decode(c + "==")) == 16 for c in ids)


# ---------------------------------------------------------------- clients against the session broker


def test_aiokafka_round_trip(kafka_broker: Broker, new_topic: Callable[..., str]) -> None:
    topic, n = new_topic(partitions=3), 3000

    async def run() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for i in range(n):
                await producer.send(topic, key=b"k%d" % (i % 7), value=b"%d" % i)
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, group_id=f"g-{topic}",
                                    auto_offset_reset="earliest")
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            async with asyncio.timeout(60):
                while len(got) < n:
                    batch = await consumer.getmany(timeout_ms=1000)
                    got += [(m.key, m.value) for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(run())
    assert len(got) == n
    for k in {k for k, _ in got}:  # one key lives in one partition: its values arrive in send order
        values = [int(v) for key, v in got if key == k]
        assert values == sorted(values)
    assert sorted(int(v) for _, v in got) == list(range(n))


def test_kafka_python_admin_creates_topics(kafka_broker: Broker) -> None:
    suffix = uuid.uuid4().hex[:8]
    compacted, wide = f"compacted-{suffix}", f"wide-{suffix}"
    kafka_broker.create_topics([compacted], compacted=True)
    kafka_broker.create_topics([wide], partitions=4)
    kafka_broker.create_topics([wide], partitions=4)  # existing topics are left alone
    assert topic_configs(kafka_broker.bootstrap, compacted)["cleanup.policy"] == "compact"
    assert "cleanup.policy" not in topic_configs(kafka_broker.bootstrap, wide)
    assert partition_count(kafka_broker.bootstrap, wide) == 4
    assert partition_count(kafka_broker.bootstrap, compacted) == 1


def test_compacted_topic_is_compacted(kafka_broker: Broker, new_topic: Callable[..., str]) -> None:
    """The log cleaner runs: only the last value per key survives once segments roll."""
    topic = new_topic(compacted=True, segment_ms="100", min_cleanable_dirty_ratio="0.01", delete_retention_ms="100")
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for i in range(200):
        producer.send(topic, key=b"k%d" % (i % 5), value=b"%d" % i)
    producer.flush()

    def read_all() -> dict[bytes, list[bytes]]:
        consumer = KafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, consumer_timeout_ms=1500)
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        seen: dict[bytes, list[bytes]] = {}
        for m in consumer:
            seen.setdefault(m.key, []).append(m.value)
        consumer.close()
        return seen

    deadline = time.monotonic() + 60
    while True:
        time.sleep(0.3)
        producer.send(topic, key=b"roll", value=b"x").get(10)  # a write after segment.ms rolls the segment
        seen = read_all()
        if all(len(v) == 1 for k, v in seen.items() if k != b"roll") or time.monotonic() > deadline:
            break
    producer.close()
    assert {k: v[-1] for k, v in seen.items() if k != b"roll"} == {b"k%d" % j: b"%d" % (195 + j) for j in range(5)}
    assert all(len(v) == 1 for k, v in seen.items() if k != b"roll"), "log cleaner did not compact in 60 s"


# ---------------------------------------------------------------- Faust


def test_faust_agent_forwards(kafka_broker: Broker, new_topic: Callable[..., str], tmp_path: Path) -> None:
    src, dst = new_topic(), new_topic()

    async def run() -> tuple[float, list[bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        for v in (b"a", b"b", b"c"):
            await producer.send_and_wait(src, v)
        await producer.stop()
        app = faust_app(f"fwd-{src}", kafka_broker.bootstrap, tmp_path)
        out = app.topic(dst, value_serializer="raw")
        seen: list[bytes] = []

        @app.agent(app.topic(src, value_serializer="raw"))
        async def forward(stream: Any) -> None:
            async for value in stream:
                seen.append(value)
                await out.send(value=value.upper())

        t0 = time.monotonic()
        await app.start()
        try:
            await until(lambda: len(seen) == 3, 60, "Faust agent consuming")
            took = time.monotonic() - t0
        finally:
            await app.stop()
        consumer = AIOKafkaConsumer(dst, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                values = [(await consumer.getone()).value for _ in range(3)]
        finally:
            await consumer.stop()
        return took, values

    took, values = asyncio.run(run())
    print(f"\nFaust in-process app: start() to 3 events consumed {took:.2f}s")
    assert values == [b"A", b"B", b"C"]
    assert took < 30


def test_faust_rocksdb_table_recovers(kafka_broker: Broker, new_topic: Callable[..., str], tmp_path: Path) -> None:
    """A RocksDB-backed table writes its changelog and is rebuilt from it by a fresh app, or reopened locally."""
    src = new_topic()
    app_id = f"tbl-{src}"

    async def run(datadir: Path, keys: list[bytes], expect: dict[str, int]) -> float:
        app = faust_app(app_id, kafka_broker.bootstrap, datadir)
        counts = app.Table("counts", default=int)

        @app.agent(app.topic(src, key_serializer="raw", value_serializer="raw"))
        async def count(stream: Any) -> None:
            async for key, _ in stream.items():
                counts[key.decode()] += 1

        t0 = time.monotonic()
        await app.start()
        try:
            await until(lambda: app.tables.recovery.completed.is_set(), 60, "table recovery")
            took = time.monotonic() - t0
            if keys:
                producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
                await producer.start()
                for k in keys:
                    await producer.send_and_wait(src, key=k, value=b"1")
                await producer.stop()
            await until(lambda: dict(counts.items()) == expect, 60, f"table == {expect}")
        finally:
            await app.stop()
        return took

    first, fresh = tmp_path / "first", tmp_path / "fresh"
    t1 = asyncio.run(run(first, [b"a", b"b", b"a", b"a"], {"a": 3, "b": 1}))
    assert list(first.rglob("counts-0.db")), "RocksDB store not on disk"
    changelog = f"{app_id}-counts-changelog"
    assert topic_configs(kafka_broker.bootstrap, changelog)["cleanup.policy"] == "compact"
    t2 = asyncio.run(run(fresh, [], {"a": 3, "b": 1}))  # empty datadir: rebuilt from the changelog
    t3 = asyncio.run(run(first, [b"a"], {"a": 4, "b": 1}))  # same datadir: RocksDB reopened, offsets kept
    print(f"\nFaust RocksDB table: ready {t1:.2f}s (new), {t2:.2f}s (from changelog), {t3:.2f}s (reopened)")


WORKER = """
import sys
from tests.stream.conftest import faust_app
boot, app_id, src, dst, datadir = sys.argv[1:6]
app = faust_app(app_id, boot, datadir)
out = app.topic(dst, value_serializer="raw")
@app.agent(app.topic(src, value_serializer="raw"))
async def forward(stream):
    async for value in stream:
        await out.send(value=value.upper())
sys.argv = ["faust", "worker", "-l", "warn", "--without-web"]
app.main()
"""


def test_faust_worker_rejoins_fast_after_kill(kafka_broker: Broker, new_topic: Callable[..., str],
                                              tmp_path: Path) -> None:
    """A `faust worker` that replaces a SIGKILLed one (no LeaveGroup) takes over within the session timeout."""
    src, dst = new_topic(), new_topic()
    log = (tmp_path / "worker.log").open("ab")

    def spawn(n: int) -> subprocess.Popen[bytes]:
        args = [kafka_broker.bootstrap, f"w-{src}", src, dst, str(tmp_path / f"w{n}")]
        return subprocess.Popen([sys.executable, "-c", WORKER, *args], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(ROOT)))

    async def round_trip(consumer: AIOKafkaConsumer, value: bytes) -> float:
        t0 = time.monotonic()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        await producer.send_and_wait(src, value)
        await producer.stop()
        async with asyncio.timeout(90):
            while (await consumer.getone()).value != value.upper():
                pass
        return time.monotonic() - t0

    async def run() -> tuple[float, float]:
        consumer = AIOKafkaConsumer(dst, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        workers = [spawn(1)]
        try:
            cold = await round_trip(consumer, b"one")
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            workers.append(spawn(2))
            rejoin = await round_trip(consumer, b"two")
        finally:
            for w in workers:
                w.terminate()
                w.wait(30)
            await consumer.stop()
        return cold, rejoin

    cold, rejoin = asyncio.run(run())
    print(f"\nfaust worker subprocess: first event {cold:.2f}s after spawn; after SIGKILL of the previous worker "
          f"{rejoin:.2f}s (Faust defaults: ~60 s)")
    assert rejoin < 30


# ---------------------------------------------------------------- own brokers: restart, stop, failure


def test_restart_keeps_ports_and_data(tmp_path: Path) -> None:
    jar_broker_skip()
    data = tmp_path / "kafka"
    with KafkaBroker(data_dir=data) as broker:
        print(f"\nbroker start (fresh storage, incl. format): {broker.start_seconds:.2f}s")
        broker.create_topics(["keep"])
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for i in range(10):
            producer.send("keep", b"%d" % i)
        producer.close()
        consumer = KafkaConsumer("keep", bootstrap_servers=broker.bootstrap, group_id="keepers",
                                 auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=4)
        first = [m for batch in consumer.poll(10_000, max_records=4).values() for m in batch]
        consumer.commit()
        consumer.close()
        bootstrap = broker.bootstrap
        broker.restart()
        print(f"broker restart: {broker.start_seconds:.2f}s")
        assert broker.bootstrap == bootstrap
        consumer = KafkaConsumer("keep", bootstrap_servers=broker.bootstrap, group_id="keepers",
                                 auto_offset_reset="earliest", consumer_timeout_ms=30_000)
        rest = [m.value for _, m in zip(range(10 - len(first)), consumer, strict=False)]
        consumer.close()
        assert [m.value for m in first] + rest == [b"%d" % i for i in range(10)]

        other = KafkaBroker(data_dir=data)  # what `mdr broker stop --data-dir` does
        assert other.bootstrap == broker.bootstrap and other.running()
        other.stop()
        assert not broker.running()
    assert (data / "broker.log").exists()  # a given data dir is kept


def test_start_failure_shows_broker_log(tmp_path: Path) -> None:
    jar_broker_skip()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        broker = KafkaBroker(port=busy.getsockname()[1], data_dir=tmp_path / "kafka")
        with pytest.raises(BrokerError, match=r"(?s)exited.*Address already in use"):
            broker.start()
    assert not broker.running()


@pytest.mark.skipif(not docker_available(), reason="no Docker engine answers `docker info`")
def test_container_broker() -> None:
    with ContainerBroker() as broker:
        broker.create_topics(["probe"], partitions=2)
        assert partition_count(broker.bootstrap, "probe") == 2
