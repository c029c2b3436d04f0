"""A real single-node Apache Kafka 4.x broker (KRaft, broker+controller on 127.0.0.1) for tests, demo, benchmarks.

The broker runs from Maven Central jars (``kafka/pom.xml``, fetched by ``make kafka-jars`` or on first use);
no Docker and no Apache tarball are needed.  ``open_broker()`` picks the broker to use: an existing one named by
``MDR_KAFKA_BOOTSTRAP``, an ``apache/kafka`` container where a Docker engine answers, else the jars.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO / "kafka"
KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
STARTED = b"Kafka Server started"


class BrokerError(RuntimeError):
    """The broker could not be prepared, started or reached."""


# ---------------------------------------------------------------- jars


def lib_dir() -> Path:
    """Directory of the broker's class path: ``$MDR_KAFKA_LIB`` or ``<repo>/.cache/kafka/lib``."""
    return Path(os.environ.get("MDR_KAFKA_LIB") or REPO / ".cache" / "kafka" / "lib")


def check_jars(lib: Path) -> None:
    """Raise BrokerError unless ``lib`` holds the broker jar and exactly one slf4j-api 1.7.x jar."""
    if not any(lib.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"no kafka_2.13 jar in {lib}; run `make kafka-jars`")
    slf4j = sorted(p.name for p in lib.glob("slf4j-api-*.jar"))
    if len(slf4j) != 1 or not slf4j[0].startswith("slf4j-api-1.7."):
        raise BrokerError(f"need exactly one slf4j-api 1.7.x jar in {lib}, found {slf4j}")


def ensure_jars(lib: Path | None = None) -> Path:
    """Return the class-path directory, fetching the jars with Maven first when they are missing."""
    lib = lib or lib_dir()
    if any(lib.glob("kafka_2.13-*.jar")):
        check_jars(lib)
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(f"Kafka jars missing in {lib} and `mvn` is not installed (apt-get install maven)")
    part = lib.with_name(f"{lib.name}.part-{os.getpid()}")  # concurrent fetches do not share a directory
    shutil.rmtree(part, ignore_errors=True)
    cmd = [mvn, "-B", "-q", "-f", str(KAFKA_DIR / "pom.xml"),
           "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={part}"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"mvn failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    check_jars(part)
    try:
        part.rename(lib)
    except OSError:  # another process got there first (or an empty dir was in the way)
        if not any(lib.glob("kafka_2.13-*.jar")):
            raise
        shutil.rmtree(part, ignore_errors=True)
    log.info("fetched Kafka jars into %s in %.1fs", lib, time.monotonic() - t0)
    return lib


def java() -> str:
    """Path of the ``java`` launcher (``$JAVA_HOME/bin/java`` first)."""
    home = os.environ.get("JAVA_HOME")
    exe = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not exe or not Path(exe).exists():
        raise BrokerError("`java` (17 or newer) not found; install openjdk-17-jre-headless or set JAVA_HOME")
    return exe


# ---------------------------------------------------------------- configuration


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters), never starting
    with ``-`` (as Kafka's own ``Uuid.randomUuid``: a leading dash reads as an option on command lines)."""
    while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cid


def server_properties(port: int, cport: int, log_dirs: Path) -> dict[str, str]:
    """Broker+controller settings for one node: RF 1 everywhere, one offsets partition, no join delay."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{cport}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # Small segments and an eager, small cleaner so compaction is observable in tests.
        "log.segment.bytes": str(16 * 1024 * 1024),
        "log.retention.hours": "24",
        "log.retention.check.interval.ms": "60000",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.cleaner.backoff.ms": "1000",
    }


def write_properties(path: Path, props: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")


def read_properties(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (ln.split("=", 1) for ln in lines if "=" in ln and not ln.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


# ---------------------------------------------------------------- client helpers (kafka-python 3.x admin)


def _admin(bootstrap: str, timeout_ms: int = 10_000) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="mdr-broker",
                            bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)


def cluster_ready(bootstrap: str) -> bool:
    """True when a metadata call answers and lists at least one live broker."""
    try:
        with _admin(bootstrap, timeout_ms=3000) as admin:
            return bool(admin.describe_cluster().get("brokers"))
    except Exception as exc:  # not up yet: connection refused, no brokers, timeouts
        log.debug("broker %s not ready: %s", bootstrap, exc)
        return False


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1, compacted: bool = False,
                  configs: dict[str, str] | None = None) -> None:
    """Create topics (RF 1; already existing ones are left alone) and wait until each has a leader."""
    topic_configs = {"cleanup.policy": "compact"} if compacted else {}
    topic_configs |= configs or {}
    spec = {"num_partitions": partitions, "replication_factor": 1, "configs": topic_configs}
    names = list(names)
    if not names:
        return
    with _admin(bootstrap) as admin:
        result = admin.create_topics({n: spec for n in names}, raise_errors=False)
        bad = [t for t in result["topics"] if t["error_code"] not in (0, TOPIC_EXISTS)]
        if bad:
            raise BrokerError(f"create_topics failed: {bad}")
        admin.wait_for_topics(names, timeout_ms=30_000)


def topic_partitions(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """Number of partitions of each existing topic of `names`."""
    with _admin(bootstrap) as admin:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(names))
                if not t.get("error_code")}


# ---------------------------------------------------------------- brokers


class Broker:
    """Anything with a bootstrap address: ``bootstrap`` is ``host:port``."""

    bootstrap: str = ""

    def create_topics(self, names: Iterable[str], partitions: int = 1, compacted: bool = False,
                      configs: dict[str, str] | None = None) -> None:
        create_topics(self.bootstrap, names, partitions, compacted, configs)


class ExternalBroker(Broker):
    """A broker somebody else runs (``MDR_KAFKA_BOOTSTRAP``)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGTERM the child when the thread that started it exits (Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class KafkaBroker(Broker):
    """Single-node KRaft broker from the Maven jars.  Context manager; ``restart()`` keeps ports and data.

    ``data_dir`` holds ``server.properties``, ``logs/`` (log.dirs), ``broker.log`` and ``broker.pid``; without
    it a fresh temp dir is used and removed by ``close()``.  An existing ``data_dir`` keeps its ports unless
    ``port`` is given.  ``detach=True`` lets the broker outlive this process (``stop()`` finds it by pid
    file); otherwise it gets SIGTERM when the thread that called ``start()`` exits, so a crashed test run
    leaves no stray JVM.
    """

    def __init__(self, port: int | None = None, data_dir: str | Path | None = None, *,
                 controller_port: int | None = None, lib: Path | None = None, heap: str = "512m",
                 start_timeout: float = START_TIMEOUT, detach: bool = False) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="mdr-kafka-")).resolve()
        self.props_path = self.data_dir / "server.properties"
        self.log_path = self.data_dir / "broker.log"
        self.pid_path = self.data_dir / "broker.pid"
        old = read_properties(self.props_path) if self.props_path.exists() else {}
        old_cport = old.get("controller.quorum.voters", "").rpartition(":")[2]
        self.port = port or int(old.get("advertised.listeners", ":0").rpartition(":")[2]) or free_port()
        self.controller_port = controller_port or int(old_cport or 0) or free_port()
        self.bootstrap = f"{HOST}:{self.port}"
        self.lib = lib
        self.heap = heap
        self.start_timeout = start_timeout
        self.detach = detach
        self._proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _classpath(self) -> str:
        return str(ensure_jars(self.lib) / "*")

    def _format(self, cp: str) -> None:
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cmd = [java(), "-cp", cp, "kafka.tools.StorageTool", "format", f"--cluster-id={random_cluster_id()}",
               "-c", str(self.props_path), "--ignore-formatted"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(f"kafka StorageTool format failed: {(done.stdout + done.stderr)[-2000:]}")

    def start(self) -> KafkaBroker:
        """Format storage if new, launch the JVM and block until the broker answers a metadata request."""
        if self.running():
            return self
        t0 = time.monotonic()
        cp = self._classpath()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_properties(self.props_path, server_properties(self.port, self.controller_port,
                                                            self.data_dir / "logs"))
        self._format(cp)
        cmd = [java(), "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
               "-cp", cp, "kafka.Kafka", str(self.props_path)]
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True,
                                          preexec_fn=None if self.detach else _die_with_parent())
        self.pid_path.write_text(str(self._proc.pid))
        self._wait_ready(t0)
        self.start_seconds = time.monotonic() - t0
        log.info("Kafka broker %s up in %.1fs (log %s)", self.bootstrap, self.start_seconds, self.log_path)
        return self

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.start_timeout
        log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(f"Kafka broker exited with {self._proc.returncode}:\n{self.log_excerpt()}")
            # The log line guards against another broker that already answers on our port.
            if _port_open(self.port) and self._logged(STARTED, log_from) and cluster_ready(self.bootstrap):
                return
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"Kafka broker not ready after {self.start_timeout:.0f}s:\n{self.log_excerpt()}")

    def _logged(self, text: bytes, offset: int) -> bool:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return text in f.read()

    def log_excerpt(self, errors: int = 8, tail: int = 15) -> str:
        """The broker log's first ERROR lines and its last lines (what a failed start needs)."""
        if not self.log_path.exists():
            return "(no broker log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        first = [ln for ln in lines if " ERROR " in ln or ln.startswith("Caused by")][:errors]
        return "\n".join([*first, "...", *lines[-tail:]])

    def _pid(self) -> int | None:
        """Pid of this data dir's broker, also when another process started it."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        try:
            pid = int(self.pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        ours = b"kafka.Kafka" in cmdline and str(self.props_path).encode() in cmdline
        return pid if ours and _alive(pid) else None

    def running(self) -> bool:
        return self._pid() is not None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (clean shutdown), SIGKILL after ``timeout`` seconds.  Data stays for ``restart()``."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not _wait_exit(pid, self._proc, timeout):
                log.warning("Kafka broker %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
                os.kill(pid, signal.SIGKILL)
                _wait_exit(pid, self._proc, 10)
        self._proc = None
        self.pid_path.unlink(missing_ok=True)

    def restart(self) -> KafkaBroker:
        """Stop and start again on the same ports and log dir."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop, and remove the data dir when it was a temp dir made here."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _wait_exit(pid: int, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    if proc is not None:
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return False


def _alive(pid: int) -> bool:
    """True while `pid` runs.  A zombie (exited, not yet reaped by its parent) is gone, unless other threads
    still run: the JVM's main thread shows as a zombie while the shutdown threads finish."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state != "Z" or len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


# ---------------------------------------------------------------- Docker path


def docker_available() -> bool:
    """True when a Docker engine answers (``docker info`` succeeds)."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class ContainerBroker(Broker):
    """The same single-node KRaft broker from the ``apache/kafka`` image via testcontainers.

    testcontainers' own ``KafkaContainer`` drives Confluent images only, so this is a ``DockerContainer``
    configured through the apache/kafka image's ``KAFKA_*`` environment variables.  The listener is published
    on a free host port and advertised as 127.0.0.1 (a local Docker engine, not a remote ``DOCKER_HOST``).
    """

    def __init__(self, image: str = f"apache/kafka:{KAFKA_VERSION}") -> None:
        from testcontainers.core.container import DockerContainer

        self.port = free_port()
        self.bootstrap = f"{HOST}:{self.port}"
        env = {k: v for k, v in server_properties(9092, 9093, Path("/tmp/kraft-combined-logs")).items()
               if k not in ("listeners", "advertised.listeners", "controller.quorum.voters")}
        env |= {"listeners": "PLAINTEXT://:9092,CONTROLLER://:9093", "controller.quorum.voters": "1@localhost:9093",
                "advertised.listeners": f"PLAINTEXT://{self.bootstrap}"}
        self.container = DockerContainer(image).with_bind_ports(9092, self.port)
        for key, value in env.items():
            self.container.with_env("KAFKA_" + key.upper().replace(".", "_"), value)
        self.container.with_env("CLUSTER_ID", random_cluster_id())

    def __enter__(self) -> ContainerBroker:
        self.container.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not cluster_ready(self.bootstrap):
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka container not ready:\n{self.container.get_logs()}")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.stop()


@contextlib.contextmanager
def open_broker() -> Iterator[Broker]:
    """``MDR_KAFKA_BOOTSTRAP`` if set, else a Docker ``apache/kafka`` container if an engine answers and
    ``MDR_KAFKA_DOCKER`` is not ``0``, else a broker from the Maven jars."""
    if bootstrap := os.environ.get("MDR_KAFKA_BOOTSTRAP"):
        yield ExternalBroker(bootstrap)
    elif os.environ.get("MDR_KAFKA_DOCKER", "1") != "0" and docker_available():
        with ContainerBroker() as broker:
            yield broker
    else:
        with KafkaBroker() as broker:
            yield broker
