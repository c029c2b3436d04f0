"""Alibaba Cloud Anti-DDoS events: blackhole and scrubbing golden alerts, malformed records, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from ._cloud import assert_bad, edit, golden, records, whole
from .conftest import check_contract, json_mutated, mutated

FMT = "alibaba_ddos"
RECS = records(FMT)
BLACKHOLE, SCRUBBING, WEB_CC, ORIGIN_DEFENSE_END, ORIGIN_HOLE_BEGIN = RECS
SOURCE = {"product": "Alibaba Cloud Anti-DDoS", "vendor": "Alibaba Cloud", "family": "ddos", "format": FMT}


def test_blackhole_event():
    rule = {"id": "ddos:blackhole", "name": "DDoS blackhole: IP null-routed", "category": "blackhole",
            "tags": ["ddos"], "severity": "critical"}
    assert golden(FMT, BLACKHOLE) == {
        "source": SOURCE, "time": "2021-10-18T07:56:04Z", "severity": {"label": "critical", "score": 95},
        "rule": rule, "rules": [rule], "action": "succeeded",
        "message": "Anti-DDoS DDoS blackhole: IP null-routed on 203.107.45.10:80 "
                   "(peak 101899 Mbps, 9664270 pps)",
        "src": {}, "dst": {"ip": "203.107.45.10", "port": 80}, "host": {"ip": "203.107.45.10"},
        "extra": {"event_type": "blackhole", "mbps": 101899, "pps": 9664270, "area": "cn",
                  "end_time": "2021-10-18T08:33:50+00:00", "duration_s": 2266},
    }


def test_scrubbing_event():
    rule = {"id": "ddos:defense", "name": "DDoS traffic scrubbing", "category": "defense", "tags": ["ddos"],
            "severity": "medium"}
    assert golden(FMT, SCRUBBING) == {
        "source": SOURCE, "time": "2025-11-24T16:10:00Z", "severity": {"label": "medium", "score": 50},
        "rule": rule, "rules": [rule], "action": "blocked",
        "message": "Anti-DDoS DDoS traffic scrubbing on 203.107.45.11:443 (peak 4210 Mbps, 612034 pps)",
        "src": {}, "dst": {"ip": "203.107.45.11", "port": 443}, "host": {"ip": "203.107.45.11"},
        "extra": {"event_type": "defense", "mbps": 4210, "pps": 612034, "area": "cn",
                  "end_time": "2025-11-24T16:20:00+00:00", "duration_s": 600},
    }


def test_origin_status_events_and_web_cc_domain():
    d = golden(FMT, ORIGIN_DEFENSE_END)
    assert (d["rule"]["id"], d["rule"]["tags"], d["action"], d["dst"], d["extra"]["duration_s"]) == (
        "ddos:defense", ["ddos", "defense_end"], "blocked", {"ip": "47.89.10.12"}, 301)
    d = golden(FMT, ORIGIN_HOLE_BEGIN)
    assert (d["rule"]["id"], d["severity"]["label"], d["action"], "end_time" in d["extra"]) == (
        "ddos:blackhole", "critical", "succeeded", False)  # still null-routed: no end yet
    d = golden(FMT, WEB_CC)
    assert (d["rule"]["category"], d["dst"], "host" in d) == (
        "web-cc", {"hostname": "www.example.com"}, False)


def test_whole_fixture_file():
    r = whole(FMT)
    assert (r.records, len(r.alerts), len(r.dead), dict(r.skipped)) == (5, 5, 0, {})
    assert [a.severity.label for a in r.alerts] == ["critical", "medium", "medium", "medium", "critical"]


@pytest.mark.parametrize(("line", "change", "reason", "field"), [
    (BLACKHOLE, lambda d: d.update(EventType="volumetric"), "bad_field", "EventType"),
    (ORIGIN_DEFENSE_END, lambda d: d.update(Status="paused"), "bad_field", "Status"),
    (BLACKHOLE, lambda d: d.pop("Ip"), "missing_field", "Ip"),
    (BLACKHOLE, lambda d: d.update(Ip="www.example.com"), "bad_ip", "Ip"),
    (BLACKHOLE, lambda d: d.pop("StartTime"), "missing_field", "StartTime"),
    (BLACKHOLE, lambda d: d.update(StartTime="yesterday"), "bad_field", "StartTime"),
    (BLACKHOLE, lambda d: d.update(EndTime=-10**17), "bad_timestamp", "EndTime"),
    (BLACKHOLE, lambda d: d.update(Port="http"), "bad_field", "Port"),
    (BLACKHOLE, lambda d: d.update(Mbps=[1]), "bad_field", "Mbps"),
])
def test_malformed_records_are_dead_letters(line, change, reason, field):
    assert_bad(FMT, edit(line, change), reason, field)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RECS) | json_mutated(RECS))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
