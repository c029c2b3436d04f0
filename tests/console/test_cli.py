"""`mdr users ...` and `mdr console` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.console.auth import from_token, verify_password
from pipeline.soar.tickets import TicketStore
from tests.console.server import free_port

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_users_add_list_token_passwd_remove(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/soar.db"
    r = runner.invoke(app, ["users", "add", "ana", "--role", "analyst", "--tenant", "shop", "--tenant", "acme",
                            "--password-stdin", "--db", url], input="a long passphrase\n")
    assert r.exit_code == 0, r.output
    assert "user ana (analyst, acme, shop) created" in r.output
    for args, why in ((["bob", "--role", "viewer"], "needs at least one --tenant"),
                      (["bob", "--role", "root", "--tenant", "shop"], "role is one of"),
                      (["[/]", "--role", "admin"], "a user name is"),
                      (["ana", "--role", "admin"], "user ana exists")):
        r = runner.invoke(app, ["users", "add", *args, "--password-stdin", "--db", url], input="a long passphrase\n")
        assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output, (args, r.output)
    r = runner.invoke(app, ["users", "add", "bob", "--role", "admin", "--password-stdin", "--db", url], input="short\n")
    assert r.exit_code == 2 and "at least 12" in r.output
    r = runner.invoke(app, ["users", "list", "--db", url])
    assert r.exit_code == 0 and "ana" in r.output and "analyst" in r.output
    r = runner.invoke(app, ["users", "token", "ana", "--days", "30", "--db", url])
    token = r.output.strip()
    assert r.exit_code == 0 and token.startswith("mdr_")
    store = TicketStore(url)
    try:
        who = from_token(store, token)
        assert who is not None and who.tenants == frozenset({"shop", "acme"})
        r = runner.invoke(app, ["users", "passwd", "ana", "--password-stdin", "--db", url],
                          input="another passphrase\n")
        assert r.exit_code == 0 and verify_password(store, "ana", "another passphrase") is not None
        assert runner.invoke(app, ["users", "remove", "ana", "--db", url]).exit_code == 0
        assert from_token(store, token) is None and verify_password(store, "ana", "another passphrase") is None
    finally:
        store.close()


def test_mdr_console_serves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/soar.db"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "console", "--db", url, "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                ok = httpx.get(f"{base}/healthz", timeout=2).text == "ok\n"
            except httpx.HTTPError:
                time.sleep(0.3)
        assert ok
        assert httpx.get(f"{base}/login").status_code == 200
        assert httpx.get(f"{base}/api/incidents").status_code == 401
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert f"console: http://127.0.0.1:{port}/" in out and "Traceback" not in out
