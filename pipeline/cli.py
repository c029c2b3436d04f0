"""`mdr` — the command line. Typer commands only; the work is done by the core modules."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn
from typer.core import TyperGroup

from pipeline import paths
from pipeline.classify.cli import model_app
from pipeline.cliargs import tenant_option
from pipeline.clitext import Table, lit
from pipeline.console.cli import register as register_console
from pipeline.context.cli import assets_app, build_context, intel_app
from pipeline.errors import UsageError, UserError, writable_dir
from pipeline.redact import install_logging
from pipeline.report.cli import report_cmd
from pipeline.soar.cli import playbooks_app, tickets_app, verdict_app
from pipeline.stream.cli import register as register_stream

if TYPE_CHECKING:
    from typer._click.core import Context  # typer's own copy of click (not the click package)


class MdrGroup(TyperGroup):
    """The `mdr` command group: a UserError anywhere below becomes one line on stderr (no traceback) and exit
    code 2 (usage) or 1 (runtime)."""

    def invoke(self, ctx: Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as e:
            Console(stderr=True, soft_wrap=True).print(lit(("error:", "red"), " ", str(e)), highlight=False)
            raise typer.Exit(e.code) from None


app = typer.Typer(help="MDR pipeline: normalize, dedup, match use cases, correlate, prioritize, act.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=MdrGroup)
rules_app = typer.Typer(help="Use-case authoring: validate and test.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(tickets_app, name="tickets")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(assets_app, name="assets")
app.add_typer(intel_app, name="intel")
app.add_typer(model_app, name="model")
app.add_typer(verdict_app, name="verdict")
register_stream(app)
register_console(app)
app.command("report")(report_cmd)
install_logging()  # log records: secrets redacted, control characters escaped
console = Console(stderr=True)
PROGRESS_MIN_BYTES = 20_000_000
SKIPPED_SHOWN = 12  # context-record reasons listed by name in the replay summary; the rest as "N more"


def load_rules(path: str | None):
    from pipeline.rules.usecase import load_usecases

    p = path or str(paths.usecases_dir())
    if not Path(p).exists():
        raise UsageError(f"no use cases at {p}; give a use-case file or directory with --usecases")
    ucs = load_usecases(p)
    for e in ucs.errors:
        console.print(lit(("skipped use case", "yellow"), " ", e))
    return ucs


@app.command()
def formats() -> None:
    """List the input formats (normalizers) this build knows."""
    from pipeline.normalize.registry import formats as names
    from pipeline.normalize.registry import get

    t = Table("format", "product", "vendor", "family")
    for n in names():
        c = get(n)
        t.add_row(n, c.product, c.vendor, c.family)
    Console().print(t)


@app.command()
def replay(
    inputs: Annotated[list[str], typer.Argument(help="Files or directories (recursive); - for stdin")],
    tenant: Annotated[str, tenant_option("Tenant the records belong to")] = "default",
    host: Annotated[str | None, typer.Option(help="Host name for records that carry none")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="Force one input format")] = None,
    out: Annotated[Path, typer.Option(help="Output directory")] = Path("out"),
    usecases: Annotated[str | None, typer.Option(help="Use-case file or directory")] = None,
    dedup_window: Annotated[float, typer.Option(help="Dedup window, seconds")] = 600.0,
    assets: Annotated[Path | None, typer.Option(help="Asset inventory (YAML/CSV) of --tenant")] = None,
    intel: Annotated[list[Path] | None, typer.Option(help="Intel feed (STIX/MISP/CSV); repeatable")] = None,
    escort: Annotated[Path | None, typer.Option(help="Escort calendar (YAML/CSV) of --tenant")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Ticket store: sqlite:///file, a file path or "
                                           "postgresql://... (default: MDR_DB_URL, else soar.db in MDR_HOME)")
                  ] = None,
    model: Annotated[Path | None, typer.Option(
        help="Noise classifier: a model directory (mdr model train) or a registry (its active model, and its "
             "shadow model scoring beside it)")] = None,
) -> None:
    """Replay product files through exactly the production core; write JSONL outputs to --out."""
    from pipeline.assemble import build_core
    from pipeline.gc_tuning import tune_gc
    from pipeline.normalize.reader import walk
    from pipeline.normalize.registry import formats as names
    from pipeline.replay import OutputFiles
    from pipeline.replay import replay as run
    from pipeline.report.stats import record_stats
    from pipeline.soar.actions import register_secrets
    from pipeline.soar.cli import replay_tickets
    from pipeline.soar.db import default_url, normalize_url, open_engine, shown

    if fmt is not None and fmt not in names():
        raise UsageError(f"unknown format {fmt!r}; known: {', '.join(names())}")
    try:
        found = walk(inputs)
    except FileNotFoundError as e:
        raise UsageError(f"no such file or directory: {e}") from None
    except OSError as e:
        raise UsageError(f"cannot read {e.filename}: {e.strerror or e}") from None
    if not found.files:
        raise UsageError(f"no input files in {' '.join(inputs)}"
                         + (f" ({len(found.skipped)} paths skipped)" if found.skipped else ""))
    register_secrets(normalize_url(db or default_url()))  # known before anything is written: all is redacted
    writable_dir(out, "--out")  # the outputs are checked before the work starts
    store, engine = open_engine(db)
    engine.dispose()
    tune_gc()
    ucs = load_rules(usecases)
    ctx = build_context(tenant, assets, intel or [], escort)  # saved state (MDR_HOME) + these files
    classifier = None
    if model is not None:
        from pipeline.classify.model import ModelError
        from pipeline.classify.registry import RegistryError, load_classifier

        try:
            classifier = load_classifier(model)
        except (ModelError, RegistryError) as e:
            raise UsageError(str(e)) from None
        if classifier is not None and classifier.dedup_window not in (None, dedup_window):
            console.print(lit(("warning:", "yellow"), f" the model was trained for a "
                              f"{classifier.dedup_window:g} s dedup window, not {dedup_window:g} s"))
    core = build_core(ucs, ctx, classifier, dedup_window=dedup_window)
    files = OutputFiles(out)  # written as the replay goes
    total = found.total_bytes
    if total >= PROGRESS_MIN_BYTES:
        with Progress(TextColumn("{task.description}"), BarColumn(), TransferSpeedColumn(),
                      console=console) as prog:
            task = prog.add_task("replay", total=total)
            res = run(found, core, tenant, host, fmt, lambda f, n: prog.advance(task, n), [files])
    else:
        res = run(found, core, tenant, host, fmt, sinks=[files])
    written = files.close(res.drift, res.model_version)
    written["tickets"] = replay_tickets(res, out, store, ctx.inventory)
    record_stats(store, tenant, res)  # alert statistics for `mdr report`
    _summary(res)
    for name, p in written.items():
        console.print(lit(f"{name:>11}: ", p))
    console.print(lit(f"{'store':>11}: ", shown(store), " (tickets and report data: `mdr tickets list`, `mdr report "
                      f"--tenant {tenant} --period day --from {_first_day(res)}`)"), soft_wrap=True)


def _first_day(res) -> str:
    days = sorted(i.first_seen.date() for i in res.open_incidents) or sorted(a.time.date() for a in res.alerts)
    return days[0].isoformat() if days else "YYYY-MM-DD"


_QUIET_SKIPS = ("hidden", "documentation")  # expected beside product files: counted, not listed
SKIPS_LISTED = 20


def _skipped_paths(res) -> None:
    """One line per path left out for a reason the user should see (the first SKIPS_LISTED)."""
    notable = [s for s in res.skipped_paths if s.reason not in _QUIET_SKIPS]
    for s in notable[:SKIPS_LISTED]:
        console.print(f"skipped {s}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    if len(notable) > SKIPS_LISTED:
        console.print(f"... and {len(notable) - SKIPS_LISTED} more skipped paths", style="yellow")


@app.command()
def trace(
    ref: Annotated[str, typer.Argument(help="Alert id, or the product's record id (e.g. ModSecurity transaction id)")],
    out: Annotated[Path, typer.Option(help="mdr replay output directory")] = Path("out"),
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """What became of an alert: in incident X, suppressed (score, threshold, model), or a duplicate of alert Y
    (and Y's fate)."""
    import json

    from pipeline.clitext import clean
    from pipeline.trace import trace as run

    try:
        found = run(out, ref)
    except FileNotFoundError as e:
        raise UsageError(f"{e}; point --out at the directory mdr replay wrote") from None
    if not found:
        raise UserError(f"no alert with id or record id {ref!r} in {out}")
    if as_json:
        typer.echo(json.dumps(found, indent=2, default=str))
        return
    for chain in found.values():
        for i, step in enumerate(chain):
            typer.echo(("  " * i + ("-> " if i else "")) + clean(step["text"]))


def _summary(res) -> None:
    from pipeline.tables import incident_table

    _skipped_paths(res)
    t = Table(title="replay summary", show_header=False)
    t.add_row("files", str(len(res.files)))
    t.add_row("paths skipped", str(len(res.skipped_paths)))
    t.add_row("records read", str(res.records))
    t.add_row("alerts (normalized)", str(res.alerts_raw))
    t.add_row("  repeats folded by dedup", str(res.duplicates))
    t.add_row("  same-event merges (error log into audit log)", str(res.same_event))
    t.add_row("alerts after dedup", str(len(res.alerts)))
    t.add_row("suppressed as noise", str(len(res.suppressed)))
    t.add_row("dead letters", str(len(res.dead)))
    if res.late:
        t.add_row("alerts out of time order", f"{res.late} (later than the reorder bound; fed as they came)")
    t.add_row("incidents", str(len(res.open_incidents)))
    console.print(t)
    by_product = Counter(a.source.format or a.source.product for a in res.alerts)
    raw_by_product: Counter[str] = Counter()
    for a in res.alerts:
        raw_by_product[a.source.format or a.source.product] += a.count
    pt = Table("format", "alerts", "after dedup", title="per product")
    for k in sorted(by_product):
        pt.add_row(k, str(raw_by_product[k]), str(by_product[k]))
    console.print(pt)
    if res.dead:
        dt = Table("reason", "count", title="dead letters by reason")
        for k, v in res.dead_by_reason().most_common():
            dt.add_row(k, str(v))
        console.print(dt)
    if res.skipped_paths:
        sp = Table("reason", "count", title="paths skipped by reason")
        for k, v in Counter(s.reason for s in res.skipped_paths).most_common():
            sp.add_row(k, str(v))
        console.print(sp)
    if res.skipped:
        st = Table("reason", "count", title="context records (not alerts)")
        reasons = res.skipped.most_common()
        shown_reasons = reasons if len(reasons) <= SKIPPED_SHOWN + 1 else reasons[:SKIPPED_SHOWN]
        for k, v in shown_reasons:
            st.add_row(k, str(v))
        if len(shown_reasons) < len(reasons):
            rest = reasons[len(shown_reasons):]
            st.add_row(f"{len(rest)} more reasons", str(sum(v for _, v in rest)))
        console.print(st)
    console.print(incident_table(res.open_incidents, console.width, "incidents"))


def _usecase_set(path: str | None):
    """The use cases under `path` (default: the project's); a missing path or one without any use-case file is
    an error (nothing would be checked)."""
    from pipeline.rules.usecase import load_usecases

    p = path or str(paths.usecases_dir())
    if not Path(p).exists():
        raise UsageError(f"no such file or directory: {p}")
    ucs = load_usecases(p)
    if not ucs.files:
        raise UserError(f"no use-case files (*.yml, *.yaml) in {p}; nothing to check")
    return ucs


@rules_app.command("validate")
def rules_validate(path: Annotated[str | None, typer.Argument(help="Use-case file or directory")] = None
                   ) -> None:
    """Check use cases: schema, Sigma parse, field mapping, regex safety, inline tests present."""
    from pipeline.authoring import validate

    ucs = _usecase_set(path)
    problems = validate(ucs)
    for e in problems:
        console.print(lit((e, "red")))
    console.print(f"{len(ucs.usecases)} use cases loaded from {len(ucs.files)} files "
                  f"({len(ucs.detections)} detections, {len(ucs.correlations)} correlations), "
                  f"{len(problems)} problems")
    if problems:
        raise typer.Exit(1)


@rules_app.command("test")
def rules_test(path: Annotated[str | None, typer.Argument(help="Use-case file or directory")] = None,
               verbose: Annotated[bool, typer.Option("-v", help="Show passing tests too")] = False) -> None:
    """Run the inline tests of the use cases; exit 1 when one fails."""
    from pipeline.authoring import run_tests

    ucs = _usecase_set(path)
    for e in ucs.errors:
        console.print(lit(("load error", "red"), " ", e))
    results = run_tests(ucs)
    failed = [r for r in results if not r.ok]
    for r in results:
        if not r.ok or verbose:
            mark = ("PASS", "green") if r.ok else ("FAIL", "red")
            console.print(lit(mark, f" {r.usecase.path}:{r.usecase.test_line(r.index)} {r.usecase.title} / {r.name} "
                              f"{r.detail}"))
    console.print(f"{len(results) - len(failed)} passed, {len(failed)} failed "
                  f"({len(ucs.usecases)} use cases, {len(ucs.errors)} load errors)")
    if failed or ucs.errors:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
