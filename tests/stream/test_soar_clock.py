"""The workers run the SOAR clock by themselves, on the real broker: an unacknowledged P1 ticket escalates on
time, tier by tier, exactly once, with two workers running the clock on one store, also when the worker holding
the clock is killed. No command is run; the SLA table (`MDR_SLA`) and the beat (`--soar-tick`) are configured
short so that the test takes seconds."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer
from sqlalchemy import select

from pipeline.soar.models import Lease
from pipeline.soar.tickets import TicketStore
from pipeline.stream.app import ensure_topics
from pipeline.stream.broker import free_port
from pipeline.stream.config import Topics
from pipeline.stream.envelope import envelope
from tests.soar.helpers import playbook, write_yaml
from tests.soar.servers import RecordingServer
from tests.stream.fixtures_worker import healthz, start_worker, wait_until
from tests.stream.test_operations import metric, metrics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
SLA = 10  # seconds to respond to a P1 here: tier 1 at the due time, tier 2 10 s later, tier 3 20 s later
BEAT = 0.5  # --soar-tick
ON_TIME = 5.0  # seconds an escalation may come after its due time (ten beats: a loaded test machine)


def blackhole(ip: str) -> str:
    """An Alibaba Cloud Anti-DDoS blackhole event starting now: the use case makes it a P1 incident."""
    return orjson.dumps({"Area": "cn", "EventType": "blackhole", "Ip": ip, "Mbps": 101899, "Port": "80",
                         "Pps": 9664270, "StartTime": int(time.time())}).decode()


def clock_holder(store: TicketStore) -> str | None:
    with store.tx() as s:
        return s.scalar(select(Lease.owner).where(Lease.name == "soar-clock"))


def clock_beats(port: int) -> str:
    """What the worker's SOAR clock did so far: ticked, standby (never ticked), or none (no beat yet)."""
    body = metrics(port)
    for result in ("ticked", "standby"):
        if metric(body, "mdr_soar_clock_ticks_total", f'result="{result}"') > 0:
            return result
    return "none"


def test_unacknowledged_p1_escalates_on_time_exactly_once_with_two_workers(kafka_broker, tmp_path: Path) -> None:
    b, prefix = kafka_broker.bootstrap, "mdr.soarclock."
    topics = Topics(prefix=prefix)
    ensure_topics(b, topics, 4)
    pager = RecordingServer()
    db = f"sqlite:///{tmp_path / 'tickets.db'}"
    env = {
        "MDR_SLA": f"P1={SLA}s",
        "MDR_SOAR_CHANNELS": str(write_yaml(tmp_path / "channels.yaml", {
            "channels": {"oncall": {"type": "webhook", "url": pager.url + "/page"}},
            "escalation": {"tiers": [["oncall"]]}})),
        "MDR_PLAYBOOKS": str(write_yaml(tmp_path / "playbooks" / "dos.yaml",
                                        playbook("dos", [{"collect": {}}], categories=["dos"])).parent),
    }
    ports = [free_port(), free_port()]
    ws = [start_worker(b, tmp_path, "--prefix", prefix, "--db", db, "--soar-tick", str(BEAT), "--metrics-port",
                       str(port), app_id="soarclock", name=f"w{i}", env=env) for i, port in enumerate(ports)]
    store = TicketStore(db)
    try:
        assert wait_until(lambda: all(healthz(p)[0] == 200 for p in ports), 120, every=0.5), [w.tail() for w in ws]
        # both run the clock: one ticks, the other stands by
        assert wait_until(lambda: sorted(clock_beats(p) for p in ports) == ["standby", "ticked"], 30, every=0.5), \
            [w.tail() for w in ws]

        producer = KafkaProducer(bootstrap_servers=b)
        producer.send(topics.ingest_topic("ddos"), envelope([blackhole("203.0.113.10")], "shop", "alibaba_ddos",
                                                            "ddos-console"), key=b"ddos-console")
        producer.close()
        assert wait_until(lambda: bool(store.list()), 60, every=0.2), [w.tail() for w in ws]
        [t] = store.list()
        assert (t.priority, t.status, t.category) == ("P1", "new", "dos")
        assert t.sla_due - t.created_at <= timedelta(seconds=SLA)

        def escalations(kind: str = "escalation") -> list:
            return [e for e in store.timeline(t.id) if e.kind == kind]

        # tier 1 at the due time, by whichever worker holds the clock; once its notice is out, that worker dies
        # (kill -9; a notice cut off by a crash is the next tick's: tests/soar/test_clock.py)
        assert wait_until(lambda: len(escalations("notify")) >= 1, SLA + 30, every=0.2), [w.tail() for w in ws]
        holder = clock_holder(store)
        [dead] = [w for w in ws if holder and holder.split(":")[1] == str(w.proc.pid)]
        dead.kill()
        survivor = next(w for w in ws if w is not dead)
        # tiers 2 and 3 by the survivor, which takes the clock over once the lease ran out (three beats)
        assert wait_until(lambda: len(escalations("notify")) >= 3, 2 * SLA + 30, every=0.2), survivor.tail()
        time.sleep(6 * BEAT)  # more beats: nothing escalates twice
        got = escalations()
        assert [e.data["tier"] for e in got] == [1, 2, 3]
        for e in got:
            due = t.sla_due + (e.data["tier"] - 1) * timedelta(seconds=SLA)
            assert due <= e.at <= due + timedelta(seconds=ON_TIME), (e.data, e.at, due)
        pages = pager.requests
        assert len(pages) == 3 and all(p.path == "/page" and p.json["kind"] == "escalation" for p in pages)
        assert [e.status for e in escalations("notify")] == ["ok"] * 3
        assert [p.json["title"][:18] for p in pages] == [f"[ESCALATION T{n}] P1" for n in (1, 2, 3)]
        after = store.require(t.id)
        assert after.sla_breached and after.escalation_level == 3 and after.acknowledged_at is None
        assert clock_holder(store).split(":")[1] == str(survivor.proc.pid)
        live = ports[ws.index(survivor)]
        assert metric(metrics(live), "mdr_soar_escalations_total", 'priority="P1"') >= 2
    finally:
        store.close()
        for w in ws:
            w.stop()
        pager.close()
