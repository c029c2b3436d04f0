"""`mdr model ...`: train and evaluate the noise classifier (Typer sub-app; the work is in train / evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cliargs import tenant_option
from pipeline.clitext import Table, lit
from pipeline.errors import UserError

model_app = typer.Typer(help="Noise classifier: train on labeled alerts, evaluate against the baseline.",
                        no_args_is_help=True)
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
    model: Annotated[Path, typer.Option(help="Model directory")],
    data: DataOpt,
    report_dir: Annotated[Path | None, typer.Option(help="Write report.md/json, per_rule.csv and PNGs here")] = None,
    split: Annotated[str, typer.Option(help="heldout, validation, train or all (data never trained on)")] = "heldout",
    tenant: Annotated[str, tenant_option("Tenant the records are read as")] = "default",
    usecases: Annotated[str | None, typer.Option(
        help="Use cases for the guardrails (default: the project's; 'none' for none)")] = None,
    pipeline: Annotated[bool, typer.Option(help="Also run the real core and compare its decisions")] = True,
) -> None:
    """Noise reduction and false negatives on labeled data, beside the CRS anomaly-score baseline."""
    from pipeline.classify.evaluate import evaluate, summary_lines
    from pipeline.classify.model import ModelError

    _check_dirs(data)
    if split not in ("heldout", "validation", "train", "all"):
        console.print(lit(("error:", "red"), f" unknown split {split!r}"))
        raise typer.Exit(2)
    try:
        report = evaluate(model, data, report_dir, split, _usecases(usecases), tenant, pipeline)
    except ModelError as e:
        console.print(lit(("error:", "red"), " ", e))
        raise typer.Exit(2) from None
    except ValueError as e:  # nothing to evaluate
        raise UserError(str(e)) from None
    for line in summary_lines(report):
        console.print(lit(line), soft_wrap=True)
    if report_dir is not None:
        console.print(lit(f"report: {report_dir / 'report.md'}"))
