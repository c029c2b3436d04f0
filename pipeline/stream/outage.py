"""A Kafka broker that does not answer: one clear error for the commands, back-off and a quiet log for the worker.

- `bootstrap_of(option)`: the broker address and where it came from (--bootstrap, MDR_KAFKA_BOOTSTRAP, default);
- `require_broker()`: a command that needs the broker now fails with one line naming the address and the fix;
- `OutageLog`: a logging filter for the worker. While the broker is unreachable, the Kafka clients log an error
  for every retry (thousands a minute); the filter lets the first through as one line naming the address,
  then one line per interval with the number of errors it held back, and one line when the worker is back in
  its consumer group;
- `TRANSPORT`: the Faust Kafka transport with a longer retry back-off and exponential reconnect back-off, so the
  clients knock less often (`register_transport()` names it for Faust; `pipeline.stream.app.faust_settings`
  selects it), and a consumer that stops cleanly while the broker is away (`quiet_fetcher_close`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import UserError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
LOG_INTERVAL = 30.0  # seconds between two reports of one outage
RETRY_BACKOFF_MS = 1000  # Kafka clients' wait before retrying a failed request or connection (aiokafka: 100)
RECONNECT_MIN, RECONNECT_MAX = 0.5, 8.0  # seconds between connection attempts to a node that refuses
SETTLE = 10.0  # seconds after the broker is back in which stray retry errors start no new outage
_BACK = re.compile(r"Discovered coordinator|Successfully synced group|Joined group|Worker ready", re.IGNORECASE)
_OUTAGE = re.compile(r"Unable connect to|Unable to update metadata|NodeNotReadyError|KafkaConnectionError|"
                     r"Connect call failed|Connection refused|NoBrokersAvailable|not ready|Unable to bootstrap",
                     re.IGNORECASE)
_CLIENTS = ("aiokafka", "kafka", "faust")
_RUNNING = ("aiokafka", "faust")  # their records say when the worker is back in its group (_BACK)


def bootstrap_of(option: str | None) -> tuple[str, str]:
    """(broker address, where it came from) for --bootstrap `option`, MDR_KAFKA_BOOTSTRAP or the default."""
    if option:
        return option, "--bootstrap"
    env = os.environ.get("MDR_KAFKA_BOOTSTRAP")
    if env:
        return env, "MDR_KAFKA_BOOTSTRAP"
    return DEFAULT_BOOTSTRAP, "the default; set MDR_KAFKA_BOOTSTRAP or --bootstrap"


class BrokerUnreachable(UserError):
    """No Kafka broker answers at the address a command was given."""

    def __init__(self, bootstrap: str, source: str, reason: str = ""):
        why = f" ({reason})" if reason else ""
        super().__init__(f"no Kafka broker answers at {bootstrap} [{source}]{why}; start one with `mdr broker start` "
                         "(it prints its address for MDR_KAFKA_BOOTSTRAP) or point --bootstrap / "
                         "MDR_KAFKA_BOOTSTRAP to yours")


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port) if port.isdigit() else 9092


def require_broker(bootstrap: str, source: str, timeout: float = 3.0) -> None:
    """Raise BrokerUnreachable unless something accepts connections at the (first) bootstrap address."""
    try:
        with socket.create_connection(_host_port(bootstrap), timeout=timeout):
            return
    except OSError as e:
        raise BrokerUnreachable(bootstrap, source, e.strerror or str(e)) from None


class OutageLog(logging.Filter):
    """Turns the Kafka clients' retry errors during a broker outage into one line per `interval`."""

    def __init__(self, bootstrap: str, source: str, interval: float = LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.bootstrap, self.source, self.interval, self.clock = bootstrap, source, interval, clock
        self.since: float | None = None  # start of the current outage
        self.reported = 0.0  # when it was last reported
        self.last_error = 0.0
        self.held = 0  # errors held back since the last report
        self.total = 0  # errors of this outage
        self.back_at = -SETTLE  # when the last outage ended

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_CLIENTS):
            return True
        now = self.clock()
        if record.levelno >= logging.WARNING and _OUTAGE.search(record.getMessage()):
            self.last_error = now
            self.total += 1
            if self.since is None and now - self.back_at < SETTLE:  # a retry already under way as it came back
                self.total = 0
                return False
            if self.since is None:
                self.since = self.reported = now
                self.held = 0
                return self._rewrite(record, f"Kafka broker {self.bootstrap} unreachable ({record.getMessage()}); "
                                             f"retrying, reported every {self.interval:.0f} s until it answers "
                                             f"[{self.source}]")
            if now - self.reported >= self.interval:
                text = (f"Kafka broker {self.bootstrap} still unreachable after {now - self.since:.0f} s "
                        f"({self.held} connection errors not logged since the last report)")
                self.reported, self.held = now, 0
                return self._rewrite(record, text)
            self.held += 1
            return False
        if self.since is not None and record.name.startswith(_RUNNING) and _BACK.search(record.getMessage()):
            down, total = self.last_error - self.since, self.total
            self.since, self.total, self.back_at = None, 0, now
            logging.getLogger("mdr.worker").warning(
                "Kafka broker %s answers again (unreachable for %.0f s, %d connection errors)", self.bootstrap,
                down, total)
        return True

    @staticmethod
    def _rewrite(record: logging.LogRecord, text: str) -> bool:
        record.msg, record.args = text, ()
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def slow_reconnects(client: Any, clock: Callable[[], float] = time.monotonic) -> None:
    """Back off reconnecting to a broker node that refused: after a failed connection the client does not try
    that node again for RECONNECT_MIN s, doubling up to RECONNECT_MAX s while it keeps failing (aiokafka retries
    every time any of its loops needs the node). A node in its back-off reads as not ready, as when down."""
    get_conn = getattr(client, "_get_conn", None)
    if get_conn is None:  # another aiokafka: leave it as it is
        return
    waits: dict[Any, tuple[float, float]] = {}  # node -> (not before, current delay)

    async def _get_conn(node_id: Any, *args: Any, **kw: Any) -> Any:
        until, delay = waits.get(node_id, (0.0, 0.0))
        if clock() < until:
            return None
        conn = await get_conn(node_id, *args, **kw)
        if conn is None:
            delay = min(RECONNECT_MAX, max(RECONNECT_MIN, delay * 2))
            waits[node_id] = (clock() + delay, delay)
        else:
            waits.pop(node_id, None)
        return conn

    client._get_conn = _get_conn


def quiet_fetcher_close(fetcher: Any) -> None:
    """Let aiokafka's fetcher close while the broker is away. `Fetcher.close` cancels its fetch requests and
    awaits each; one that was waiting out its retry back-off after a failed request re-raises the cancellation,
    which ends the consumer thread with a traceback and leaves the worker's stop waiting for it until its grace
    runs out. Cancel and wait them out first (asyncio.wait does not re-raise), then close as before."""
    close, pending_tasks = getattr(fetcher, "close", None), getattr(fetcher, "_pending_tasks", None)
    if close is None or not isinstance(pending_tasks, set):  # another aiokafka: leave it as it is
        return

    async def _close() -> None:
        routine = getattr(fetcher, "_fetch_task", None)
        if routine is not None:  # first the routine that starts new requests
            routine.cancel()
            await asyncio.wait([routine])
        pending = set(pending_tasks)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
        pending_tasks.difference_update(pending)
        await close()

    fetcher.close = _close


def _transport() -> Any:
    """The Faust aiokafka transport with RETRY_BACKOFF_MS and slow reconnects for its consumer and producer
    (built lazily: Faust is imported only by the worker)."""
    from faust.transport.drivers import aiokafka as driver

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_consumer(self, loop: Any) -> Any:
            consumer = super()._create_consumer(loop)
            # aiokafka takes retry_backoff_ms only in its constructor, which Faust calls without it: set it
            # before start() (the fetcher and the coordinator are made there, the client already exists)
            consumer._retry_backoff_ms = RETRY_BACKOFF_MS
            client = getattr(consumer, "_client", None)
            if client is not None:
                if hasattr(client, "_retry_backoff"):
                    client._retry_backoff = RETRY_BACKOFF_MS / 1000
                slow_reconnects(client)
            return consumer

        async def on_start(self) -> None:
            await super().on_start()
            quiet_fetcher_close(getattr(self._consumer, "_fetcher", None))  # made by the consumer's start()

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Producer(driver.Producer):
        def _settings_extra(self) -> Any:
            return {**super()._settings_extra(), "retry_backoff_ms": RETRY_BACKOFF_MS}

        def _new_producer(self, transactional_id: str | None = None) -> Any:
            producer = super()._new_producer(transactional_id)
            if getattr(producer, "client", None) is not None:
                slow_reconnects(producer.client)
            return producer

    class BackoffTransport(driver.Transport):
        pass

    BackoffTransport.Consumer = Consumer
    BackoffTransport.Producer = Producer
    return BackoffTransport


TRANSPORT = "mdrkafka"


def register_transport() -> str:
    """Make the back-off transport known to Faust as `mdrkafka://`; returns the URL scheme."""
    from faust.transport import drivers

    drivers.TRANSPORTS.aliases.setdefault(TRANSPORT, f"{__name__}:Transport")
    return TRANSPORT


def __getattr__(name: str) -> Any:
    if name == "Transport":  # resolved by Faust through the alias of register_transport()
        return _transport()
    raise AttributeError(name)
