"""Typer commands of the streaming side: `mdr worker`, `mdr produce`, `mdr demo`, `mdr broker start|stop`."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from pipeline import paths
from pipeline.cliargs import tenant_option, usage_error
from pipeline.stream.config import Topics, WorkerConfig, parse_bindings

broker_app = typer.Typer(help="A local Apache Kafka broker from the Maven jars.", no_args_is_help=True)
Bootstrap = Annotated[str | None, typer.Option(help="Kafka bootstrap host:port (default: MDR_KAFKA_BOOTSTRAP)")]


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        body = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                "msg": record.getMessage()}
        if record.exc_info:
            body["exc"] = record.exc_text or self.formatException(record.exc_info)  # redacted (pipeline/redact.py)
        return json.dumps(body, default=str)


def json_handler() -> logging.Handler:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JsonFormatter())
    return h


EXIT_FAILED = 1  # an error stopped the worker, or its stop did not finish within the grace period


def run_worker(cfg: WorkerConfig) -> None:
    """Create the topics, build the Faust app and run it until SIGTERM/SIGINT (graceful: commit, flush).

    Exits non-zero when an error stopped it (`Runtime.fail`, or Faust's own crash). A stop that does not finish
    within `cfg.shutdown_grace` seconds ends the process anyway: nothing may keep a stopping worker alive."""
    from pipeline.rules.usecase import load_usecases
    from pipeline.runtime import tune_gc
    from pipeline.stream.app import build, ensure_topics
    from pipeline.stream.metrics import serve

    tune_gc()
    handler = json_handler()
    logging.basicConfig(level=cfg.log_level.upper(), handlers=[handler], force=True)
    _create_topics(cfg, ensure_topics)
    ucs = load_usecases(str(cfg.usecases))
    for e in ucs.errors:
        logging.getLogger("mdr.worker").warning("skipped use case %s", e)
    rt = build(cfg, ucs)
    rt.shutdown = lambda: os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop an operator's SIGTERM starts
    rt.metrics.watch_gc()
    if cfg.db_url:
        from pipeline.soar.actions import Soar

        rt.soar = Soar.open(cfg.db_url)
    if cfg.metrics_port:
        serve(rt.metrics, cfg.metrics_port, rt.health)
    rt.app.conf.loghandlers = [handler]
    worker = _worker_class()(rt.app, loglevel=cfg.log_level, redirect_stdouts=False, quiet=True,
                             override_logging=False)
    worker.watchdog = Watchdog(cfg.shutdown_grace)
    code: object = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as e:
        code = e.code
    if rt.failed():
        logging.getLogger("mdr.worker").error("worker stopped after a failure: %s", rt.health()[1])
        code = EXIT_FAILED
    raise SystemExit(code)


class Watchdog:
    """Ends the process `grace` seconds after a stop began, should the stop hang (Faust's stop after a crash
    waits for a consumer thread that is gone: the reason SIGTERM used to be ignored)."""

    def __init__(self, grace: float):
        self.grace = grace
        self._armed = threading.Event()

    def arm(self) -> None:
        if not self._armed.is_set():
            self._armed.set()
            threading.Thread(target=self._run, name="stop-watchdog", daemon=True).start()

    def _run(self) -> None:
        time.sleep(self.grace)
        logging.getLogger("mdr.worker").error("stop did not finish within %.0f s; exiting with %d", self.grace,
                                              EXIT_FAILED)
        logging.shutdown()
        os._exit(EXIT_FAILED)


def _worker_class() -> type:
    """faust.Worker that arms its `watchdog` when a stop begins: on SIGTERM/SIGINT and when the app ends."""
    import faust

    class Worker(faust.Worker):
        watchdog: Watchdog

        def _on_sigterm(self) -> None:
            self.watchdog.arm()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            self.watchdog.arm()
            super()._on_sigint()

        def on_worker_shutdown(self) -> None:
            self.watchdog.arm()
            super().on_worker_shutdown()

    return Worker


def _create_topics(cfg: WorkerConfig, ensure: Callable[..., None], wait: float = 90.0) -> None:
    """Create the worker's topics, waiting for a broker that is down or restarting (up to `wait` seconds)."""
    from kafka.errors import KafkaError

    from pipeline.stream.broker import BrokerError

    deadline = time.monotonic() + wait
    while True:
        try:
            ensure(cfg.bootstrap, cfg.topics, cfg.partitions)
            return
        except (KafkaError, BrokerError, OSError) as e:
            if time.monotonic() > deadline:
                raise
            logging.getLogger("mdr.worker").warning("broker not ready (%s); retrying", e)
            time.sleep(1.0)


def worker(
    bootstrap: Bootstrap = None,
    app_id: Annotated[str, typer.Option(help="Consumer group / Faust app id")] = "mdr-worker",
    partitions: Annotated[int, typer.Option(help="Partitions of the by-tenant topic and state table")] = 4,
    bind: Annotated[list[str] | None, typer.Option(help="Bind an ingest topic to a tenant: waf=shop")] = None,
    prefix: Annotated[str, typer.Option(help="Topic name prefix")] = "mdr.",
    usecases: Annotated[Path | None, typer.Option(help="Base use-case directory")] = None,
    data_dir: Annotated[Path, typer.Option(help="Local state (RocksDB) directory")] = Path(".mdr-worker"),
    quiet: Annotated[float, typer.Option(help="Feed a partition after this many quiet seconds")] = 0.1,
    max_hold: Annotated[float, typer.Option(help="...or after its oldest pending alert waited this long")] = 0.25,
    idle_flush: Annotated[float, typer.Option(help="Flush buffering normalizers after this idle time")] = 1.0,
    lateness: Annotated[float, typer.Option(help="Allowed event-time lateness, seconds")] = 600.0,
    metrics_port: Annotated[int, typer.Option(help="Serve /metrics and /healthz on this port (0: off)")] = 0,
    db: Annotated[str | None, typer.Option("--db", help="SOAR ticket store URL: tickets to mdr.tickets")] = None,
    verdicts_file: Annotated[Path | None, typer.Option(help="Append consumed verdicts to this JSONL")] = None,
    model: Annotated[Path | None, typer.Option(help="Noise classifier model directory (mdr model train)")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    max_attempts: Annotated[int, typer.Option(help="Dead-letter a message once it made the worker fail this "
                                              "many times")] = 3,
    shutdown_grace: Annotated[float, typer.Option(help="Seconds a stop may take before the process exits")] = 10.0,
) -> None:
    """Run the streaming worker: the same core as `mdr replay`, on Kafka topics."""
    topics = Topics(prefix=prefix)
    try:
        bindings = parse_bindings(bind, topics)
    except ValueError as e:
        usage_error(f"--bind: {e}")
    cfg = WorkerConfig.from_env(
        bootstrap=bootstrap, app_id=app_id, partitions=partitions, topics=topics,
        tenant_bindings=bindings, usecases=usecases or paths.usecases_dir(),
        data_dir=data_dir, quiet=quiet, max_hold=max_hold, idle_flush=idle_flush, lateness=lateness,
        metrics_port=metrics_port, db_url=db, verdicts_file=verdicts_file, model=model, log_level=log_level,
        max_attempts=max_attempts, shutdown_grace=shutdown_grace)
    run_worker(cfg)


def produce(
    files: Annotated[list[str], typer.Argument(help="Files or directories")],
    topic: Annotated[str, typer.Option(help="Ingest topic (name, or kind: waf, firewall, host, ddos)")],
    tenant: Annotated[str | None, tenant_option("Tenant (omit to rely on the topic's binding)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Force one input format")] = None,
    host: Annotated[str | None, typer.Option(help="Host name for records that carry none")] = None,
    per_message: Annotated[int, typer.Option(help="Records per envelope")] = 1,
    bootstrap: Bootstrap = None,
) -> None:
    """Stream product files into an ingest topic as envelopes."""
    import os

    from pipeline.stream.producer import produce as run

    name = topic if "." in topic else Topics().ingest_topic(topic)
    n = run(bootstrap or os.environ.get("MDR_KAFKA_BOOTSTRAP", "127.0.0.1:9092"), files, name, tenant, fmt,
            host, per_message, lambda line: typer.echo(line, err=True))
    typer.echo(f"{n} messages -> {name}")


def demo(
    samples: Annotated[Path, typer.Option(help="Lab sample directory")] = Path("samples/lab-1"),
    tenant: Annotated[str, tenant_option("Tenant of the samples")] = "shop",
    seconds: Annotated[float, typer.Option(help="Stop this long after the last incident update")] = 8.0,
    console_port: Annotated[int, typer.Option(help="Port of the analyst console (another if taken)")] = 8700,
    console: Annotated[bool, typer.Option(help="Serve the analyst console on the demo's tickets")] = True,
    hold: Annotated[bool, typer.Option(help="Keep the console serving after the stream, until Ctrl-C")] = True,
) -> None:
    """Start a broker and a worker, stream the lab samples, show incidents arriving live; the analyst console
    serves them (its URL and a demo login are printed)."""
    from pipeline.stream.demo import run_demo

    raise typer.Exit(run_demo(samples, tenant, seconds, console_port if console else None, hold))


@broker_app.command("start")
def broker_start(data_dir: Annotated[Path, typer.Option(help="Broker data directory")] = Path(".mdr-kafka"),
                 port: Annotated[int | None, typer.Option(help="Listener port")] = None) -> None:
    """Start a detached single-node broker; prints its bootstrap address."""
    from pipeline.stream.broker import KafkaBroker

    b = KafkaBroker(port, data_dir, detach=True).start()
    typer.echo(b.bootstrap)


@broker_app.command("stop")
def broker_stop(data_dir: Annotated[Path, typer.Option(help="Broker data directory")] = Path(".mdr-kafka")
                ) -> None:
    """Stop the broker started with `mdr broker start`."""
    from pipeline.stream.broker import KafkaBroker

    KafkaBroker(data_dir=data_dir).stop()


def register(app: typer.Typer) -> None:
    """Add the streaming commands to the `mdr` app."""
    app.command()(worker)
    app.command()(produce)
    app.command()(demo)
    app.add_typer(broker_app, name="broker")
