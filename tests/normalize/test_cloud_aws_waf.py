"""AWS WAF web ACL logs: golden alerts from the documented examples, skips, malformed records, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import Skipped

from ._cloud import assert_bad, edit, golden, records, whole
from .conftest import check_contract, json_mutated, mutated, normalize_one

FMT = "aws_waf"
RECS = records(FMT)
RATE, SQLI, COUNT_XSS, PLAIN, CAPTCHA, ALLOW_LIST, ANON_IP = RECS
SOURCE = {"product": "AWS WAF", "vendor": "Amazon Web Services", "family": "waf", "format": FMT}
ACL = "arn:aws:wafv2:eu-west-3:111122223333:regional/webacl/prod-web-acl/0f5f7f20-5b8a-4c6e-9f1e-3a7e4b1c2d3e"
API_HOST = "rjvegx5guh.execute-api.eu-west-3.amazonaws.com"


def test_rate_based_block_documented_example():
    rule = {"id": "RateBasedRule", "name": "RateBasedRule", "category": "rate-based", "tags": ["RATE_BASED"],
            "severity": "medium"}
    assert golden(FMT, RATE) == {
        "source": SOURCE, "time": "2023-05-06T06:46:19.981000Z", "severity": {"label": "medium", "score": 50},
        "rule": rule, "rules": [rule], "action": "blocked",
        "message": f"AWS WAF BLOCK GET {API_HOST}/CanaryTest (RateBasedRule)",
        "src": {"ip": "52.46.82.45"}, "dst": {"hostname": API_HOST},
        "http": {"method": "GET", "url": "/CanaryTest", "host": API_HOST,
                 "user_agent": "RateBasedRuleTestKoipOneKeyModulePV2"},
        "host": {"name": API_HOST},
        "extra": {"webacl_id": ACL, "terminating_rule_type": "RATE_BASED", "http_source": "APIGW",
                  "http_source_id": "EXAMPLE11:rjvegx5guh:CanaryTest", "country": "FR",
                  "request_id": "Ed0AiHF_CGYF-DA=", "waf_action": "BLOCK"},
    }


def test_managed_sqli_block():
    label = "awswaf:managed:aws:sql-database:SQLi_QueryArguments"
    rule = {"id": "SQLi_QUERYARGUMENTS", "name": "AWSManagedRulesSQLiRuleSet:SQLi_QUERYARGUMENTS",
            "category": "sqli", "tags": ["AWS#AWSManagedRulesSQLiRuleSet", label], "severity": "high"}
    assert golden(FMT, SQLI) == {
        "source": SOURCE, "time": "2025-11-24T16:00:12.345000Z", "severity": {"label": "high", "score": 75},
        "rule": rule, "rules": [rule], "action": "blocked",
        "message": "AWS WAF BLOCK GET shop.example.com/products?id=1%20OR%201=1 "
                   "(AWSManagedRulesSQLiRuleSet:SQLi_QUERYARGUMENTS)",
        "src": {"ip": "198.51.100.23"}, "dst": {"hostname": "shop.example.com"},
        "http": {"method": "GET", "url": "/products?id=1%20OR%201=1", "host": "shop.example.com",
                 "user_agent": "sqlmap/1.7.2#stable (https://sqlmap.org)"},
        "host": {"name": "shop.example.com"},
        "extra": {"webacl_id": ACL, "terminating_rule_type": "MANAGED_RULE_GROUP", "http_source": "ALB",
                  "http_source_id": "111122223333-app/shop-alb/1e3b6eac51c9c245", "country": "NL",
                  "request_id": "1-6926a1bc-4c5d7e8f9a0b1c2d3e4f5a6b", "labels": [label],
                  "waf_action": "BLOCK"},
    }


def test_count_mode_match_allowed_by_default_action_is_detected():
    d = golden(FMT, COUNT_XSS)
    assert d["rule"] == {
        "id": "CrossSiteScripting_BODY", "name": "AWSManagedRulesCommonRuleSet:CrossSiteScripting_BODY",
        "category": "xss", "severity": "high",
        "tags": ["AWS#AWSManagedRulesCommonRuleSet", "COUNT",
                 "awswaf:managed:aws:core-rule-set:CrossSiteScripting_Body"]}
    assert (d["action"], d["severity"]["label"], d["extra"]["waf_action"]) == ("detected", "high", "ALLOW")
    assert (d["http"]["host"], d["http"]["method"], d["http"]["url"]) == (
        "shop.example.com", "POST", "/comments")


def test_captcha_allow_list_and_ip_reputation():
    d = golden(FMT, CAPTCHA)
    assert (d["action"], d["rule"]["id"], d["rule"]["category"], d["severity"]["label"]) == (
        "blocked", "CaptchaLoginPage", "custom", "medium")
    assert (d["http"]["status"], d["http"]["url"], d["extra"]["captcha_failure"]) == (
        405, "/login?next=%2Faccount", "TOKEN_MISSING")
    d = golden(FMT, ALLOW_LIST)
    assert (d["action"], d["rule"]["id"], d["severity"]["label"]) == ("allowed", "AllowOfficeIPs", "info")
    d = golden(FMT, ANON_IP)
    assert (d["action"], d["rule"]["id"], d["rule"]["category"], d["severity"]["label"]) == (
        "blocked", "HostingProviderIPList", "ip-reputation", "low")
    assert (d["src"], d["http"]["url"], d["http"]["host"]) == (
        {"ip": "185.254.196.186"}, "/.env", "52.54.199.152")


def test_plain_allowed_request_is_skipped():
    with pytest.raises(Skipped) as e:
        normalize_one(FMT, PLAIN)
    assert e.value.reason == "allowed"


def test_default_action_block_and_label_only_matches():
    def default_block(d: dict) -> None:
        d["action"] = "BLOCK"

    [a] = normalize_one(FMT, edit(PLAIN, default_block))
    assert (a.action, a.rule.id, a.rule.category, a.severity.label) == (
        "blocked", "Default_Action", "default-action", "low")

    def label_only(d: dict) -> None:
        d["labels"] = [{"name": "awswaf:managed:aws:bot-control:bot:category:http_library"}]

    [a] = normalize_one(FMT, edit(PLAIN, label_only))
    name = "awswaf:managed:aws:bot-control:bot:category:http_library"
    assert (a.action, a.rule.id, a.rule.name, a.rule.category, a.rule.tags, a.rules) == (
        "detected", "label", name, "custom", [name], [a.rule])


def test_rules_list_holds_terminating_count_and_rate_matches():
    def more(d: dict) -> None:
        d["nonTerminatingMatchingRules"] = [{"ruleId": "CountAdminPaths", "action": "COUNT"}]
        d["ruleGroupList"][0]["nonTerminatingMatchingRules"] = [
            {"ruleId": "GenericLFI_QUERYARGUMENTS", "action": "COUNT"}]
        d["rateBasedRuleList"] = [{"rateBasedRuleName": "PerIpLimit", "limitKey": "IP",
                                   "maxRateAllowed": 500}]

    [a] = normalize_one(FMT, edit(SQLI, more))
    assert [(r.id, r.category, r.severity) for r in a.rules] == [
        ("SQLi_QUERYARGUMENTS", "sqli", "high"), ("GenericLFI_QUERYARGUMENTS", "lfi", "high"),
        ("CountAdminPaths", "custom", "medium"), ("PerIpLimit", "rate-based", "medium")]
    assert a.rule.id == "SQLi_QUERYARGUMENTS"


def test_whole_fixture_file():
    r = whole(FMT)
    assert (r.records, len(r.alerts), len(r.dead), dict(r.skipped)) == (7, 6, 0, {"aws_waf:allowed": 1})
    assert [a.action for a in r.alerts] == ["blocked", "blocked", "detected", "blocked", "allowed", "blocked"]
    assert len({a.alert_id for a in r.alerts}) == 6


@pytest.mark.parametrize(("change", "reason", "field"), [
    (lambda d: d.pop("action"), "missing_field", "action"),
    (lambda d: d.update(action="DROP"), "bad_field", "action"),
    (lambda d: d.pop("timestamp"), "missing_field", "timestamp"),
    (lambda d: d.update(timestamp="yesterday"), "bad_field", "timestamp"),
    (lambda d: d.update(timestamp=10**18), "bad_timestamp", "timestamp"),
    (lambda d: d.pop("terminatingRuleId"), "missing_field", "terminatingRuleId"),
    (lambda d: d.pop("httpRequest"), "missing_field", "httpRequest"),
    (lambda d: d["httpRequest"].update(clientIp="not-an-ip"), "bad_ip", "httpRequest.clientIp"),
    (lambda d: d["httpRequest"].pop("clientIp"), "missing_field", "httpRequest.clientIp"),
    (lambda d: d["httpRequest"].update(headers="Host: x"), "bad_field", "httpRequest.headers"),
    (lambda d: d["ruleGroupList"][1]["terminatingRule"].pop("ruleId"), "missing_field",
     "ruleGroupList[1].terminatingRule.ruleId"),
    (lambda d: d.update(labels="sqli"), "bad_field", "labels"),
])
def test_malformed_records_are_dead_letters(change, reason, field):
    assert_bad(FMT, edit(SQLI, change), reason, field)


def test_not_json():
    assert_bad(FMT, SQLI[:-20], "bad_json", "record")
    assert_bad(FMT, "[1, 2]", "bad_json", "record")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RECS) | json_mutated(RECS))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
