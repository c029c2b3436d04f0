"""Apache error log with ModSecurity rule lines: golden lines, the whole real file, malformed lines, fuzz."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import BadRecord, Skipped
from pipeline.schema import to_builtins

from .conftest import check_contract, detect, fixture, fixture_lines, mutated, normalize_one, run_file, run_text

FMT = "modsec_error"
SAMPLES = fixture_lines("waf/apache_error_samples.log")
(CONFIGURED, MODSEC_NOTICE, APACHE_NOTICE, BENIGN_IP_HOST, SQLI_1, SQLI_2, SQLI_3, SQLI_4, INBOUND_DENIED,
 CORRELATION, OUTBOUND_DENIED) = SAMPLES


def test_sqli_warning_golden():
    [a] = normalize_one(FMT, SQLI_1, host="web-01")
    d = to_builtins(a)
    assert (d.pop("raw"), len(d.pop("alert_id"))) == (SQLI_1, 32)
    r = {"id": "942100", "name": "SQL Injection Attack Detected via libinjection", "category": "sqli",
         "tags": ["application-multi", "language-multi", "platform-multi", "attack-sqli", "paranoia-level/1",
                  "OWASP_CRS", "capec/1000/152/248/66", "PCI/6.5.2"], "severity": "CRITICAL"}
    assert a.action == "detected"
    assert d == {
        "tenant_id": "shop",
        "source": {"product": "ModSecurity", "vendor": "OWASP", "family": "waf", "format": "modsec_error"},
        "time": "2026-11-24T06:38:34.040785Z", "received_at": "2026-11-25T12:00:00Z",
        "severity": {"label": "high", "score": 75}, "rule": r, "rules": [r],
        "message": "ModSecurity detected shop.lab.local/app: SQL Injection Attack Detected via libinjection "
                   "(942100)",
        "src": {"ip": "127.0.0.66", "port": 39626}, "dst": {"hostname": "shop.lab.local"},
        "http": {"url": "/app", "host": "shop.lab.local"}, "host": {"name": "web-01"}, "attack": ["T1190"],
        "extra": {"rule_ids": ["942100"], "unique_id": "awUw6jCwX7QjkQlWJqPxwgAAAAE",
                  "transaction_id": "awUw6jCwX7QjkQlWJqPxwgAAAAE", "paranoia_levels": [1],
                  "matched_data": ["Matched Data: 1UEnk found within ARGS:id: "
                                   "1 UNION SELECT username,password FROM users--"]},
    }


def test_numeric_host_from_benign_client():
    [a] = normalize_one(FMT, BENIGN_IP_HOST)
    assert (a.rule.id, a.severity.label, a.action, a.src.ip, a.src.port) == (
        "920350", "low", "detected", "127.0.0.10", 39406)
    assert (a.dst.hostname, a.http.host, a.http.url) == ("127.0.0.1", "127.0.0.1", "/")
    assert a.extra["unique_id"] == "awUw6k3R2MqInzbJfVSqGQAAAAA"
    assert a.attack == []


def test_one_transaction_ties_to_the_audit_record():
    ids = [normalize_one(FMT, x)[0] for x in (SQLI_1, SQLI_2, SQLI_3, SQLI_4)]
    assert [a.rule.id for a in ids] == ["942100", "942190", "942270", "942360"]
    assert {a.extra["unique_id"] for a in ids} == {"awUw6jCwX7QjkQlWJqPxwgAAAAE"}


@pytest.mark.parametrize(("line", "reason"), [
    (CONFIGURED, "apache"), (APACHE_NOTICE, "apache"), (MODSEC_NOTICE, "modsecurity_notice"),
    (INBOUND_DENIED, "anomaly_summary"), (CORRELATION, "anomaly_summary"),
    (OUTBOUND_DENIED, "anomaly_summary"),
])
def test_context_lines_are_skipped(line, reason):
    with pytest.raises(Skipped) as e:
        normalize_one(FMT, line)
    assert e.value.reason == reason


def test_access_denied_by_a_real_rule_is_blocked():
    line = INBOUND_DENIED.replace('[id "949110"]', '[id "942100"]').replace(
        "REQUEST-949-BLOCKING-EVALUATION", "REQUEST-942-APPLICATION-ATTACK-SQLI")
    [a] = normalize_one(FMT, line)
    assert (a.action, a.rule.id, a.rule.category) == ("blocked", "942100", "generic")  # tag attack-generic


def test_apache_22_format_and_port_less_client():
    line = ("[Tue Nov 24 06:38:34 2026] [error] [client 127.0.0.66] ModSecurity: Warning. Pattern match "
            + SQLI_1.partition("ModSecurity: Warning. ")[2].partition(" ")[2])
    [a] = normalize_one(FMT, line)
    assert (a.src.ip, a.src.port, a.rule.id, a.time.isoformat()) == (
        "127.0.0.66", None, "942100", "2026-11-24T06:38:34+00:00")


def test_client_port():
    [a] = normalize_one(FMT, SQLI_1)
    assert (a.src.ip, a.src.port) == ("127.0.0.66", 39626)


@pytest.mark.parametrize(("client", "reason"), [
    ("127.0.0.66:²", "bad_port"), ("127.0.0.66:99999", "bad_port"), ("127.0.0.66:", "bad_port"),
    ("evil.example:80] [client evil.example", "bad_ip"),
])
def test_bad_client_address_is_a_dead_letter(client, reason):
    """Apache writes `[client IP:PORT]`: anything else is no actor address (dead letter, never nulled)."""
    line = SQLI_1.replace("[client 127.0.0.66:39626] [client 127.0.0.66]", f"[client {client}]")
    assert [(d.reason, d.field) for d in run_text(FMT, line).dead] == [(reason, "client")]


@pytest.mark.parametrize(("line", "reason", "field"), [
    ("ModSecurity: Warning. [id \"942100\"]", "bad_format", None),
    ("", "bad_format", None),
    (SQLI_1.replace("[id \"942100\"] ", ""), "missing_field", "id"),
    (SQLI_1.replace("Tue Nov 24", "Tue 11 24"), "bad_format", None),
    (SQLI_1.replace("Tue Nov 24", "Tue Zzz 24"), "bad_timestamp", "time"),
    (SQLI_1.replace("06:38:34.040785", "06:38:99.040785"), "bad_timestamp", "time"),
])
def test_malformed_lines_are_bad_records(line, reason, field):
    with pytest.raises(BadRecord) as e:
        normalize_one(FMT, line)
    assert (e.value.reason, e.value.field) == (reason, field)


def test_sniff():
    assert all(detect(s) == FMT for s in SAMPLES)
    assert detect(fixture_lines("waf/apache_access_samples.log")[0]) != FMT


SUMMARY_IDS = {"949110", "959100", "980130", "980140", "980145", "959101"}


def test_whole_lab_file():
    r = run_file(fixture("waf/apache_error.log"))
    # one alert per transaction, like the audit log: lines are assembled by unique_id
    assert (r.records, len(r.alerts), len(r.dead)) == (1547, 1058, 0)
    assert r.skipped == {"modsec_error:buffered": 732, "modsec_error:anomaly_summary": 95,
                         "modsec_error:modsecurity_notice": 6, "modsec_error:apache": 4}
    assert {a.source.format for a in r.alerts} == {FMT}
    audit = {a.extra["transaction_id"]: a for a in run_file(fixture("waf/modsec_audit.jsonl")).alerts}
    assert {a.extra["unique_id"] for a in r.alerts} == set(audit)
    # the assembled transaction says what the audit log says: its rules and whether it was blocked
    for a in r.alerts:
        b = audit[a.extra["unique_id"]]
        assert a.action == b.action
        assert set(a.extra["rule_ids"]) == set(b.extra["rule_ids"]) - SUMMARY_IDS
    assert sum("920350" in a.extra["rule_ids"] for a in r.alerts) == 1044
    assert Counter(a.action for a in r.alerts) == {"detected": 963, "blocked": 95}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SAMPLES))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
