"""Apache access log: context only (every valid line Skipped), anything else a dead letter."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from pipeline.normalize.base import BadRecord, Skipped

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

FMT = "apache_access"
SAMPLES = fixture_lines("waf/apache_access_samples.log")


@pytest.mark.parametrize("line", [
    *SAMPLES,
    '203.0.113.9 - alice [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" 200 2326 '
    '"http://example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',  # Apache's combined-format example
    '::1 - - [24/Nov/2026:06:38:33 +0000] "-" 408 -',
    '127.0.0.1 - - [24/Nov/2026:06:38:33 +0000] "GET /a\\"b HTTP/1.1" 404 196',
])
def test_valid_lines_are_context(line):
    assert detect(line) == FMT
    with pytest.raises(Skipped) as e:
        normalize_one(FMT, line)
    assert e.value.reason == "access_log"


@pytest.mark.parametrize("line", [
    "", "hello world", SAMPLES[0].replace("[24/Nov/2026:06:38:33 +0000]", "[yesterday]"),
    SAMPLES[0].replace('"GET / HTTP/1.1"', "GET / HTTP/1.1"), SAMPLES[0].replace(" 200 ", " OK "),
    fixture_lines("waf/apache_error_samples.log")[3], fixture_lines("ids/eve_samples.jsonl")[0],
])
def test_other_lines_are_bad_records_and_not_sniffed(line):
    assert detect(line) != FMT
    with pytest.raises(BadRecord) as e:
        normalize_one(FMT, line)
    assert e.value.reason == "bad_format"
    assert run_text(FMT, line).dead[0].reason == "bad_format"


def test_whole_lab_file():
    r = run_file(fixture("waf/apache_access.log"))
    assert (r.records, r.alerts, r.dead, r.skipped) == (1065, [], [], {"apache_access:access_log": 1065})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SAMPLES))
def test_fuzz_only_skips_or_bad_records(text):
    assert check_contract(FMT, text) == []
