"""ModSecurity 2.9 JSON audit log (one transaction per line) with OWASP CRS rules: one alert per transaction.

Every CRS rule in `audit_data.messages` becomes a `Rule`; the anomaly-score summary rules (949110 inbound
blocking evaluation, 959100 outbound, 980130/980140 correlation) only annotate `extra` with the scores. The
primary rule is the most severe real rule (highest CRS severity, then lowest paranoia level, then first).

Mappings (also used by `modsec_error`):
- severity: EMERGENCY/ALERT/CRITICAL -> high, ERROR -> medium, WARNING -> low, NOTICE/INFO/DEBUG -> info
  (never critical: a WAF rule match alone is not a confirmed compromise).
- category: the rule's `attack-*` tag without the prefix (`attack-sqli` -> "sqli"), else from the CRS file
  name (`...-ATTACK-SQLI.conf` -> "sqli", `REQUEST-913-SCANNER-DETECTION.conf` -> "scanner-detection").
- ATT&CK: attack-sqli/xss/rce/lfi/rfi/injection-*/fixation -> T1190; attack-reputation-* -> T1595;
  attack-protocol/generic/disclosure -> none.
- action: intercepted, an "Access denied" message or response status 403 -> blocked, else detected
  (rules fired but the request went through).
- addresses: `remote_address` / `local_address` must be IP addresses and the ports 0..65535; a record with
  anything else is a dead letter (`bad_ip` / `bad_port`, naming the field), never an alert with a made-up
  actor (ModSecurity writes the connection's addresses; other values mean a forged or corrupt record).
- extra.anomaly_score: the inbound total CRS states (949110/980130); when it states none (the request stayed
  below the threshold) the sum of CRS severity points of the matched inbound rules (CRITICAL 5, ERROR 4,
  WARNING 3, NOTICE 2), which is how CRS computes it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

from pipeline.normalize._jsonrec import json_object
from pipeline.normalize.base import (
    BadRecord,
    Normalizer,
    RawRecord,
    Skipped,
    as_ip,
    ip_field,
    port_field,
    severity,
)
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_clf
from pipeline.schema import Alert, Endpoint, HostInfo, Http, Network, Rule

# One `[key "value"]` of ModSecurity's metadata tail; values are escaped by ModSecurity (`\"`, `\\`, `\xNN`).
_TOKEN = re.compile(r' \[(\w+) "([^"\\]*(?:\\.[^"\\]*)*)"\]')  # unrolled: 3x faster than (?:[^"\\]|\\.)*
# A token cut short by ModSecurity's 1024-byte message buffer (what may end a truncated message).
_PARTIAL = re.compile(r' (?:\[(?:\w+(?: (?:"(?:[^"\\]|\\.)*(?:\\|")?)?)?)?)?')
_TOTAL = re.compile(r"(?:Total (?:Inbound )?Score|score):? (\d+)")
_CATEGORY_SCORES = re.compile(r"\b(SQLI|XSS|RFI|LFI|RCE|PHPI|HTTP|SESS)=(\d+)")
_PL_SCORES = re.compile(r"paranoia level scores: (\d+), (\d+), (\d+), (\d+)")

SEVERITY_LABEL = {
    "EMERGENCY": "high", "ALERT": "high", "CRITICAL": "high", "ERROR": "medium",
    "WARNING": "low", "NOTICE": "info", "INFO": "info", "DEBUG": "info",
}
# CRS 3.x severity ranks (0 = most severe) and anomaly points.
_RANK = {s: i for i, s in enumerate(
    ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"))}
_POINTS = {"CRITICAL": 5, "ERROR": 4, "WARNING": 3, "NOTICE": 2}
_CATEGORY_SCORE_KEYS = {
    "SQLI": "sql_injection_score", "XSS": "xss_score", "RFI": "rfi_score", "LFI": "lfi_score",
    "RCE": "rce_score", "PHPI": "php_injection_score", "HTTP": "http_violation_score",
    "SESS": "session_fixation_score",
}
SUMMARY_IDS = frozenset({"949110", "949111", "959100", "959101", "980130", "980140", "980170"})
_T1190 = ("attack-sqli", "attack-xss", "attack-rce", "attack-lfi", "attack-rfi", "attack-injection",
          "attack-fixation")
_T1595 = ("attack-reputation",)
# The metadata tail in the order ModSecurity writes it: msre_format_metadata() (re.c), then, in the Apache
# error log only, apache2_util.c's hostname, uri and unique_id. Only `tag` repeats.
TAIL_ORDER = {k: i for i, k in enumerate((
    "file", "line", "id", "rev", "msg", "data", "severity", "ver", "maturity", "accuracy", "tag",
    "hostname", "uri", "unique_id"))}
_TRAILER_RANK = TAIL_ORDER["hostname"]
_STARTS = (' [file "', ' [id "')
STR1_MAX = 1023  # a rule message is formatted into a 1024-byte buffer (apache2_util.c internal_log_ex)
REFERER = ", referer: "  # Apache's default error-log format appends the request's Referer after the message
MAX_DATA = 3  # matched `data` strings kept in extra, each cut to MAX_DATA_LEN characters
MAX_DATA_LEN = 200
RULE_CACHE_SIZE = 4096  # parsed rule tails kept per normalizer (CRS has a few hundred rules)
_SEVERITY = {crs: severity(label) for crs, label in SEVERITY_LABEL.items()}
_HIGH, _INFO = severity("high"), severity("info")
_NO_RANK = (99, 99)  # above every RuleMeta.rank


class Tail(NamedTuple):
    """ModSecurity's metadata tail of one message: its fields (first value of a key), tags, and where it lies."""

    start: int
    end: int
    fields: dict[str, str]
    tags: list[str]
    data: tuple[int, int] | None  # span of the `[data "..."]` token


def _chain(msg: str, pos: int, floor: int, out: dict[str, str], tags: list[str],
           data: list[tuple[int, int]]) -> int:
    """Read tokens from `pos` while they follow ModSecurity's order (ranks >= `floor`); returns the end."""
    rank = floor - 1
    while (m := _TOKEN.match(msg, pos)) is not None:
        r = TAIL_ORDER.get(m[1])
        if r is None or r < rank or r < floor or (r == rank and m[1] != "tag"):
            break
        rank = r
        if m[1] == "tag":
            tags.append(m[2])
        else:
            out.setdefault(m[1], m[2])
            if m[1] == "data":
                data.append(m.span())
        pos = m.end()
    return pos


def _truncated(msg: str, body: int, end: int, stop: int) -> bool:
    """True when msg[end:stop] is a token cut short where the 1023-byte rule message msg[body:stop] ends."""
    if not _PARTIAL.fullmatch(msg, end, stop):
        return False
    size = len(msg[body:stop].encode("utf-8", "surrogatepass"))
    return STR1_MAX - 3 <= size <= STR1_MAX  # a multi-byte character may have been cut too


def metadata(msg: str, body: int = 0, error_log: bool = False) -> Tail | None:
    """The metadata tail of a ModSecurity message, anchored to ModSecurity's grammar.

    The operator text before the tail (`Pattern match ... at ARGS:name.`) holds variable names that
    ModSecurity does not quote-escape, and Apache appends the raw Referer after the error-log message, so
    `[key "value"]` look-alikes can stand on both sides. The tail is the run of tokens in ModSecurity's fixed
    order (`TAIL_ORDER`, all values quote-escaped) that ends the message (error log: ends it or is followed by
    `, referer: `), or that a full 1023-byte message buffer cut short. `body` is where the rule message starts
    (the error log's `ModSecurity: ` prefix). None when no tail is found (engine notes); BadRecord
    ("ambiguous_record") when the line can be read two ways.
    """
    found: list[Tail] = []
    taken = -1
    starts = sorted(i for p in _STARTS for i in _find_all(msg, p, body))
    for s in starts:
        if s < taken:
            continue  # a later token of a tail already read
        fields: dict[str, str] = {}
        tags: list[str] = []
        data: list[tuple[int, int]] = []
        end = _chain(msg, s, 0, fields, tags, data)
        if end == s:
            continue
        if error_log and not _ends(msg, end):
            trailer = _trailer(msg, body, end)  # the rule message was cut; hostname / uri / unique_id follow
            if trailer < 0:
                continue
            end = _chain(msg, trailer, _TRAILER_RANK, fields, tags, data)
            if not _ends(msg, end):
                continue
        elif not error_log and end != len(msg) and not _truncated(msg, body, end, len(msg)):
            continue
        found.append(Tail(s, end, fields, tags, data[0] if data else None))
        taken = end
    if len(found) > 1:
        raise BadRecord("ambiguous_record", f"{len(found)} ModSecurity metadata tails in one message", "id")
    return found[0] if found else None


def _find_all(text: str, sub: str, start: int) -> list[int]:
    out = []
    i = text.find(sub, start)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def _ends(msg: str, end: int) -> bool:
    return end == len(msg) or msg.startswith(REFERER, end)


def _trailer(msg: str, body: int, end: int) -> int:
    """Where apache2_util.c's `[hostname` / `[uri` trailer starts after a rule message cut at `end`, or -1."""
    for p in (' [hostname "', ' [uri "'):
        for i in _find_all(msg, p, end):
            if _truncated(msg, body, end, i):
                return i
    return -1


def _first_start(msg: str, body: int = 0) -> int:
    """Where the first tail candidate (` [file "` or ` [id "`) at or after `body` starts, or -1."""
    s = msg.find(_STARTS[0], body)
    i = msg.find(_STARTS[1], body, s if s >= 0 else len(msg))
    return i if i >= 0 else s


def _data_value(msg: str, j: int, k: int) -> str | None:
    """The value of the `[data "..."]` token at `j` when that token ends with the `"]` at `k`, else None."""
    value = msg[j + 8:k]
    if '"' not in value and "\\" not in value:  # nothing in it can end it early
        return value
    m = _TOKEN.match(msg, j)
    return value if m is not None and m.end() == k + 2 else None


_TRAILER_KEYS = frozenset(("data", "hostname", "uri", "unique_id"))


def error_log_rule(msg: str, body: int, cache: dict[tuple[str, str], tuple[dict[str, str], tuple[str, ...],
                                                                            RuleMeta | None]]
                   ) -> tuple[dict[str, str], list[str], RuleMeta | None]:
    """(fields, tags, rule) of an Apache error-log rule line: `metadata(msg, body, error_log=True)` and its
    `rule_meta`, with the rule part of the tail cached in `cache` (bounded).

    The rule part without `[data "..."]` (` [file ...` up to the trailer apache2_util.c appends) is the same for
    every match of a rule. A line whose rule part is cached, whose data token ends where the cached one did,
    whose trailer (hostname, uri, unique_id) ends the line or its referer, and which has no candidate start
    after the tail, is read as `metadata` would read it (its first candidate, read through without a cut);
    any other line goes through `metadata`."""
    s = _first_start(msg, body)
    h = msg.find(' [hostname "', s) if s >= 0 else -1
    j = k = -1
    key = ("", "")
    if h >= 0:
        j = msg.find(' [data "', s, h)
        k = msg.find('"]', j + 8, h) if j >= 0 else -1
        key = (msg[s:j], msg[k + 2:h]) if k >= 0 else (msg[s:h], "")
        hit = cache.get(key)
        if hit is not None:
            value = _data_value(msg, j, k) if k >= 0 else None
            if k < 0 or value is not None:
                fields = dict(hit[0])
                if value is not None:
                    fields["data"] = value
                end = _chain(msg, h, _TRAILER_RANK, fields, [], [])
                if _ends(msg, end) and _first_start(msg, end) < 0:
                    return fields, list(hit[1]), hit[2]
    tail = metadata(msg, body, error_log=True)
    if tail is None:
        return {}, [], None
    meta = rule_meta(tail.fields, tail.tags)
    if h >= 0 and tail.start == s and tail.end > h and (tail.data is None) == (k < 0) and (
            tail.data is None or tail.data == (j, k + 2)) and _chain(msg, s, 0, {}, [], []) == tail.end:
        if len(cache) >= RULE_CACHE_SIZE:
            cache.clear()
        cache[key] = ({f: v for f, v in tail.fields.items() if f not in _TRAILER_KEYS}, tuple(tail.tags), meta)
    return tail.fields, tail.tags, meta


def parse_message(msg: str) -> tuple[dict[str, str], list[str]]:
    """The `[key "value"]` fields of one audit-log message's metadata tail (tags apart, in order; a key's
    first value wins; values keep ModSecurity's escapes). Empty when the message has no tail."""
    tail = metadata(msg)
    return (tail.fields, tail.tags) if tail is not None else ({}, [])


def is_summary(rule_id: str, file: str) -> bool:
    """True for the CRS anomaly-score evaluation / correlation rules (they annotate, they do not detect)."""
    return rule_id in SUMMARY_IDS or file.endswith(("-BLOCKING-EVALUATION.conf", "-CORRELATION.conf"))


def tag_info(tags: list[str]) -> tuple[str | None, int | None, list[str]]:
    """(category of the first `attack-*` tag, paranoia level, ATT&CK technique ids) of a rule's CRS tags."""
    category = level = None
    techs: list[str] = []
    for t in tags:
        if t.startswith("attack-"):
            if category is None:
                category = t[7:]
            tech = "T1190" if t.startswith(_T1190) else "T1595" if t.startswith(_T1595) else None
            if tech is not None and tech not in techs:
                techs.append(tech)
        elif level is None and t.startswith("paranoia-level/") and t[15:].isdecimal():
            level = int(t[15:])
    return category, level, techs


def file_category(file: str) -> str | None:
    """CRS rule file name -> category: `...-ATTACK-SQLI.conf` -> "sqli", `REQUEST-913-SCANNER-DETECTION.conf`
    -> "scanner-detection"."""
    base = file.rpartition("/")[2].removesuffix(".conf")
    _, sep, tail = base.partition("-ATTACK-")
    if sep:
        return tail.lower()
    parts = base.split("-", 2)
    return parts[2].lower() if len(parts) == 3 and parts[1].isdigit() else base.lower() or None


class RuleMeta(NamedTuple):
    """What a CRS rule message says about its rule (the same for every match of that rule)."""

    id: str
    name: str
    file: str
    severity: str | None
    tags: tuple[str, ...]
    category: str | None  # from the first `attack-*` tag, else from the file name
    level: int | None  # paranoia level
    techniques: tuple[str, ...]
    summary: bool  # an anomaly-score evaluation / correlation rule
    rank: tuple[int, int]  # primary-rule order: CRS severity, then paranoia level
    points: int  # inbound anomaly points (response rules add to the outbound score)

    def rule(self) -> Rule:
        return Rule(self.id, self.name, self.category, list(self.tags), self.severity)


def rule_meta(fields: dict[str, str], tags: list[str]) -> RuleMeta | None:
    """The rule of a parsed message; None for engine notes without a rule id."""
    rid = fields.get("id")
    if not rid:
        return None
    file = fields.get("file", "")
    sev = fields.get("severity")
    category, level, techs = tag_info(tags)
    return RuleMeta(
        rid, fields.get("msg", ""), file, sev, tuple(tags), category or file_category(file), level,
        tuple(techs), is_summary(rid, file), (_RANK.get(sev or "", 9), level or 1),
        0 if "/RESPONSE-" in file else _POINTS.get(sev or "", 0),
    )


def add_scores(extra: dict[str, Any], rule_id: str, msg: str) -> None:
    """Anomaly scores stated by a CRS summary rule's message, into `extra`."""
    total, scores = stated_scores(rule_id, msg)
    if total is not None:
        extra.setdefault(*total)
    extra.update(scores)


@lru_cache(maxsize=RULE_CACHE_SIZE)  # a summary rule states few distinct scores
def stated_scores(rule_id: str, msg: str) -> tuple[tuple[str, int] | None, tuple[tuple[str, int], ...]]:
    """(total anomaly score, the other scores) a CRS summary rule's message states, as (extra key, value)."""
    total = None
    scores: list[tuple[str, int]] = []
    m = _TOTAL.search(msg)
    if m:
        total = ("outbound_anomaly_score" if "Outbound" in msg else "anomaly_score", int(m.group(1)))
    if rule_id == "980130":
        scores += [(_CATEGORY_SCORE_KEYS[cat], int(val)) for cat, val in _CATEGORY_SCORES.findall(msg)]
    m = _PL_SCORES.search(msg)
    if m:
        prefix = "outbound_anomaly_score_pl" if "Outbound" in msg else "anomaly_score_pl"
        scores += [(f"{prefix}{n}", int(val)) for n, val in enumerate(m.groups(), 1)]
    return total, tuple(scores)


@lru_cache(maxsize=4096)  # a site's requests name few hosts
def host_without_port(host: str) -> str:
    """`shop.lab.local:8080` -> `shop.lab.local`; `[::1]:8080` -> `::1`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def _header(headers: dict[str, Any], name: str) -> str | None:
    v = headers.get(name)
    if v is None:
        low = name.lower()
        for k, val in headers.items():
            if k.lower() == low:
                v = val
                break
    return v if isinstance(v, str) else None


def _obj(d: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    v = d.get(key)
    if isinstance(v, dict):
        return v
    if v is None and not required:
        return {}
    raise BadRecord("missing_field" if v is None else "bad_field", f"{key} is not an object", key)


def _int(v: Any, field: str) -> int | None:
    if v is None:
        return None
    if type(v) is int:
        return v
    raise BadRecord("bad_field", f"{field} is not an integer: {v!r}"[:200], field)


def _addr(tx: dict[str, Any], key: str) -> str | None:
    """An address of the transaction: an IP or absent (anything else is a `bad_ip` dead letter)."""
    v = tx.get(key)
    if v is None or v == "":
        return None
    return as_ip(v) or ip_field(v, f"transaction.{key}")


def _port(tx: dict[str, Any], key: str) -> int | None:
    """A port of the transaction: 0..65535 or absent (anything else is a `bad_port` dead letter)."""
    v = tx.get(key)
    if v is None or (type(v) is int and 0 <= v <= 65535):
        return v
    if type(v) is not int:  # ModSecurity writes a JSON number
        raise BadRecord("bad_port", f"transaction.{key} is not an integer: {v!r}"[:200], f"transaction.{key}")
    return port_field(v, f"transaction.{key}")


def _str(v: Any, field: str) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise BadRecord("bad_field", f"{field} is not a string", field)


@register
class ModSecurityNormalizer(Normalizer):
    name = "modsecurity"
    product = "ModSecurity"
    vendor = "OWASP"
    family = "waf"
    on_host = True
    priority = 70

    def __init__(self) -> None:
        super().__init__()
        self._rules: dict[tuple[str, str], RuleMeta | None] = {}

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and '"transaction"' in text and '"audit_data"' in text

    def _parse(self, msg: str) -> tuple[RuleMeta | None, str | None]:
        """(rule, matched data) of one message.

        The tail without its `[data "..."]` is the same for every match of a rule, so the rule it gives is
        cached (bounded) by (tail before data, tail after data). A cached tail that starts at the message's
        first candidate and was read in full before is read in full again (its values cannot hide a token
        start, and `data` is hex-escaped up to its `"]`), so only new tails go through `metadata`."""
        s = _first_start(msg)
        if s < 0:
            return None, None
        j = msg.find(' [data "', s)
        k = msg.find('"]', j + 8) if j >= 0 else -1
        key = (msg[s:j], msg[k + 2:]) if k >= 0 else (msg[s:], "")
        hit = self._rules.get(key)
        if hit is not None:
            if k < 0:
                return hit, None
            if (value := _data_value(msg, j, k)) is not None:
                return hit, value
        tail = metadata(msg)
        if tail is None:
            return None, None
        meta = rule_meta(tail.fields, tail.tags)
        if tail.start == s and tail.end == len(msg) and (tail.data is None) == (k < 0) and (
                tail.data is None or tail.data == (j, k + 2)):
            if len(self._rules) >= RULE_CACHE_SIZE:
                self._rules.clear()
            self._rules[key] = meta
        return meta, tail.fields.get("data")

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = json_object(rec.text)
        tx, req, resp, ad = d.get("transaction"), d.get("request"), d.get("response"), d.get("audit_data")
        if type(tx) is not dict:
            tx = _obj(d, "transaction")
        if type(req) is not dict:
            req = _obj(d, "request", False)
        if type(resp) is not dict:
            resp = _obj(d, "response", False)
        if type(ad) is not dict:
            ad = _obj(d, "audit_data", False)
        txid = _str(tx.get("transaction_id"), "transaction.transaction_id")
        if not txid:
            raise BadRecord("missing_field", "no transaction id", "transaction.transaction_id")
        ts = tx.get("time")
        if not isinstance(ts, str):
            raise BadRecord("missing_field", "no transaction time", "transaction.time")
        when = parse_clf(ts, "transaction.time")

        messages = ad.get("messages") or ad.get("error_messages") or []
        if type(messages) is not list:
            raise BadRecord("bad_field", "messages is not a list", "audit_data.messages")
        extra: dict[str, Any] = {"transaction_id": txid}
        rules: list[Rule] = []
        summary: list[Rule] = []
        primary: Rule | None = None
        rank = _NO_RANK
        levels: set[int] = set()
        data: list[str] = []
        attack: list[str] = []
        points = 0
        denied = False
        parse = self._parse
        for msg in messages:
            if type(msg) is not str:
                raise BadRecord("bad_field", "message is not a string", "audit_data.messages")
            if not denied and msg.startswith("Access denied"):
                denied = True
            meta, matched = parse(msg)
            if meta is None:
                continue  # engine notes without a rule id
            if meta.summary:
                summary.append(meta.rule())
                add_scores(extra, meta.id, meta.name)
                continue
            rule = meta.rule()
            rules.append(rule)
            if meta.rank < rank:  # the first of the most severe rules
                primary, rank = rule, meta.rank
            points += meta.points
            if meta.level is not None:
                levels.add(meta.level)
            if matched is not None and len(data) < MAX_DATA:
                data.append(matched[:MAX_DATA_LEN])
            for t in meta.techniques:
                if t not in attack:
                    attack.append(t)

        action_obj = ad.get("action")
        status = _int(resp.get("status"), "response.status")
        intercepted = type(action_obj) is dict and action_obj.get("intercepted") is True
        blocked = denied or intercepted or status == 403
        if primary is None:
            if not blocked:
                raise Skipped("no_rule_matched")
            primary = summary[0] if summary else Rule(
                name=str(action_obj.get("message", "")) if type(action_obj) is dict else "")
        extra.setdefault("anomaly_score", points)
        extra["rule_ids"] = list(dict.fromkeys([r.id for r in rules]))
        if levels:
            extra["paranoia_levels"] = sorted(levels)
        if data:
            extra["matched_data"] = data

        http = self._http(req, status)
        host = http.host
        raddr = _addr(tx, "remote_address")
        laddr = _addr(tx, "local_address")
        act = "blocked" if blocked else "detected"
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=when,
            received_at=rec.received_at,
            severity=_SEVERITY.get(primary.severity or "", _HIGH if blocked else _INFO),
            rule=primary, rules=rules or summary, action=act,
            message=f"ModSecurity {act} {http.method or '?'} {host or laddr or ''}{http.url or ''}: "
                    f"{primary.name} ({primary.id or 'no rule'})"[:500],
            src=Endpoint(raddr, _port(tx, "remote_port")),
            dst=Endpoint(laddr, _port(tx, "local_port"), host),
            http=http, host=HostInfo(rec.host, laddr), network=Network("tcp"),
            attack=attack, extra=extra, raw=rec.text,
        )]

    @staticmethod
    def _http(req: dict[str, Any], status: int | None) -> Http:
        line = _str(req.get("request_line"), "request.request_line") or ""
        method, _, rest = line.partition(" ")
        url, sp, proto = rest.rpartition(" ")
        if not sp or not proto.startswith("HTTP/"):
            url = rest
        headers = req.get("headers")
        if headers is None:
            headers = {}
        elif type(headers) is not dict:
            raise BadRecord("bad_field", "headers is not an object", "request.headers")
        host_hdr = _header(headers, "Host")
        return Http(method or None, url or None, host_without_port(host_hdr) if host_hdr else None, status,
                    _header(headers, "User-Agent"))
