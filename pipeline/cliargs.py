"""Typer options shared by the `mdr` commands whose values must be checked before any work starts."""

from __future__ import annotations

from typing import Any

import typer

from pipeline.tenant import TenantError, check_tenant


def usage_error(message: str) -> None:
    """One plain line on stderr (no markup: the message may quote user input) and exit status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _tenant(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_tenant(value)
    except TenantError as e:
        usage_error(f"--tenant: {e}")
    return None


def tenant_option(help: str, **kw: Any) -> Any:
    """A `--tenant` option whose value must be a valid tenant id (`pipeline.tenant`); exit 2 otherwise."""
    return typer.Option(help=help, callback=_tenant, **kw)
