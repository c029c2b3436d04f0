"""sshd: the lab's brute force and a second real OpenSSH 9.2 run (accepted key, MaxAuthTries, AllowUsers)."""

from __future__ import annotations

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

FMT = "sshd"
LAB = fixture_lines("host/sshd_auth.log")
VARIANTS = fixture_lines("host/sshd_auth_variants.log")


def test_whole_lab_file():
    r = run_file(fixture("host/sshd_auth.log"))
    assert (r.records, r.dead) == (21, [])
    assert sorted((a.rule.id, a.user) for a in r.alerts) == sorted(
        [("sshd:invalid_user", u) for u in ("admin", "oracle", "test", "ubuntu", "admin")]
        + [("sshd:failed_password", u) for u in ("admin", "oracle", "root", "test", "ubuntu", "admin")])
    assert r.skipped == {"sshd:connection": 7, "sshd:kex": 1, "sshd:listening": 1, "sshd:daemon": 1}
    assert {(a.src.ip, a.action, a.host.name, tuple(a.attack)) for a in r.alerts} == {
        ("127.0.0.66", "failed", "vm", ("T1110",))}


def test_failed_password_for_invalid_user():
    line = ("Nov 24 06:38:44 vm sshd[4983]: Failed password for invalid user admin from 127.0.0.66 "
            "port 54403 ssh2")
    assert line in LAB
    (a,) = normalize_one(FMT, line)
    d = to_builtins(a)
    assert d["alert_id"] and d.pop("raw") == line
    for k in ("alert_id", "tenant_id", "received_at", "source"):
        d.pop(k)
    rule = {"id": "sshd:failed_password", "name": "sshd: failed password", "category": "authentication"}
    assert d == {
        "time": "2026-11-24T06:38:44Z", "severity": {"label": "low", "score": 30},
        "rule": rule, "rules": [rule],
        "action": "failed", "message": "sshd: failed password for admin from 127.0.0.66",
        "src": {"ip": "127.0.0.66", "port": 54403}, "dst": {}, "host": {"name": "vm"}, "user": "admin",
        "process": {"name": "sshd", "pid": 4983}, "attack": ["T1110"],
        "extra": {"method": "password", "invalid_user": True},
    }


def test_invalid_user_line():
    (a,) = normalize_one(FMT, LAB[1])
    assert (a.rule.id, a.user, a.src.ip, a.src.port, a.extra) == (
        "sshd:invalid_user", "admin", "127.0.0.66", 54403, {"invalid_user": True})


def test_real_variants():
    r = run_file(fixture("host/sshd_auth_variants.log"))
    assert (r.records, r.dead) == (18, [])
    by = {a.rule.id: a for a in r.alerts}
    ok = by["sshd:accepted"]
    assert (ok.action, ok.severity.label, ok.attack, ok.user, ok.src.ip, ok.src.port) == (
        "succeeded", "low", ["T1078"], "root", "127.0.0.1", 50934)
    assert ok.extra == {"method": "publickey", "key_type": "ED25519",
                        "key_fingerprint": "SHA256:oH34WO8Tg4MupFwTe5mQWtX9lbCYYlwHpOB59qtsG8M"}
    limit = by["sshd:max_auth_attempts"]
    assert (limit.severity.label, limit.user, limit.src.port) == ("medium", "daemon", 58146)
    denied = by["sshd:user_not_allowed"]
    assert (denied.user, denied.extra["reason"]) == ("bin", "not listed in AllowUsers")
    assert [a.rule.id for a in r.alerts].count("sshd:failed_password") == 6
    assert r.skipped == {"sshd:connection": 6, "sshd:listening": 1, "sshd:daemon": 1}


@pytest.mark.parametrize(("line", "rule_id", "user", "ip", "extra"), [
    # OpenSSH / PAM message formats that reach the log through syslog (not in the captured runs)
    ("Nov 24 06:38:44 vm sshd[4983]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
     "tty=ssh ruser= rhost=127.0.0.66  user=root", "sshd:pam_auth_failure", "root", "127.0.0.66", {}),
    ("Nov 24 06:38:44 vm sshd[4983]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh "
     "ruser= rhost=127.0.0.66  user=root", "sshd:pam_auth_failure", "root", "127.0.0.66",
     {"more_failures": 2}),
    ("Nov 24 06:38:44 vm sshd[4983]: error: maximum authentication attempts exceeded for invalid user admin "
     "from 127.0.0.66 port 54403 ssh2 [preauth]", "sshd:max_auth_attempts", "admin", "127.0.0.66",
     {"invalid_user": True}),
    ("2026-11-24T06:38:44.120437+00:00 vm sshd-session[4983]: Failed publickey for git from 2001:db8::7 port "
     "40022 ssh2: RSA SHA256:abc", "sshd:failed_publickey", "git", "2001:db8::7",
     {"key_type": "RSA", "key_fingerprint": "SHA256:abc", "method": "publickey", "invalid_user": False}),
])
def test_message_formats(line, rule_id, user, ip, extra):
    assert detect(line) == FMT
    (a,) = normalize_one(FMT, line)
    assert (a.rule.id, a.user, a.src.ip, a.action) == (rule_id, user, ip, "failed")
    assert extra.items() <= a.extra.items()
    assert a.time == datetime(2026, 11, 24, 6, 38, 44, 120437 if "T06" in line else 0, tzinfo=UTC)


def test_year_comes_from_received_at():
    (a,) = normalize_one(FMT, LAB[2], received_at=datetime(2027, 1, 2, tzinfo=UTC))
    assert a.time == datetime(2026, 11, 24, 6, 38, 44, tzinfo=UTC)


def test_other_programs_in_the_auth_log_are_skipped():
    line = LAB[2].replace("sshd[4983]", "sudo[77]")
    with pytest.raises(Skipped, match="other_program"):
        normalize_one(FMT, line)


@pytest.mark.parametrize(("line", "reason", "field"), [
    ("Nov 24 06:38:44", "bad_record", "program"),
    ("Xyz 24 06:38:44 vm sshd[4983]: Failed password for root from 127.0.0.66 port 1 ssh2", "bad_timestamp",
     "time"),
    ("Nov 24 06:38:44 vm sshd[4983] Failed password for root", "bad_record", "program"),
    ("2026-13-24T06:38:44Z vm sshd[1]: Invalid user x from 1.2.3.4", "bad_timestamp", "time"),
])
def test_malformed_lines_are_dead_letters(line, reason, field):
    with pytest.raises(BadRecord) as e:
        normalize_one(FMT, line)
    assert (e.value.reason, e.value.field) == (reason, field)
    assert [(d.reason, d.field) for d in run_text(FMT, line).dead] == [(reason, field)]


def test_sniff_is_specific():
    assert {detect(ln) for ln in LAB + VARIANTS} == {FMT}
    for other in ("host/fail2ban.log", "host/clamd.log", "waf/apache_error_samples.log"):
        assert detect(fixture_lines(other)[0]) != FMT


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(LAB + VARIANTS))
def test_fuzz(text):
    check_contract(FMT, text)
