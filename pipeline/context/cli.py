"""`mdr assets …` and `mdr intel …`: import context files into the state directory, list and look them up.

Imported sets are validated first (a bad file changes nothing and exits 1 naming file:line: field) and saved
under `MDR_HOME` (default `~/.mdr`), where `mdr replay` picks them up. `build_context` is what `mdr replay`
uses: the saved state plus the files given on its command line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pipeline.cliargs import tenant_option
from pipeline.clitext import clean, lit
from pipeline.context.loader import ContextFileError

if TYPE_CHECKING:
    from pipeline.context.store import Context

assets_app = typer.Typer(help="Asset inventory per tenant: import, list.", no_args_is_help=True)
intel_app = typer.Typer(help="Threat intelligence feeds (STIX 2.1, MISP, CSV): import, lookup.",
                        no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)
out = Console()


def _reject(e: ContextFileError) -> None:
    for p in e.problems:
        err.print(lit((p, "red")))
    err.print(f"[red]rejected:[/red] {len(e.problems)} problem(s); nothing was changed")
    raise typer.Exit(1)


AllowEmpty = Annotated[bool, typer.Option("--allow-empty", help="Accept a file without entries: clears the set")]


@assets_app.command("import")
def assets_import(file: Annotated[Path, typer.Argument(help="Inventory file (YAML or CSV)")],
                  tenant: Annotated[str, tenant_option("Tenant the assets belong to")],
                  allow_empty: AllowEmpty = False) -> None:
    """Validate an inventory file and make it the tenant's inventory (replaces the previous one). A file that
    is empty or cannot be parsed is rejected and the inventory in use stays."""
    from pipeline.context.store import checked_assets, save_assets

    try:
        inv = checked_assets(file, allow_empty)
    except ContextFileError as e:
        _reject(e)
        return
    path = save_assets(tenant, inv)
    err.print(lit(f"{len(inv)} assets imported for tenant {tenant!r} -> {path}"
                  + ("" if len(inv) else " (the inventory is now empty)")))


@assets_app.command("list")
def assets_list(tenant: Annotated[str | None, tenant_option("Only this tenant")] = None) -> None:
    """Show the saved inventories."""
    from pipeline.context.store import Context, mdr_home
    from pipeline.tables import Cell, fitted, stacked

    ctx = Context.from_state(tenants=[tenant] if tenant else None)
    if not ctx.assets:
        err.print(lit(f"no assets imported{f' for tenant {tenant!r}' if tenant else ''} (in {mdr_home() / 'context'}); "
                      "`mdr assets import FILE --tenant T` imports an inventory"))
        return
    for ten, inv in sorted(ctx.assets.items()):
        rows: list[list[Cell]] = [[a.name, a.criticality, a.exposure or "", stacked(a.ips), stacked(a.hostnames),
                                   a.owner or "", stacked(a.tags)] for a in inv.assets]
        out.print(fitted(("asset", "criticality", "exposure", "ips", "hostnames", "owner", "tags"), rows, out.width,
                         wrap=("ips", "hostnames", "owner", "tags"), title=f"tenant {ten}: {len(rows)} assets"))


@intel_app.command("import")
def intel_import(file: Annotated[Path, typer.Argument(help="STIX 2.1 bundle, MISP event JSON or CSV list")],
                 tenant: Annotated[str | None, tenant_option("Tenant the feed is for")] = None,
                 global_: Annotated[bool, typer.Option("--global", help="A feed for all tenants")] = False,
                 name: Annotated[str | None, typer.Option(help="Feed name (default: file name)")] = None,
                 allow_empty: AllowEmpty = False) -> None:
    """Validate a feed and save it (a feed of the same name is replaced). A file that is empty or cannot be
    parsed is rejected and the feed in use stays."""
    from pipeline.context.store import checked_feed, save_intel

    if (tenant is None) == (not global_):
        err.print("[red]error:[/red] give exactly one of --tenant T or --global")
        raise typer.Exit(2)
    try:
        s, stats = checked_feed(file, name, allow_empty)
    except ContextFileError as e:
        _reject(e)
        return
    path = save_intel(s, tenant, None)
    skipped = ", ".join(f"{k}: {v}" for k, v in stats.skipped.most_common()) or "none"
    err.print(lit(f"{stats.loaded} indicators ({stats.format}) imported as feed {s.name!r} for "
                  f"{'all tenants' if global_ else f'tenant {tenant!r}'} -> {path}; skipped: {skipped}"))


@intel_app.command("lookup")
def intel_lookup(value: Annotated[str, typer.Argument(help="IP, CIDR, domain, URL or file hash")],
                 tenant: Annotated[str | None, tenant_option("Tenant (its feeds + global feeds)")] = None
                 ) -> None:
    """Which saved indicators match a value (at any time); one tab-separated line per indicator."""
    from pipeline.context.intel import guess_kind, normalize
    from pipeline.context.store import Context

    ctx = Context.from_state(tenants=[tenant] if tenant else [])
    try:
        kind, key = normalize(guess_kind(value), value)
    except ValueError as exc:
        err.print(lit(("error:", "red"), " ", exc))
        raise typer.Exit(2) from None
    kind = "hash" if kind not in ("ip", "cidr", "domain", "url") else kind
    now = int(datetime.now(UTC).timestamp())
    n = 0
    for s in ctx.intel_sets(tenant or ""):
        for ind, e in s.lookup(kind, key, None):
            n += 1
            valid = (e[4] is None or e[4] <= now) and (e[5] is None or now <= e[5])
            state = "valid" if valid else "not valid now"
            conf = "-" if e[2] is None else str(e[2])
            fields = [ind, e[0], f"source={e[1]}", f"confidence={conf}", f"tags={','.join(e[3])}",
                      f"valid={_ts(e[4])}..{_ts(e[5])}", state]
            typer.echo("\t".join(clean(f) for f in fields))
    if not n:
        err.print(lit(f"no indicator matches {value!r}"))
        raise typer.Exit(1)


def _ts(v: int | None) -> str:
    return "" if v is None else datetime.fromtimestamp(v, UTC).isoformat()


def build_context(tenant: str, assets: Path | None, intel: list[Path], escort: Path | None) -> Context:
    """The saved state for `tenant` (+ global intel) with the given files on top; exits 2 on a bad file."""
    from pipeline.context.store import Context

    ctx = Context.from_state(tenants=[tenant])
    loads = [(ctx.load_assets, (tenant, assets)) if assets else None,
             (ctx.load_escort, (tenant, escort)) if escort else None,
             *((ctx.load_intel, (f, tenant, str(f))) for f in intel)]
    for fn, args in filter(None, loads):
        if not fn(*args):  # type: ignore[operator]  # each fn takes its args
            for p in ctx.errors:
                err.print(lit((p, "red")))
            err.print("[red]error:[/red] context file rejected")
            raise typer.Exit(2)
    return ctx
