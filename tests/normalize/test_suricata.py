"""Suricata EVE JSON: golden alerts, context events, whole real files, malformed events, fuzz."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import BadRecord, Skipped
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
    run_file,
    shared,
)

FMT = "suricata"
SAMPLES = fixture_lines("ids/eve_samples.jsonl")
(SQLI, FORBIDDEN_TO_CLIENT, LOG4SHELL, DNS_C2, PING, FLOW, HTTP, DNS, ANOMALY, STATS, FILEINFO, SSH,
 NMAP_NSE) = SAMPLES
SOURCE = {"product": "Suricata", "vendor": "OISF", "family": "ids", "format": "suricata"}


def one(text: str) -> dict:
    [a] = normalize_one(FMT, text)
    sev = {"label": a.severity.label, "score": a.severity.score}
    d = to_builtins(a) | {"action": a.action, "severity": sev}  # defaults, omitted by to_builtins
    assert (d.pop("raw"), len(d.pop("alert_id"))) == (text, 32)
    return d


def edit(text: str, fn) -> str:
    d = orjson.loads(text)
    fn(d)
    return orjson.dumps(d).decode()


def test_log4shell_golden():
    d = one(LOG4SHELL)
    r = {"id": "2034647", "name": "ET EXPLOIT Apache log4j RCE Attempt (http ldap) (CVE-2021-44228)",
         "category": "Attempted Administrator Privilege Gain", "tags": ["Exploit"], "severity": "1"}
    assert d == {
        "tenant_id": "shop", "source": SOURCE, "time": "2026-11-24T06:38:34.133600Z",
        "received_at": "2026-11-25T12:00:00Z", "severity": {"label": "high", "score": 75}, "rule": r,
        "rules": [r], "action": "detected",
        "message": "Suricata detected 127.0.0.66 -> 127.0.0.1:8080: "
                   "ET EXPLOIT Apache log4j RCE Attempt (http ldap) (CVE-2021-44228) (2034647)",
        "src": {"ip": "127.0.0.66", "port": 39720},
        "dst": {"ip": "127.0.0.1", "port": 8080, "hostname": "shop.lab.local"},
        "http": {"method": "GET", "url": "/app", "host": "shop.lab.local", "status": 200,
                 "user_agent": "curl/7.88.1"},
        "network": {"proto": "tcp", "community_id": "1:NSz/URV7OQEwXU06QYyhx2ohD5w=", "bytes": 751,
                    "packets": 7},
        "extra": {"attack_target": "Server", "cve": "CVE-2021-44228", "deployment": ["Internal", "Perimeter"],
                  "former_category": "EXPLOIT", "signature_severity": "Major", "signature_id": 2034647,
                  "gid": 1, "rev": 1, "app_proto": "http", "direction": "to_server",
                  "flow_id": 835804011623404},
    }


def test_alert_on_server_response_has_the_client_as_src():
    """The 403 alert is raised on the server's packet (src_ip = server); the flow's client is the attacker."""
    raw = orjson.loads(FORBIDDEN_TO_CLIENT)
    assert (raw["direction"], raw["src_ip"], raw["dest_ip"]) == ("to_client", "127.0.0.1", "127.0.0.66")
    d = one(FORBIDDEN_TO_CLIENT)
    assert d["src"] == {"ip": "127.0.0.66", "port": 39626}
    assert d["dst"] == {"ip": "127.0.0.1", "port": 8080, "hostname": "shop.lab.local"}
    assert (d["rule"]["id"], d["rule"]["name"], d["severity"]["label"], d["http"]["status"]) == (
        "2101201", "GPL WEB_SERVER 403 Forbidden", "medium", 403)
    assert d["extra"]["direction"] == "to_client"


def test_to_client_without_flow_object_swaps_the_packet_addresses():
    [a] = normalize_one(FMT, edit(FORBIDDEN_TO_CLIENT, lambda d: d.pop("flow")))
    assert (a.src.ip, a.src.port, a.dst.ip, a.dst.port, a.dst.hostname) == (
        "127.0.0.66", 39626, "127.0.0.1", 8080, "shop.lab.local")


def test_rule_source_and_target_win():
    def target_client(d: dict) -> None:  # a rule with `target:dest_ip` on a server response
        d["alert"]["source"] = {"ip": "127.0.0.1", "port": 8080}
        d["alert"]["target"] = {"ip": "127.0.0.66", "port": 39626}

    [a] = normalize_one(FMT, edit(FORBIDDEN_TO_CLIENT, target_client))
    assert (a.src.ip, a.src.hostname, a.dst.ip, a.dst.hostname) == (
        "127.0.0.1", "shop.lab.local", "127.0.0.66", None)


def test_sql_injection_to_server():
    d = one(SQLI)
    assert (d["rule"]["id"], d["rule"]["category"], d["severity"]["label"]) == (
        "1000010", "Web Application Attack", "high")
    assert (d["src"]["ip"], d["dst"]["port"]) == ("127.0.0.66", 8080)
    assert d["http"]["url"] == "/app?id=1%20UNION%20SELECT%20username,password%20FROM%20users--"


def test_dns_alert_and_icmp_alert():
    d = one(DNS_C2)
    assert d["dns"] == {"query": "c2.malware-lab.test", "rtype": "A"}
    assert (d["network"]["proto"], d["dst"]["port"], d["extra"]["app_proto"]) == ("udp", 53, "dns")
    d = one(PING)
    assert (d["src"], d["dst"], d["network"]["proto"], d["severity"]["label"]) == (
        {"ip": "127.0.0.66"}, {"ip": "127.0.0.1"}, "icmp", "low")
    assert d["message"] == "Suricata detected 127.0.0.66 -> 127.0.0.1: LAB ICMP PING (1000003)"


def test_mitre_metadata_blocked_action_and_sensor_host():
    def ips(d: dict) -> None:
        d["alert"]["metadata"]["mitre_technique_id"] = ["T1190"]
        d["alert"]["metadata"]["mitre_tactic_id"] = ["TA0001"]
        d["alert"]["action"] = "blocked"
        d["host"] = "sensor-1"

    [a] = normalize_one(FMT, edit(LOG4SHELL, ips), host="web-01")
    assert (a.attack, a.extra["mitre_tactic_id"], a.action, a.host.name) == (
        ["T1190"], "TA0001", "blocked", "sensor-1")
    [a] = normalize_one(FMT, LOG4SHELL, host="web-01")
    assert (a.attack, a.host.name) == ([], "web-01")


@pytest.mark.parametrize(("line", "reason"), [
    (FLOW, "flow"), (HTTP, "http"), (DNS, "dns"), (ANOMALY, "anomaly"), (STATS, "stats"),
    (FILEINFO, "fileinfo"), (SSH, "ssh"), ('{"event_type":"tls","src_ip":"10.0.0.1"}', "tls"),
    ('{"event_type":"netflow","src_ip":"10.0.0.1"}', "netflow"),
    ('{"event_type":"brand_new","src_ip":"10.0.0.1"}', "other:brand_new"),
])
def test_context_events_are_skipped(line, reason):
    with pytest.raises(Skipped) as e:
        normalize_one(FMT, line)
    assert e.value.reason == reason


@pytest.mark.parametrize(("mutate", "reason", "field"), [
    (lambda s: s[:-10], "bad_json", None),
    (lambda s: "[]", "bad_json", None),
    (lambda s: edit(s, lambda d: d.pop("event_type")), "missing_field", "event_type"),
    (lambda s: edit(s, lambda d: d.update(event_type=7)), "missing_field", "event_type"),
    (lambda s: edit(s, lambda d: d.pop("alert")), "missing_field", "alert"),
    (lambda s: edit(s, lambda d: d["alert"].pop("signature_id")), "missing_field", "alert.signature_id"),
    (lambda s: edit(s, lambda d: d["alert"].update(signature_id="1")), "bad_field", "alert.signature_id"),
    (lambda s: edit(s, lambda d: d["alert"].update(severity="1")), "bad_field", "alert.severity"),
    (lambda s: edit(s, lambda d: d.pop("timestamp")), "missing_field", "timestamp"),
    (lambda s: edit(s, lambda d: d.update(timestamp="06:38")), "bad_timestamp", "timestamp"),
    (lambda s: edit(s, lambda d: d["flow"].update(src_port="x")), "bad_port", "flow.src_port"),
    # issue 13 §9: actor addresses are IP addresses and ports 0..65535, or the record is a dead letter
    (lambda s: edit(s, lambda d: d["flow"].update(src_ip="evil.example")), "bad_ip", "flow.src_ip"),
    (lambda s: edit(s, lambda d: d["flow"].update(dest_ip="10.0.0.1 10.0.0.2")), "bad_ip", "flow.dest_ip"),
    (lambda s: edit(s, lambda d: d["flow"].update(src_port=70000)), "bad_port", "flow.src_port"),
    (lambda s: edit(s, lambda d: d["flow"].update(dest_port=-1)), "bad_port", "flow.dest_port"),
    (lambda s: edit(s, lambda d: (d.pop("flow"), d.update(src_ip="999.1.1.1"))), "bad_ip", "src_ip"),
    (lambda s: edit(s, lambda d: (d.pop("flow"), d.update(dest_port=65536))), "bad_port", "dest_port"),
    (lambda s: edit(s, lambda d: d["alert"].update(source={"ip": "x", "port": 1}, target={"ip": "1.2.3.4"})),
     "bad_ip", "alert.source.ip"),
])
def test_malformed_events_are_bad_records(mutate, reason, field):
    with pytest.raises(BadRecord) as e:
        normalize_one(FMT, mutate(LOG4SHELL))
    assert (e.value.reason, e.value.field) == (reason, field)


def test_sniffers_are_specific():
    """EVE lines go to suricata; no other lab product's records are claimed by the WAF/IDS normalizers."""
    assert all(detect(s) == FMT for s in SAMPLES)
    mine = [normalizer(f) for f in ("suricata", "modsecurity", "modsec_error", "apache_access")]
    for path in sorted(shared("samples/lab-1/host").iterdir()):
        for line in path.read_text().splitlines()[:50]:
            assert not any(n.sniff(line) for n in mine), (path.name, line)


def test_whole_lab_files():
    r = run_file(fixture("ids/eve_attack.jsonl"))
    assert (r.records, len(r.alerts), len(r.dead)) == (329, 60, 0)
    assert r.skipped == {"suricata:flow": 222, "suricata:fileinfo": 24, "suricata:http": 20,
                         "suricata:anomaly": 1, "suricata:dns": 1, "suricata:stats": 1}
    assert {(a.src.ip, a.dst.ip) for a in r.alerts} == {("127.0.0.66", "127.0.0.1")}  # to_client ones too
    assert Counter(a.extra["direction"] for a in r.alerts) == {"to_server": 34, "to_client": 26}
    assert Counter(a.severity.label for a in r.alerts) == {"high": 20, "medium": 22, "low": 18}
    log4j = [a for a in r.alerts if "CVE-2021-44228" in a.rule.name]
    assert len(log4j) == 5 and {a.http.status for a in log4j} == {200}
    assert {a.action for a in r.alerts} == {"detected"}

    r = run_file(fixture("ids/eve_scanners.jsonl"))
    assert (r.records, len(r.alerts), len(r.dead)) == (2699, 312, 0)
    assert r.skipped == {"suricata:http": 1044, "suricata:fileinfo": 1043, "suricata:flow": 297,
                         "suricata:anomaly": 1, "suricata:ssh": 1, "suricata:stats": 1}
    assert {a.src.port for a in r.alerts if a.extra["direction"] == "to_client"} != {8080}
    assert all(a.dst.port in (8080, None) or a.rule.id in ("1000001", "1000002") for a in r.alerts)
    assert len({a.alert_id for a in r.alerts}) == 312


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SAMPLES) | json_mutated(SAMPLES))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
