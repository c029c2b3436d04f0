"""`mdr model ...`: train and evaluate the noise classifier (Typer sub-app; the work is in train / evaluate)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.cliargs import tenant_option
from pipeline.clitext import Table, lit
from pipeline.errors import UserError

model_app = typer.Typer(help="Noise classifier: train on labeled alerts, evaluate against the baseline, retrain "
                             "on analysts' verdicts, shadow and promote.", no_args_is_help=True)
console = Console(stderr=True)
DataOpt = Annotated[list[Path], typer.Option("--data", help="Data directory: product records + labels.jsonl "
                                                            "(+ verdicts.jsonl); repeatable")]


def _check_dirs(dirs: list[Path]) -> None:
    for d in dirs:
        if not d.is_dir():
            console.print(lit(("error:", "red"), f" not a data directory: {d}"))
            raise typer.Exit(2)


def _usecases(path: str | None):
    """The use cases for the guardrails: the given path, else the project's (as `mdr replay`), else none."""
    from pipeline import paths
    from pipeline.rules.usecase import UseCaseSet, load_usecases

    if path is None:
        p = paths.usecases_dir()
        return load_usecases(str(p)) if p.exists() else UseCaseSet()
    if path.lower() == "none":
        return UseCaseSet()
    return load_usecases(path)


@model_app.command("train")
def train_cmd(
    data: DataOpt,
    out: Annotated[Path, typer.Option(help="Model directory to write (manifest.json + model.skops)")],
    target_recall: Annotated[float, typer.Option(help="Recall of attack alerts the threshold must keep")] = 0.995,
    tenant: Annotated[str, tenant_option("Tenant the records are read as (alert ids depend on it)")] = "default",
    dedup_window: Annotated[float, typer.Option(
        help="Dedup window of the core the model will run in, seconds (0: every alert classified)")] = 600.0,
    kind: Annotated[list[str] | None, typer.Option(help="Model families to compare: hgb, linear")] = None,
    without: Annotated[list[str] | None, typer.Option(
        help="Feature group or feature to leave out (e.g. history); only this variant is trained")] = None,
) -> None:
    """Train, select and threshold a model on the train / validation splits (held-out labels are not used)."""
    from pipeline.classify.train import train

    _check_dirs(data)
    if not 0.5 < target_recall < 1.0:
        console.print("[red]error:[/red] --target-recall must be between 0.5 and 1")
        raise typer.Exit(2)
    variants = [tuple(without)] if without else [(), ("history",)]
    try:
        model, ds, _ = train(data, target_recall, tuple(kind or ("hgb", "linear")), variants, tenant,
                             dedup_window or None)
    except ValueError as e:
        console.print(lit(("error:", "red"), " ", e))
        raise typer.Exit(1) from None
    model.save(out)
    t = Table(title=f"validation (target recall {target_recall})")
    t.add_column("candidate", no_wrap=True)
    for c in ("feat.", "thresh.", "NR alert", "FN alert", "NR core", "FN core"):
        t.add_column(c, justify="right")
    for name, r in model.manifest["selection"]["candidates"].items():
        pa, co = r["per_alert"], r["core"]
        mark = " *" if name == model.manifest["variant"] else ""
        t.add_row(name + mark, str(r["features"]), f"{r['threshold']:.4g}", f"{pa['noise_reduction']:.2%}",
                  f"{pa['fn_rate']:.2%}", f"{co['noise_reduction']:.2%}", f"{co['fn_rate']:.2%}")
    console.print(t)
    console.print(lit(f"{len(ds.alerts)} alerts ({dict(model.manifest['training_data']['rows'])} labeled rows); "
                      f"model {model.version} written to {out}"))


@model_app.command("evaluate")
def evaluate_cmd(
    data: DataOpt,
    model: Annotated[Path | None, typer.Option(help="Model directory (not needed for --learning-curve alone)")
                     ] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Write report.md/json, per_rule.csv and PNGs here")] = None,
    split: Annotated[str, typer.Option(help="heldout, validation, train or all (data never trained on)")] = "heldout",
    tenant: Annotated[str, tenant_option("Tenant the records are read as")] = "default",
    usecases: Annotated[str | None, typer.Option(
        help="Use cases for the guardrails (default: the project's; 'none' for none)")] = None,
    pipeline: Annotated[bool, typer.Option(help="Also run the real core and compare its decisions")] = True,
    learning_curve: Annotated[str | None, typer.Option(
        help="Also the learning curve: comma-separated verdict counts, e.g. 100,300,1000,3000")] = None,
    base_data: Annotated[list[Path] | None, typer.Option(
        help="For the learning curve: labeled data every point trains on besides the verdicts")] = None,
    kind: Annotated[list[str] | None, typer.Option(
        help="For the learning curve: model families each point compares (hgb, linear)")] = None,
) -> None:
    """Noise reduction and false negatives on labeled data, beside the CRS anomaly-score baseline; with
    --learning-curve, the same against the number of verdicts trained on."""
    from pipeline.classify.evaluate import evaluate, summary_lines

    _check_dirs(data)
    if split not in ("heldout", "validation", "train", "all"):
        console.print(lit(("error:", "red"), f" unknown split {split!r}"))
        raise typer.Exit(2)
    if learning_curve is not None:
        _curve(data, learning_curve, base_data or [], tenant, report_dir, tuple(kind or ("hgb", "linear")))
    if model is None:
        if learning_curve is None:
            console.print("[red]error:[/red] --model is required (unless --learning-curve is given)")
            raise typer.Exit(2)
        return
    try:  # a ModelError (a UserError) is reported by `mdr` as one line
        report = evaluate(model, data, report_dir, split, _usecases(usecases), tenant, pipeline)
    except ValueError as e:  # nothing to evaluate
        raise UserError(str(e)) from None
    for line in summary_lines(report):
        console.print(lit(line), soft_wrap=True)
    if report_dir is not None:
        console.print(lit(f"report: {report_dir / 'report.md'}"))


def _curve(data: list[Path], sizes: str, base: list[Path], tenant: str, report_dir: Path | None,
           kinds: tuple[str, ...]) -> None:
    import json

    from pipeline.classify.evaluate import curve_lines
    from pipeline.classify.evaluate import learning_curve as curve
    from pipeline.classify.train import load_data

    try:
        ns = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        console.print(lit(("error:", "red"), f" --learning-curve takes numbers: {sizes!r}"))
        raise typer.Exit(2) from None
    _check_dirs(base)
    points = curve(load_data(data, tenant), ns, base=load_data(base, tenant) if base else None, kinds=kinds)
    console.print("learning curve (held-out split; verdicts = first labeled alerts of train+validation in time):")
    for line in curve_lines(points):
        console.print(lit(line), soft_wrap=True)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "learning_curve.json").write_text(json.dumps(points, indent=2) + "\n", encoding="utf-8")


RegistryOpt = Annotated[Path, typer.Option(help="Model registry directory (created when missing)")]
DbOpt = Annotated[str | None, typer.Option("--db", help="Ticket store URL with the verdicts (default: MDR_DB_URL, "
                                                        "else out/soar.db)")]


@contextmanager
def _verdict_store(db: str | None, *errors: type[Exception]) -> Iterator[Any]:
    """The ticket store holding the verdicts, closed after; `errors` become a message and exit status 1."""
    from pipeline.soar.tickets import TicketStore

    store = TicketStore(db)
    try:
        yield store
    except errors as e:
        console.print(lit(("error:", "red"), " ", e))
        raise typer.Exit(1) from None
    finally:
        store.close()


@model_app.command("retrain")
def retrain_cmd(
    registry: RegistryOpt,
    db: DbOpt = None,
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="Labeled data directories to train on besides the verdicts; repeatable")] = None,
    target_recall: Annotated[float, typer.Option(help="Recall of attack alerts the threshold must keep")] = 0.995,
    dedup_window: Annotated[float, typer.Option(help="Dedup window of the core, seconds (0: none)")] = 600.0,
    kind: Annotated[list[str] | None, typer.Option(help="Model families to compare: hgb, linear")] = None,
) -> None:
    """Retrain on the alert verdicts in the store (+ --data); the new model goes into the registry in shadow."""
    from pipeline.classify.retrain import retrain

    _check_dirs(data or [])
    with _verdict_store(db, ValueError) as store:
        version, model, facts = retrain(store, registry, data or [], target_recall,
                                        dedup_window or None, tuple(kind or ("hgb", "linear")))
    console.print(lit(f"model {version} trained on {facts['verdicts']} alert verdicts "
                      f"({facts['without_content']} of alerts the store does not hold, skipped) and "
                      f"{facts['alerts']} alerts in all; "
                      f"threshold {model.threshold:.4g}, unseen rules {model.threshold_novel:.4g}, "
                      f"{len(model.tenants)} tenant thresholds; in shadow in {registry}"))


@model_app.command("promote")
def promote_cmd(
    registry: RegistryOpt,
    db: DbOpt = None,
    version: Annotated[str | None, typer.Option(help="Model version (default: the shadow model)")] = None,
    last_n: Annotated[int, typer.Option(help="Judge the shadow model on the last N verdicts it scored")] = 1000,
    max_fn: Annotated[float, typer.Option(help="Highest false-negative rate that passes")] = 0.005,
    force: Annotated[bool, typer.Option(help="Promote even if the gate refuses (recorded as forced)")] = False,
) -> None:
    """Promote the shadow model to active if its false negatives on the last N verdicts pass the gate."""
    from pipeline.classify.registry import RegistryError
    from pipeline.classify.retrain import promote

    with _verdict_store(db, RegistryError) as store:
        version, report = promote(store, registry, version, last_n, max_fn, force)
    console.print(lit(f"gate for {version}: {report['verdicts_judged']} verdicts judged ({report['attacks']} attack, "
                      f"{report['benign']} benign): FN {report['fn_rate']:.2%}, noise reduction "
                      f"{report['noise_reduction']:.2%}: {report['reason']}"))
    if report["passed"] or force:
        console.print(f"model {version} promoted" + (" (forced)" if not report["passed"] else ""))
    else:
        raise typer.Exit(1)


@model_app.command("status")
def status_cmd(registry: RegistryOpt) -> None:
    """Active and shadow model of a registry, and its history."""
    from pipeline.classify.registry import Registry, RegistryError

    try:
        st = Registry(registry).state()
    except RegistryError as e:
        console.print(lit(("error:", "red"), " ", e))
        raise typer.Exit(1) from None
    console.print(lit(f"active: {st.get('active') or '-'}   shadow: {st.get('shadow') or '-'}"))
    for ev in st.get("events", [])[-20:]:
        console.print(lit(f"  {ev['at']}  {ev['event']:>8}  {ev['version']}"), soft_wrap=True)
