"""The worker's log during a broker outage (pipeline/stream/outage.py): one line when it starts, one per interval
while it lasts, one when the worker is back; reconnects back off. No broker needed: records and a clock."""

from __future__ import annotations

import asyncio
import logging

from pipeline.stream.outage import RECONNECT_MAX, RECONNECT_MIN, SETTLE, OutageLog, bootstrap_of, slow_reconnects


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_outage_is_one_line_per_interval_and_one_when_back(caplog) -> None:
    clock = Clock()
    f = OutageLog("127.0.0.1:9092", "MDR_KAFKA_BOOTSTRAP", interval=30, clock=clock)
    error = "Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', 9092)"
    first = record("aiokafka", error)
    assert f.filter(first) and first.levelname == "WARNING"
    assert first.getMessage().startswith("Kafka broker 127.0.0.1:9092 unreachable (Unable connect")
    assert "[MDR_KAFKA_BOOTSTRAP]" in first.getMessage()
    passed = []
    for _ in range(600):  # 20 s of retries
        clock.t += 1 / 30
        r = record("aiokafka.consumer.fetcher", "Failed fetch messages from 1: NodeNotReadyError: not ready")
        if f.filter(r):
            passed.append(r.getMessage())
    assert passed == []
    clock.t += 11
    report = record("aiokafka", "Unable to update metadata from [1]")
    assert f.filter(report) and "still unreachable after 31 s (600 connection errors" in report.getMessage()
    assert f.filter(record("faust.worker", "[^Worker]: something else", logging.INFO))  # other records pass
    with caplog.at_level(logging.WARNING, logger="mdr.worker"):
        assert f.filter(record("aiokafka.consumer.group_coordinator", "Discovered coordinator 1 for group g",
                               logging.INFO))
    assert "Kafka broker 127.0.0.1:9092 answers again (unreachable for 31 s, 602 connection errors)" in caplog.text
    clock.t += 1
    assert not f.filter(record("aiokafka", error))  # a retry already under way as it came back
    clock.t += SETTLE
    assert f.filter(record("aiokafka", error))  # a new outage


def test_reconnects_back_off_per_node() -> None:
    clock = Clock()
    calls: list[str] = []

    class Client:
        async def _get_conn(self, node_id: str, **kw: object) -> object | None:
            calls.append(node_id)
            return None if node_id == "down" else object()

    c = Client()
    slow_reconnects(c, clock)

    async def attempts(node: str, seconds: float, every: float = 0.05) -> int:
        before = len(calls)
        for _ in range(int(seconds / every)):
            await c._get_conn(node)
            clock.t += every
        return len(calls) - before

    n = asyncio.run(attempts("down", 30))
    assert n <= 2 + 30 / RECONNECT_MIN / 2 and n < 30 / RECONNECT_MAX + 6, n  # 600 without the back-off
    assert asyncio.run(attempts("up", 1)) == 20  # a node that answers is never held back


def test_where_the_bootstrap_address_comes_from(monkeypatch) -> None:
    monkeypatch.delenv("MDR_KAFKA_BOOTSTRAP", raising=False)
    assert bootstrap_of(None) == ("127.0.0.1:9092", "the default; set MDR_KAFKA_BOOTSTRAP or --bootstrap")
    monkeypatch.setenv("MDR_KAFKA_BOOTSTRAP", "10.0.0.1:9092")
    assert bootstrap_of(None) == ("10.0.0.1:9092", "MDR_KAFKA_BOOTSTRAP")
    assert bootstrap_of("k:1") == ("k:1", "--bootstrap")
