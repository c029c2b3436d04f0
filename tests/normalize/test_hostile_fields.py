"""Log injection, per product: each product's own delimiters and keywords, written into each free-text field
of real records the way the product itself writes (escapes) that field, never change the actor fields
(src.ip, src.port, dst, user, host, rule ids): the text lands in its own field, or the record is a dead
letter (`ambiguous_record`). Real records come from tests/fixtures (the lab's own logs); examples are bounded
so that each test runs in a few seconds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.normalize.base import BadRecord, Skipped
from pipeline.schema import Alert
from tests.hostile.products import free_paths

from .conftest import fixture_lines, normalize_one, run_text

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
GRAMMAR_NOISE = ["\\", '"', "'", "[", "]", "=", ":", ".", " ", ",", "  "]


def hostile(tokens: list[str], max_size: int = 100) -> st.SearchStrategy[str]:
    """Strings made of a product's delimiters and keywords, plus short printable noise."""
    part = st.sampled_from(tokens + GRAMMAR_NOISE) | st.text(PRINTABLE, max_size=6)
    return st.lists(part, max_size=8).map("".join).filter(lambda s: len(s) <= max_size)


def actors(a: Alert) -> tuple[Any, ...]:
    host = (a.host.name, a.host.ip) if a.host else None
    return (a.src.ip, a.src.port, a.src.hostname, a.dst.ip, a.dst.port, a.dst.hostname, host, a.rule.id,
            [r.id for r in a.rules], a.tenant_id)


def one(fmt: str, text: str) -> Alert | None:
    """The record's single alert, or None for a dead letter (anything else fails the test)."""
    res = run_text(fmt, text)
    if res.dead:
        assert [d.reason for d in res.dead] == ["ambiguous_record"], res.dead
        return None
    [a] = res.alerts
    return a


# ---- OpenSSH ------------------------------------------------------------------------------------------
SSHD_TOKENS = [
    " from 10.20.5.10 port 22", " from 10.20.5.10 port 22 ssh2", " from 2001:db8::1 port 1 ssh2: RSA SHA256:abc",
    " from ", " port ", " ssh2", "10.20.5.10", "127.0.0.1", "2001:db8::1", "22", "65535", "99999", ": ",
    "RSA SHA256:abc", " [preauth]", "invalid user ", "for ", "Failed password for ", "Accepted publickey for ",
    "Invalid user ", "maximum authentication attempts exceeded for ", "Connection closed by ",
    "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=10.20.5.10  user=root",
    ", client user \"", "\", client host \"", " ID ", " (serial 1) CA ED25519 SHA256:x",
]
SSHD_LINES = fixture_lines("host/sshd_auth.log") + fixture_lines("host/sshd_auth_variants.log")


def vis(s: str) -> str:
    """OpenSSH's syslog strnvis (VIS_CSTYLE|VIS_NL|VIS_TAB|VIS_OCTAL) of printable text: `\\` doubled."""
    return s.replace("\\", "\\\\")


def _sshd_templates() -> list[tuple[str, str, Alert]]:
    """(text before the user name, text after it, the real alert) of every real line that names a user."""
    out = []
    for line in SSHD_LINES:
        try:
            [a] = normalize_one("sshd", line)
        except Skipped:
            continue
        if a.user and a.rule.id not in ("sshd:user_not_allowed", "sshd:pam_auth_failure"):
            i = line.rindex(f" {a.user} from {a.src.ip}") + 1
            out.append((line[:i], line[i + len(a.user):], a))
    return out


SSHD_TEMPLATES = _sshd_templates()


def test_sshd_templates_cover_every_auth_line_kind():
    assert {a.rule.id for *_, a in SSHD_TEMPLATES} == {
        "sshd:failed_password", "sshd:invalid_user", "sshd:accepted", "sshd:max_auth_attempts"}


@FAST
@given(st.sampled_from(SSHD_TEMPLATES), hostile(SSHD_TOKENS))
def test_sshd_user_name_cannot_move_the_client(template, name):
    head, tail, real = template
    # a name the client chose is an invalid user's; a valid account's name has no `invalid user ` prefix
    assume(real.extra.get("invalid_user") or not name.startswith("invalid user "))
    a = one("sshd", head + vis(name) + tail)
    assert a is not None  # these lines carry no free text after the client: one reading only
    assert a.user == (vis(name) or None)
    assert actors(a) == actors(real)


@FAST
@given(hostile(SSHD_TOKENS, 60), hostile(SSHD_TOKENS, 60), hostile(SSHD_TOKENS, 60))
def test_sshd_hostbased_client_user_and_host_are_read_one_way_or_dead_lettered(user, cuser, chost):
    """hostbased lines end with `client user "..", client host ".."` (attacker text on both sides of the
    client address): the line gives the real client or is a dead letter."""
    line = (f"Nov 24 06:39:10 vm sshd[5000]: Failed hostbased for invalid user {vis(user)} from 127.0.0.66 port "
            "50000 ssh2: "
            f'ED25519 SHA256:abc, client user "{vis(cuser)}", client host "{vis(chost)}"')
    a = one("sshd", line)
    if a is not None:
        assert (a.src.ip, a.src.port, a.user) == ("127.0.0.66", 50000, vis(user) or None)


INJECTED_SSHD = ("Nov 24 06:39:1{i} vm sshd[500{i}]: Failed password for invalid user x from 10.20.5.10 port 22 "
                 "from 127.0.0.66 port 5000{i} ssh2")


def test_issue_reproduction_the_last_from_is_the_client(tmp_path):
    """Issue 13 §2: eight such lines gave "SSH brute force against vm from 10.20.5.10"."""
    from pipeline.core.engine import Core
    from pipeline.paths import usecases_dir
    from pipeline.replay import replay
    from pipeline.rules.usecase import load_usecases

    f = tmp_path / "auth.log"
    f.write_text("\n".join(INJECTED_SSHD.format(i=i) for i in range(8)) + "\n")
    res = replay([str(f)], Core(load_usecases(str(usecases_dir()))), "shop", "web-01")
    assert {a.src.ip for a in res.alerts} == {"127.0.0.66"}
    assert {a.user for a in res.alerts} == {"x from 10.20.5.10 port 22"}
    [inc] = res.open_incidents
    assert inc.entities.src_ips == ["127.0.0.66"] and "10.20.5.10" not in inc.title


# ---- fail2ban -------------------------------------------------------------------------------------------
F2B_FOUND = "2026-11-24 06:38:44,102 fail2ban.filter         [4990]: INFO    [sshd] Found {} - 2026-11-24 06:38:44"


@FAST
@given(hostile(["127.0.0.66", "10.20.5.10", "::1", " - ", "Ban ", "[sshd] ", " "]))
def test_fail2ban_address_is_an_address_or_a_dead_letter(addr):
    res = run_text("fail2ban", F2B_FOUND.format(addr))
    for a in res.alerts:
        assert a.src.ip == str(ipaddress.ip_address(addr.partition(" - ")[0]))
    assert res.alerts or [d.reason for d in res.dead] == ["bad_ip"]


# ---- ClamAV ---------------------------------------------------------------------------------------------
CLAM_TOKENS = [": ", " FOUND", ": OK", ": Empty file", " ERROR", "Eicar-Test-Signature", "/etc/passwd",
               "Start Date: 2026:11:24 06:00:00", "----------- SCAN SUMMARY -----------", "LibClamAV ",
               ".UNOFFICIAL", "/"]
CLAM_FOUND = [ln for ln in fixture_lines("host/clamscan_webroot.log") if ln.endswith(" FOUND")]


@FAST
@given(st.sampled_from(CLAM_FOUND), hostile(CLAM_TOKENS))
def test_clamav_file_name_cannot_change_the_signature(line, name):
    sig = line[:-6].rpartition(": ")[2]
    [a] = run_text("clamav", f"/srv/{name}: {sig} FOUND").alerts  # held for the summary, then flushed
    assert (a.rule.id, a.file.path) == (sig, f"/srv/{name}")


@FAST
@given(hostile(CLAM_TOKENS))
def test_clamav_clean_file_never_becomes_a_detection(name):
    res = run_text("clamav", f"/srv/{name}: OK")
    assert (res.alerts, res.dead) == ([], [])


# ---- auditd ---------------------------------------------------------------------------------------------
AUDIT_TOKENS = ["'", " res=success", " res=failed", " addr=10.20.5.10", " acct=\"root\"", " key=\"x\"",
                "msg='", "op=login", "\x1d", "UID=\"root\"", "type=EOE msg=audit(1.0:1): ", "(null)", "?"]
AUDIT = fixture_lines("host/audit.log")


def libaudit(s: str) -> str:
    """audit_encode_nv_string / the kernel's untrusted-string rule: `"text"`, or hex when it has a quote, a
    space or control byte, or a byte above 0x7e."""
    b = s.encode()
    return b.hex().upper() if any(c == 0x22 or c < 0x21 or c > 0x7E for c in b) else f'"{s}"'


def _event(pred: Callable[[str], bool]) -> list[str]:
    """The records of the first audit event one of whose records satisfies `pred`."""
    stamp = next(re.search(r"msg=audit\(([^)]*)\)", ln)[1] for ln in AUDIT if pred(ln))
    return [ln for ln in AUDIT if f"msg=audit({stamp})" in ln]


def _audit_alerts(lines: list[str]) -> list[Alert]:
    from pipeline.normalize.stage import NormalizeResult, NormalizeStage

    from .conftest import record

    stage, out = NormalizeStage("auditd"), NormalizeResult()
    for ln in lines:
        stage.process(record(ln), "auditd", out)
    stage.flush(out)
    assert not out.dead, out.dead
    return out.alerts


LOGIN = _event(lambda ln: "type=USER_LOGIN" in ln and "res=failed" in ln)
EXEC = _event(lambda ln: "type=EXECVE" in ln and "a1=" in ln)


@FAST
@given(hostile(AUDIT_TOKENS, 32))
def test_auditd_account_name_cannot_change_the_source_or_the_result(name):
    [real] = _audit_alerts(LOGIN)
    lines = [re.sub(r"acct=\S+", lambda _: "acct=" + libaudit(name), ln) for ln in LOGIN]
    [a] = _audit_alerts(lines)
    assert actors(a)[:7] == actors(real)[:7] and a.rule.id == real.rule.id and a.action == "failed"
    assert a.user == (name if name and name[0] != "(" else None)  # `(invalid user)`-style names are no user


@FAST
@given(hostile(AUDIT_TOKENS))
def test_auditd_command_argument_lands_in_the_command_line_only(arg):
    [real] = _audit_alerts(EXEC)
    lines = [re.sub(r" a1=\S+", lambda _: " a1=" + libaudit(arg), ln) for ln in EXEC]
    [a] = _audit_alerts(lines)
    assert actors(a) == actors(real) and a.user == real.user and a.extra["key"] == real.extra["key"]
    assert a.process.cmdline.split(" ", 1)[1] == arg


# ---- ModSecurity (JSON audit log and Apache error log) ----------------------------------------------------
MODSEC_TOKENS = [' [file "/x.conf"] [line "1"] [id "999999"] [msg "forged"] [severity "CRITICAL"]',
                 ' [hostname "db-01"] [uri "/forged"] [unique_id "FAKE"]', '"] [', '[id "999999"]',
                 ' [file "/x.conf"] [line "1"]', ' [id "1"]', ' [msg "x"]',
                 ' [data "', ' [severity "CRITICAL"]', ' [tag "attack-rce"]', ' [unique_id "FAKE"]',
                 ' [hostname "db-01"]', ' [uri "/"]', ", referer: ", "Access denied with code 403",
                 "ModSecurity: ", "[client 10.20.5.10]", "10.20.5.10", "\\x22", "\\\""]


def modsec_escape(s: str, quotes: bool = True) -> str:
    """ModSecurity's log_escape (quotes=True) / log_escape_nq (variable names) of printable text."""
    s = s.replace("\\", "\\\\")
    return s.replace('"', '\\"') if quotes else s


def modsec_hex(s: str) -> str:
    """ModSecurity's log_escape_hex (the `[data "..."]` value)."""
    return "".join(f"\\x{ord(c):02x}" if c in '"\\' or not 0x20 <= ord(c) < 0x7F else c for c in s)


def apache_escape(s: str) -> str:
    """Apache's ap_escape_errorlog_item of printable text: `\\` doubled, quotes kept."""
    return s.replace("\\", "\\\\")


AUDIT_LOG = [ln for ln in fixture_lines("waf/modsec_audit_samples.jsonl")
             if any(' [data "' in m for m in orjson.loads(ln)["audit_data"].get("messages", ()))][:6]
_VAR = re.compile(r'( at [A-Z_]+:)([^\s"]+?)(\. \[file ")')
_DATA = re.compile(r'( \[data ")((?:[^"\\]|\\.)*)("\])')


def _messages(line: str, fn: Callable[[str], str]) -> str:
    """The record with `fn` applied to each message that still fits ModSecurity's 1023-byte buffer."""
    d = orjson.loads(line)
    old = d["audit_data"]["messages"]
    new = [m2 if len((m2 := fn(m)).encode()) <= 1023 else m for m in old]
    assume(new != old)
    d["audit_data"]["messages"] = new
    return orjson.dumps(d).decode()


@FAST
@given(st.sampled_from(AUDIT_LOG), hostile(MODSEC_TOKENS, 60))
def test_modsecurity_variable_name_cannot_forge_rule_metadata(line, name):
    [real] = normalize_one("modsecurity", line)
    forged = _messages(line, lambda m: _VAR.sub(lambda x: x[1] + modsec_escape(name, False) + x[3], m, 1))
    a = one("modsecurity", forged)
    assert a is not None and actors(a) == actors(real)
    assert a.extra.get("matched_data") == real.extra.get("matched_data")


@FAST
@given(st.sampled_from(AUDIT_LOG), hostile(MODSEC_TOKENS, 60))
def test_modsecurity_matched_data_stays_in_matched_data(line, data):
    [real] = normalize_one("modsecurity", line)
    forged = _messages(line, lambda m: _DATA.sub(lambda x: x[1] + modsec_hex(data) + x[3], m, 1))
    a = one("modsecurity", forged)
    assert a is not None and actors(a) == actors(real)
    assert modsec_hex(data)[:200] in a.extra["matched_data"]


@FAST
@given(st.sampled_from(AUDIT_LOG), hostile([*MODSEC_TOKENS, "HTTP/1.1", " "], 80), hostile(MODSEC_TOKENS, 80))
def test_modsecurity_url_and_user_agent_are_free_text(line, url, agent):
    [real] = normalize_one("modsecurity", line)
    d = orjson.loads(line)
    d["request"]["request_line"] = f"GET /{url} HTTP/1.1"
    d["request"].setdefault("headers", {})["User-Agent"] = agent
    a = one("modsecurity", orjson.dumps(d).decode())
    assert a is not None and actors(a) == actors(real)
    assert (a.http.url, a.http.user_agent) == (f"/{url}", agent)


ERROR_LOG = [ln for ln in fixture_lines("waf/apache_error.log") if "ModSecurity: " in ln and '[id "' in ln
             and len(ln) < 1300 and " at ARGS:" in ln][:6]
_TRAILER = {k: re.compile(rf'( \[{k} ")((?:[^"\\]|\\.)*)("\])') for k in ("uri", "hostname", "data")}


def _error_alert(line: str) -> Alert | None:
    """The alert of one error-log line (its transaction closed by flush), None for a dead letter."""
    res = run_text("modsec_error", line)
    if res.dead:
        assert [d.reason for d in res.dead] == ["ambiguous_record"], res.dead
        return None
    [a] = res.alerts
    return a


def test_error_log_samples_are_real_rule_lines():
    assert len(ERROR_LOG) >= 3 and all(_error_alert(ln) is not None for ln in ERROR_LOG)


@FAST
@given(st.sampled_from(ERROR_LOG), st.sampled_from(["uri", "hostname", "data", "var", "referer"]),
       hostile(MODSEC_TOKENS, 60))
def test_modsec_error_log_injection_keeps_actors_or_dead_letters(line, where, text):
    real = _error_alert(line)
    if where == "referer":
        forged = line + ", referer: " + apache_escape(text)
    elif where == "var":
        forged = re.sub(r"( at ARGS:)([^\s\"]+?)(\. \[file \")",
                        lambda x: x[1] + apache_escape(modsec_escape(text, False)) + x[3], line, count=1)
    else:
        value = modsec_hex(text) if where == "data" else modsec_escape(text)
        forged = _TRAILER[where].sub(lambda x: x[1] + apache_escape(value) + x[3], line, count=1)
    a = _error_alert(forged)
    if a is None:
        return  # read two ways: a dead letter, never a guess
    keep = actors(real)
    if where == "hostname":
        assert actors(a)[:5] == keep[:5] and actors(a)[7:] == keep[7:]
    else:
        assert actors(a) == keep
    assert a.extra["unique_id"] == real.extra["unique_id"]
    if where == "uri":
        assert a.http.url == modsec_escape(text)


def test_modsec_error_quote_in_data_is_not_a_token_boundary():
    """Apache doubles ModSecurity's `\\"` to `\\\\"`: both layers are undone, so the data's `"] [id "1"]` stays
    inside the data value."""
    line = ERROR_LOG[0]
    data = 'x"] [id "1"] [unique_id "FAKE"] [hostname "db-01"] [uri "/"'
    forged = _TRAILER["data"].sub(lambda x: x[1] + apache_escape(modsec_escape(data)) + x[3], line, count=1)
    a, real = _error_alert(forged), _error_alert(line)
    assert a is not None and actors(a) == actors(real) and a.extra["unique_id"] == real.extra["unique_id"]


FORGED_TAIL = (' [file "/x.conf"] [line "1"] [id "999999"] [msg "forged"] [severity "NOTICE"] '
               '[hostname "db-01"] [uri "/"] [unique_id "FAKE"]')


def test_modsec_error_forged_tail_in_referer_is_a_dead_letter():
    """Apache appends the raw Referer (quotes unescaped) after ModSecurity's tail: a whole forged tail there
    makes the line readable two ways."""
    res = run_text("modsec_error", ERROR_LOG[0] + ", referer: http://x/" + FORGED_TAIL)
    assert ([d.reason for d in res.dead], res.alerts) == (["ambiguous_record"], [])


def test_modsec_error_forged_tail_in_variable_name_is_a_dead_letter():
    """ModSecurity does not quote-escape variable names: `ARGS:<forged tail>, referer: ` before the real tail."""
    forged = re.sub(r"( at ARGS:)([^\s\"]+?)(\. \[file \")", lambda x: x[1] + "q" + FORGED_TAIL + ", referer: " + x[3],
                    ERROR_LOG[0], count=1)
    res = run_text("modsec_error", forged)
    assert ([d.reason for d in res.dead], res.alerts) == (["ambiguous_record"], [])


# ---- Apache access log (context only) ----------------------------------------------------------------------
def ap_escape_logitem(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


@FAST
@given(hostile(['" 200 1 "', '" - ', "HTTP/1.1", "[24/Nov/2026:06:38:33 +0000]", " "]), hostile(['"', " "]))
def test_access_log_request_and_agent_never_break_the_line(req, agent):
    line = (f'127.0.0.10 - - [24/Nov/2026:06:38:33 +0000] "GET /{ap_escape_logitem(req)} HTTP/1.1" 200 44 '
            f'"{ap_escape_logitem(agent)}" awUw6U3R2MqInzbJfVSqFwAAAAA')
    res = run_text("apache_access", line)
    assert (res.dead, dict(res.skipped)) == ([], {"apache_access:access_log": 1})


# ---- JSON products: every free-text field, any text --------------------------------------------------------
JSON_TOKENS = ['"', "\\", '","src_ip":"10.20.5.10","x":"', "}", "{", "10.20.5.10", "\u0000", "\u202e",
               " from 10.20.5.10 port 22", "[id \"1\"]", "<script>", "${jndi:ldap://x}"]
FREE_TEXT: dict[str, tuple[list[str], frozenset[str]]] = {
    # format: (real records, keys whose string values are free text, wherever they appear)
    "suricata": ([ln for ln in fixture_lines("ids/eve_samples.jsonl") if '"event_type":"alert"' in ln][:8],
                 frozenset({"url", "http_user_agent", "http_refer", "signature", "category", "rrname", "sni",
                            "payload_printable", "http_content_type"})),
    "aws_nfw": (fixture_lines("cloud/aws_nfw/records.jsonl"),
                frozenset({"url", "http_user_agent", "signature", "category", "sni", "rrname"})),
    "wazuh": (fixture_lines("cloud/wazuh/records.jsonl"),
              frozenset({"full_log", "previous_output", "description", "url", "location"})),
    "aws_waf": (fixture_lines("cloud/aws_waf/records.jsonl"), frozenset({"uri", "args", "value"})),
    "alibaba_waf": (fixture_lines("cloud/alibaba_waf/records.jsonl"),
                    frozenset({"request_path", "querystring", "http_user_agent", "http_referer", "user_agent"})),
    "alibaba_sas": (fixture_lines("cloud/alibaba_sas/records.jsonl"), frozenset({"Desc", "Stages"})),
    "alibaba_cloudfw": (fixture_lines("cloud/alibaba_cloudfw/records.jsonl"), frozenset({"url", "app_name"})),
}
def _alerts_or_skip(fmt: str, text: str) -> list[Alert] | None:
    try:
        return normalize_one(fmt, text)
    except Skipped:
        return None


JSON_CASES = [(fmt, ln, p) for fmt, (lines, keys) in FREE_TEXT.items() for ln in lines
              if _alerts_or_skip(fmt, ln) for p in free_paths(orjson.loads(ln), keys)]


def test_every_json_product_has_free_text_cases():
    assert {fmt for fmt, _, _ in JSON_CASES} == set(FREE_TEXT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(JSON_CASES), hostile(JSON_TOKENS, 200))
def test_json_free_text_never_changes_the_actors(case, text):
    fmt, line, path = case
    real = normalize_one(fmt, line)
    doc = orjson.loads(line)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = text
    try:
        got = normalize_one(fmt, orjson.dumps(doc).decode())
    except BadRecord as b:  # a free-text field the product requires to be non-empty
        assert text.strip() in ("", "-") and b.reason == "missing_field", (path, b)
        return
    assert [actors(a) for a in got] == [actors(a) for a in real], path
