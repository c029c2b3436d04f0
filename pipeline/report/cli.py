"""`mdr report`: a tenant's daily, weekly or monthly security report as HTML, Markdown or PDF."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cliargs import tenant_option
from pipeline.clitext import lit

err = Console(stderr=True)


def _date(v: str | None, name: str) -> date | None:
    if v is None:
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        err.print(f"[red]error:[/red] {name} {v!r} is not a date (YYYY-MM-DD)")
        raise typer.Exit(2) from None


def report_cmd(
    tenant: Annotated[str, tenant_option("The tenant the report is for (its data only)")],
    period: Annotated[str, typer.Option(help="day | week | month")] = "week",
    frm: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD); alone: the period "
                                            "containing it")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive (YYYY-MM-DD)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html | pdf | md")] = "html",
    out: Annotated[Path | None, typer.Option(help="Output file (default: report-TENANT-START.FORMAT)")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Store URL (default: MDR_DB_URL, else out/soar.db)")] = None,
) -> None:
    """Security report of one tenant for a day, ISO week or month (default: the one containing today, UTC)."""
    from pipeline.report.data import collect
    from pipeline.report.period import resolve
    from pipeline.report.render import FORMATS, write
    from pipeline.soar.tickets import TicketStore

    if fmt not in FORMATS:
        err.print(f"[red]error:[/red] unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    try:
        p = resolve(period, _date(frm, "--from"), _date(to, "--to"))
    except ValueError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    store = TicketStore(db)
    try:
        data = collect(store, tenant, p, datetime.now(UTC))
    finally:
        store.close()
    path = write(data, fmt, out or Path(f"report-{tenant}-{p.start.date()}.{fmt}"))
    f = data.key_figures()
    err.print(lit(f"{p.label}: {f['incidents_total']} incidents, {f['sla_breached']} SLA breaches, "
                  f"{f['open_tickets']} open tickets"))
    err.print(lit(f"report: {path}"))
