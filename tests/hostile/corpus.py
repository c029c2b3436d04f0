"""Hostile text and real product records that carry it (issue 13): the markup of Rich, Slack, Markdown,
HTML and Jira, terminal control sequences, bidi overrides and a header-injection attempt, written into the
fields attackers control (sshd user and host names, an AIDE file path, a WAF request's Host header)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB1 = ROOT / "samples" / "lab-1"

RICH = "[/] [bold]b[/bold] [link=http://evil.example/]click[/link]"
SLACK = "<!channel> <!here> <https://evil.example/|click here> a&b"
MARKDOWN = "[md](http://evil.example/) ![img](http://evil.example/p.png) <http://evil.example/auto> # x"
HTML = '<b>evil</b>.example "><img src=x onerror=alert(1)>'
JIRA = "[j|http://evil.example/] !http://evil.example/i.png! {html}<i>x</i>{html} [~admin]"
TERMINAL = "\x1b[2J\x1b]8;;http://evil.example/\x07spoof\x1b]8;;\x07 \x9b31m \u202eRLO\u202c \u200b"
HEADER = "\r\nBcc: victim@evil.example"
# one value with all of it: a WAF Host header (free text in the request)
HOST = " ".join(("shop.example", RICH, SLACK, MARKDOWN, HTML, JIRA, TERMINAL, HEADER))
# a syslog host or user name cannot hold spaces; these are what sshd / syslog would still write
SSH_USER = "[/]"
SSH_HOST = "[/]<b>x</b>[link=http://evil.example/]"
AIDE_FILE = "/srv/lab/waf/cgi-bin/[/x][a](http://e.example/)<img src=x>.cgi"

CONTROL = ("\x1b", "\x07", "\x9b", "\u202e", "\u202c", "\u200b")  # must never reach a terminal or a message raw


def sshd_lines(user: str = SSH_USER, host: str = "vm", n: int = 6) -> str:
    """`n` failed logins of `user` from one address: an SSH brute-force incident."""
    return "".join(f"Nov 24 06:39:{10 + i} {host} sshd[701]: Failed password for invalid user {user} "
                   f"from 198.51.100.1 port {40001 + i} ssh2\n" for i in range(n))


def write_sshd(d: Path, user: str = SSH_USER, host: str = "vm") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "auth.log").write_text(sshd_lines(user, host))
    return d


def write_waf(d: Path, host: str = HOST) -> Path:
    """lab-1's ModSecurity audit log with every request's Host header set to `host`."""
    out = []
    for line in (LAB1 / "waf" / "modsec_audit.jsonl").read_text().splitlines():
        r = json.loads(line)
        r["request"]["headers"]["Host"] = host
        out.append(json.dumps(r))
    (d / "waf").mkdir(parents=True, exist_ok=True)
    (d / "waf" / "modsec_audit.jsonl").write_text("\n".join(out) + "\n")
    return d


def write_aide(d: Path, path: str = AIDE_FILE) -> Path:
    """lab-1's AIDE report with the path of the CGI script made world-writable replaced by `path`."""
    text = (LAB1 / "host" / "aide_check.json").read_text()
    (d / "host").mkdir(parents=True, exist_ok=True)
    (d / "host" / "aide_check.json").write_text(text.replace("/srv/lab/waf/cgi-bin/app.cgi", json.dumps(path)[1:-1]))
    return d
