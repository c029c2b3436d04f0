"""Hostile input on the real broker (issue 13 §1): one event never stops the worker, nor another tenant.

- The reproductions of the issue (year 9999, year 0001, year 0001 with a zone, AIDE in year 9999) sent for
  tenant A in the middle of the lab traffic of tenants A and B: B's incidents are those `mdr replay` makes of
  B's files, A's other alerts all arrive, the unreadable time is in the dead-letter topic, the implausible ones
  arrive flagged; SIGTERM then stops the worker in seconds with exit code 0.
- Failures that real input no longer causes are injected into the worker process (a `sitecustomize` on its
  PYTHONPATH): one in the prioritizer (contained: a `core_error` dead letter, the worker stays healthy) and
  one that escapes the core's run (the worker reports 503, exits non-zero; after `--max-attempts` restarts the
  message goes to the dead letters and its offset is committed: no crash loop).
- A stop that hangs (Faust's consumer never finishing its last commit, as it did after an agent crash) still
  ends the process within `--shutdown-grace`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from pipeline.schema import decode_alert
from pipeline.stream.app import ensure_topics
from pipeline.stream.broker import free_port
from pipeline.stream.config import Topics
from pipeline.stream.envelope import envelope
from pipeline.stream.producer import produce
from tests.stream.fixtures_worker import (
    LAB1,
    LAB_TOPICS,
    healthz,
    latest_incidents,
    read_topic,
    replay_lab,
    settle,
    start_worker,
    summary,
    wait_until,
)
from tests.time_repros import dns_alert, reproductions

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]
# hold input until quiet (parity with replay, as tests/stream/test_worker.py); a lateness beyond the lab's age so
# that the flagged alerts (received now, weeks after the lab day) close no window of the lab day
PARITY = ("--quiet", "3", "--max-hold", "120", "--max-run", "0", "--idle-flush", "1", "--lateness", "100000000")


def dead_letters(b: str, prefix: str) -> list[dict]:
    return [orjson.loads(r.value) for r in read_topic(b, f"{prefix}dlq", timeout=5)]


def alerts(b: str, prefix: str) -> list:
    return [decode_alert(r.value) for r in read_topic(b, f"{prefix}alerts.normalized", timeout=5)]


def stop_timed(w, limit: float) -> tuple[int, float]:
    t0 = time.monotonic()
    code = w.stop(timeout=limit + 30)
    return code, time.monotonic() - t0


def test_poison_for_one_tenant_in_the_middle_of_two_tenants(kafka_broker, tmp_path: Path) -> None:
    b, prefix = kafka_broker.bootstrap, "mdr.poison."
    ensure_topics(b, Topics(prefix=prefix), 4)
    port = free_port()
    w = start_worker(b, tmp_path, "--prefix", prefix, "--metrics-port", str(port), *PARITY, app_id="poison")
    repro = tmp_path / "repro"  # laid out as the lab: ids/ (Suricata) and host/ (AIDE)
    for name, (fname, text) in reproductions().items():
        f = repro / ("host" if name.startswith("aide") else "ids") / fname
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)

    def send(tenant: str, d: str, root: Path = LAB1) -> None:
        produce(b, [str(root / d)], f"{prefix}alerts.{LAB_TOPICS[d]}", tenant, None, "web-01", 20)

    try:
        send("tenant-a", "waf")
        send("tenant-b", "waf")
        send("tenant-a", "ids", repro)  # the poison, in the middle of both tenants' traffic
        send("tenant-a", "host", repro)
        for d in ("ids", "host"):
            send("tenant-a", d)
            send("tenant-b", d)

        want_b = summary(replay_lab("tenant-b").incidents)
        got = settle(lambda: {k: v for k, v in summary(latest_incidents(b, f"{prefix}incidents")).items()
                              if k in want_b}, 8, 240)
        assert got == want_b, w.tail()  # B's incidents: exactly what replay makes of B's files

        got_alerts = alerts(b, prefix)
        by_tenant = {t: {a.alert_id for a in got_alerts if a.tenant_id == t} for t in ("tenant-a", "tenant-b")}
        assert {a.alert_id for a in replay_lab("tenant-a").alerts} <= by_tenant["tenant-a"]  # A's other alerts
        flagged = [a for a in got_alerts if "time_untrusted" in a.extra]
        assert {a.tenant_id for a in flagged} == {"tenant-a"}
        assert {a.extra["time_reported"][:4] for a in flagged} == {"9999", "0001"}
        assert all(a.time == a.received_at for a in flagged)
        assert any(a.dns and a.dns.query == "c2.malware-lab.test" for a in flagged)  # the C2 lookup is not lost

        dead = dead_letters(b, prefix)
        assert [(d["reason"], d["tenant_id"], d["field"], d["topic"]) for d in dead] == [
            ("bad_timestamp", "tenant-a", "timestamp", f"{prefix}alerts.firewall")]
        assert "0001-01-01T00:30:00+01:00" in dead[0]["raw"] and dead[0]["offset"] is not None
        assert healthz(port) == (200, "ok\n")
    finally:
        code, took = stop_timed(w, 10)
    assert code == 0, w.tail()
    assert took < 10, f"SIGTERM took {took:.1f} s"
    print(f"SIGTERM -> exit 0 in {took:.1f} s")


SITECUSTOMIZE = '''
"""Failures injected into the worker for tests/stream/test_poison.py (real input no longer fails)."""
from pipeline.context.store import Context
from pipeline.stream.app import Runtime
from pipeline.stream.processor import PartitionWork

_prioritize, _run, _dispatch = Context.prioritize, PartitionWork.run, Runtime.dispatch


def prioritize(self, inc):
    if "203.0.113.99" in inc.entities.src_ips:
        raise RuntimeError("injected prioritizer failure")
    return _prioritize(self, inc)


def run(self):
    if any(it.alert.src.ip == "203.0.113.66" for it in self.pending):
        raise RuntimeError("injected failure of the core run")
    return _run(self)


async def dispatch(self, res, events=()):
    lists = [*res.by_tenant.values(), *(items for _, _, items, _ in res.direct)]
    if any(it.alert.src.ip == "203.0.113.77" for items in lists for it in items):
        raise RuntimeError("injected failure of the ingest send")
    return await _dispatch(self, res, events)


Context.prioritize, PartitionWork.run, Runtime.dispatch = prioritize, run, dispatch
'''

HANG = '''
"""A stop that hangs, as Faust's did after an agent crash (the consumer's last commit never returns)."""
import asyncio

from faust.transport.consumer import Consumer


async def commit_and_end_transactions(self):
    await asyncio.sleep(3600)


Consumer.commit_and_end_transactions = commit_and_end_transactions
'''


def _live(src: str, n: int) -> str:
    """The lab's C2 DNS alert as live traffic: now, from `src`."""
    d = json.loads(dns_alert())
    d.update(timestamp=datetime.now(UTC).isoformat(), src_ip=src, src_port=40000 + n, flow_id=n)
    d["flow"].update(src_ip=src, src_port=40000 + n)
    return json.dumps(d)


def _inject(tmp_path: Path, code: str) -> dict[str, str]:
    d = tmp_path / "inject"
    d.mkdir(exist_ok=True)
    (d / "sitecustomize.py").write_text(code)
    return {"PYTHONPATH": os.pathsep.join([str(d), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


class Harness:
    """A worker with the injected failures (`SITECUSTOMIZE`), restarted on the same data dir, and live traffic."""

    def __init__(self, b: str, prefix: str, tmp_path: Path):
        self.b, self.prefix, self.tmp_path = b, prefix, tmp_path
        self.topics = Topics(prefix=prefix)
        ensure_topics(b, self.topics, 4)
        self.fw = self.topics.ingest_topic("firewall")
        self.env = _inject(tmp_path, SITECUSTOMIZE)
        self.producer = KafkaProducer(bootstrap_servers=b)
        self.n = 0

    def send(self, tenant: str, src: str) -> None:
        self.n += 1
        self.producer.send(self.fw, envelope([_live(src, self.n)], tenant, "suricata", f"sensor-{tenant}"),
                           key=f"sensor-{tenant}".encode())
        self.producer.flush()

    def start(self) -> tuple:
        port = free_port()
        w = start_worker(self.b, self.tmp_path, "--prefix", self.prefix, "--max-attempts", "2", "--shutdown-grace",
                         "8", "--metrics-port", str(port), app_id=self.prefix.strip("."), env=self.env)
        assert wait_until(lambda: healthz(port)[0] != 0 or w.proc.poll() is not None, 90, every=0.2), w.tail()
        return w, port

    def start_healthy(self) -> tuple:
        w, port = self.start()
        assert wait_until(lambda: healthz(port)[0] == 200, 90, every=0.2), w.tail()
        return w, port

    def attempts(self) -> list[int]:
        return [v["attempts"] for v in json.loads((self.tmp_path / "w-data" / "attempts.json").read_text()).values()]

    def crash_loop(self, w, port: int, where: str) -> object:
        """The failing message: 503 and a non-zero exit; after a restart (the message alone) the same; after a
        second restart it is dead-lettered and the worker is healthy. Returns the running worker."""
        assert wait_until(lambda: healthz(port)[0] == 503, 60, every=0.05), w.tail()
        status, body = healthz(port)
        assert status != 200 and (status == 0 or f"failed: {where}: RuntimeError: injected" in body), body
        assert w.proc.wait(30) != 0, w.tail()
        assert self.attempts() == [1]
        w, port = self.start()
        assert w.proc.wait(90) != 0, w.tail()
        assert self.attempts() == [2]
        w, port = self.start_healthy()
        assert wait_until(lambda: any(d["reason"] == "poison_message" for d in dead_letters(self.b, self.prefix)),
                          60), w.tail()
        assert self.attempts() == []
        return w

    def alerts_from(self, src: str) -> bool:
        return any(a.src.ip == src for a in alerts(self.b, self.prefix))


def test_a_message_that_keeps_failing_in_the_core_is_dead_lettered_without_a_crash_loop(kafka_broker,
                                                                                       tmp_path: Path) -> None:
    h = Harness(kafka_broker.bootstrap, "mdr.failcore.", tmp_path)
    w, port = h.start_healthy()
    try:
        # a failure inside the core is contained: a dead letter, the worker stays healthy, the others go on
        h.send("tenant-b", "198.51.100.20")
        h.send("tenant-a", "203.0.113.99")
        h.send("tenant-a", "198.51.100.21")
        h.send("tenant-b", "198.51.100.22")
        assert wait_until(lambda: h.alerts_from("198.51.100.22") and h.alerts_from("198.51.100.21") and
                          bool(dead_letters(h.b, h.prefix)), 60), w.tail()
        [d] = dead_letters(h.b, h.prefix)
        assert (d["reason"], d["stage"], d["tenant_id"], d["topic"]) == ("core_error", "prioritize", "tenant-a", h.fw)
        assert "injected prioritizer failure" in d["detail"] and "203.0.113.99" in d["raw"] and d["alert_id"]
        assert healthz(port)[0] == 200

        # a failure that escapes the core's run
        h.send("tenant-a", "203.0.113.66")
        w = h.crash_loop(w, port, "core")
        poison = [d for d in dead_letters(h.b, h.prefix) if d["reason"] == "poison_message"]
        assert [(d["stage"], d["tenant_id"], d["topic"]) for d in poison] == [("core", "tenant-a", h.fw)]
        assert "203.0.113.66" in poison[0]["raw"] and "failed 2 times" in poison[0]["detail"]
        assert "injected failure of the core run" in poison[0]["detail"]
        h.send("tenant-b", "198.51.100.23")
        assert wait_until(lambda: h.alerts_from("198.51.100.23"), 60), w.tail()
    finally:
        h.producer.close()
        code = w.stop()
    assert code == 0, w.tail()
    assert len([d for d in dead_letters(h.b, h.prefix) if d["reason"] == "poison_message"]) == 1
    assert {i.tenant_id for i in latest_incidents(h.b, f"{h.prefix}incidents").values()} >= {"tenant-b"}


def test_an_ingest_message_that_keeps_failing_is_dead_lettered_without_a_crash_loop(kafka_broker,
                                                                                   tmp_path: Path) -> None:
    h = Harness(kafka_broker.bootstrap, "mdr.failingest.", tmp_path)
    w, port = h.start_healthy()
    try:
        h.send("tenant-b", "198.51.100.30")
        assert wait_until(lambda: h.alerts_from("198.51.100.30"), 60), w.tail()
        h.send("tenant-a", "203.0.113.77")  # its alerts cannot be sent on: the normalize agent fails
        w = h.crash_loop(w, port, "normalize")
        [d] = [d for d in dead_letters(h.b, h.prefix) if d["reason"] == "poison_message"]
        assert (d["stage"], d["topic"], d["partition"] is not None, d["offset"] is not None) == \
            ("normalize", h.fw, True, True)
        assert "203.0.113.77" in d["raw"] and "injected failure of the ingest send" in d["detail"]
        h.send("tenant-b", "198.51.100.31")
        assert wait_until(lambda: h.alerts_from("198.51.100.31"), 60), w.tail()
        assert not h.alerts_from("203.0.113.77")
    finally:
        h.producer.close()
        code = w.stop()
    assert code == 0, w.tail()


def test_sigterm_ends_a_worker_whose_stop_hangs(kafka_broker, tmp_path: Path) -> None:
    b, prefix = kafka_broker.bootstrap, "mdr.hang."
    ensure_topics(b, Topics(prefix=prefix), 4)
    port = free_port()
    w = start_worker(b, tmp_path, "--prefix", prefix, "--metrics-port", str(port), "--shutdown-grace", "3",
                     app_id="hang", env=_inject(tmp_path, HANG))
    try:
        assert wait_until(lambda: healthz(port)[0] == 200, 90, every=0.2), w.tail()
    finally:
        code, took = stop_timed(w, 3)
    assert took < 3 + 5, f"took {took:.1f} s"
    assert code != 0 and "stop did not finish within 3 s" in w.log.read_text(), w.tail()
