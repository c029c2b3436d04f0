"""ModSecurity 2.9 JSON audit log (CRS 3.3.4): golden records, whole real files, malformed input, fuzz."""

from __future__ import annotations

import gzip
import itertools
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize import modsecurity
from pipeline.normalize.base import BadRecord, Skipped
from pipeline.normalize.modsecurity import parse_message, rule_meta
from pipeline.schema import to_builtins

from .conftest import (
    check_contract,
    detect,
    fixture,
    fixture_lines,
    json_mutated,
    mutated,
    normalize_one,
    normalizer,
    record,
    run_file,
    shared,
)

FMT = "modsecurity"
SAMPLES = fixture_lines("waf/modsec_audit_samples.jsonl")
BENIGN_IP_HOST, SQLI, OUTBOUND, NO_HOST_200, TRACK, NIKTO, PL4_200, PL4_MIXED = SAMPLES
POINTS = {"CRITICAL": 5, "ERROR": 4, "WARNING": 3, "NOTICE": 2}  # CRS 3.x anomaly points per severity


def one(text: str) -> dict:
    """The single alert of a record, as plain data without the raw text and id (checked elsewhere)."""
    alerts = normalize_one(FMT, text)
    assert len(alerts) == 1
    d = to_builtins(alerts[0]) | {"action": alerts[0].action}  # a default, omitted by to_builtins
    assert d.pop("raw") == text
    assert len(d.pop("alert_id")) == 32
    return d


def rule(rid: str, name: str, category: str, sev: str, tags: list[str]) -> dict:
    return {"id": rid, "name": name, "category": category, "tags": tags, "severity": sev}


SQLI_TAGS = ["application-multi", "language-multi", "platform-multi", "attack-sqli", "paranoia-level/1",
             "OWASP_CRS", "capec/1000/152/248/66", "PCI/6.5.2"]
SOURCE = {"product": "ModSecurity", "vendor": "OWASP", "family": "waf", "format": "modsecurity"}
ZERO_CATEGORY_SCORES = dict.fromkeys(
    ("xss_score", "rfi_score", "lfi_score", "rce_score", "php_injection_score", "http_violation_score",
     "session_fixation_score"), 0)


def test_sqli_blocked_golden():
    d = one(SQLI)
    primary = rule("942100", "SQL Injection Attack Detected via libinjection", "sqli", "CRITICAL", SQLI_TAGS)
    assert [r["id"] for r in d.pop("rules")] == ["942100", "942190", "942270", "942360"]
    assert d == {
        "tenant_id": "shop", "source": SOURCE, "time": "2026-11-24T06:38:34.041084Z",
        "received_at": "2026-11-25T12:00:00Z", "severity": {"label": "high", "score": 75}, "rule": primary,
        "action": "blocked",
        "message": "ModSecurity blocked GET shop.lab.local/app?id=1%20UNION%20SELECT%20username,password"
                   "%20FROM%20users--: SQL Injection Attack Detected via libinjection (942100)",
        "src": {"ip": "127.0.0.66", "port": 39626},
        "dst": {"ip": "127.0.0.1", "port": 8080, "hostname": "shop.lab.local"},
        "http": {"method": "GET", "url": "/app?id=1%20UNION%20SELECT%20username,password%20FROM%20users--",
                 "host": "shop.lab.local", "status": 403, "user_agent": "curl/7.88.1"},
        "host": {"ip": "127.0.0.1"}, "network": {"proto": "tcp"}, "attack": ["T1190"],
        "extra": {
            "transaction_id": "awUw6jCwX7QjkQlWJqPxwgAAAAE", "anomaly_score": 20, "sql_injection_score": 20,
            **ZERO_CATEGORY_SCORES,
            "anomaly_score_pl1": 20, "anomaly_score_pl2": 0, "anomaly_score_pl3": 0, "anomaly_score_pl4": 0,
            "rule_ids": ["942100", "942190", "942270", "942360"], "paranoia_levels": [1],
            "matched_data": [
                "Matched Data: 1UEnk found within ARGS:id: 1 UNION SELECT username,password FROM users--",
                "Matched Data: UNION SELECT found within ARGS:id: "
                "1 UNION SELECT username,password FROM users--",
                "Matched Data: UNION SELECT username,password FROM found within ARGS:id: "
                "1 UNION SELECT username,password FROM users--",
            ],
        },
    }


def test_numeric_host_from_benign_client_golden():
    """920350 on the benign customer reaching the site by IP: a low, detected (not blocked) protocol alert."""
    d = one(BENIGN_IP_HOST)
    tags = ["application-multi", "language-multi", "platform-multi", "attack-protocol", "paranoia-level/1",
            "OWASP_CRS", "capec/1000/210/272", "PCI/6.5.10"]
    r = rule("920350", "Host header is a numeric IP address", "protocol", "WARNING", tags)
    assert d == {
        "tenant_id": "shop", "source": SOURCE, "time": "2026-11-24T06:38:34.034750Z",
        "received_at": "2026-11-25T12:00:00Z", "severity": {"label": "low", "score": 30},
        "rule": r, "rules": [r],
        "action": "detected",
        "message": "ModSecurity detected GET 127.0.0.1/: Host header is a numeric IP address (920350)",
        "src": {"ip": "127.0.0.10", "port": 39406},
        "dst": {"ip": "127.0.0.1", "port": 8080, "hostname": "127.0.0.1"},
        "http": {"method": "GET", "url": "/", "host": "127.0.0.1", "status": 200,
                 "user_agent": "curl/7.88.1"},
        "host": {"ip": "127.0.0.1"}, "network": {"proto": "tcp"},
        "extra": {"transaction_id": "awUw6k3R2MqInzbJfVSqGQAAAAA", "anomaly_score": 3, "rule_ids": ["920350"],
                  "paranoia_levels": [1], "matched_data": ["127.0.0.1:8080"]},
    }


def test_request_let_through_is_detected():
    """No Host header, 200 response: the WAF saw it and let it through (the lab's Log4Shell request left no
    audit record at all: CRS 3.3.4 matched nothing on it, so there is no WAF transaction to normalize)."""
    d = one(NO_HOST_200)
    assert (d["action"], d["severity"]["label"], d["rule"]["id"], d["rule"]["name"]) == (
        "detected", "low", "920280", "Request Missing a Host Header")
    assert d["http"] == {"method": "GET", "url": "/", "status": 200}
    assert d["dst"] == {"ip": "127.0.0.1", "port": 8080}
    assert "attack" not in d


def test_outbound_block_keeps_outbound_score():
    d = one(OUTBOUND)
    assert (d["action"], d["rule"]["id"], d["rule"]["category"], d["http"]["status"]) == (
        "blocked", "951230", "disclosure", 403)
    assert [r["id"] for r in d["rules"]] == ["951230"]  # 959100 / 980140 only annotate
    assert d["extra"]["outbound_anomaly_score"] == 5
    assert d["extra"]["outbound_anomaly_score_pl1"] == 5
    assert d["extra"]["anomaly_score"] == 0  # nothing inbound: response rules do not count
    assert "attack" not in d


def test_scanner_user_agent_maps_to_active_scanning():
    d = one(NIKTO)
    assert (d["rule"]["id"], d["rule"]["category"], d["action"]) == (
        "913100", "reputation-scanner", "blocked")
    assert d["attack"] == ["T1595"]
    assert d["http"]["user_agent"].startswith("Mozilla/5.00 (Nikto/2.1.6)")


def test_method_policy_has_no_technique():
    d = one(TRACK)
    assert (d["rule"]["id"], d["rule"]["category"], d["http"]["method"], d["http"]["url"]) == (
        "911100", "generic", "TRACK", "/")
    assert "attack" not in d


def test_paranoia_level_4_warning_let_through():
    d = one(PL4_200)
    assert (d["action"], d["severity"]["label"], d["rule"]["id"], d["http"]["status"]) == (
        "detected", "low", "942460", 200)
    assert d["extra"]["paranoia_levels"] == [3] and d["extra"]["anomaly_score"] == 3


def test_primary_rule_is_most_severe_then_lowest_paranoia_level():
    d = one(PL4_MIXED)
    levels = {r["id"]: [t for t in r["tags"] if t.startswith("paranoia-level/")] for r in d["rules"]}
    assert d["rules"][0]["id"] == "920273" and levels["920273"] == ["paranoia-level/4"]
    assert d["rule"]["id"] == "932200" and levels["932200"] == ["paranoia-level/2"]
    assert d["extra"]["paranoia_levels"] == [2, 4]
    assert d["extra"]["rule_ids"] == ["920273", "932200"]


def _edit(text: str, fn) -> str:
    d = orjson.loads(text)
    fn(d)
    return orjson.dumps(d).decode()


def _only(d: dict, ids: tuple[str, ...], status: int) -> None:
    """Keep only the messages of the given rule ids (and set the response status)."""
    d["audit_data"]["messages"] = [m for m in d["audit_data"]["messages"] if any(f'"{i}"' in m for i in ids)]
    d["audit_data"].pop("error_messages")
    d["response"]["status"] = status
    if status != 403:
        d["audit_data"].pop("action")


def test_no_rule_matched_is_skipped_unless_blocked():
    def no_messages(d: dict) -> None:
        d["audit_data"]["messages"] = []
        d["audit_data"].pop("error_messages")

    with pytest.raises(Skipped) as e:
        normalize_one(FMT, _edit(BENIGN_IP_HOST, no_messages))
    assert e.value.reason == "no_rule_matched"
    with pytest.raises(Skipped):  # a correlation summary alone, request let through
        normalize_one(FMT, _edit(SQLI, lambda d: _only(d, ("980130",), 200)))
    [a] = normalize_one(FMT, _edit(SQLI, lambda d: _only(d, ("949110", "980130"), 200)))  # "Access denied"
    assert (a.action, a.rule.id) == ("blocked", "949110")
    [a] = normalize_one(FMT, _edit(SQLI, lambda d: _only(d, ("980130",), 403)))  # 403 alone is a block
    assert (a.action, a.rule.id, a.extra["anomaly_score"], a.severity.label) == (
        "blocked", "980130", 20, "high")


def test_paranoia_level_tag_must_be_a_number():
    [a] = normalize_one(FMT, BENIGN_IP_HOST.replace("paranoia-level/1", "paranoia-level/\u00b2"))
    assert (a.rule.id, "paranoia_levels" in a.extra) == ("920350", False)


def test_header_names_are_case_insensitive_and_host_port_stripped():
    def lower(d: dict) -> None:
        d["request"]["headers"] = {"host": "[::1]:8080", "user-agent": "x"}

    [a] = normalize_one(FMT, _edit(SQLI, lower))
    assert (a.http.host, a.dst.hostname, a.http.user_agent) == ("::1", "::1", "x")


@pytest.mark.parametrize(("mutate", "reason", "field"), [
    (lambda s: s[: len(s) // 2], "bad_json", None),
    (lambda s: "[" + s + "]", "bad_json", None),
    (lambda s: _edit(s, lambda d: d.pop("transaction")), "missing_field", "transaction"),
    (lambda s: _edit(s, lambda d: d.update(transaction=[])), "bad_field", "transaction"),
    (lambda s: _edit(s, lambda d: d["transaction"].pop("transaction_id")), "missing_field",
     "transaction.transaction_id"),
    (lambda s: _edit(s, lambda d: d["transaction"].update(time="yesterday")), "bad_timestamp",
     "transaction.time"),
    (lambda s: _edit(s, lambda d: d["transaction"].update(remote_port="39626")), "bad_port",
     "transaction.remote_port"),
    (lambda s: _edit(s, lambda d: d["transaction"].update(remote_port=70000)), "bad_port",
     "transaction.remote_port"),
    (lambda s: _edit(s, lambda d: d["transaction"].update(local_port=-1)), "bad_port", "transaction.local_port"),
    (lambda s: _edit(s, lambda d: d["transaction"].update(remote_address="evil.example")), "bad_ip",
     "transaction.remote_address"),
    (lambda s: _edit(s, lambda d: d["transaction"].update(local_address="10.0.0.1 10.0.0.2")), "bad_ip",
     "transaction.local_address"),
    (lambda s: _edit(s, lambda d: d["response"].update(status="403")), "bad_field", "response.status"),
    (lambda s: _edit(s, lambda d: d["audit_data"].update(messages="x")), "bad_field", "audit_data.messages"),
    (lambda s: _edit(s, lambda d: d["request"].update(headers=[])), "bad_field", "request.headers"),
    (lambda s: _edit(s, lambda d: d["request"].update(request_line=1)), "bad_field", "request.request_line"),
])
def test_malformed_records_are_bad_records(mutate, reason, field):
    with pytest.raises(BadRecord) as e:
        normalize_one(FMT, mutate(SQLI))
    assert (e.value.reason, e.value.field) == (reason, field)


def _messages(lines) -> list[str]:
    return [m for line in lines for m in orjson.loads(line)["audit_data"]["messages"]]


def _check_cached_parse(messages: list[str]) -> None:
    """The cached per-rule parse gives what a full parse of each message gives."""
    n = normalizer(FMT)
    for m in messages:
        fields, tags = parse_message(m)
        assert n._parse(m) == (rule_meta(fields, tags), fields.get("data")), m


def test_cached_rule_parse_equals_full_parse():
    _check_cached_parse(_messages(fixture_lines("waf/modsec_audit.jsonl")))


def test_cached_rule_parse_equals_full_parse_pl4():
    with gzip.open(shared("labeled/waf-pl4-train/modsec_audit.jsonl.gz"), "rt") as fh:
        _check_cached_parse(_messages(itertools.islice(fh, 2000)))


def test_escaped_quote_in_matched_data():
    """ModSecurity writes a `"` of the matched input as `\\"`: the value is kept whole, escape included."""
    inject = 'found within ARGS:id: 1\\"] [id \\"1 UNION'
    msg = _messages([SQLI])[0].replace("found within ARGS:id: 1 UNION", inject)
    n = normalizer(FMT)
    meta, data = n._parse(msg)
    assert meta is not None and meta.id == "942100"
    assert data == f"Matched Data: 1UEnk {inject} SELECT username,password FROM users--"
    [a] = normalize_one(FMT, _edit(SQLI, lambda d: d["audit_data"]["messages"].__setitem__(0, msg)))
    assert (a.rule.id, a.extra["matched_data"][0]) == ("942100", data)


def test_rule_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(modsecurity, "RULE_CACHE_SIZE", 3)
    n = normalizer(FMT)
    for line in fixture_lines("waf/modsec_audit.jsonl")[:50]:
        n.normalize(record(line))
        assert len(n._rules) <= 3


def test_sniff_is_specific():
    assert all(detect(s) == FMT for s in SAMPLES)
    eve = fixture_lines("ids/eve_samples.jsonl")[0]
    access = fixture_lines("waf/apache_access_samples.log")[0]
    assert not normalizer(FMT).sniff(eve) and not normalizer(FMT).sniff(access)


def test_whole_lab_file():
    r = run_file(fixture("waf/modsec_audit.jsonl"))
    assert (r.records, len(r.alerts), sum(r.skipped.values()), len(r.dead)) == (1058, 1058, 0, 0)
    assert {a.source.format for a in r.alerts} == {FMT}  # auto-detected
    assert Counter(a.action for a in r.alerts) == {"detected": 963, "blocked": 95}
    assert Counter(a.severity.label for a in r.alerts) == {"low": 963, "high": 95}
    assert len({a.alert_id for a in r.alerts}) == 1058
    assert len({a.extra["transaction_id"] for a in r.alerts}) == 1058
    benign = [a for a in r.alerts if a.src.ip == "127.0.0.10"]
    assert {(a.rule.id, a.action) for a in benign} == {("920350", "detected")}
    attacker = [a for a in r.alerts if a.src.ip == "127.0.0.66"]  # its 404 and its 200 matched no rule
    assert len(attacker) == 13 and all(a.action == "blocked" for a in attacker)
    # no alert's primary rule is an anomaly-score summary rule
    assert not {a.rule.id for a in r.alerts} & {"949110", "980130", "959100", "980140"}


def _check_scores(alerts) -> int:
    """CRS's stated inbound score equals the documented per-severity points of the inbound rules."""
    checked = 0
    for a in alerts:
        computed = sum(POINTS.get(r.severity, 0) for r in a.rules if not r.id.startswith("95"))
        assert a.extra["anomaly_score"] == computed, a.extra["transaction_id"]
        checked += "anomaly_score_pl1" in a.extra
    return checked


def test_anomaly_score_fallback_matches_crs():
    assert _check_scores(run_file(fixture("waf/modsec_audit.jsonl")).alerts) == 94


def test_paranoia_level_4_labeled_set():
    path = shared("labeled/waf-pl4-train/modsec_audit.jsonl.gz")
    r = run_file(path)
    assert (len(r.alerts), sum(r.skipped.values()), len(r.dead)) == (11799, 0, 0)
    assert Counter(a.action for a in r.alerts) == {"blocked": 11793, "detected": 6}
    assert _check_scores(r.alerts) == 11793
    with shared("labeled/waf-pl4-train/labels.jsonl").open("rb") as fh:
        labels = {orjson.loads(x)["transaction_id"] for x in fh}
    assert {a.extra["transaction_id"] for a in r.alerts} == labels


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SAMPLES) | json_mutated(SAMPLES))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
