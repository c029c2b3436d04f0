"""Format detection over every fixture file: each cloud record is detected as its own format, and no record of
another product (Suricata, ModSecurity, Apache, auditd, ...) is claimed by a cloud normalizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.normalize.registry import formats

from ._cloud import records
from .conftest import FIXTURES, SHARED, detect

CLOUD = ("aws_waf", "aws_nfw", "alibaba_waf", "alibaba_cloudfw", "alibaba_sas", "alibaba_ddos", "wazuh")
# Files of other products whose format is known: the file's first record must be detected as that format
# (checked only when that normalizer is registered: other engineers add theirs in parallel).
EXPECTED = {
    "ids/eve_attack.jsonl": "suricata", "ids/eve_scanners.jsonl": "suricata",
    "ids/eve_samples.jsonl": "suricata", "waf/modsec_audit.jsonl": "modsecurity",
    "waf/modsec_audit_samples.jsonl": "modsecurity",
    "waf/apache_access.log": "apache_access", "waf/apache_access_samples.log": "apache_access",
    "host/audit.log": "auditd",
}
_DOCS = {"README.md", "SCENARIO.md"}


def _other_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and "cloud" not in p.relative_to(root).parts
                  and p.name not in _DOCS and not p.name.endswith("LICENSE"))


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]


@pytest.mark.parametrize("fmt", CLOUD)
def test_cloud_records_detect_as_their_format(fmt):
    assert fmt in formats()
    assert [detect(line) for line in records(fmt)] == [fmt] * len(records(fmt))


@pytest.mark.parametrize("path", _other_files(FIXTURES), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_other_products_records_are_not_claimed(path):
    lines = _lines(path)
    claimed = [(n, detect(line)) for n, line in enumerate(lines, 1) if detect(line) in CLOUD]
    assert claimed == []
    assert detect(path.read_text(encoding="utf-8", errors="replace")[:4096]) not in CLOUD  # whole-file head


@pytest.mark.parametrize(("rel", "fmt"), sorted(EXPECTED.items()))
def test_other_products_files_detect_as_their_format(rel, fmt):
    path = FIXTURES / rel
    if not path.exists() or fmt not in formats():
        pytest.skip(f"{rel} or the {fmt} normalizer is not there yet")
    assert detect(_lines(path)[0]) == fmt


def test_shared_lab_records_are_not_claimed():
    root = SHARED / "samples/lab-1"
    if not root.exists():
        pytest.skip(f"shared lab samples not available: {root}")
    for path in _other_files(root):
        assert [n for n, line in enumerate(_lines(path), 1) if detect(line) in CLOUD] == [], path.name
