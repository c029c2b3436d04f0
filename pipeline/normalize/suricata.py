"""Suricata EVE JSON: `alert` events become alerts; every other event type is context (Skipped).

- severity: alert.severity (rule priority) 1 -> high, 2 -> medium, 3 -> low, 4+ -> info (missing: 3).
- action: alert.action "blocked" (IPS drop) -> blocked, else detected (Suricata's "allowed" means it alerted
  and let the packet pass).
- src/dst: the attacker is the flow initiator. The rule's own `alert.source`/`alert.target` win when present;
  else the `flow` object's original client/server (src_ip/dest_ip, so an alert on a server's `to_client` 403
  response still has the client as src); else the packet's addresses, swapped for `to_client` alerts.
- rule metadata (ET's signature_severity, attack_target, cve, mitre_tactic_id, ...) goes to `extra`
  (one value -> scalar, several -> list; cve as CVE-YYYY-N; created_at/updated_at dropped), except `tag`
  (-> rule.tags) and `mitre_technique_id` (-> attack).
- addresses and ports: every `src_ip` / `dest_ip` (flow, packet, `alert.source` / `alert.target`) must be an
  IP address and every port 0..65535; a record with anything else is a dead letter (`bad_ip` / `bad_port`,
  naming the field): Suricata writes no other values, so such a record is forged or corrupt, and an actor
  address that is not an address must never reach a block.
- `anomaly` events (protocol decoder anomalies) are Skipped("anomaly"): Suricata raises an alert of its own
  (the `SURICATA ...` decoder signatures) when the anomaly matters, so they would double-count.
- dns/http/flow/fileinfo/stats/ssh/tls/netflow/... -> Skipped(event_type); unknown -> Skipped("other:<type>").
"""

from __future__ import annotations

from typing import Any

from pipeline.normalize._jsonrec import json_object
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, ip_field, port_field, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_iso
from pipeline.schema import Alert, Dns, Endpoint, HostInfo, Http, Network, Rule

SEVERITY_LABEL = {1: "high", 2: "medium", 3: "low"}
CONTEXT_EVENTS = frozenset({
    "anomaly", "dns", "http", "flow", "fileinfo", "stats", "ssh", "tls", "netflow", "drop", "smb", "ftp",
    "ftp_data", "smtp", "krb5", "dhcp", "rdp", "sip", "snmp", "mqtt", "http2", "quic", "ike", "nfs", "tftp",
    "rfb", "dnp3", "modbus", "pgsql", "dcerpc", "bittorrent_dht", "frame", "arp", "files", "websocket",
    "ldap", "doh2", "pop3", "enip",
})
_DROPPED_METADATA = frozenset({"created_at", "updated_at"})


def _metadata(meta: Any, extra: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Rule metadata into `extra`; returns (tags, ATT&CK technique ids)."""
    if not isinstance(meta, dict):
        return [], []
    tags: list[str] = []
    attack: list[str] = []
    for k, v in meta.items():
        if k in _DROPPED_METADATA:
            continue
        if isinstance(v, str):
            v = [v]
        vals = [x for x in v if isinstance(x, str)] if isinstance(v, list) else []
        if not vals:
            continue
        if k == "tag":
            tags = vals
        elif k == "mitre_technique_id":
            attack = vals
        else:
            if k == "cve":
                vals = [c.replace("_", "-") for c in vals]
            extra[k] = vals[0] if len(vals) == 1 else vals
    return tags, attack


def _endpoints(d: dict[str, Any], alert: dict[str, Any]) -> tuple[Endpoint, Endpoint, Endpoint]:
    """(attacker side, target side, server side) endpoints; see the module docstring."""
    flow = d.get("flow")
    if isinstance(flow, dict) and flow.get("src_ip") and flow.get("dest_ip"):
        client = _ep(flow["src_ip"], flow.get("src_port"), "flow.src_ip", "flow.src_port")
        server = _ep(flow["dest_ip"], flow.get("dest_port"), "flow.dest_ip", "flow.dest_port")
    else:
        client = _ep(d.get("src_ip"), d.get("src_port"), "src_ip", "src_port")
        server = _ep(d.get("dest_ip"), d.get("dest_port"), "dest_ip", "dest_port")
        if d.get("direction") == "to_client":
            client, server = server, client
    s, t = alert.get("source"), alert.get("target")
    if isinstance(s, dict) and isinstance(t, dict) and s.get("ip") and t.get("ip"):
        src = _ep(s.get("ip"), s.get("port"), "alert.source.ip", "alert.source.port")
        dst = _ep(t.get("ip"), t.get("port"), "alert.target.ip", "alert.target.port")
        return src, dst, src if src.ip == server.ip and src.port == server.port else dst
    return client, server, server


def _ep(ip: Any, port: Any, ip_key: str, port_key: str) -> Endpoint:
    """An endpoint whose address is an IP and whose port is 0..65535 (else a `bad_ip` / `bad_port` dead letter)."""
    if port is not None and type(port) is not int:
        raise BadRecord("bad_port", f"{port_key} is not an integer: {port!r}"[:200], port_key)
    return Endpoint(ip_field(ip, ip_key) if ip not in (None, "") else None,
                    port_field(port, port_key) if port is not None else None)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _http(h: Any) -> Http | None:
    if not isinstance(h, dict):
        return None
    status = h.get("status")
    return Http(method=_str(h.get("http_method")), url=_str(h.get("url")), host=_str(h.get("hostname")),
                status=status if type(status) is int else None, user_agent=_str(h.get("http_user_agent")))


def _dns(d: Any) -> Dns | None:
    """EVE v2 alert (`query: [...]`), v3 (`queries: [...]`) or a flat `rrname`."""
    if not isinstance(d, dict):
        return None
    q = d.get("query") or d.get("queries")
    if isinstance(q, list) and q and isinstance(q[0], dict):
        d = q[0]
    name = _str(d.get("rrname"))
    return Dns(query=name, rtype=_str(d.get("rrtype"))) if name else None


def _network(d: dict[str, Any]) -> Network:
    flow = d.get("flow")
    nbytes = npkts = None
    if isinstance(flow, dict):
        b = (flow.get("bytes_toserver"), flow.get("bytes_toclient"))
        p = (flow.get("pkts_toserver"), flow.get("pkts_toclient"))
        if type(b[0]) is int and type(b[1]) is int:
            nbytes = b[0] + b[1]
        if type(p[0]) is int and type(p[1]) is int:
            npkts = p[0] + p[1]
    proto = d.get("proto")
    return Network(proto=proto.lower() if isinstance(proto, str) else None,
                   community_id=_str(d.get("community_id")), bytes=nbytes, packets=npkts)


@register
class SuricataNormalizer(Normalizer):
    name = "suricata"
    product = "Suricata"
    vendor = "OISF"
    family = "ids"
    priority = 70

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and '"event_type"' in text and '"timestamp"' in text

    def normalize(self, rec: RawRecord) -> list[Alert]:
        return self.event_alerts(json_object(rec.text), rec)

    def event_alerts(self, d: dict[str, Any], rec: RawRecord, alert_id: str | None = None) -> list[Alert]:
        """The alert of one decoded EVE event that came in `rec` (tenant, times, host and raw text), with
        `alert_id` (default: this normalizer's id of `rec`)."""
        et = d.get("event_type")
        if et != "alert":
            if not isinstance(et, str) or not et:
                raise BadRecord("missing_field", "no event_type", "event_type")
            raise Skipped(et if et in CONTEXT_EVENTS else f"other:{et[:40]}")
        alert = d.get("alert")
        if not isinstance(alert, dict):
            raise BadRecord("missing_field", "alert event without an alert object", "alert")
        sid = alert.get("signature_id")
        if type(sid) is not int:
            raise BadRecord("missing_field" if sid is None else "bad_field", "no integer signature_id",
                            "alert.signature_id")
        ts = d.get("timestamp")
        if not isinstance(ts, str):
            raise BadRecord("missing_field", "no timestamp", "timestamp")
        when = parse_iso(ts, "timestamp")
        sev = alert.get("severity", 3)
        if type(sev) is not int:
            raise BadRecord("bad_field", f"severity is not an integer: {sev!r}"[:200], "alert.severity")
        signature = _str(alert.get("signature")) or ""
        extra: dict[str, Any] = {}
        tags, attack = _metadata(alert.get("metadata"), extra)
        extra.update(signature_id=sid, gid=alert.get("gid"), rev=alert.get("rev"),
                     app_proto=d.get("app_proto"), direction=d.get("direction"), flow_id=d.get("flow_id"))
        rule = Rule(id=str(sid), name=signature, category=_str(alert.get("category")), tags=tags,
                    severity=str(sev))
        src, dst, server = _endpoints(d, alert)
        http = _http(d.get("http"))
        if http is not None and http.host:
            server.hostname = http.host
        host = _str(d.get("host")) or rec.host
        port = f":{dst.port}" if dst.port else ""
        action = "blocked" if alert.get("action") == "blocked" else "detected"
        return [Alert(
            alert_id=self.alert_id(rec) if alert_id is None else alert_id, tenant_id=rec.tenant_id,
            source=self.source, time=when, received_at=rec.received_at,
            severity=severity(SEVERITY_LABEL.get(sev, "info")),
            rule=rule, rules=[rule], action=action,
            message=f"Suricata {action} {src.ip} -> {dst.ip}{port}: {signature} ({sid})"[:500],
            src=src, dst=dst, http=http, host=HostInfo(host) if host else None,
            network=_network(d), dns=_dns(d.get("dns")), attack=attack,
            extra={k: v for k, v in extra.items() if v is not None}, raw=rec.text,
        )]
