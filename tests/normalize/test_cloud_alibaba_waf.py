"""Alibaba Cloud WAF (SLS log export): golden alerts, skips, malformed records, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import Skipped

from ._cloud import assert_bad, edit, golden, records, whole
from .conftest import check_contract, json_mutated, mutated, normalize_one

FMT = "alibaba_waf"
RECS = records(FMT)
SQLI_BLOCK, CC_CAPTCHA, BLACKLIST, OBSERVE_LFI, ACCESS, SCANNER, CAPTCHA_PASS = RECS
SOURCE = {"product": "Alibaba Cloud WAF", "vendor": "Alibaba Cloud", "family": "waf", "format": FMT}
EXTRA = {"request_traceid": "7837b11715410386943437009ea1f0", "matched_host": "www.example.com",
         "region": "cn"}


def test_web_core_sqli_block():
    rule = {"id": "115341", "name": "waf:sqli", "category": "sqli", "tags": ["waf", "block"],
            "severity": "high"}
    assert golden(FMT, SQLI_BLOCK) == {
        "source": SOURCE, "time": "2025-11-24T14:15:03Z", "severity": {"label": "high", "score": 75},
        "rule": rule, "rules": [rule], "action": "blocked",
        "message": "Alibaba Cloud WAF block GET "
                   "www.example.com/product.php?id=1%27%20union%20select%20user()-- (waf:sqli)",
        "src": {"ip": "198.51.100.23", "port": 51324}, "dst": {"port": 443, "hostname": "www.example.com"},
        "http": {"method": "GET", "url": "/product.php?id=1%27%20union%20select%20user()--",
                 "host": "www.example.com", "status": 405, "user_agent": "sqlmap/1.7.2#stable (https://sqlmap.org)"},
        "host": {"name": "www.example.com"},
        "extra": {"final_plugin": "waf", "final_action": "block"} | EXTRA,
    }


def test_observation_mode_match_is_detected():
    rule = {"id": "113014", "name": "waf:lfi", "category": "lfi", "tags": ["waf", "block", "test"],
            "severity": "high"}
    assert golden(FMT, OBSERVE_LFI) == {
        "source": SOURCE, "time": "2025-11-24T14:18:20Z", "severity": {"label": "high", "score": 75},
        "rule": rule, "rules": [rule], "action": "detected",
        "message": "Alibaba Cloud WAF matched GET www.example.com/index.php?page=..%2F..%2F..%2Fetc%2Fpasswd "
                   "(waf:lfi)",
        "src": {"ip": "203.0.113.9", "port": 51324}, "dst": {"port": 443, "hostname": "www.example.com"},
        "http": {"method": "GET", "url": "/index.php?page=..%2F..%2F..%2Fetc%2Fpasswd",
                 "host": "www.example.com", "status": 404, "user_agent": "Mozilla/5.0"},
        "host": {"name": "www.example.com"},
        "extra": EXTRA | {"upstream_status": 200},
    }


@pytest.mark.parametrize(("line", "action", "rule_id", "name", "category", "label"), [
    (CC_CAPTCHA, "blocked", "20023871", "cc:custom", "cc", "medium"),
    (BLACKLIST, "blocked", "20117735", "acl:blacklist", "acl", "low"),
    (SCANNER, "blocked", "30012", "antiscan:scantools", "antiscan", "low"),
    (CAPTCHA_PASS, "allowed", "20023871", "cc:custom", "cc", "info"),
])
def test_modules_actions_and_severities(line, action, rule_id, name, category, label):
    d = golden(FMT, line)
    r = d["rule"]
    assert (d["action"], r["id"], r["name"], r["category"], d["severity"]["label"]) == (
        action, rule_id, name, category, label)


def test_final_rule_without_module_fields_and_several_modules():
    def bare(d: dict) -> None:
        for k in ("waf_action", "waf_rule_id", "waf_rule_type", "waf_test"):
            d.pop(k)

    [a] = normalize_one(FMT, edit(SQLI_BLOCK, bare))
    assert (a.rule.id, a.rule.name, a.rule.category, a.rule.tags, a.action) == (
        "115341", "waf:sqli", "sqli", ["waf", "block"], "blocked")

    def also_acl(d: dict) -> None:
        d.update(acl_action="block", acl_rule_id="20117735", acl_rule_type="custom")

    [a] = normalize_one(FMT, edit(SQLI_BLOCK, also_acl))
    assert [(r.id, r.category) for r in a.rules] == [("115341", "sqli"), ("20117735", "acl")]
    assert a.rule.id == "115341"


def test_epoch_time_and_src_ip_fallback():
    def sls_only(d: dict) -> None:
        d.pop("time")
        d.pop("real_client_ip")
        d["__time__"] = "1764000000"

    [a] = normalize_one(FMT, edit(SQLI_BLOCK, sls_only))
    assert (a.time.isoformat(), a.src.ip) == ("2025-11-24T16:00:00+00:00", "198.51.100.23")


def test_plain_access_log_is_skipped():
    with pytest.raises(Skipped) as e:
        normalize_one(FMT, ACCESS)
    assert e.value.reason == "allowed"


def test_whole_fixture_file():
    r = whole(FMT)
    assert (r.records, len(r.alerts), len(r.dead), dict(r.skipped)) == (7, 6, 0, {"alibaba_waf:allowed": 1})
    assert [a.action for a in r.alerts] == ["blocked", "blocked", "blocked", "detected", "blocked", "allowed"]


@pytest.mark.parametrize(("change", "reason", "field"), [
    (lambda d: d.update(final_action="explode"), "bad_field", "final_action"),
    (lambda d: d.pop("final_plugin"), "missing_field", "final_plugin"),
    (lambda d: d.pop("final_rule_id"), "missing_field", "final_rule_id"),
    (lambda d: d.update(time="22:15:03"), "bad_timestamp", "time"),
    (lambda d: d.update(real_client_ip="198.51.100"), "bad_ip", "real_client_ip"),
    (lambda d: d.update(status="four hundred"), "bad_field", "status"),
    (lambda d: d.update(remote_port="70000"), "bad_field", "remote_port"),
    (lambda d: d.update(request_path=["/"]), "bad_field", "request_path"),
    (lambda d: [d.pop("time"), d.pop("__topic__")], "missing_field", "__time__"),
])
def test_malformed_records_are_dead_letters(change, reason, field):
    assert_bad(FMT, edit(SQLI_BLOCK, change), reason, field)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RECS) | json_mutated(RECS))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
