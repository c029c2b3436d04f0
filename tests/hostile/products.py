"""Real product records, the fields of them attackers write, and how each product writes such text.

`FIELDS` lists, for every normalizer, each free-text field an attacker controls in real records (the lab
day's logs: ../shared/samples/lab-1 when present, else their copies under tests/fixtures; the cloud products'
records under tests/fixtures/cloud), with a function that writes a value into a record the way the product
itself writes (escapes) that field: OpenSSH's strnvis, libaudit's encoding of untrusted strings, ModSecurity's
and Apache's log escaping, JSON. `actors(alert)` is what no such text may change. fail2ban (both formats) has
no field an attacker writes: it logs jail names from its configuration and addresses, which must be addresses
(tests/normalize/test_hostile_fields.py).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.schema import Alert

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
_SHARED_LAB = Path(os.environ.get("MDR_SHARED", ROOT.parent / "shared")) / "samples" / "lab-1"
LAB = _SHARED_LAB if _SHARED_LAB.is_dir() else FIXTURES  # host/, ids/, waf/: the same files in both


# ---- how each product writes text it did not choose ---------------------------------------------------------
_SURROGATE = re.compile("([\ud800-\udfff])")


def to_bytes(s: str) -> bytes:
    """The bytes a product writes for `s`: UTF-8, where U+DC80-U+DCFF stand for the raw (invalid) bytes
    0x80-0xff (Python's surrogateescape) and other lone surrogates are written as CESU-8 (invalid too)."""
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b"".join(p.encode("utf-8", "surrogateescape" if "\udc80" <= p <= "\udcff" else "surrogatepass")
                        if _SURROGATE.fullmatch(p) else p.encode() for p in _SURROGATE.split(s))


def from_bytes(b: bytes) -> str:
    """Text as `mdr replay` reads it from a file (pipeline/normalize/reader.py)."""
    return b.decode("utf-8", "surrogateescape")


_RAW_BYTE = re.compile("[\udc80-\udcff]")


def json_dumps(doc: Any) -> str:
    """JSON as a C product (yajl, jansson) writes it: non-ASCII text as UTF-8, bytes that are not UTF-8 raw
    (surrogateescape characters stay, becoming those bytes in the file), other lone surrogates escaped."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return _SURROGATE.sub(lambda m: m.group() if _RAW_BYTE.match(m.group()) else f"\\u{ord(m.group()):04x}", text)


_C_STYLE = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f", 0x0D: "\\r"}


def ssh_vis(s: str) -> str:
    """OpenSSH's syslog line (log.c: strnvis VIS_CSTYLE|VIS_NL|VIS_TAB|VIS_OCTAL): `\\` doubled, C escapes,
    every other non-printable byte (UTF-8 too) as octal."""
    out = []
    for b in to_bytes(s):
        if b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(_C_STYLE.get(b) or f"\\{b:03o}")
    return "".join(out)


def ssh_user(s: str) -> str:
    """A user name as sshd logs it: the first 100 bytes (`%.100s`), then strnvis."""
    return ssh_vis(from_bytes(to_bytes(s)[:100]))


def libaudit(s: str) -> str:
    """audit_encode_nv_string / the kernel's untrusted strings: `"text"`, or hex when the text has a quote, a
    space or control byte, or a byte above 0x7e."""
    b = to_bytes(s)
    return b.hex().upper() if any(c == 0x22 or c < 0x21 or c > 0x7E for c in b) else f'"{s}"'


_LOG_NAMED = {0x08: "\\b", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v", 0x5C: "\\\\"}


def _log_escape(s: str, quote: bool) -> str:
    """Apache's ap_escape_logitem / ModSecurity's log_escape: `\\`, control bytes and bytes >= 0x7f escaped
    (named or \\xhh); `"` as `\\"` when `quote`."""
    out = []
    for b in to_bytes(s):
        if b == 0x22:
            out.append('\\"' if quote else '"')
        elif b in _LOG_NAMED:
            out.append(_LOG_NAMED[b])
        elif b < 0x20 or b >= 0x7F:
            out.append(f"\\x{b:02x}")
        else:
            out.append(chr(b))
    return "".join(out)


def modsec_escape(s: str, quotes: bool = True) -> str:
    """ModSecurity's log_escape (quotes=True: `[uri "..."]`, `[hostname "..."]`) / log_escape_nq (variable
    names: quotes left alone)."""
    return _log_escape(s, quotes)


def modsec_hex(s: str) -> str:
    """ModSecurity's log_escape_hex (the `[data "..."]` value): `"`, `\\` and non-printable bytes as \\xhh."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}"
                   for b in to_bytes(s))


def apache_escape(s: str) -> str:
    """Apache's ap_escape_errorlog_item (what wraps ModSecurity's message in the error log): like
    ap_escape_logitem, but `"` is left alone."""
    return _log_escape(s, quote=False)


def ap_escape_logitem(s: str) -> str:
    """Apache's ap_escape_logitem (access log `%r`, `%{User-Agent}i`)."""
    return _log_escape(s, quote=True)


# ---- what text must never change ------------------------------------------------------------------------------
ACTOR_NAMES = ("src.ip", "src.port", "src.hostname", "dst.ip", "dst.port", "dst.hostname", "host", "user",
               "rule.id", "rules", "file.path", "tenant")


def actors(a: Alert) -> dict[str, Any]:
    """The alert's actors: who acted, on what, by which rule (what incidents group by and responses target)."""
    return {
        "src.ip": a.src.ip, "src.port": a.src.port, "src.hostname": a.src.hostname, "dst.ip": a.dst.ip,
        "dst.port": a.dst.port, "dst.hostname": a.dst.hostname,
        "host": (a.host.name, a.host.ip) if a.host else None, "user": a.user, "rule.id": a.rule.id,
        "rules": [r.id for r in a.rules], "file.path": a.file.path if a.file else None, "tenant": a.tenant_id,
    }


# ---- fields -----------------------------------------------------------------------------------------------------
Write = Callable[[str, str], str]  # (real record, hostile value) -> the record as the product writes it


@dataclass(frozen=True)
class Field:
    """One attacker-written field of a product: real records holding it, and how a value is written there.

    `owns`: actors this field is (an injected user name is the alert's user); the others must not move.
    `document`: each record is a whole file (AIDE's JSON report, one ClamAV scan)."""

    fmt: str
    name: str
    records: tuple[str, ...]
    write: Write
    owns: frozenset[str] = frozenset()
    document: bool = False

    @property
    def key(self) -> str:
        return f"{self.fmt}:{self.name}"

    def inject(self, value: str) -> list[str]:
        return [self.write(r, value) for r in self.records]


def _lines(rel: str, base: Path = LAB) -> list[str]:
    return [ln for ln in (base / rel).read_text(encoding="utf-8").splitlines() if ln.strip()]


def _sub(pattern: str, escape: Callable[[str], str], group: int = 2) -> Write:
    """Replace group `group` of the first match of `pattern` by the escaped value (groups 1 and 3 kept)."""
    rx = re.compile(pattern)

    def write(record: str, value: str) -> str:
        m = rx.search(record)
        assert m is not None, (pattern, record[:200])
        return record[:m.start(group)] + escape(value) + record[m.end(group):]
    return write


def _json(*paths: tuple[Any, ...]) -> Write:
    """Set every one of `paths` that the record has (a last key the record lacks is added to its parent)."""
    def write(record: str, value: str) -> str:
        doc = orjson.loads(record)
        hit = False
        for path in paths:
            node = doc
            for k in path[:-1]:
                node = node[k] if isinstance(node, list) else node.get(k)
                if node is None:
                    break
            else:
                node[path[-1]] = value
                hit = True
        assert hit, (paths, record[:200])
        return json_dumps(doc)
    return write


def _json_keys(keys: frozenset[str]) -> Callable[[str], Write]:
    """A writer setting every string value under one of `keys`, wherever it is in the record."""
    def writer(key: str) -> Write:
        def write(record: str, value: str) -> str:
            doc = orjson.loads(record)
            paths = free_paths(doc, frozenset({key}))
            assert paths, (key, record[:200])
            return _json(*paths)(record, value)
        return write
    return writer


_HOST_HEADER = frozenset({"host"})


def free_paths(node: Any, keys: frozenset[str], path: tuple = ()) -> list[tuple]:
    """Paths of the string values under `keys` (an AWS WAF `{"name": "Host", "value": ...}` header pair is the
    request's host: not free text)."""
    out: list[tuple] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and k in keys and not (k == "value" and str(node.get("name")).lower()
                                                         in _HOST_HEADER):
                out.append((*path, k))
            else:
                out.extend(free_paths(v, keys, (*path, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(free_paths(v, keys, (*path, i)))
    return out


# Keys whose string values are attacker-written, wherever they appear in a cloud product's JSON record.
CLOUD_FREE_TEXT: dict[str, frozenset[str]] = {
    "aws_nfw": frozenset({"url", "http_user_agent", "sni", "rrname"}),
    "wazuh": frozenset({"full_log", "previous_output", "url", "location"}),
    "aws_waf": frozenset({"uri", "args", "value"}),
    "alibaba_waf": frozenset({"request_path", "querystring", "http_user_agent", "http_referer", "user_agent"}),
    "alibaba_sas": frozenset({"Desc", "Stages"}),
    "alibaba_cloudfw": frozenset({"url", "app_name"}),
    "alibaba_ddos": frozenset(),  # volumes, addresses and Alibaba's own labels: nothing an attacker writes
}
SURICATA_FREE_TEXT = frozenset({"url", "hostname", "http_user_agent", "http_refer", "http_content_type",
                                "http_method", "http_request_body_printable", "http_response_body_printable",
                                "filename", "rrname", "payload_printable"})


def _sshd() -> list[Field]:
    lines = [ln for ln in _lines("host/sshd_auth.log")
             if re.search(r"(Failed password for invalid user|Invalid user) \S+ from ", ln)]
    return [Field("sshd", "user", tuple(lines[:12]), _sub(r"(invalid user |Invalid user )(\S+)( from )", ssh_user),
                  owns=frozenset({"user"}))]


def _audit_event(lines: list[str], pred: Callable[[str], bool]) -> tuple[str, ...]:
    stamp = next(re.search(r"msg=audit\(([^)]*)\)", ln)[1] for ln in lines if pred(ln))
    return tuple(ln for ln in lines if f"msg=audit({stamp})" in ln)


def _auditd() -> list[Field]:
    lines = _lines("host/audit.log")
    logins = tuple(ln for ln in lines if "type=USER_LOGIN" in ln or "type=USER_AUTH" in ln)[:6]
    execve = _audit_event(lines, lambda ln: "type=EXECVE" in ln and " a1=" in ln)
    return [
        Field("auditd", "acct", logins, _sub(r"( acct=)(\S+)( )", libaudit), owns=frozenset({"user"})),
        Field("auditd", "execve_arg", execve,
              lambda r, v: _sub(r"( a1=)(\S+)()", libaudit)(r, v) if "type=EXECVE" in r else r),
        Field("auditd", "comm", execve,
              lambda r, v: _sub(r"( comm=)(\S+)( )", libaudit)(r, v) if "type=SYSCALL" in r else r),
        Field("auditd", "path_name", execve,
              lambda r, v: _sub(r"( item=0 name=)(\S+)( )", libaudit)(r, v) if " item=0 " in r else r,
              owns=frozenset({"file.path"})),
    ]


def _documents() -> list[Field]:
    aide = (LAB / "host" / "aide_check.json").read_text(encoding="utf-8")
    clam = (LAB / "host" / "clamscan_webroot.log").read_text(encoding="utf-8")
    # an attacker names the file, not the directory it is written to
    return [
        Field("aide", "path", (aide,),
              lambda r, v: r.replace('"/srv/lab/waf/cgi-bin/app.cgi"', json_dumps("/srv/lab/waf/cgi-bin/" + v)),
              owns=frozenset({"file.path"}), document=True),
        # clamscan writes file names as they are: a line break in one starts a new line of the report
        Field("clamav", "path", (clam,), lambda r, v: r.replace("/srv/lab/waf/www/uploads/cmd.php",
                                                              "/srv/lab/waf/www/uploads/" + v),
              owns=frozenset({"file.path"}), document=True),
    ]


_VAR = r'( at [A-Z_]+:)([^\s"]+?)(\. \[file ")'


def _modsecurity() -> list[Field]:
    recs = [ln for ln in _lines("waf/modsec_audit.jsonl")
            if '"remote_address":"127.0.0.66"' in ln and '[data \\"' in ln and " at ARGS:" in ln][:3]

    def header(name: str) -> Write:
        return _json(("request", "headers", name))

    def messages(fn: Callable[[str, str], str]) -> Write:
        def write(record: str, value: str) -> str:
            d = orjson.loads(record)
            d["audit_data"]["messages"] = [fn(m, value) for m in d["audit_data"]["messages"]]
            return json_dumps(d)
        return write

    data = _sub(r'( \[data ")((?:[^"\\]|\\.)*)("\])', modsec_hex)
    var = _sub(_VAR, lambda v: modsec_escape(v, quotes=False))
    return [
        Field("modsecurity", "Host", tuple(recs), header("Host"), owns=frozenset({"dst.hostname"})),
        Field("modsecurity", "User-Agent", tuple(recs), header("User-Agent")),
        Field("modsecurity", "Referer", tuple(recs), header("Referer")),
        Field("modsecurity", "request_line", tuple(recs),
              lambda r, v: _json(("request", "request_line"))(r, f"GET /app?q={v} HTTP/1.1")),
        Field("modsecurity", "matched_data", tuple(recs),
              messages(lambda m, v: data(m, v) if ' [data "' in m else m)),
        Field("modsecurity", "variable_name", tuple(recs),
              messages(lambda m, v: var(m, v) if re.search(_VAR, m) else m)),
    ]


def _modsec_error() -> list[Field]:
    recs = tuple([ln for ln in _lines("waf/apache_error.log") if "ModSecurity: " in ln and '[id "' in ln
                  and len(ln) < 1300 and " at ARGS:" in ln and "[client 127.0.0.66" in ln][:3])

    def trailer(key: str, escape: Callable[[str], str]) -> Write:
        return _sub(rf'( \[{key} ")((?:[^"\\]|\\.)*)("\])', lambda v: apache_escape(escape(v)))

    return [
        Field("modsec_error", "uri", recs, trailer("uri", modsec_escape)),
        Field("modsec_error", "hostname", recs, trailer("hostname", modsec_escape),
              owns=frozenset({"dst.hostname"})),
        Field("modsec_error", "data", recs, trailer("data", modsec_hex)),
        Field("modsec_error", "variable_name", recs,
              _sub(_VAR, lambda v: apache_escape(modsec_escape(v, quotes=False)))),
        Field("modsec_error", "referer", recs, lambda r, v: f"{r}, referer: {apache_escape(v)}"),
    ]


def _apache_access() -> list[Field]:
    recs = tuple(_lines("waf/apache_access.log")[:3])
    return [
        Field("apache_access", "request", recs, _sub(r'(\] "[A-Z]+ )([^ ]*)( HTTP/)',
                                                     lambda v: ap_escape_logitem("/" + v))),
        Field("apache_access", "user_agent", recs, _sub(r'( \d+ \d+ ")((?:[^"\\]|\\.)*)(")', ap_escape_logitem)),
    ]


def _json_product(fmt: str, records: list[str], keys: frozenset[str]) -> list[Field]:
    writer = _json_keys(keys)
    out = []
    for key in sorted(keys):
        with_key = tuple(r for r in records if free_paths(orjson.loads(r), frozenset({key})))
        if with_key:
            owns = frozenset({"dst.hostname"}) if (fmt, key) == ("suricata", "hostname") else frozenset()
            out.append(Field(fmt, key, with_key, writer(key), owns=owns))
    return out


def _suricata() -> list[Field]:
    alerts = [ln for ln in _lines("ids/eve_attack.jsonl") if '"event_type":"alert"' in ln]
    picked = [ln for ln in alerts if '"src_ip":"127.0.0.66"' in ln and '"http"' in ln][:3]
    picked += [ln for ln in alerts if '"files"' in ln][:1] + [ln for ln in alerts if '"dns"' in ln][:1]
    with_refer = [_json(("http", "http_refer"))(ln, "http://shop.lab.local/") for ln in picked if '"http"' in ln]
    return _json_product("suricata", [*picked, *with_refer[:1]], SURICATA_FREE_TEXT)


def _cloud() -> list[Field]:
    out = []
    for fmt, keys in CLOUD_FREE_TEXT.items():
        out += _json_product(fmt, _lines(f"cloud/{fmt}/records.jsonl", FIXTURES), keys)
    return out


def fields() -> list[Field]:
    """Every attacker-written field of every normalizer's real records."""
    return [*_sshd(), *_auditd(), *_documents(), *_modsecurity(), *_modsec_error(), *_apache_access(),
            *_suricata(), *_cloud()]
