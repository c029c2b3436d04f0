"""Apache error log with ModSecurity rule lines (`ModSecurity: Warning. ...` / `Access denied ...`).

A secondary product next to the JSON audit log: one alert per rule line, tied to the audit transaction by
`extra.unique_id` (also set as `extra.transaction_id`, the audit log's key). The CRS anomaly-score summary
lines (949110, 959100, 980130, ...) annotate and are Skipped("anomaly_summary"); other Apache lines (start-up
notices, AH000xx) are Skipped("apache") and ModSecurity's own notices Skipped("modsecurity_notice").
Rule fields, severity, category and ATT&CK mappings are those of `modsecurity`.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, severity
from pipeline.normalize.modsecurity import (
    MAX_DATA_LEN,
    SEVERITY_LABEL,
    host_without_port,
    parse_message,
    rule_meta,
)
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_ctime
from pipeline.schema import Alert, Endpoint, HostInfo, Http

# `[Tue Nov 24 06:38:34.040951 2026] [security2:error] ` (Apache 2.4) or `[...] [error] ` (2.2).
_HEAD = re.compile(
    r"\[((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d [\d:.]+ \d{4})\] \[(?:[\w-]*:)?\w+\] ")
_MARK = "ModSecurity: "


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
    if first.startswith(ip + ":") and first[len(ip) + 1:].isdigit():
        return ip, int(first[len(ip) + 1:])
    if len(values) == 1 and first.count(":") == 1:  # only Apache's `ip:port`
        addr, _, port = first.partition(":")
        return addr, int(port) if port.isdigit() else None
    return ip, None


@register
class ModSecErrorNormalizer(Normalizer):
    name = "modsec_error"
    product = "ModSecurity"
    vendor = "OWASP"
    family = "waf"
    priority = 60
    secondary = True  # the audit log (`modsecurity`) is the primary view of the same transactions

    def sniff(self, text: str) -> bool:
        return text.startswith("[") and _HEAD.match(text) is not None

    def normalize(self, rec: RawRecord) -> list[Alert]:
        text = rec.text
        m = _HEAD.match(text)
        if m is None:
            raise BadRecord("bad_format", "not an Apache error-log line")
        at = text.find(_MARK, m.end())
        if at < 0:
            raise Skipped("apache")
        body = text[at + len(_MARK):]
        if body.startswith("Access denied"):
            action = "blocked"
        elif body.startswith("Warning"):
            action = "detected"
        else:
            raise Skipped("modsecurity_notice")
        fields, tags = parse_message(body)
        meta = rule_meta(fields, tags)
        if meta is None:
            raise BadRecord("missing_field", "ModSecurity rule line without [id]", "id")
        if meta.summary:
            raise Skipped("anomaly_summary")
        rid = meta.id
        when = parse_ctime(m.group(1))
        ip, port = _client(text[m.end():at])
        rule = meta.rule()
        hostname = fields.get("hostname")
        host = host_without_port(hostname) if hostname else None
        uid = fields.get("unique_id")
        extra: dict[str, Any] = {"rule_ids": [rid]}
        if uid:
            extra["unique_id"] = extra["transaction_id"] = uid
        if meta.level is not None:
            extra["paranoia_levels"] = [meta.level]
        if "data" in fields:
            extra["matched_data"] = [fields["data"][:MAX_DATA_LEN]]
        uri = fields.get("uri")
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=when,
            received_at=rec.received_at, severity=severity(SEVERITY_LABEL.get(rule.severity or "", "info")),
            rule=rule, rules=[rule], action=action,
            message=f"ModSecurity {action} {host or ''}{uri or ''}: {rule.name} ({rid})"[:500],
            src=Endpoint(ip, port), dst=Endpoint(hostname=host), http=Http(url=uri, host=host),
            host=HostInfo(rec.host) if rec.host else None,
            attack=list(meta.techniques), extra=extra, raw=text,
        )]
