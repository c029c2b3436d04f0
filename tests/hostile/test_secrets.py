"""Issue 13 §6: every configured secret is redacted in every form it can take (raw, escaped, URL userinfo,
base64 of Basic auth, percent-encoded), in ticket timelines, logs, dead letters and output files.

The end-to-end test configures secrets the ways operators do (environment, a secrets file, tokens with the
newline of the file they were read from, a webhook URL with a password, a Basic-auth user, the store URL's
password), points every connector at a local server that refuses the call and echoes the Authorization
header and the URL back, puts a secret into an input record as well, runs `mdr replay`, `mdr tickets
note|show|close` (an analyst pasting secrets) and `mdr report`, and then scans every file under the output
and MDR_HOME directories, the command output, the log records and every row of every table (SQLite and the
real PostgreSQL) for any form of any secret."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from typer.testing import CliRunner

from pipeline.redact import REDACTOR, redact
from tests.hostile.checks import db_rows
from tests.hostile.corpus import LAB1, ROOT, sshd_lines
from tests.hostile.leaks import Leaks
from tests.pg import new_database
from tests.soar.helpers import playbook, write_yaml
from tests.soar.servers import RecordingServer, Reply, Seen

Server = Callable[..., RecordingServer]
USER = "ana@example.com"
SECRETS = {
    "slack_password": "S3cret-Slack-Pw",  # userinfo of the Slack webhook URL
    "slack_path": "xoxSlackPath0123456",  # the token in the webhook's path
    "ding_token": "dt-access-token-1234",  # DingTalk's access_token query value
    "ding_sign": "SECding-sign-5678",  # DingTalk signing secret (never sent: it keys the HMAC)
    "wecom_key": "wecom-robot-key-555",  # WeCom's key query value
    "jira_token": "jira-api-token-77\n",  # read from a file with its newline; Basic auth with USER
    "hive_key": "hive-api-key-0042\n",  # the newline makes httpx refuse the header, quoting it escaped
    "hook_key": "hook/url+key=99&x",  # a webhook URL query value that must be percent-encoded
    "hook_secret": "hook-hmac-secret-31",
    "db_password": "Db-Passw0rd-99",
}


leaks = Leaks(SECRETS, users=(USER, "bot"))  # (secret name, how) for every form of a secret in a text


# ---- unit: each form is redacted ------------------------------------------------------------------------------
def test_url_userinfo_password_is_redacted() -> None:
    """The issue: `https://bot:S3cretPw@host/...` became `https://bot:S3cretPw/***`."""
    REDACTOR.add("https://bot:S3cretPw@chat.example/hooks/abcdefghijkl")
    assert redact("POST https://bot:S3cretPw@chat.example/hooks/abcdefghijkl: HTTP 500") == \
        "POST https://chat.example/***: HTTP 500"
    for partial in ("https://bot:S3cretPw/***", "bot:S3cretPw", "S3cretPw", "/hooks/abcdefghijkl?x=1"):
        assert "S3cretPw" not in redact(partial) and "abcdefghijkl" not in redact(partial)


def test_escaped_encoded_and_basic_auth_forms_are_redacted() -> None:
    token = "tok-abc-123\n"
    REDACTOR.add(token)
    REDACTOR.add('pa"ss\\wörd&1')
    cases = {
        "Illegal header value b'Bearer tok-abc-123\\n'": "tok-abc-123",  # httpx / h11 quoting the header
        json.dumps({"t": 'pa"ss\\wörd&1'}): "ss",  # JSON-escaped
        repr('pa"ss\\wörd&1'): "ss",
        "q=" + quote('pa"ss\\wörd&1', safe=""): "ss",  # percent-encoded, upper and lower case
        "q=" + quote('pa"ss\\wörd&1', safe="").lower(): "ss",
        "echo: Basic " + base64.b64encode(f"{USER}:{token}".encode()).decode(): "",  # Basic auth
        "AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{token.strip()}".encode()).decode(): "",
        "x" + base64.urlsafe_b64encode(b"xy:" + token.encode()).decode(): "",
    }
    for text in cases:
        assert leaks_of(redact(text), token, 'pa"ss\\wörd&1') == [], (text, redact(text))


def leaks_of(text: str, *secrets: str) -> list[tuple[str, str]]:
    return Leaks({x: x for x in secrets}, users=(USER,))(text)


def test_log_records_and_dead_letters_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.schema import DeadLetter

    REDACTOR.add("log-secret-value-1")
    caplog.set_level(logging.INFO)
    logging.getLogger("pipeline.test").info("calling with %s", "log-secret-value-1")
    try:
        raise RuntimeError("server said log-secret-value-1")
    except RuntimeError:
        logging.getLogger("pipeline.test").exception("failed")
    assert "log-secret-value-1" not in caplog.text and "***" in caplog.text
    d = DeadLetter(reason="parse_error", detail="near log-secret-value-1", raw='{"k": "log-secret-value-1"}')
    assert "log-secret-value-1" not in d.detail + d.raw


def test_every_value_of_the_secrets_file_is_redacted_once_channels_load(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret no channel names (kept in the file for another tool) is still a secret; a broken file does not
    stop the channels from loading (it is reported where a channel reads it)."""
    from pipeline.soar.connectors import load_channels

    monkeypatch.setenv("MDR_SECRETS_FILE", str(write_yaml(tmp_path / "s.yaml", {"other": "unnamed-secret-77"})))
    load_channels()
    assert redact("saw unnamed-secret-77") == "saw ***"
    (tmp_path / "s.yaml").write_text("[not: a mapping")
    REDACTOR.clear()
    load_channels()
    assert redact("saw unnamed-secret-77") == "saw unnamed-secret-77"


def test_notices_and_external_tickets_carry_no_configured_secret(http_server: Server) -> None:
    """Record text that holds a configured secret (an attacker replaying a stolen token, a customer's app logging
    its own) goes into notices and external tickets redacted: a template value before it is escaped (markdown
    writes `_` as `\\_`, which no redaction would recognize after), titles, tags and observables."""
    from pipeline.soar.connectors import Message, TicketInfo
    from pipeline.soar.connectors.dingtalk import DingTalk
    from pipeline.soar.connectors.thehive import TheHive
    from pipeline.soar.templates import Templates
    from tests.hostile.checks import hive

    secret = "notice_secret_4242"
    REDACTOR.add(secret)
    ding, case = http_server(lambda s: Reply(200, {"errcode": 0})), http_server(hive)
    text = Templates().render("user {{ user }} from {{ url }}", {"user": f"x_{secret}",
                                                                 "url": f"https://h.example/?t={secret}"}, "markdown")
    DingTalk("d", {"url": ding.url + "/robot/send?access_token=t"}).notify(
        Message(title=f"login of {secret}", text=text, markup="markdown"))
    TheHive("h", {"url": case.url, "api_key": "k"}).open_ticket(TicketInfo(
        1, "inc1", "shop", f"login of {secret}", text, "P2", "brute_force", 0, tags=[f"user:{secret}"],
        observables=[("url", f"https://h.example/?t={secret}")], markup="markdown"))
    sent = ding.requests[0].body.decode() + case.requests[0].body.decode()
    assert "***" in sent and leaks_of(sent, secret) == [] and "notice\\\\_secret" not in sent


# ---- SMTP: a server that echoes the AUTH PLAIN line ---------------------------------------------------------
class _EchoSmtp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"220 echo ESMTP\r\n")
        for line in self.rfile:
            cmd = line.decode().strip()
            if cmd.upper().startswith("EHLO"):
                self.wfile.write(b"250-echo\r\n250 AUTH PLAIN\r\n")
            elif cmd.upper().startswith("AUTH"):
                self.wfile.write(f"535 5.7.8 rejected: {cmd}\r\n".encode())
            elif cmd.upper().startswith("QUIT"):
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_smtp_auth_echo_is_redacted() -> None:
    from pipeline.soar.connectors import ConnectorError, Message
    from pipeline.soar.connectors.smtp import Email

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoSmtp)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        mail = Email("m", {"host": "127.0.0.1", "port": srv.server_address[1], "from": "a@b.c", "to": "x@y.z",
                           "starttls": False, "username": USER, "password": "smtp-pass-word-8"})
        with pytest.raises(ConnectorError, match="535") as e:
            mail.notify(Message(title="t", text="x"), retry=None)
    finally:
        srv.shutdown()
        srv.server_close()
    assert "rejected: AUTH PLAIN" in str(e.value) and leaks_of(str(e.value), "smtp-pass-word-8") == []


# ---- end to end -----------------------------------------------------------------------------------------------
def echo(s: Seen) -> Reply:
    """Refuse the call and echo what a careless server echoes: the Authorization header and the URL."""
    query = "&".join(f"{k}={quote(v[0], safe='')}" for k, v in s.query.items())
    return Reply(401, f"denied: auth={s.headers.get('authorization')} url={s.path}?{query}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store, with a password in its URL (PostgreSQL: a role of its own that owns the database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/out/soar.db"
        return
    import psycopg

    url = new_database(request.getfixturevalue("pg_base_url"))
    base, name = url.rsplit("/", 1)
    role = "mdr_" + name[2:]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRETS['db_password']}'")
        conn.execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
    host = base.split("@", 1)[1]
    yield f"postgresql+psycopg://{role}:{SECRETS['db_password']}@{host}/{name}"


def configure(tmp_path: Path, http_server: Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    srv = {k: http_server(echo) for k in ("slack", "ding", "wecom", "jira", "hive", "hook")}
    s = SECRETS
    secrets_file = write_yaml(tmp_path / "secrets" / "secrets.yaml", {
        "slack_url": f"http://bot:{s['slack_password']}@{srv['slack'].url[7:]}/services/T0/B0/{s['slack_path']}",
        "wecom_url": f"{srv['wecom'].url}/cgi-bin/webhook/send?key={s['wecom_key']}",
        "hook_url": f"{srv['hook'].url}/in?key={quote(s['hook_key'], safe='')}",
        "hook_secret": s["hook_secret"],
    })
    monkeypatch.setenv("MDR_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("T_DING_URL", f"{srv['ding'].url}/robot/send?access_token={s['ding_token']}")
    monkeypatch.setenv("T_DING_SIGN", s["ding_sign"])
    monkeypatch.setenv("T_JIRA_TOKEN", s["jira_token"])
    monkeypatch.setenv("T_HIVE_KEY", s["hive_key"])
    home = tmp_path / "home"
    channels = {
        "soc": {"type": "slack", "url": "secret:slack_url"},
        "customer": {"type": "dingtalk", "url": "env:T_DING_URL", "secret": "env:T_DING_SIGN"},
        "wecom": {"type": "wecom", "url": "secret:wecom_url"},
        "jira": {"type": "jira", "url": srv["jira"].url, "project": "SEC", "token": "env:T_JIRA_TOKEN",
                 "username": USER},
        "casebook": {"type": "thehive", "url": srv["hive"].url, "api_key": "env:T_HIVE_KEY"},
        "oncall": {"type": "webhook", "url": "secret:hook_url", "secret": "secret:hook_secret"},
        "audit": {"type": "log", "path": str(home / "notices.jsonl")},
    }
    monkeypatch.setenv("MDR_SOAR_CHANNELS", str(write_yaml(tmp_path / "channels.yaml", {"channels": channels})))
    pbs = tmp_path / "playbooks"
    shutil.copytree(ROOT / "playbooks" / "templates", pbs / "templates")
    steps: list[dict[str, Any]] = [{"collect": {"alerts": True, "raw": True}}]
    steps += [{"notify": {"channel": c, "template": "incident"}} for c in ("soc", "customer", "wecom", "oncall",
                                                                          "audit")]
    steps += [{"ticket": {"action": "open", "channel": c, "template": "ticket"}} for c in ("jira", "casebook")]
    write_yaml(pbs / "leaky.yaml", playbook("leaky", [{**st, "retry": {"attempts": 1}} for st in steps]))
    monkeypatch.setenv("MDR_PLAYBOOKS", str(pbs))
    monkeypatch.setenv("MDR_HOME", str(home))
    monkeypatch.delenv("MDR_DB_URL", raising=False)
    return srv


def write_input(d: Path) -> Path:
    """Six failed SSH logins (an incident), plus a WAF record whose request carried a secret (a customer's
    WAF logs the calls made to its own APIs)."""
    d.mkdir(parents=True)
    (d / "auth.log").write_text(sshd_lines("admin"))
    rec = json.loads((LAB1 / "waf" / "modsec_audit.jsonl").read_text().splitlines()[0])
    rec["request"]["headers"]["Authorization"] = "Bearer " + SECRETS["slack_password"]
    rec["request"]["request_line"] = f"GET /?key={SECRETS['wecom_key']} HTTP/1.1"
    (d / "waf").mkdir()
    (d / "waf" / "modsec_audit.jsonl").write_text(json.dumps(rec) + "\n")
    return d


@pytest.mark.skipif(not LAB1.is_dir(), reason="samples/lab-1 not present")
def test_no_secret_in_any_output(tmp_path: Path, http_server: Server, monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture, store_url: str) -> None:
    from pipeline.cli import app

    srv = configure(tmp_path, http_server, monkeypatch)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    cli = CliRunner()
    r = cli.invoke(app, ["replay", str(write_input(tmp_path / "in")), "--tenant", "shop", "--out", str(out),
                         "--db", store_url])
    assert r.exit_code == 0, r.output
    shown = [r.output]
    pasted = f"the server answered {SECRETS['jira_token'].strip()} and {SECRETS['slack_password']}"
    for args in (["tickets", "note", "1", pasted], ["tickets", "show", "1"],
                 ["tickets", "close", "1", "--verdict", "benign", "--comment", pasted, "--verdicts",
                  str(out / "verdicts.jsonl")], ["tickets", "show", "1", "--json"], ["tickets", "list", "--json"],
                 ["report", "--tenant", "shop", "--format", "md", "--from", "2026-11-24", "--out",
                  str(out / "report.md")]):
        r = cli.invoke(app, [*args, "--db", store_url])
        assert r.exit_code == 0, r.output
        shown.append(r.output)

    # the secrets were really used and echoed back, so the outputs had every chance to hold them
    seen = {k: [f"{q.headers.get('authorization')} {q.path} {q.query}" for q in v.requests] for k, v in srv.items()}
    assert any(base64.b64encode(f"bot:{SECRETS['slack_password']}".encode()).decode() in x for x in seen["slack"])
    assert any(SECRETS["slack_path"] in x for x in seen["slack"])
    assert any(SECRETS["ding_token"] in x for x in seen["ding"]) and any(SECRETS["wecom_key"] in x
                                                                          for x in seen["wecom"])
    assert any(base64.b64encode(f"{USER}:{SECRETS['jira_token']}".encode()).decode() in x for x in seen["jira"])
    assert any(SECRETS["hook_key"] in x for x in seen["hook"]) and seen["hive"] == []  # httpx refused the header
    ticket = json.loads((out / "tickets.jsonl").read_text().splitlines()[0])
    failed = [e["text"] for e in ticket["timeline"] if e["status"] == "failed"]
    assert len(failed) == 6 and any("Illegal header value" in t for t in failed), failed
    assert all("HTTP 401 denied: auth=" in t for t in failed if "Illegal" not in t), failed

    files = [p for d in (out, tmp_path / "home") for p in d.rglob("*") if p.is_file()]
    assert {"alerts.jsonl", "dlq.jsonl", "incidents.jsonl", "tickets.jsonl", "report.md", "notices.jsonl",
            "verdicts.jsonl"} <= {p.name for p in files}
    found = {f"file {p.relative_to(tmp_path)}": leaks(p.read_bytes().decode("utf-8", "replace")) for p in files}
    found["database rows"] = leaks(db_rows(store_url))
    found["command output"] = leaks("\n".join(shown))
    found["log records"] = leaks(caplog.text)
    assert {k: v for k, v in found.items() if v} == {}
