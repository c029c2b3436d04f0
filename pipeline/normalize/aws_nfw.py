"""AWS Network Firewall alert logs (stateful engine: Suricata EVE inside) -> one alert per `alert` event.

Record: `{"firewall_name", "availability_zone", "event_timestamp", "event": {<Suricata EVE event>}}`. The
`event` is normalized by the Suricata normalizer (`pipeline.normalize.suricata`, the one EVE mapping of the
project), then re-attributed to this product: source, alert id and raw record are this record's, the host is
the firewall, and `firewall_name` / `availability_zone` join `extra`. Flow/netflow and TLS log records
(`event.event_type` other than "alert") are skipped with the event type as the reason, as Suricata's are.

Mappings (Suricata's):
- severity: `event.alert.severity` 1 -> high, 2 -> medium, 3 -> low, 4+ -> info.
- action: `event.alert.action` "blocked" (drop / reject rule) -> blocked; "allowed" (alert rule) -> detected.
- category: `event.alert.category`; rule id `event.alert.signature_id`; ATT&CK from the rule's
  `mitre_technique_id` metadata.
"""

from __future__ import annotations

import msgspec

from pipeline.normalize._jsonrec import load
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord
from pipeline.normalize.registry import register
from pipeline.normalize.suricata import SuricataNormalizer
from pipeline.schema import Alert, HostInfo


@register
class AwsNetworkFirewall(Normalizer):
    name = "aws_nfw"
    product = "AWS Network Firewall"
    vendor = "Amazon Web Services"
    family = "firewall"
    priority = 75  # before Suricata, whose sniff would also accept the wrapped EVE event

    def __init__(self) -> None:
        super().__init__()
        self._eve = SuricataNormalizer()

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and '"firewall_name"' in text and '"event"' in text

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = load(rec.text)
        fw = d.text("firewall_name", required=True)
        ev = d.sub("event", required=True)
        try:  # the wrapped EVE event, read in place: its alert has this record's id and raw text
            alerts = self._eve.event_alerts(ev.d, rec, self.alert_id(rec))
        except BadRecord as b:
            b.field = f"event.{b.field}" if b.field else "event"
            raise
        extra = {"firewall_name": fw} | d.texts("availability_zone")
        return [msgspec.structs.replace(
            a, source=self.source, host=HostInfo(fw), extra=a.extra | extra,
            message=f"AWS Network Firewall {a.action} {a.src.ip} -> {a.dst.ip}: {a.rule.name} ({a.rule.id})",
        ) for a in alerts]
