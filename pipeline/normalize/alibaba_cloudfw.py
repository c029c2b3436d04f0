"""Alibaba Cloud Firewall logs (Simple Log Service JSON export: `internet_log`, `vpc_firewall_log`,
`internet_ips_log`, `vpc_ips_log`, ...) -> one alert per session that hit an intrusion-prevention (IPS),
threat-intelligence or virtual-patch rule.

Sessions with no IPS rule nor attack type are skipped: "acl" when an access-control policy dropped them
(`rule_result` drop), "traffic" otherwise. An all-zero rule id (00000000-0000-0000-0000-000000000000)
means "no rule".

Mappings:
- action (`rule_result`): drop -> blocked; alert -> detected (IPS in monitor mode, the session went
  through); pass -> allowed.
- severity (`vul_level`, the rule's risk level): 1 / low -> low, 2 / medium -> medium, 3 / high -> high;
  absent -> medium. Never critical: a signature match alone is no confirmed compromise.
- category: `attack_type_name_en` (e.g. "Mining Behavior", "Command Execution"), else `attack_type_name`,
  else `attack_type`; rule id `ips_rule_id` (else `rule_id`), rule name `ips_rule_name_en` (else
  `ips_rule_name`, `rule_name`).
- src/dst: `src_ip`/`dst_ip` as logged (the session initiator is the source for both `direction` in and
  out); host = the protected asset (dst for inbound, src for outbound).
"""

from __future__ import annotations

from typing import Any

from pipeline.normalize._jsonrec import Rec, load
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_epoch
from pipeline.schema import Alert, Endpoint, HostInfo, Network, Rule

NO_RULE = "00000000-0000-0000-0000-000000000000"
ACTIONS = {"drop": "blocked", "alert": "detected", "pass": "allowed"}
LEVELS = {"1": "low", "2": "medium", "3": "high", "low": "low", "medium": "medium", "high": "high"}


def _rule_id(d: Rec) -> str | None:
    for key in ("ips_rule_id", "rule_id"):
        v = d.text(key)
        if v is not None and v != NO_RULE:
            return v
    return None


@register
class AlibabaCloudFirewall(Normalizer):
    name = "alibaba_cloudfw"
    product = "Alibaba Cloud Firewall"
    vendor = "Alibaba Cloud"
    family = "firewall"
    priority = 70

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and '"rule_result"' in text and '"src_ip"' in text

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = load(rec.text)
        result = d.text("rule_result", required=True).lower()
        if result not in ACTIONS:
            raise BadRecord("bad_field", f"rule_result: unknown value {result!r}"[:200], "rule_result")
        rid = _rule_id(d)
        attack = d.first("attack_type_name_en", "attack_type_name", "attack_type")
        if rid is None and attack is None:
            raise Skipped("acl" if result == "drop" else "traffic")
        level = d.text("vul_level")
        label = LEVELS.get(level.lower(), "") if level is not None else "medium"
        if not label:
            raise BadRecord("bad_field", f"vul_level: unknown value {level!r}"[:200], "vul_level")
        name = d.first("ips_rule_name_en", "ips_rule_name", "rule_name") or attack or rid or ""
        tags = list(d.texts("log_type", "direction").values())
        rule = Rule(rid or "", name, attack, tags, label)

        src = Endpoint(d.ip("src_ip", required=True), d.port("src_port"))
        dst = Endpoint(d.ip("dst_ip", required=True), d.port("dst_port"), d.text("domain"))
        direction = d.text("direction")
        asset = src.ip if direction == "out" else dst.ip
        proto = d.first("ip_protocol", "proto")
        start = d.integer("start_time")
        when = (parse_epoch(start, "start_time") if start is not None
                else parse_epoch(d.integer("__time__", required=True), "__time__"))
        extra: dict[str, Any] = d.texts(
            "log_type", "direction", "rule_source", "vul_level", "attack_type_name", "app_name", "url",
            "aliuid", "region_id", "cloud_instance_id", "firewall_id", "country_id")
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=when,
            received_at=rec.received_at, severity=severity(label), rule=rule, rules=[rule],
            action=ACTIONS[result],
            message=f"Alibaba Cloud Firewall {result} {name} {src.ip}:{src.port} -> {dst.ip}:{dst.port}",
            src=src, dst=dst, host=HostInfo(rec.host, asset),
            network=Network(proto.lower() if proto else None, bytes=d.integer("total_packet_bytes"),
                            packets=d.integer("total_packet_count")),
            extra=extra, raw=rec.text,
        )]
