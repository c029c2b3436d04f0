"""`mdr report`: a tenant's daily, weekly or monthly security report as HTML, Markdown or PDF."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cliargs import tenant_option
from pipeline.clitext import lit
from pipeline.errors import UsageError, UserError, writable_file
from pipeline.report import FORMATS
from pipeline.report.period import KINDS

err = Console(stderr=True, soft_wrap=True)
Kind = StrEnum("Kind", {k: k for k in KINDS})  # type: ignore[misc]  # members from data
Format = StrEnum("Format", {k: k for k in FORMATS})  # type: ignore[misc]  # members from data


def _date(v: str | None, name: str) -> date | None:
    if v is None:
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise UsageError(f"{name} {v!r} is not a date (YYYY-MM-DD)") from None


def report_cmd(
    tenant: Annotated[str, tenant_option("The tenant the report is for (its data only)")],
    period: Annotated[Kind, typer.Option(help="Report period")] = Kind("week"),
    frm: Annotated[str | None, typer.Option("--from", help="First day (YYYY-MM-DD); alone: the period "
                                            "containing it")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last day, inclusive (YYYY-MM-DD)")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format")] = Format("html"),
    out: Annotated[Path | None, typer.Option(help="Output file (default: report-TENANT-START.FORMAT)")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Store: sqlite:///file, a file path or postgresql://... "
                                           "(default: MDR_DB_URL, else soar.db in MDR_HOME)")] = None,
) -> None:
    """Security report of one tenant for a day, ISO week or month (default: the one containing today, UTC)."""
    from pipeline.report.data import collect, holdings
    from pipeline.report.period import resolve
    from pipeline.report.render import write
    from pipeline.soar.db import shown
    from pipeline.soar.tickets import TicketStore

    try:
        p = resolve(period.value, _date(frm, "--from"), _date(to, "--to"))
    except ValueError as e:
        raise UsageError(str(e)) from None
    path = writable_file(out or Path(f"report-{tenant}-{p.start.date()}.{fmt.value}"), "--out")  # before the work
    store = TicketStore(db, create=False)
    try:
        held = holdings(store, tenant)
        if held.first is None:
            known = ", ".join(held.tenants) or "none"
            raise UserError(f"the store {shown(store.url)} holds no data of tenant {tenant!r} (tenants in it: "
                            f"{known}); check --tenant, or point --db / MDR_DB_URL to the store `mdr replay` printed")
        data = collect(store, tenant, p, datetime.now(UTC))
    finally:
        store.close()
    write(data, fmt.value, path)
    f = data.key_figures()
    err.print(lit(f"{p.label}: {f['incidents_total']} incidents, {f['sla_breached']} SLA breaches, "
                  f"{f['open_tickets']} open tickets"))
    if not f["incidents_total"] and not f["funnel_alerts_raw"]:
        span = held.first.isoformat() if held.first == held.last else f"{held.first} to {held.last}"
        err.print(lit(("note:", "yellow"), f" no data of {tenant!r} in this {p.noun}; the store holds {span} "
                      f"(e.g. --period day --from {held.last})"))
    err.print(lit(f"report: {path}"))
