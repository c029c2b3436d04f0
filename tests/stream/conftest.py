"""The real Apache Kafka 4 broker of the stream tests: started once per session, stopped at the end.

`MDR_KAFKA_BOOTSTRAP` points the tests at a running broker; where a Docker engine answers, the same fixture
starts the `apache/kafka` image (testcontainers); otherwise the broker runs from Maven Central jars on the
machine's Java 17 (`make kafka-jars`). Without Java or the jars (and no Maven to fetch them) the tests skip.

- `kafka_broker`: the session broker (`.bootstrap`, `.create_topics(names, partitions, compacted, configs)`).
- `new_topic(partitions=1, compacted=False, **configs)`: creates a uniquely named topic, returns its name.
- `jar_broker_skip()`: skips a test that starts its own broker from the jars when that cannot work here.
- `faust_app(app_id, bootstrap, datadir)`: a Faust app with the fast consumer-group settings below.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.stream.broker import Broker, BrokerError, check_jars, docker_available, lib_dir, open_broker

# Consumer-group timings that make a Faust worker (re)join in seconds: with Faust's defaults (60 s session)
# a worker that replaces a killed one waits a full minute for the dead member's session to expire.
FAUST_FAST_JOIN: dict[str, Any] = {
    "broker_session_timeout": 6.0,  # >= the broker's default group.min.session.timeout.ms (6 s)
    "broker_heartbeat_interval": 0.5,
    "broker_rebalance_timeout": 10.0,
}


def _why_not() -> str | None:
    """Why no broker can be started from the jars here, or None."""
    if shutil.which("java") is None:
        return "no java on PATH: the Kafka broker needs Java 17"
    try:
        check_jars(lib_dir())
    except BrokerError:
        if shutil.which("mvn") is None:
            return "Kafka jars missing and no mvn to fetch them (make kafka-jars)"
    return None


def jar_broker_skip() -> None:
    """Skip the calling test when a broker cannot be started from the Maven jars on this machine."""
    if reason := _why_not():
        pytest.skip(reason)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    if not os.environ.get("MDR_KAFKA_BOOTSTRAP") and not docker_available():
        jar_broker_skip()
    with open_broker() as broker:
        yield broker


@pytest.fixture
def new_topic(kafka_broker: Broker, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: `new_topic(partitions=1, compacted=False, **configs)` creates a fresh topic, returns its name."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:60]

    def make(partitions: int = 1, compacted: bool = False, **configs: str) -> str:
        name = f"t-{stem}-{uuid.uuid4().hex[:8]}"
        kafka_broker.create_topics([name], partitions, compacted, {k.replace("_", "."): v for k, v in configs.items()})
        return name

    return make


def faust_app(app_id: str, bootstrap: str, datadir: str | Path, **settings: Any) -> Any:
    """A Faust app on `bootstrap` with RocksDB tables in `datadir`, no web server, fast group joins."""
    import faust

    conf: dict[str, Any] = {
        "broker": f"kafka://{bootstrap}", "datadir": str(datadir), "store": "rocksdb://", "web_enabled": False,
        "autodiscover": False, "topic_partitions": 1, "topic_replication_factor": 1,
        "consumer_auto_offset_reset": "earliest", **FAUST_FAST_JOIN,
    }
    return faust.App(app_id, **(conf | settings))
