"""The streaming side of a new user's first hour (issue 14): watching incidents with `mdr incidents tail`, the
worker writing tickets to the default store, a broker outage logged once per interval, and `mdr demo` leaving
nothing behind. All against real Apache Kafka brokers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from pipeline.schema import encode
from pipeline.stream.broker import KafkaBroker
from pipeline.stream.config import Topics
from tests.soar.helpers import incident
from tests.stream.conftest import jar_broker_skip
from tests.stream.fixtures_worker import LAB1, ROOT, settle, start_worker, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(400)]


def mdr(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MDR_KAFKA_BOOTSTRAP"}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**base, "COLUMNS": "80", **(env or {})}, timeout=timeout, check=False)


def test_incidents_tail_reads_the_incident_topic(kafka_broker) -> None:
    b, prefix = kafka_broker.bootstrap, "mdr.tail."
    topic = Topics(prefix=prefix).incidents
    kafka_broker.create_topics([topic], 1, compacted=True)
    survivor = incident(1, category="webshell", priority="P1", priority_reasons=[
        "base P2 from use case 'x'", "raised to P1: outcome succeeded: the activity took effect"])
    part = incident(2, category="malware", status="merged", merged_into=survivor.incident_id)
    other = incident(3, tenant="bank")
    p = KafkaProducer(bootstrap_servers=b)
    for inc in (part, survivor, other):
        p.send(topic, encode(inc), key=inc.incident_id.encode())
    p.send(topic, None, key=b"inc0009")  # a deleted incident
    p.flush()
    r = mdr("incidents", "tail", "--bootstrap", b, "--prefix", prefix, "--no-follow")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("P3 inc0002 → inc0001") and "shop: malware #2" in lines[0]  # names its survivor
    assert lines[1].startswith("P1 inc0001 open") and "(3 alerts, attempted)" in lines[1]
    assert lines[2].strip() == "raised to P1: outcome succeeded: the activity took effect"  # why P1
    assert any("bank:" in ln for ln in lines) and lines[-1] == "deleted inc0009"
    r = mdr("incidents", "tail", "--prefix", prefix, "--no-follow", "--json", "--tenant", "shop",
            env={"MDR_KAFKA_BOOTSTRAP": b})
    got = [orjson.loads(ln) for ln in r.stdout.splitlines()]
    assert [g["incident_id"] for g in got] == ["inc0002", "inc0001"]  # the shop's, in topic order
    r = mdr("incidents", "tail", "--prefix", prefix, "--new-only", "--no-follow", "--bootstrap", b)
    assert r.returncode == 0 and r.stdout == ""


def test_worker_writes_tickets_to_the_default_store(kafka_broker, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`mdr worker` without --db opens tickets in soar.db under MDR_HOME, where `mdr tickets list` looks."""
    from pipeline.stream.app import ensure_topics
    from pipeline.stream.producer import produce

    b, prefix = kafka_broker.bootstrap, "mdr.store."
    monkeypatch.delenv("MDR_HOME", raising=False)
    monkeypatch.delenv("MDR_DB_URL", raising=False)
    home = tmp_path / "home"  # what start_worker gives the worker
    ensure_topics(b, Topics(prefix=prefix), 4)
    w = start_worker(b, tmp_path, "--prefix", prefix, "--tickets", app_id="default-store")
    try:
        produce(b, [str(LAB1 / "host")], f"{prefix}alerts.host", "shop", None, "web-01")

        def listed() -> str:
            if not (home / "soar.db").exists():
                return ""
            return mdr("tickets", "list", "--json", env={"MDR_HOME": str(home)}).stdout

        assert wait_until(lambda: "brute_force" in listed(), 150, every=2), w.tail()
    finally:
        w.stop()
    titles = [orjson.loads(ln)["title"] for ln in listed().splitlines() if ln.startswith("{")]
    assert titles and all("web-01" in t for t in titles), titles


def test_broker_outage_is_logged_once_per_interval(tmp_path: Path) -> None:
    """The broker stops under a running worker: the worker says so in one line naming the address, keeps
    quiet (back-off, one report per interval) while it is down, and says when it answers again."""
    jar_broker_skip()
    with KafkaBroker(data_dir=tmp_path / "kafka") as broker:
        w = start_worker(broker.bootstrap, tmp_path, "--prefix", "mdr.outage.", app_id="outage")
        try:
            assert wait_until(lambda: "Worker ready" in w.log.read_text(errors="replace"), 120), w.tail()
            settle(lambda: w.log.stat().st_size, quiet=3, timeout=60)
            before = len(w.log.read_text(errors="replace").splitlines())
            broker.stop()
            t0 = time.monotonic()
            time.sleep(20)
            during = [orjson.loads(ln) for ln in w.log.read_text(errors="replace").splitlines()[before:]]
            assert len(during) <= 8, during  # thousands in 20 s without the back-off and the filter
            outage = [d for d in during if "unreachable" in d["msg"]]
            assert len(outage) == 1, during  # once per interval (30 s)
            assert outage[0]["level"] == "warning" and f"Kafka broker {broker.bootstrap} unreachable" in \
                outage[0]["msg"] and "[--bootstrap]" in outage[0]["msg"]
            broker.start()
            assert wait_until(lambda: "answers again" in w.log.read_text(errors="replace"), 120), w.tail()
            again = next(orjson.loads(ln)["msg"] for ln in w.log.read_text(errors="replace").splitlines()
                         if "answers again" in ln)
            errors, down = int(again.split(", ")[1].split()[0]), time.monotonic() - t0
            print(f"outage: {again!r}; {errors / down:.1f} client errors/s held back")
            assert errors / down < 20  # ~115 log lines/s with aiokafka's 0.1 s retries and no back-off
            assert "Traceback" not in w.log.read_text(errors="replace")
        finally:
            w.stop()


def test_demo_leaves_nothing_behind(tmp_path: Path) -> None:
    """`mdr demo` (what `make demo` runs) writes only into its own temporary directory and removes it: the
    directory it runs in, TMPDIR and HOME are as before (the Kafka jars and the venv are the repository's
    ignored folders), and the repository has no new untracked file."""
    jar_broker_skip()
    samples = tmp_path / "samples"
    (samples / "host").mkdir(parents=True)
    (samples / "host" / "sshd_auth.log").write_text((LAB1 / "host" / "sshd_auth.log").read_text())
    (samples / "host" / "fail2ban_bans.jsonl").write_text((LAB1 / "host" / "fail2ban_bans.jsonl").read_text())
    cwd, tmp, home = (tmp_path / d for d in ("cwd", "tmp", "home"))
    for d in (cwd, tmp, home):
        d.mkdir()

    def untracked() -> set[str]:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                             capture_output=True, text=True, check=False).stdout
        return {ln[3:] for ln in out.splitlines() if ln.startswith("??")}

    before = untracked()
    env = {k: v for k, v in os.environ.items() if k not in ("MDR_HOME", "MDR_DB_URL")}
    env.update(HOME=str(home), TMPDIR=str(tmp), COLUMNS="80", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--samples", str(samples), "--seconds", "3",
                        "--no-hold"],  # the console serves while the stream runs, then everything stops
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "incidents" in r.stdout and "demo files removed" in r.stdout
    assert "why this priority" in r.stdout  # the live table (reasons under each title)
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == [] and list(home.iterdir()) == []
    assert untracked() == before
