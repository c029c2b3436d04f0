"""ClamAV 1.4.6: the lab's webroot scan, and real clamscan --allmatch, clamdscan and clamd log runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import BadRecord, Skipped
from pipeline.schema import to_builtins

from .conftest import (
    RECEIVED,
    check_contract,
    detect,
    fixture,
    fixture_lines,
    normalizer,
    record,
    run_file,
    run_text,
)
from .conftest import mutated as mutated_lines

FMT = "clamav"
WEBROOT = fixture("host/clamscan_webroot.log")
SHELL = "/srv/lab/waf/www/uploads/cmd.php: Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL FOUND"
ALL_LINES = [ln for f in ("clamscan_webroot.log", "clamscan_allmatch.log", "clamd.log")
             for ln in fixture_lines(f"host/{f}")]


def test_lab_webroot_scan():
    r = run_file(WEBROOT, host="web-01")
    assert (r.records, r.dead) == (14, [])
    assert r.skipped == {"clamav:held": 2, "clamav:blank": 1, "clamav:summary": 10}
    shell, eicar = r.alerts
    d = to_builtins(shell)
    assert d.pop("raw") == SHELL and d.pop("alert_id")
    for k in ("tenant_id", "received_at", "source", "rules"):
        d.pop(k)
    assert d == {
        "time": "2026-11-24T06:38:43Z",  # the summary's Start Date: clamscan lines carry no time
        "severity": {"label": "high", "score": 75},
        "rule": {"id": "Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL",
                 "name": "Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL", "category": "malware"},
        "message": "ClamAV: Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL in /srv/lab/waf/www/uploads/cmd.php",
        "src": {}, "dst": {}, "host": {"name": "web-01"},
        "file": {"path": "/srv/lab/waf/www/uploads/cmd.php"},
        "extra": {"signature": "Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL", "unofficial": True,
                  "engine_version": "1.4.6"},
    }
    assert shell.action == "detected"
    assert (eicar.file.path, eicar.rule.id) == ("/srv/lab/waf/www/uploads/invoice.pdf.com",
                                                "Lab.Test.EICAR-NDB.UNOFFICIAL")


def test_allmatch_scan_with_clean_empty_and_colon_paths():
    r = run_file(fixture("host/clamscan_allmatch.log"))
    assert r.dead == []
    assert r.skipped == {"clamav:held": 4, "clamav:clean": 1, "clamav:not_scanned": 1, "clamav:blank": 1,
                         "clamav:summary": 10}
    assert [(a.file.path, a.rule.id) for a in r.alerts] == [
        ("/tmp/hostlab/av/scan/eicar.com", "Lab.Test.EICAR-NDB.UNOFFICIAL"),
        ("/tmp/hostlab/av/scan/eicar.com", "Lab.Test.EICAR-HDB.UNOFFICIAL"),
        ("/tmp/hostlab/av/scan/shell.php", "Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL"),
        ("/tmp/hostlab/av/scan/dir with: colon/a b.php", "Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL"),
    ]
    assert {a.time for a in r.alerts} == {datetime(2026, 11, 24, 19, 14, 50, tzinfo=UTC)}
    assert len({a.alert_id for a in r.alerts}) == 4


def test_clean_scan_and_clamdscan():
    clean = run_file(fixture("host/clamscan_clean.log"))
    assert (clean.alerts, clean.dead, clean.skipped) == ([], [], {"blank": 1, "clamav:summary": 11})
    r = run_file(fixture("host/clamdscan.log"))
    assert (len(r.alerts), r.dead) == (3, [])
    assert {a.time for a in r.alerts} == {datetime(2026, 11, 24, 19, 15, 10, tzinfo=UTC)}
    assert all("engine_version" not in a.extra for a in r.alerts)  # clamdscan's summary has none


def test_clamd_log_lines_carry_their_time():
    r = run_file(fixture("host/clamd.log"), host="web-01")
    assert (r.records, r.dead, r.skipped) == (50, [], {"clamav:message": 47})
    assert [(a.time, a.file.path) for a in r.alerts[:1]] == [
        (datetime(2026, 11, 24, 19, 15, 10, tzinfo=UTC), "/tmp/hostlab/av/scan/shell.php")]
    assert {a.host.name for a in r.alerts} == {"web-01"}


def test_clamd_syslog_line():
    line = ("Nov 24 19:15:10 vm clamd[16161]: /tmp/hostlab/av/scan/shell.php: "
            "Lab.Php.Webshell.SystemGet-NDB FOUND")  # clamd's message format, sent to syslog
    assert detect(line) == FMT
    (a,) = normalizer(FMT).normalize(record(line))
    assert (a.host.name, a.time.hour, a.file.path) == ("vm", 19, "/tmp/hostlab/av/scan/shell.php")


def test_detections_without_summary_are_flushed_with_received_at():
    n = normalizer(FMT)
    with pytest.raises(Skipped, match="held"):
        n.normalize(record(SHELL, host="web-01"))
    (a,) = n.flush()
    assert (a.time, a.host.name, a.raw) == (RECEIVED, "web-01", SHELL)
    assert n.flush() == []


@pytest.mark.parametrize(("line", "reason", "field"), [
    ("/srv/lab/waf/www/uploads/cmd.php: FOUND", "bad_record", "signature"),
    (": Lab.Test.EICAR FOUND", "bad_record", "signature"),
    ("/srv/x: two words FOUND", "bad_record", "signature"),
    ("/srv/lab/waf/www/index.html: looks fine", "bad_record", "line"),
    ("Tue Nov 31 19:15:10 2026 -> /tmp/x: Sig FOUND", "bad_timestamp", "time"),
])
def test_malformed_lines_are_dead_letters(line, reason, field):
    with pytest.raises(BadRecord) as e:
        normalizer(FMT).normalize(record(line))
    assert (e.value.reason, e.value.field) == (reason, field)
    assert [(d.reason, d.field) for d in run_text(FMT, line).dead] == [(reason, field)]


def test_bad_start_date_is_a_dead_letter_and_keeps_the_detections():
    n = normalizer(FMT)
    with pytest.raises(Skipped):
        n.normalize(record(SHELL))
    with pytest.raises(BadRecord) as e:
        n.normalize(record("Start Date: 2026:13:24 06:38:43"))
    assert e.value.field == "start_date"
    assert [a.file.path for a in n.flush()] == ["/srv/lab/waf/www/uploads/cmd.php"]


def test_detection():
    assert detect(SHELL) == FMT and detect("----------- SCAN SUMMARY -----------") == FMT
    assert {detect(ln) for ln in fixture_lines("host/clamd.log")} == {FMT}
    for other in ("host/sshd_auth.log", "host/fail2ban.log", "waf/apache_error_samples.log"):
        assert detect(fixture_lines(other)[0]) != FMT


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_lines(ALL_LINES))
def test_fuzz(text):
    n = normalizer(FMT)
    check_contract(FMT, text, n)
    for a in n.flush():
        assert a.raw == text and a.time.tzinfo is not None
