"""`mdr console` (serve the analyst console and its JSON API) and `mdr users ...` (accounts and API tokens)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.clitext import Table, lit

users_app = typer.Typer(help="Console users: add, list, API tokens, passwords.", no_args_is_help=True)
err = Console(stderr=True)
DbOpt = Annotated[str | None, typer.Option("--db", help="Store URL or SQLite file (default: MDR_DB_URL, else "
                                          "soar.db in MDR_HOME)")]


def _store(db: str | None):
    from pipeline.soar.tickets import TicketStore

    return TicketStore(db)


def _password(stdin: bool, confirm: bool = True) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=confirm)


def _fail(e: Exception) -> None:
    err.print(lit(("error:", "red"), " ", str(e)))
    raise typer.Exit(2)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[str, typer.Option(help="admin | analyst | viewer")],
    tenant: Annotated[list[str] | None, typer.Option(help="A tenant the user may see; repeatable (an admin "
                                                          "without any sees every tenant)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    db: DbOpt = None,
) -> None:
    """Create a console user (the password is stored as an argon2id hash)."""
    from pipeline.console.auth import AuthError, add_user

    store = _store(db)
    try:
        u = add_user(store, name, role, tenant or [], _password(password_stdin))
    except AuthError as e:
        _fail(e)
    finally:
        store.close()
    scope = ", ".join(u.tenants) if u.tenants else "every tenant"
    err.print(lit(f"user {u.name} ({u.role}, {scope}) created"))


@users_app.command("token")
def users_token(
    name: Annotated[str, typer.Argument(help="User name")],
    days: Annotated[float | None, typer.Option(help="Expire after this many days (default: never)")] = None,
    db: DbOpt = None,
) -> None:
    """Print a new API token for the user (shown once; use it as `Authorization: Bearer TOKEN`)."""
    from pipeline.console.auth import AuthError, new_token

    store = _store(db)
    try:
        token = new_token(store, name, days)
    except AuthError as e:
        _fail(e)
    finally:
        store.close()
    typer.echo(token)


@users_app.command("list")
def users_list(db: DbOpt = None) -> None:
    """List the console users."""
    from pipeline.console.auth import users

    store = _store(db)
    try:
        tab = Table("name", "role", "tenants", "created", "disabled")
        for u in users(store):
            tab.add_row(u.name, u.role, ", ".join(u.tenants) or "(all)",
                        u.created_at.strftime("%Y-%m-%d %H:%M"), "yes" if u.disabled else "")
        Console().print(tab)
    finally:
        store.close()


@users_app.command("passwd")
def users_passwd(name: Annotated[str, typer.Argument(help="User name")],
                 password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False, db: DbOpt = None) -> None:
    """Set a user's password (their sessions end)."""
    from pipeline.console.auth import AuthError, set_password

    store = _store(db)
    try:
        set_password(store, name, _password(password_stdin))
    except AuthError as e:
        _fail(e)
    finally:
        store.close()
    err.print("password changed")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument(help="User name")], db: DbOpt = None) -> None:
    """Remove a user with their sessions and tokens."""
    from pipeline.console.auth import AuthError, remove_user

    store = _store(db)
    try:
        remove_user(store, name)
    except AuthError as e:
        _fail(e)
    finally:
        store.close()
    err.print(lit(f"user {name} removed"))


def console_cmd(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port")] = 8700,
    usecases: Annotated[str | None, typer.Option(help="Use-case directory (for the use-case page)")] = None,
    playbooks: Annotated[str | None, typer.Option(help="Playbook file or directory")] = None,
    channels: Annotated[str | None, typer.Option(help="Channel configuration (channels.yaml)")] = None,
    verdicts: Annotated[Path | None, typer.Option(help="Verdicts JSONL (default: as `mdr tickets close`)")] = None,
    kafka: Annotated[str | None, typer.Option(help="Kafka bootstrap for consumer lag (default: "
                                                   "MDR_KAFKA_BOOTSTRAP)")] = None,
    group: Annotated[str, typer.Option(help="The worker's consumer group")] = "mdr-worker",
    metrics_url: Annotated[list[str] | None, typer.Option(help="A worker's /metrics URL; repeatable")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve HTTPS with this certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="... and this key")] = None,
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        help="Trust X-Forwarded-Proto/For from these proxy addresses (TLS terminated in front)")] = None,
    secure_cookies: Annotated[bool, typer.Option(help="Mark cookies Secure even on plain HTTP")] = False,
) -> None:
    """Serve the analyst console and its JSON API on the ticket store."""
    import uvicorn

    from pipeline.console.web import ConsoleConfig, create_app

    if (tls_cert is None) != (tls_key is None):
        err.print("[red]error:[/red] --tls-cert and --tls-key go together")
        raise typer.Exit(2)
    cfg = ConsoleConfig(db_url=db, usecases=usecases, playbooks=playbooks, channels=channels, verdicts_file=verdicts,
                        kafka=kafka or os.environ.get("MDR_KAFKA_BOOTSTRAP"), group=group,
                        metrics_urls=list(metrics_url or []), secure_cookies=secure_cookies)
    app = create_app(cfg)
    from pipeline.console.auth import users

    if not users(app.state.console.store):
        err.print("[yellow]no console user yet:[/yellow] mdr users add NAME --role admin (same --db)")
    scheme = "https" if tls_cert else "http"
    if host not in ("127.0.0.1", "localhost", "::1") and not tls_cert and not forwarded_allow_ips:
        err.print("[yellow]warning:[/yellow] listening beyond this machine without TLS: put a TLS proxy in front "
                  "(--forwarded-allow-ips) or use --tls-cert/--tls-key")
    err.print(lit(f"console: {scheme}://{host}:{port}/  (API schema: /api/openapi.json)"))
    uvicorn.run(app, host=host, port=port, log_level="warning", ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None, proxy_headers=bool(forwarded_allow_ips),
                forwarded_allow_ips=forwarded_allow_ips, server_header=False,
                timeout_graceful_shutdown=5)  # open event streams end with the server


def register(app: typer.Typer) -> None:
    app.command("console")(console_cmd)
    app.add_typer(users_app, name="users")
