"""Wazuh manager alerts.json: golden alerts (auth, FIM, web, active response), levels, bad records, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.wazuh import severity_label

from ._cloud import assert_bad, edit, golden, records, whole
from .conftest import check_contract, detect, json_mutated, mutated, normalize_one

FMT = "wazuh"
RECS = records(FMT)
INVALID_USER, BRUTE_FORCE, FIM, SQLI, SSH_OK, ACTIVE_RESPONSE, VIRUSTOTAL = RECS
SOURCE = {"product": "Wazuh", "vendor": "Wazuh", "family": "host", "format": FMT}
WEB01 = {"name": "web01", "ip": "10.0.0.5"}


def test_sshd_invalid_user():
    rule = {"id": "5710", "name": "sshd: Attempt to login using a non-existent user",
            "category": "authentication_failed", "severity": "5",
            "tags": ["syslog", "sshd", "invalid_login", "authentication_failed"]}
    assert golden(FMT, INVALID_USER) == {
        "source": SOURCE, "time": "2025-11-24T06:38:40.123000Z", "severity": {"label": "low", "score": 30},
        "rule": rule, "rules": [rule], "action": "failed",
        "message": "Wazuh 5710 (level 5) on web01: sshd: Attempt to login using a non-existent user",
        "src": {"ip": "198.51.100.23", "port": 51422}, "dst": {}, "host": WEB01, "user": "admin",
        "attack": ["T1110.001", "T1021.004"],
        "extra": {"rule_level": 5, "firedtimes": 3, "decoder": "sshd", "location": "/var/log/auth.log",
                  "agent_id": "001", "manager": "wazuh-manager", "wazuh_id": "1763966320.118212",
                  "mitre_tactic": ["Credential Access", "Lateral Movement"]},
    }


def test_fim_whodata_documented_example():
    rule = {"id": "550", "name": "Integrity checksum changed.", "category": "syscheck_file", "severity": "7",
            "tags": ["ossec", "syscheck", "syscheck_entry_modified", "syscheck_file"]}
    assert golden(FMT, FIM) == {
        "source": SOURCE, "time": "2020-07-12T18:07:58.193000Z", "severity": {"label": "low", "score": 30},
        "rule": rule, "rules": [rule], "action": "detected",
        "message": "Wazuh 550 (level 7) on RHEL7: Integrity checksum changed.",
        "src": {}, "dst": {}, "host": {"name": "RHEL7", "ip": "10.0.1.214"}, "user": "wazuh",
        "process": {"name": "vim", "uid": "root", "pid": 13235, "exe": "/usr/bin/vim"},
        "file": {"path": "/etc/hosts", "change": "changed",
                 "hash": "48f09f8c313b303ce2ca9365f70ae8d992c58e4f6a5b2d1c0e9f8a7b6c5d4e3f"},
        "attack": ["T1565.001"],
        "extra": {"rule_level": 7, "firedtimes": 1, "decoder": "syscheck_integrity_changed",
                  "location": "syscheck", "agent_id": "006", "manager": "wazuh-manager",
                  "wazuh_id": "1594577278.1226548", "mitre_tactic": ["Impact"], "fim_mode": "whodata"},
    }


@pytest.mark.parametrize(("line", "action", "label", "category"), [
    (BRUTE_FORCE, "failed", "medium", "authentication_failures"),
    (SSH_OK, "succeeded", "info", "authentication_success"),
    (ACTIVE_RESPONSE, "blocked", "info", "active_response"),
    (VIRUSTOTAL, "detected", "high", "virustotal"),
])
def test_actions_levels_and_categories(line, action, label, category):
    d = golden(FMT, line)
    assert (d["action"], d["severity"]["label"], d["rule"]["category"]) == (action, label, category)


def test_web_attack_http_and_virustotal_file():
    d = golden(FMT, SQLI)
    assert d["http"] == {"method": "GET", "url": "/products.php?id=1%27%20UNION%20SELECT%201,2,3--",
                         "status": 200}
    assert (d["src"], d["attack"]) == ({"ip": "198.51.100.23"}, ["T1190"])
    d = golden(FMT, VIRUSTOTAL)
    assert d["file"] == {"path": "/tmp/x.elf", "hash": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"}
    d = golden(FMT, SSH_OK)
    assert (d["user"], d["src"]) == ("deploy", {"ip": "192.0.2.10", "port": 40022})


@pytest.mark.parametrize(("level", "label"), [
    (0, "info"), (3, "info"), (4, "low"), (7, "low"), (8, "medium"), (11, "medium"), (12, "high"),
    (14, "high"), (15, "critical"), (16, "critical"),
])
def test_level_to_severity(level, label):
    assert severity_label(level) == label
    [a] = normalize_one(FMT, edit(INVALID_USER, lambda d: d["rule"].update(level=level)))
    assert (a.severity.label, a.extra["rule_level"]) == (label, level)


def test_lenient_decoder_values_and_added_file():
    def odd(d: dict) -> None:
        d["data"]["srcip"] = "scanner.example.net"
        d["agent"]["ip"] = "any"

    [a] = normalize_one(FMT, edit(INVALID_USER, odd))
    assert (a.src.ip, a.src.hostname, a.host.ip) == (None, "scanner.example.net", None)
    [a] = normalize_one(FMT, edit(FIM, lambda d: d["syscheck"].update(event="added")))
    assert a.file.change == "added"
    [a] = normalize_one(FMT, edit(INVALID_USER, lambda d: d["rule"].update(groups="sshd")))
    assert (a.rule.tags, a.rule.category) == (["sshd"], "sshd")  # one group given as a string


def test_embedded_suricata_event_stays_wazuh():
    def eve(d: dict) -> None:
        d["data"] = {"event_type": "alert", "src_ip": "198.51.100.23", "flow_id": 1,
                     "alert": {"signature_id": 1}}

    assert detect(edit(INVALID_USER, eve)) == FMT


def test_whole_fixture_file():
    r = whole(FMT)
    assert (r.records, len(r.alerts), len(r.dead), dict(r.skipped)) == (7, 7, 0, {})
    assert [a.action for a in r.alerts] == [
        "failed", "failed", "detected", "detected", "succeeded", "blocked", "detected"]


@pytest.mark.parametrize(("change", "reason", "field"), [
    (lambda d: d.pop("rule"), "missing_field", "rule"),
    (lambda d: d["rule"].pop("level"), "missing_field", "rule.level"),
    (lambda d: d["rule"].update(level="high"), "bad_field", "rule.level"),
    (lambda d: d["rule"].update(level=99), "bad_field", "rule.level"),
    (lambda d: d["rule"].pop("id"), "missing_field", "rule.id"),
    (lambda d: d["rule"].update(groups=[1, 2]), "bad_field", "rule.groups"),
    (lambda d: d["rule"]["mitre"].update(id=7), "bad_field", "rule.mitre.id"),
    (lambda d: d.pop("timestamp"), "missing_field", "timestamp"),
    (lambda d: d.update(timestamp="Nov 24 06:38:40"), "bad_timestamp", "timestamp"),
    (lambda d: d["data"].update(srcport="ssh"), "bad_field", "data.srcport"),
    (lambda d: d.update(agent=["web01"]), "bad_field", "agent"),
])
def test_malformed_records_are_dead_letters(change, reason, field):
    assert_bad(FMT, edit(INVALID_USER, change), reason, field)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RECS) | json_mutated(RECS))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
