"""Live update end to end on the real broker: records produced to an ingest topic, the real worker (with the
console's store as its ticket store) raises the incident, and an open queue page in Chromium shows it within
seconds, with its alerts (the worker's evidence) on the incident page; the health page shows the worker's
metrics (dead letters by reason) and the group's consumer lag read from the broker."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.console.auth import add_user
from pipeline.soar.tickets import TicketStore
from pipeline.stream.broker import Broker, docker_available, open_broker
from tests.console.browser import chromium, sign_in, wait_for
from tests.console.conftest import LAB1
from tests.console.server import PASSWORD, free_port, login
from tests.stream.conftest import jar_broker_skip
from tests.stream.fixtures_worker import start_worker, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.browser]


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    import os

    if not os.environ.get("MDR_KAFKA_BOOTSTRAP") and not docker_available():
        jar_broker_skip()
    with open_broker() as b:
        yield b


def _healthz(port: int) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status
    except OSError:
        return 0


def _poison(bootstrap: str, topic: str) -> None:
    """One message that is no envelope: a dead letter, counted by reason in the worker's metrics."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap)
    p.send(topic, b"\x00not an envelope")
    p.flush()
    p.close()


def _health(c: Any) -> dict[str, Any]:
    time.sleep(5.5)  # past the console's health cache
    return c.get("/api/health").json()


def test_incident_from_the_broker_appears_in_the_open_queue(broker: Broker, console_server: Any,
                                                            tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from pipeline.stream.app import ensure_topics
    from pipeline.stream.config import Topics
    from pipeline.stream.producer import produce

    url = f"sqlite:///{tmp_path}/soar.db"
    store = TicketStore(url)
    add_user(store, "ana", "analyst", ["live"], PASSWORD)
    store.close()
    prefix = f"console{int(time.time() * 1000) % 10**8}."
    topics = Topics(prefix=prefix)
    ensure_topics(broker.bootstrap, topics, 2)
    port = free_port()
    w = start_worker(broker.bootstrap, tmp_path / "w", "--prefix", prefix, "--partitions", "2", "--db", url,
                     "--metrics-port", str(port), app_id=f"{prefix}worker")
    try:
        srv = console_server(url, kafka=broker.bootstrap, group=f"{prefix}worker",
                             metrics_urls=[f"http://127.0.0.1:{port}/metrics"])
        with chromium() as d:
            sign_in(d, srv.url, "ana", PASSWORD)
            assert wait_for(lambda: d.find_element(By.ID, "live").get_attribute("data-state") == "on")
            assert not d.find_elements(By.CSS_SELECTOR, "#queue-rows tr[data-ticket]")
            assert wait_until(lambda: _healthz(port) == 200, 120, every=0.5), w.tail()
            produce(broker.bootstrap, [str(LAB1 / "ids")], topics.ingest_topic("firewall"), "live", None, "web-01")
            t0 = time.monotonic()
            _poison(broker.bootstrap, topics.ingest_topic("waf"))
            assert wait_for(lambda: d.find_elements(By.CSS_SELECTOR, "#queue-rows tr[data-ticket]"), timeout=60), \
                w.tail()
            seen = time.monotonic() - t0
            titles = [a.text for a in d.find_elements(By.CSS_SELECTOR, "#queue-rows a.title")]
        c = srv.client()
        login(c, "ana")
        q = c.get("/api/incidents").json()
        assert q["total"] >= 1 and {i["tenant_id"] for i in q["incidents"]} == {"live"}
        inc = c.get(f"/api/incidents/{q['incidents'][0]['incident_id']}").json()
        assert inc["alerts"] and all(a["raw"] for a in inc["alerts"])  # the worker stored the evidence
        health = c.get("/api/health").json()  # the worker's metrics and the group's lag, as the health page shows
        [wk] = health["workers"]
        assert wk["ready"] is True and wk["counters"]["mdr_records"] >= 1 and wk["alerts_by_tenant"].get("live")
        assert wait_until(lambda: sum(_health(c)["workers"][0]["dead_letters"].values()) >= 1, 30, every=1)
        assert wait_until(lambda: _health(c)["consumer_lag"]["partitions"], 30, every=1), _health(c)["consumer_lag"]
        lag = _health(c)["consumer_lag"]
        assert lag["error"] is None and {p["topic"] for p in lag["partitions"]} >= {topics.ingest_topic("firewall")}
        page = c.get("/health").text
        assert "Dead letters by reason" in page and topics.ingest_topic("firewall") in page
        print(f"live update: first incident on the open queue page {seen:.2f} s after the records were produced "
              f"({titles[0]!r})")
        assert seen < 30.0
    finally:
        w.stop()
