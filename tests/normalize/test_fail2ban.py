"""fail2ban 1.0.2: its real log and the lab's JSON ban-action lines."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import BadRecord, Skipped
from pipeline.schema import to_builtins

from .conftest import (
    check_contract,
    detect,
    fixture,
    fixture_lines,
    mutated,
    normalize_one,
    run_file,
    run_text,
)

LOG = fixture_lines("host/fail2ban.log")
JSONL = fixture_lines("host/fail2ban_bans.jsonl")
BAN_SSHD = "2026-11-24 06:38:45,649 fail2ban.actions        [4990]: NOTICE  [sshd] Ban 127.0.0.66"
FOUND = ("2026-11-24 06:38:43,447 fail2ban.filter         [4990]: INFO    [sshd] Found 127.0.0.66 - "
         "2026-11-24 06:38:43")


def strip(d: dict) -> dict:
    for k in ("alert_id", "tenant_id", "received_at", "source", "raw", "rules", "dst"):
        d.pop(k)
    return d


def test_whole_log():
    r = run_file(fixture("host/fail2ban.log"))
    assert (r.records, r.dead) == (149, [])
    assert Counter((a.rule.id, a.action, a.src.ip) for a in r.alerts) == {
        ("fail2ban:apache-modsecurity:found", "detected", "127.0.0.66"): 13,
        ("fail2ban:apache-modsecurity:found", "detected", "127.0.0.1"): 82,
        ("fail2ban:sshd:found", "detected", "127.0.0.66"): 11,
        ("fail2ban:apache-modsecurity:ban", "blocked", "127.0.0.66"): 1,
        ("fail2ban:apache-modsecurity:ban", "blocked", "127.0.0.1"): 1,
        ("fail2ban:sshd:ban", "blocked", "127.0.0.66"): 1,
    }
    assert r.skipped == {"fail2ban:info": 35, "fail2ban:unban": 3, "fail2ban:already_banned": 2}


def test_ban_line():
    assert BAN_SSHD in LOG
    (a,) = normalize_one("fail2ban", BAN_SSHD, host="web-01")
    assert a.raw == BAN_SSHD
    assert strip(to_builtins(a)) == {
        "time": "2026-11-24T06:38:45.649000Z", "severity": {},  # medium (the default) is omitted
        "rule": {"id": "fail2ban:sshd:ban", "name": "fail2ban sshd: ban", "category": "brute_force"},
        "action": "blocked", "message": "fail2ban [sshd] banned 127.0.0.66", "src": {"ip": "127.0.0.66"},
        "host": {"name": "web-01"}, "extra": {"jail": "sshd", "fail2ban_action": "ban", "level": "NOTICE"},
    }


def test_found_line():
    assert FOUND in LOG
    (a,) = normalize_one("fail2ban", FOUND)
    assert (a.rule.id, a.action, a.severity.label, a.src.ip, a.host) == (
        "fail2ban:sshd:found", "detected", "low", "127.0.0.66", None)
    assert a.extra == {"jail": "sshd", "fail2ban_action": "found", "level": "INFO",
                       "failure_time": "2026-11-24 06:38:43"}
    assert a.time == datetime(2026, 11, 24, 6, 38, 43, 447000, tzinfo=UTC)


@pytest.mark.parametrize(("line", "reason"), [
    (LOG[1], "info"),  # Starting Fail2ban v1.0.2
    ("2026-11-24 06:39:01,750 fail2ban.actions        [4990]: NOTICE  [sshd] Unban 127.0.0.66", "unban"),
    ("2026-11-24 06:38:50,256 fail2ban.actions        [4990]: NOTICE  [sshd] 127.0.0.66 already banned",
     "already_banned"),
    ("2026-11-24 06:38:31,432 fail2ban.jail           [4990]: INFO    Creating new jail 'sshd'", "info"),
    ("2026-11-24 06:40:00,000 fail2ban.actions        [4990]: NOTICE  [sshd] Restore Ban 127.0.0.66",
     "restore_ban"),
    ("Traceback (most recent call last):", "continuation"),
    ('  File "/usr/lib/python3/dist-packages/fail2ban/server/actions.py", line 1, in x', "continuation"),
])
def test_context_lines(line, reason):
    with pytest.raises(Skipped) as e:
        normalize_one("fail2ban", line)
    assert e.value.reason == reason


def test_json_lines():
    r = run_file(fixture("host/fail2ban_bans.jsonl"))
    assert (r.records, r.dead, r.skipped) == (6, [], {"fail2ban_json:unban": 3})
    assert [(a.rule.id, a.src.ip, a.extra["failures"]) for a in r.alerts] == [
        ("fail2ban:apache-modsecurity:ban", "127.0.0.66", 5), ("fail2ban:sshd:ban", "127.0.0.66", 3),
        ("fail2ban:apache-modsecurity:ban", "127.0.0.1", 5)]
    (a,) = normalize_one("fail2ban_json", JSONL[1])
    assert strip(to_builtins(a)) == {
        "time": "2026-11-24T06:38:45Z", "severity": {},
        "rule": {"id": "fail2ban:sshd:ban", "name": "fail2ban sshd: ban", "category": "brute_force"},
        "action": "blocked", "message": "fail2ban [sshd] banned 127.0.0.66", "src": {"ip": "127.0.0.66"},
        "extra": {"jail": "sshd", "fail2ban_action": "ban", "failures": 3, "bantime": 600},
    }


def test_log_and_json_agree_on_bans():
    log_bans = [(a.rule.id, a.src.ip, a.time.replace(microsecond=0))
                for a in run_file(fixture("host/fail2ban.log")).alerts if a.action == "blocked"]
    json_bans = [(a.rule.id, a.src.ip, a.time) for a in run_file(fixture("host/fail2ban_bans.jsonl")).alerts]
    assert log_bans == json_bans


@pytest.mark.parametrize(("fmt", "line", "reason", "field"), [
    ("fail2ban", "2026-11-24 06:38:45,649 fail2ban.actions NOTICE [sshd] Ban 1.2.3.4", "bad_record",
     "logger"),
    ("fail2ban", "2026-11-24 06:38:45 fail2ban.actions [1]: NOTICE [sshd] Ban 1.2.3.4", "bad_record", "time"),
    ("fail2ban", BAN_SSHD.replace("06:38:45", "06:61:45"), "bad_timestamp", "time"),
    ("fail2ban", BAN_SSHD.replace(" 127.0.0.66", ""), "bad_ip", "ip"),
    ("fail2ban", "hello", "bad_record", "time"),
    ("fail2ban_json", JSONL[0][:-2], "bad_json", None),
    ("fail2ban_json", "[1, 2]", "bad_record", None),
    ("fail2ban_json", JSONL[0].replace('"ban"', '"kick"'), "bad_record", "event"),
    ("fail2ban_json", JSONL[0].replace('"ip":"127.0.0.66"', '"ip":null'), "bad_ip", "ip"),
    ("fail2ban_json", JSONL[0].replace('"jail":"apache-modsecurity"', '"jail":""'), "bad_record", "jail"),
    ("fail2ban_json", JSONL[0].replace('"2026-11-24T06:38:34Z"', "1795502314"), "bad_timestamp", "time"),
    ("fail2ban_json", JSONL[0].replace("2026-11-24T06", "2026-11-34T06"), "bad_timestamp", "time"),
])
def test_malformed_are_dead_letters(fmt, line, reason, field):
    with pytest.raises(BadRecord) as e:
        normalize_one(fmt, line)
    assert (e.value.reason, e.value.field) == (reason, field)
    assert [(d.reason, d.field, d.source) for d in run_text(fmt, line).dead] == [(reason, field, fmt)]


def test_detection():
    assert {detect(ln) for ln in LOG} == {"fail2ban"}
    assert {detect(ln) for ln in JSONL} == {"fail2ban_json"}
    for other in ("ids/eve_samples.jsonl", "waf/modsec_audit_samples.jsonl", "host/sshd_auth.log"):
        assert detect(fixture_lines(other)[0]) not in ("fail2ban", "fail2ban_json")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(LOG))
def test_fuzz_log(text):
    check_contract("fail2ban", text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(JSONL))
def test_fuzz_json(text):
    check_contract("fail2ban_json", text)
