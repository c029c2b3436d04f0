"""AIDE 0.18.3 JSON reports: the lab's check, and real reports with no change, removals and other layouts."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import BadRecord, Skipped
from pipeline.normalize.reader import read_records
from pipeline.schema import to_builtins

from .conftest import RECEIVED, TENANT, check_contract, fixture, mutated, normalize_one, run_file, run_text

FMT = "aide"
LAB = fixture("host/aide_check.json")
REMOVED = fixture("host/aide_check_removed.json")


def by_path(alerts):
    return {a.file.path: a for a in alerts}


def test_lab_report():
    r = run_file(LAB, host="web-01")
    assert (r.records, r.dead, r.skipped) == (1, [], {})
    got = {p: (a.file.change, a.severity.label) for p, a in by_path(r.alerts).items()}
    assert got == {
        "/srv/lab/waf/www/uploads": ("added", "low"),  # a directory
        "/srv/lab/waf/www/uploads/cmd.php": ("added", "medium"),
        "/srv/lab/waf/www/uploads/invoice.pdf.com": ("added", "medium"),
        "/srv/lab/waf/cgi-bin/app.cgi": ("changed", "medium"),  # permissions
        "/srv/lab/waf/www": ("changed", "low"),  # directory times and link count only
        "/srv/lab/waf/www/index.html": ("changed", "medium"),  # content
    }
    assert {a.raw for a in r.alerts} == {LAB.read_text(encoding="utf-8")}
    assert len({a.alert_id for a in r.alerts}) == 6


def test_defaced_index_html():
    a = by_path(run_file(LAB, host="web-01").alerts)["/srv/lab/waf/www/index.html"]
    d = to_builtins(a)
    for k in ("alert_id", "tenant_id", "received_at", "source", "raw", "rules", "src", "dst"):
        d.pop(k)
    assert d == {
        "time": "2026-11-24T06:38:43Z", "severity": {},  # medium (the default) is omitted
        "rule": {"id": "aide:changed", "name": "AIDE: file changed", "category": "file_integrity"},
        "message": "AIDE: /srv/lab/waf/www/index.html changed (size, modify_time, change_time, sha256)",
        "host": {"name": "web-01"},
        "file": {"path": "/srv/lab/waf/www/index.html", "change": "changed",
                 "hash": "8cc9260cbec5ab025c6fad15683a687eff322d70006e90c42894a321110e9926"},
        "extra": {"aide_version": "0.18.3", "summary": "f > ... mc..H", "file_type": "file",
                  "changed_attrs": ["size", "modify_time", "change_time", "sha256"], "size_old": 44,
                  "size_new": 72, "modify_time_old": "2026-11-24 06:38:31 +0000",
                  "modify_time_new": "2026-11-24 06:38:42 +0000",
                  "change_time_old": "2026-11-24 06:38:31 +0000",
                  "change_time_new": "2026-11-24 06:38:42 +0000",
                  "sha256_old": "HgJHgioahg6nWWVK/b1v2pzYciKsUoCM1uPe3X1zaxo=",
                  "sha256_new": "jMkmDL7FqwJcb60VaDpofv8yLXAAbpDEKJSjIREOmSY="},
    }
    # the lab's restore.sh wrote the page and compromise.sh appended one line: the hash is that content's
    page = b"<html><body><h1>lab shop</h1></body></html>\n<h1>hacked by lab-crew</h1>\n"
    assert a.file.hash == hashlib.sha256(page).hexdigest() and len(page) == a.extra["size_new"]


def test_cgi_permission_change():
    a = by_path(run_file(LAB).alerts)["/srv/lab/waf/cgi-bin/app.cgi"]
    assert (a.extra["perm_old"], a.extra["perm_new"], a.extra["summary"]) == (
        "-rwxr-xr-x", "-rwxrwxrwx", "f = p.. .c...")
    assert a.message == "AIDE: /srv/lab/waf/cgi-bin/app.cgi changed (perm, change_time)"
    assert a.file.hash is None and a.host is None  # no host given, none in the report


def test_no_changes_is_skipped():
    r = run_file(fixture("host/aide_check_nochange.json"))
    assert (r.alerts, r.dead, r.skipped) == ([], [], {"aide:no_changes": 1})


def test_removed_symlink_and_owner_change():
    got = {p: (a.file.change, a.severity.label, a.extra.get("file_type"))
           for p, a in by_path(run_file(REMOVED).alerts).items()}
    assert got == {
        "/tmp/hostlab/www/sub/pw": ("added", "medium", "symlink"),
        "/tmp/hostlab/www/sub/x.php": ("added", "medium", "file"),
        "/tmp/hostlab/www/old.txt": ("removed", "medium", "file"),
        "/tmp/hostlab/www": ("changed", "low", "directory"),
        "/tmp/hostlab/www/sub": ("changed", "low", "directory"),
        "/tmp/hostlab/www/sub/readme.txt": ("changed", "medium", "file"),
    }
    owner = by_path(run_file(REMOVED).alerts)["/tmp/hostlab/www/sub/readme.txt"]
    assert (owner.extra["uid_old"], owner.extra["uid_new"], owner.extra["gid_new"]) == (0, 33, 33)


@pytest.mark.parametrize("name", ["aide_check_grouped_nosummary.json", "aide_check_ungrouped.json"])
def test_other_report_layouts_name_the_same_changes(name):
    """report_summarize_changes=no (path lists) and report_grouped=no (`entries`) of the same differences."""
    want = {(a.file.path, a.file.change) for a in run_file(REMOVED).alerts}
    r = run_file(fixture(f"host/{name}"))
    assert r.dead == [] and {(a.file.path, a.file.change) for a in r.alerts} == want
    levels = {a.file.path: a.severity.label for a in r.alerts}
    assert levels["/tmp/hostlab/www"] == "low" and levels["/tmp/hostlab/www/sub/readme.txt"] == "medium"


def test_json_lines_of_reports(tmp_path):
    """The lab's sample script writes each report as one JSON line; a file of them is one record."""
    path = tmp_path / "aide_check.jsonl"
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in (LAB, REMOVED)]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    [(_, fmt)] = list(read_records(str(path), TENANT, None, RECEIVED))
    assert fmt == FMT
    r = run_file(path)
    assert (r.records, r.dead, len(r.alerts)) == (1, [], 12)


def test_whole_document_is_detected():
    [(rec, fmt)] = list(read_records(str(LAB), TENANT, "web-01", RECEIVED))
    assert fmt == FMT and rec.text == LAB.read_text(encoding="utf-8")


@pytest.mark.parametrize(("text", "reason", "field"), [
    (LAB.read_text(encoding="utf-8")[:700], "bad_json", None),
    ("[1, 2]", "bad_record", "aide_version"),
    ('{"start_time": "2026-11-24 06:38:43 +0000", "outline": "x"}', "bad_record", "aide_version"),
    ('{"aide_version": "0.18.3", "start_time": "yesterday", "added": {"/a": "f++++"}}', "bad_timestamp",
     "start_time"),
    ('{"aide_version": "0.18.3", "added": {"/a": "f++++"}}', "bad_timestamp", "start_time"),
    ('{"aide_version": "0.18.3", "start_time": "2026-11-24 06:38:43 +0000", "added": 3}', "bad_record",
     "added"),
    ('{"aide_version": "0.18.3", "start_time": "2026-11-24 06:38:43 +0000", "changed": {"/a": 1}}',
     "bad_record", "changed"),
])
def test_malformed_reports_are_dead_letters(text, reason, field):
    with pytest.raises(BadRecord) as e:
        normalize_one(FMT, text)
    assert (e.value.reason, e.value.field) == (reason, field)
    assert [(d.reason, d.field) for d in run_text(FMT, text).dead] == [(reason, field)]


def test_report_without_entries_sections():
    text = fixture("host/aide_check_nochange.json").read_text(encoding="utf-8")
    with pytest.raises(Skipped, match="no_changes"):
        normalize_one(FMT, text)


REPORTS = [fixture(f"host/{n}").read_text(encoding="utf-8") for n in (
    "aide_check.json", "aide_check_removed.json", "aide_check_ungrouped.json", "aide_check_nochange.json")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(REPORTS))
def test_fuzz(text):
    check_contract(FMT, text)
