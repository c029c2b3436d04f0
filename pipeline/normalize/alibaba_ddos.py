"""Alibaba Cloud Anti-DDoS attack events -> one alert per event. Two documented API shapes, one item per line:
- Anti-DDoS Pro / Premium, DescribeDDosAllEventList `AttackEvents[]`: Ip, Port, EventType (defense |
  blackhole | cc | web-cc), StartTime, EndTime (s), Mbps, Pps, Area.
- Anti-DDoS Origin, DescribeDdosEvent `Events[]`: Ip, Status (defense_begin | defense_end | hole_begin |
  hole_end), StartTime, EndTime (s), Mbps, Pps.

Mappings:
- kind: EventType, else from Status (hole_* -> blackhole, defense_* -> defense).
- severity: blackhole -> critical (the IP is null-routed: the service is unreachable, a P1 condition for the
  Anti-DDoS managed service); defense (traffic scrubbing), cc (connection flood), web-cc (HTTP flood) ->
  medium.
- action: blackhole -> succeeded (the attack overwhelmed scrubbing: the target is offline); defense, cc,
  web-cc -> blocked (the attack traffic was scrubbed or challenged).
- category: the kind (defense, blackhole, cc, web-cc); rule id "ddos:<kind>".
- dst: the attacked IP (a domain name for web-cc) and port; the source of a DDoS is not reported.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.normalize._jsonrec import load
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, as_ip, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_epoch
from pipeline.schema import Alert, Endpoint, HostInfo, Rule

KINDS = {
    "blackhole": ("DDoS blackhole: IP null-routed", "critical", "succeeded"),
    "defense": ("DDoS traffic scrubbing", "medium", "blocked"),
    "cc": ("Connection flood (CC) attack", "medium", "blocked"),
    "web-cc": ("HTTP flood (web resource exhaustion) attack", "medium", "blocked"),
}
STATUS_KIND = {"hole_begin": "blackhole", "hole_end": "blackhole", "defense_begin": "defense",
               "defense_end": "defense"}


@register
class AlibabaDdos(Normalizer):
    name = "alibaba_ddos"
    product = "Alibaba Cloud Anti-DDoS"
    vendor = "Alibaba Cloud"
    family = "ddos"
    priority = 70

    def sniff(self, text: str) -> bool:
        return (text.startswith("{") and '"StartTime"' in text and '"Ip"' in text
                and ('"EventType"' in text or '"Status"' in text))

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = load(rec.text)
        status = d.text("Status")
        kind = d.text("EventType") or STATUS_KIND.get(status or "")
        if kind not in KINDS:
            field = "EventType" if d.has("EventType") or not d.has("Status") else "Status"
            raise BadRecord("bad_field", f"{field}: unknown DDoS event type {kind or status!r}"[:200], field)
        name, label, action = KINDS[kind]
        target = d.text("Ip", required=True)
        ip = as_ip(target)
        if ip is not None:
            dst = Endpoint(ip, d.port("Port"))
        elif kind != "web-cc":
            raise BadRecord("bad_ip", f"Ip: not an IP address: {target!r}"[:200], "Ip")
        else:
            dst = Endpoint(hostname=target, port=d.port("Port"))
        start = parse_epoch(d.integer("StartTime", required=True), "StartTime")
        end_s = d.integer("EndTime")
        end = parse_epoch(end_s, "EndTime") if end_s else None
        mbps, pps = d.integer("Mbps"), d.integer("Pps")
        extra: dict[str, Any] = {"event_type": kind, "status": status, "mbps": mbps, "pps": pps,
                                 "area": d.text("Area"), "end_time": _iso(end),
                                 "duration_s": int((end - start).total_seconds()) if end else None}
        rule = Rule(f"ddos:{kind}", name, kind, ["ddos"] + ([status] if status else []), label)
        port = f":{dst.port}" if dst.port else ""
        peak = f"peak {'?' if mbps is None else mbps} Mbps, {'?' if pps is None else pps} pps"
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=start,
            received_at=rec.received_at, severity=severity(label), rule=rule, rules=[rule], action=action,
            message=f"Anti-DDoS {name} on {dst.ip or dst.hostname}{port} ({peak})",
            dst=dst, host=HostInfo(rec.host, dst.ip) if rec.host or dst.ip else None,
            extra={k: v for k, v in extra.items() if v is not None},
            raw=rec.text,
        )]


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t else None
