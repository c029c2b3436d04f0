"""Apache error log with ModSecurity rule lines (`ModSecurity: Warning. ...` / `Access denied ...`).

A secondary product next to the JSON audit log, and the only one where the audit log is off. Like the audit
log, it gives ONE alert per transaction: the rule lines of a transaction (same `unique_id`) are assembled, the
transaction is blocked when one of its lines says `Access denied`, and it is emitted when its closing summary
line (980130/980140, or the blocking 949110/959100) arrives, when it has been quiet for `IDLE` seconds of log
time, or at flush. `extra.unique_id` (also `extra.transaction_id`, the audit log's key) lets dedup merge it
with the audit log's alert for the same transaction. The anomaly-score summary lines annotate (they close a
transaction, they are not rules of it); other Apache lines (start-up notices, AH000xx) are Skipped("apache")
and ModSecurity's own notices Skipped("modsecurity_notice"). Lines without a unique_id stand alone.
Rule fields, severity, category and ATT&CK mappings are those of `modsecurity`.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, ip_field, make_id, severity
from pipeline.normalize.modsecurity import (
    MAX_DATA_LEN,
    SEVERITY_LABEL,
    error_log_rule,
    host_without_port,
)
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_ctime
from pipeline.schema import Alert, Endpoint, HostInfo, Http, Rule

# `[Tue Nov 24 06:38:34.040951 2026] [security2:error] ` (Apache 2.4) or `[...] [error] ` (2.2).
_HEAD = re.compile(
    r"\[((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d [\d:.]+ \d{4})\] \[(?:[\w-]*:)?\w+\] ")
_MARK = "ModSecurity: "
# ap_escape_errorlog_item(): Apache escapes `\\`, control and 8-bit bytes in the message (not `"`).
_APACHE_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|[\\bnrtv])")
_APACHE_CHARS = {"\\": "\\", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
IDLE = timedelta(seconds=2)
_CLOSING = {"980130", "980140"}


@dataclass(slots=True)
class _Tx:
    """The lines of one transaction seen so far."""

    first: RawRecord
    time: datetime
    last: datetime
    ip: str | None
    port: int | None
    host: str | None
    uri: str | None
    blocked: bool = False
    rules: list[Any] = field(default_factory=list)  # RuleMeta of the real (non-summary) rules
    data: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _apache_unescape(text: str) -> str:
    """Undo Apache's error-log escaping, giving the text ModSecurity wrote (one character per byte)."""
    if "\\" not in text:
        return text
    return _APACHE_ESCAPE.sub(lambda m: chr(int(m[1][1:], 16)) if m[1][0] == "x" else _APACHE_CHARS[m[1]], text)


def _client(head: str) -> tuple[str | None, int | None]:
    """Client ip and port from `[client 1.2.3.4:5678] [client 1.2.3.4]` (Apache's, then ModSecurity's)."""
    values: list[str] = []
    i = head.find("[client ")
    while i >= 0:
        j = head.find("]", i)
        if j < 0:
            break
        values.append(head[i + 8:j])
        i = head.find("[client ", j)
    if not values:
        return None, None
    ip = values[-1]
    first = values[0]
    if first.startswith(ip + ":"):
        return ip_field(ip, "client"), _port(first[len(ip) + 1:])
    if len(values) == 1 and first.count(":") == 1:  # only Apache's `ip:port`
        addr, _, port = first.partition(":")
        return ip_field(addr, "client"), _port(port)
    return ip_field(ip, "client"), None


def _port(s: str) -> int:
    if s.isascii() and s.isdigit() and len(s) <= 5 and int(s) <= 65535:
        return int(s)
    raise BadRecord("bad_port", f"client port is not 0..65535: {s!r}"[:200], "client")


@register
class ModSecErrorNormalizer(Normalizer):
    name = "modsec_error"
    product = "ModSecurity"
    vendor = "OWASP"
    family = "waf"
    on_host = True
    priority = 60
    secondary = True  # the audit log (`modsecurity`) is the primary view of the same transactions

    def sniff(self, text: str) -> bool:
        return text.startswith("[") and _HEAD.match(text) is not None

    def __init__(self) -> None:
        super().__init__()
        self._open: OrderedDict[str, _Tx] = OrderedDict()  # least recently continued first
        self._rules: dict[tuple[str, str], Any] = {}  # rule parts of tails read before (error_log_rule)

    def normalize(self, rec: RawRecord) -> list[Alert]:
        m = _HEAD.match(rec.text)
        if m is None:
            raise BadRecord("bad_format", "not an Apache error-log line")
        text = _apache_unescape(rec.text)  # what ModSecurity wrote: its own escapes, attacker text in between
        at = text.find(_MARK, m.end())
        if at < 0:
            raise Skipped("apache")
        body = at + len(_MARK)
        if text.startswith("Access denied", body):
            blocked = True
        elif text.startswith("Warning", body):
            blocked = False
        else:
            raise Skipped("modsecurity_notice")
        fields, _, meta = error_log_rule(text, body, self._rules)
        if meta is None:
            raise BadRecord("missing_field", "ModSecurity rule line without [id]", "id")
        when = parse_ctime(m.group(1))
        uid = fields.get("unique_id") or make_id(rec.text)
        tx = self._open.get(uid)
        if tx is None:
            ip, port = _client(text[m.end():at])
            hostname = fields.get("hostname")
            tx = self._open[uid] = _Tx(rec, when, when, ip, port, host_without_port(hostname) if hostname
                                       else None, fields.get("uri"))
        else:
            self._open.move_to_end(uid)
        tx.last = max(tx.last, when)
        tx.blocked = tx.blocked or blocked
        tx.lines.append(rec.text)
        if not meta.summary:
            tx.rules.append(meta)
            if "data" in fields and len(tx.data) < 5:
                tx.data.append(fields["data"][:MAX_DATA_LEN])
        out = []
        if (meta.summary and (meta.id in _CLOSING or blocked)) or "unique_id" not in fields:
            out.append(self._emit(uid))
        while self._open:  # transactions gone quiet, least recently continued first
            other, t = next(iter(self._open.items()))
            if when - t.last <= IDLE:
                break
            out.append(self._emit(other))
        alerts = [a for a in out if a is not None]
        if not alerts:
            raise Skipped("anomaly_summary" if meta.summary else "buffered")
        return alerts

    def buffered(self) -> Iterable[RawRecord]:
        return (tx.first for tx in self._open.values())

    def discard(self, where: Callable[[RawRecord], bool]) -> None:
        for uid in [u for u, tx in self._open.items() if where(tx.first)]:
            del self._open[uid]

    def flush(self) -> list[Alert]:
        return [a for a in (self._emit(u) for u in list(self._open)) if a is not None]

    def _emit(self, uid: str) -> Alert | None:
        tx = self._open.pop(uid)
        if not tx.rules:
            return None  # only summary lines: the audit log (or nothing) tells more
        primary = min(tx.rules, key=lambda r: r.rank)
        rules: list[Rule] = [r.rule() for r in tx.rules]
        rule = primary.rule()
        action = "blocked" if tx.blocked else "detected"
        extra: dict[str, Any] = {"rule_ids": list(dict.fromkeys(r.id for r in rules)),
                                 "unique_id": uid, "transaction_id": uid}
        levels = sorted({r.level for r in tx.rules if r.level is not None})
        if levels:
            extra["paranoia_levels"] = levels
        if tx.data:
            extra["matched_data"] = tx.data
        rec = tx.first
        return Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=tx.time,
            received_at=rec.received_at,
            severity=severity(SEVERITY_LABEL.get(rule.severity or "", "high" if tx.blocked else "info")),
            rule=rule, rules=rules, action=action,
            message=f"ModSecurity {action} {tx.host or ''}{tx.uri or ''}: {rule.name} ({rule.id})"[:500],
            src=Endpoint(tx.ip, tx.port), dst=Endpoint(hostname=tx.host), http=Http(url=tx.uri, host=tx.host),
            host=HostInfo(rec.host) if rec.host else None,
            attack=list(dict.fromkeys(t for r in tx.rules for t in r.techniques)), extra=extra,
            raw="\n".join(tx.lines),
        )
