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
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pipeline import paths
from pipeline.cliargs import tenant_option
from pipeline.errors import UsageError
from pipeline.stream.config import Topics, WorkerConfig, parse_bindings

broker_app = typer.Typer(help="A local Apache Kafka broker from the Maven jars.", no_args_is_help=True)
incidents_app = typer.Typer(help="Incidents on the broker: watch them as the worker emits them.",
                            no_args_is_help=True)
Bootstrap = Annotated[str | None, typer.Option(help="Kafka bootstrap host:port (default: MDR_KAFKA_BOOTSTRAP)")]
LogLevel = StrEnum("LogLevel", {k: k for k in ("debug", "info", "warning", "error")})  # type: ignore[misc]  # members from data


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


def run_worker(cfg: WorkerConfig, broker_wait: float = 90.0) -> None:
    """Create the topics, build the Faust app and run it until SIGTERM/SIGINT (graceful: commit, flush).

    Exits non-zero when an error stopped it (`Runtime.fail`, or Faust's own crash). A stop that does not finish
    within `cfg.shutdown_grace` seconds ends the process anyway: nothing may keep a stopping worker alive."""
    from pipeline.gc_tuning import tune_gc
    from pipeline.rules.usecase import load_usecases
    from pipeline.stream.app import build, ensure_topics, tenant_keyed_problem
    from pipeline.stream.metrics import serve
    from pipeline.stream.outage import OutageLog

    tune_gc()
    handler = json_handler()
    handler.addFilter(OutageLog(cfg.bootstrap, cfg.bootstrap_from))  # one line per interval while it is down
    logging.basicConfig(level=cfg.log_level.upper(), handlers=[handler], force=True)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # kafka-python only creates the topics: reported below
    _register_secrets(cfg)
    _create_topics(cfg, ensure_topics, broker_wait)
    if cfg.tenant_keyed and (problem := tenant_keyed_problem(cfg.bootstrap, cfg.topics, cfg.partitions)):
        raise UsageError(problem)
    ucs = load_usecases(str(cfg.usecases))
    for e in ucs.errors:
        logging.getLogger("mdr.worker").warning("skipped use case %s", e)
    rt = build(cfg, ucs)
    rt.shutdown = lambda: os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop an operator's SIGTERM starts
    rt.metrics.watch_gc()
    if cfg.db_url:
        from pipeline.soar.actions import Soar

        rt.use_soar(Soar.open(cfg.db_url))
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


def _register_secrets(cfg: WorkerConfig) -> None:
    """The secrets of the SOAR configuration (channels, the secrets file, the store URL's password) are known to
    the redaction before anything is written, with or without tickets: every output topic and log line is
    redacted (pipeline/redact.py)."""
    from pipeline.soar.actions import register_secrets

    register_secrets(cfg.db_url)


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
    """Create the worker's topics, waiting for a broker that is down or restarting (up to `wait` seconds,
    saying once per interval which address it tries); then one error line (BrokerUnreachable)."""
    from kafka.errors import KafkaError

    from pipeline.stream.broker import BrokerError
    from pipeline.stream.outage import LOG_INTERVAL, BrokerUnreachable

    log = logging.getLogger("mdr.worker")
    start = time.monotonic()
    reported = None
    while True:
        try:
            ensure(cfg.bootstrap, cfg.topics, cfg.partitions)
            if reported is not None:
                log.info("Kafka broker %s answers after %.0f s", cfg.bootstrap, time.monotonic() - start)
            return
        except (KafkaError, BrokerError, OSError) as e:
            now = time.monotonic()
            if now - start >= wait:
                raise BrokerUnreachable(cfg.bootstrap, cfg.bootstrap_from, f"waited {wait:.0f} s: {e}") from None
            if reported is None or now - reported >= LOG_INTERVAL:
                log.warning("Kafka broker %s not reachable (%s) [%s]; retrying for up to %.0f s", cfg.bootstrap,
                            e, cfg.bootstrap_from, wait - (now - start))
                reported = now
            time.sleep(1.0)


def worker(
    bootstrap: Bootstrap = None,
    app_id: Annotated[str, typer.Option(help="Consumer group / Faust app id")] = "mdr-worker",
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the by-tenant topic and state table")] = 4,
    tenant_keyed: Annotated[bool, typer.Option(help="The ingest topics are keyed by tenant (mdr produce --key "
                                               "tenant) with --partitions partitions: run each tenant's "
                                               "alerts where they are read, without the by-tenant topic")
                            ] = False,
    bind: Annotated[list[str] | None, typer.Option(help="Bind an ingest topic to a tenant: waf=shop")] = None,
    prefix: Annotated[str, typer.Option(help="Topic name prefix")] = "mdr.",
    usecases: Annotated[Path | None, typer.Option(help="Base use-case directory")] = None,
    data_dir: Annotated[Path, typer.Option(help="Local state (RocksDB) directory")] = Path(".mdr-worker"),
    quiet: Annotated[float, typer.Option(min=0, help="Feed a partition after this many quiet seconds")] = 0.1,
    max_hold: Annotated[float, typer.Option(min=0, help="...or after its oldest pending alert waited this long")
                        ] = 0.25,
    max_run: Annotated[int, typer.Option(min=0, help="...or once this many of its alerts wait; with --tenant-keyed "
                                         "a large read is normalized in slices of this many alerts, the partitions "
                                         "due running between them (0: no bound)")] = 2048,
    idle_flush: Annotated[float, typer.Option(min=0, help="Flush buffering normalizers after this idle time")] = 1.0,
    lateness: Annotated[float, typer.Option(min=0, help="Allowed event-time lateness, seconds")] = 600.0,
    metrics_port: Annotated[int, typer.Option(min=0, max=65535,
                                              help="Serve /metrics and /healthz on this port (0: off)")] = 0,
    db: Annotated[str | None, typer.Option("--db", help="Ticket store (default: MDR_DB_URL, else soar.db in "
                                           "MDR_HOME); tickets also go to mdr.tickets")] = None,
    tickets: Annotated[bool, typer.Option("--tickets/--no-tickets", help="Open tickets and run playbooks")] = True,
    broker_wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the broker at start")] = 90.0,
    soar_tick: Annotated[float, typer.Option(help="Seconds between SLA escalation and playbook resumption checks "
                                             "(one worker sharing the store runs them)", min=0.1)] = 10.0,
    verdicts_file: Annotated[Path | None, typer.Option(help="Append consumed verdicts to this JSONL")] = None,
    model: Annotated[Path | None, typer.Option(help="Noise classifier model directory (mdr model train)")] = None,
    log_level: Annotated[LogLevel, typer.Option(help="Log level")] = LogLevel("info"),
    max_attempts: Annotated[int, typer.Option(min=1, help="Dead-letter a message once it made the worker fail this "
                                              "many times")] = 3,
    shutdown_grace: Annotated[float, typer.Option(min=0, help="Seconds a stop may take before the process exits")
                              ] = 10.0,
) -> None:
    """Run the streaming worker: the same core as `mdr replay`, on Kafka topics."""
    topics = Topics(prefix=prefix)
    try:
        bindings = parse_bindings(bind, topics)
    except ValueError as e:
        raise UsageError(f"--bind: {e}") from None
    cfg = WorkerConfig.from_env(
        bootstrap=bootstrap, app_id=app_id, partitions=partitions, tenant_keyed=tenant_keyed, topics=topics,
        tenant_bindings=bindings, usecases=usecases or paths.usecases_dir(),
        data_dir=data_dir, quiet=quiet, max_hold=max_hold, max_run=max_run, idle_flush=idle_flush, lateness=lateness,
        metrics_port=metrics_port, db_url=_store_url(db) if tickets else None, verdicts_file=verdicts_file,
        model=model, log_level=log_level.value, max_attempts=max_attempts, shutdown_grace=shutdown_grace,
        soar_tick=soar_tick)
    if model is not None:  # a model this build cannot run fails here, as one line, before the broker is asked
        from pipeline.classify.registry import load_classifier

        load_classifier(model)
    run_worker(cfg, broker_wait)


def _store_url(db: str | None) -> str:
    """The ticket store the worker writes: the one `mdr tickets` and `mdr report` read by default."""
    from pipeline.soar.db import default_url, normalize_url

    return normalize_url(db or default_url())


def produce(
    files: Annotated[list[str], typer.Argument(help="Files or directories")],
    topic: Annotated[str, typer.Option(help="Ingest topic (name, or kind: waf, firewall, host, ddos)")],
    tenant: Annotated[str | None, tenant_option("Tenant (omit to rely on the topic's binding)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Force one input format")] = None,
    host: Annotated[str | None, typer.Option(help="Host name for records that carry none")] = None,
    per_message: Annotated[int, typer.Option(min=1, help="Records per envelope")] = 1,
    key: Annotated[str, typer.Option(help="Message key: host (keeps a host's records in order) or tenant (also; "
                                     "for a worker started with --tenant-keyed)")] = "host",
    bootstrap: Bootstrap = None,
) -> None:
    """Stream product files into an ingest topic as envelopes."""
    from pipeline.normalize.reader import expand
    from pipeline.stream.outage import bootstrap_of, require_broker
    from pipeline.stream.producer import produce as run

    if key not in ("host", "tenant") or (key == "tenant" and not tenant):
        raise UsageError("--key is host or tenant (and --key tenant needs --tenant)")
    try:
        expand(files)
    except FileNotFoundError as e:
        raise UsageError(f"no such file or directory: {e}") from None
    address, source = bootstrap_of(bootstrap)
    require_broker(address, source)  # before reading anything
    name = topic if "." in topic else Topics().ingest_topic(topic)
    n = run(address, files, name, tenant, fmt, host, per_message, lambda line: typer.echo(line, err=True),
            source=source, key_by=key)
    typer.echo(f"{n} messages -> {name}")


def demo(
    samples: Annotated[Path | None, typer.Option(help="Lab sample directory (default: the bundled lab-1)")] = None,
    tenant: Annotated[str, tenant_option("Tenant of the samples")] = "shop",
    seconds: Annotated[float, typer.Option(min=0, help="Stop this long after the last incident update")] = 8.0,
    console_port: Annotated[int, typer.Option(min=1, max=65535,
                                              help="Port of the analyst console (another if taken)")] = 8700,
    console: Annotated[bool, typer.Option(help="Serve the analyst console on the demo's tickets")] = True,
    hold: Annotated[bool, typer.Option(help="Keep the console serving after the stream, until Ctrl-C")] = True,
) -> None:
    """Start a broker and a worker, stream the lab samples, show incidents arriving live; the analyst console
    serves them (its URL and a demo login are printed)."""
    from pipeline.stream.demo import LAB_TOPICS, run_demo

    samples = samples or paths.samples_dir() / "lab-1"
    if not any((samples / sub).is_dir() for sub in LAB_TOPICS):
        raise UsageError(f"no sample data in {samples} (want sub-directories {', '.join(LAB_TOPICS)}); "
                         "give the lab directory with --samples")

    raise typer.Exit(run_demo(samples, tenant, seconds, console_port if console else None, hold))


@incidents_app.command("tail")
def incidents_tail(
    bootstrap: Bootstrap = None,
    prefix: Annotated[str, typer.Option(help="Topic name prefix")] = "mdr.",
    tenant: Annotated[str | None, tenant_option("Only this tenant's incidents")] = None,
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning/--new-only", help="Start with every incident's latest state, or only new updates")] = True,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep waiting for updates")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="One incident JSON per line")] = False,
) -> None:
    """Print incident updates from the `mdr.incidents` topic as the worker emits them (Ctrl-C to stop)."""
    from rich.console import Console

    from pipeline.clitext import lit
    from pipeline.schema import to_builtins
    from pipeline.stream.outage import bootstrap_of, require_broker
    from pipeline.stream.view import read_incidents
    from pipeline.tables import incident_line

    address, source = bootstrap_of(bootstrap)
    require_broker(address, source)
    console = Console(soft_wrap=True)
    topic = Topics(prefix=prefix).incidents
    try:
        for key, inc in read_incidents(address, topic, from_beginning=from_beginning, follow=follow):
            if inc is None:  # a tombstone: the incident was deleted from the compacted topic
                if not as_json and tenant is None:
                    console.print(lit("deleted ", (key or b"").decode(errors="replace")), highlight=False)
                continue
            if tenant is not None and inc.tenant_id != tenant:
                continue
            if as_json:
                sys.stdout.write(json.dumps(to_builtins(inc), ensure_ascii=True) + "\n")  # no raw control chars
                sys.stdout.flush()
            else:
                console.print(incident_line(inc), highlight=False)
    except KeyboardInterrupt:
        pass


@broker_app.command("start")
def broker_start(data_dir: Annotated[Path, typer.Option(help="Broker data directory")] = Path(".mdr-kafka"),
                 port: Annotated[int | None, typer.Option(min=1, max=65535, help="Listener port")] = None) -> None:
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
    app.add_typer(incidents_app, name="incidents")
