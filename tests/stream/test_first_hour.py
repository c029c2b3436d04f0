"""The streaming side of a new user's first hour (issue 14): watching incidents with `mdr incidents tail`, the
worker writing tickets to the default store, a broker outage logged once per interval, and `mdr demo` leaving
nothing behind. All against real Apache Kafka brokers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from pipeline.schema import encode
from pipeline.stream.broker import KafkaBroker, free_port
from pipeline.stream.config import Topics
from tests.cli import readme
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


GRACE = 10  # seconds (`mdr worker --shutdown-grace`, its default)


def test_broker_outage_is_logged_once_per_interval(tmp_path: Path) -> None:
    """The broker stops under a running worker: the worker says so in one line naming the address, keeps
    quiet (back-off, one report per interval) while it is down, and says when it answers again. Stopped while
    its broker is gone, it exits within its grace period."""
    jar_broker_skip()
    with KafkaBroker(data_dir=tmp_path / "kafka") as broker:
        w = start_worker(broker.bootstrap, tmp_path, "--prefix", "mdr.outage.", "--shutdown-grace", str(GRACE),
                         app_id="outage")
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

            # the broker stopped before the worker (the wrong order): the worker still stops cleanly, before the
            # watchdog of its grace period (aiokafka's fetcher used to end the consumer thread with a traceback
            # and leave the stop waiting for it: ~60 s, then 10 s with the watchdog, exit 1)
            broker.stop()
            time.sleep(3)
            t0, before = time.monotonic(), len(w.log.read_text(errors="replace").splitlines())
            w.proc.send_signal(signal.SIGTERM)
            code = w.proc.wait(60)
            took, stopping = time.monotonic() - t0, w.log.read_text(errors="replace").splitlines()[before:]
            print(f"worker stopped {took:.1f} s after SIGTERM with its broker gone ({len(stopping)} log lines)")
            assert code == 0 and took < GRACE, "\n".join(stopping)
            assert "Traceback" not in "\n".join(stopping)
            assert len([ln for ln in stopping if '"level": "error"' in ln or '"level": "warning"' in ln]) <= 4, \
                "\n".join(stopping)
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


def test_readme_streaming_recipe_as_written(tmp_path: Path) -> None:
    """The README's streaming recipe, line by line, in a fresh directory (its `samples` a link to the bundled
    ones) with a fresh MDR_HOME: the broker's address goes to MDR_KAFKA_BOOTSTRAP, the worker and `mdr incidents
    tail` run in their own "terminals", the producers and `mdr tickets list` in turn; then everything stops in
    the order the README gives. Only the metrics port is another (9108 may be taken on a shared machine)."""
    jar_broker_skip()
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    (cwd / "samples").symlink_to(ROOT / "samples")
    env = {k: v for k, v in os.environ.items() if k not in ("MDR_KAFKA_BOOTSTRAP", "MDR_DB_URL")}
    env.update(MDR_HOME=str(home), COLUMNS="80", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    lines = readme.shell_lines(readme.bash_blocks(readme.section("Streaming"))[0])
    steps = [readme.shell_commands_of(line, ("mdr",)) for line in lines]
    assert [s[0][:2] for s in steps] == [["broker", "start"], ["worker", "--metrics-port"], ["incidents", "tail"],
                                        *[["produce", f"samples/lab-1/{d}"] for d in ("waf", "ids", "host")],
                                        ["tickets", "list"]], steps
    assert lines[0].startswith("export MDR_KAFKA_BOOTSTRAP=$(")
    stop = readme.section("Streaming").split("Stop them in this order:", 1)[1]
    assert stop.index("`mdr incidents tail`") < stop.index("the worker") < stop.index("`mdr broker stop`")

    def run(words: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *words], capture_output=True, text=True,
                              cwd=cwd, env=env, timeout=180, check=False)

    def start(words: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        out = tmp_path / f"{name}.out"
        with out.open("wb") as fh:
            return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *words], stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd, env=env), out

    r = run(steps[0][0])
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
    env["MDR_KAFKA_BOOTSTRAP"] = r.stdout.strip()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker_words = [str(free_port()) if w == "9108" else w for w in steps[1][0]]
        worker, worker_log = start(worker_words, "worker")
        procs.append(worker)
        assert wait_until(lambda: "Worker ready" in worker_log.read_text(errors="replace"), 150), \
            worker_log.read_text(errors="replace")[-3000:]
        tail, tail_out = start(steps[2][0], "tail")
        procs.append(tail)
        for [words] in steps[3:6]:
            r = run(words)
            assert r.returncode == 0 and " messages -> mdr.alerts." in r.stdout, r.stdout + r.stderr

        def listed() -> str:
            return run(steps[6][0]).stdout if (home / "soar.db").exists() else ""

        assert wait_until(lambda: "Compromise of" in listed(), 180, every=3), \
            worker_log.read_text(errors="replace")[-3000:]
        assert wait_until(lambda: "Compromise of web-01" in tail_out.read_text(errors="replace"), 30), \
            tail_out.read_text(errors="replace")
        # the stop order of the README: the tail (Ctrl-C), the worker (SIGTERM), the broker last
        tail.send_signal(signal.SIGINT)
        assert tail.wait(20) == 0 and "Traceback" not in tail_out.read_text(errors="replace")
        t0 = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker_log.read_text(errors="replace")[-3000:]
        print(f"worker stopped in {time.monotonic() - t0:.1f} s")
        assert "Traceback" not in worker_log.read_text(errors="replace")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        r = run(["broker", "stop"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in cwd.iterdir()) == [".mdr-kafka", ".mdr-worker", "samples"]  # as the README says
