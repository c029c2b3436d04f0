"""A throwaway PostgreSQL cluster for tests, from the Debian `postgresql` package's binaries when present.

`postgres_cluster()` runs `initdb` + `pg_ctl start` in a temporary directory on a free 127.0.0.1 port (as the
`postgres` user when running as root, which PostgreSQL refuses) and yields a SQLAlchemy URL of a fresh
database; it installs nothing. `PgUnavailable` says why it cannot (tests skip with that reason).
`new_database(url)` makes another empty database on the same cluster; `postgres_or_skip()` is
`postgres_cluster()` that skips the test instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

HOST = "127.0.0.1"


class PgUnavailable(RuntimeError):
    pass


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl, else the ones on PATH."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if cands:
        return Path(cands[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _run(cmd: list[str], prefix: list[str]) -> None:
    r = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise PgUnavailable(f"{Path(cmd[0]).name} failed ({r.returncode}): {(r.stderr or r.stdout)[-500:]}")


def admin_url(url: str, database: str = "postgres") -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def new_database(url: str) -> str:
    """Create an empty database on the cluster of `url`; returns its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    dsn = admin_url(url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url(url, name)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    bindir = find_bindir()
    if bindir is None:
        raise PgUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                            "apt-get install postgresql (Debian) to run the PostgreSQL tests")
    prefix: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="mdr-pg-"))
    try:
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root and there is no 'postgres' user to run the server") from None
            if not shutil.which("runuser"):
                raise PgUnavailable("running as root and runuser is missing")
            os.chown(tmp, pw.pw_uid, pw.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        data = tmp / "data"
        _run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
              "--no-sync"], prefix)
        port = _free_port()
        opts = (f"-p {port} -k {tmp} -c listen_addresses={HOST} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200")
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "server.log"), "-o", opts, "-w",
              "-t", "60", "start"], prefix)
        try:
            yield new_database(f"postgresql+psycopg://postgres@{HOST}:{port}/postgres")
        finally:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres_or_skip() -> Iterator[str]:
    """`postgres_cluster()`, or skip the calling test with the reason why it cannot run."""
    import pytest

    cm = postgres_cluster()
    try:
        url = cm.__enter__()
    except PgUnavailable as e:
        pytest.skip(f"PostgreSQL tests skipped: {e}")
    try:
        yield url
    finally:
        cm.__exit__(None, None, None)
