"""Loading use cases: broken files are reported with file:line and skipped; the rest keep working."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.rules.testing import run_tests, validate
from pipeline.rules.usecase import load_usecases

ROOT = Path(__file__).resolve().parents[2]

GOOD = """title: good
id: 00000000-0000-4000-8000-000000000001
logsource: {product: mdr}
detection: {sel: {rule.id: x}, condition: sel}
level: high
mdr: {category: exploit}
tests:
  - {expect: match, alert: {rule: {id: x}}}
  - {expect: no-match, alert: {rule: {id: y}}}
"""


def test_shipped_usecases_load_and_pass() -> None:
    ucs = load_usecases(str(ROOT / "usecases"))
    assert not ucs.errors, [str(e) for e in ucs.errors]
    assert len(ucs.usecases) >= 40
    assert not validate(ucs)
    results = run_tests(ucs)
    assert results and all(r.ok for r in results), [r.detail for r in results if not r.ok]
    cats = {u.mdr.category for u in ucs.usecases if u.mdr.incident}
    assert {"web_attack", "exploit", "webshell", "brute_force", "account_compromise", "scan", "malware", "c2",
            "defacement", "dos", "data_leak"} <= cats
    assert all(u.attack for u in ucs.usecases if u.mdr.incident), "every use case maps to ATT&CK"


def test_broken_file_is_reported_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "good.yml").write_text(GOOD)
    (tmp_path / "yaml.yml").write_text("title: x\ndetection: {sel: [\n")
    (tmp_path / "field.yml").write_text(GOOD.replace("rule.id: x}", "NoSuchField: x}")
                                        .replace("000000000001", "000000000002"))
    (tmp_path / "prio.yml").write_text(GOOD.replace("category: exploit", "priority: P9")
                                       .replace("000000000001", "000000000003"))
    ucs = load_usecases(str(tmp_path))
    assert [u.title for u in ucs.usecases] == ["good"]
    msgs = sorted(str(e) for e in ucs.errors)
    assert len(msgs) == 3
    assert any("field.yml:" in m and "NoSuchField" in m for m in msgs), msgs
    assert any("prio.yml:" in m and "P9" in m for m in msgs), msgs
    assert any(m.startswith(f"{tmp_path / 'yaml.yml'}:") and "YAML" in m for m in msgs), msgs


def test_missing_tests_fail_validation(tmp_path: Path) -> None:
    (tmp_path / "u.yml").write_text(GOOD.split("tests:")[0])
    problems = validate(load_usecases(str(tmp_path)))
    assert any("no inline tests" in str(p) for p in problems)


def test_cli_rules_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    (tmp_path / "u.yml").write_text(GOOD.replace("{expect: no-match", "{expect: match"))
    r = CliRunner().invoke(app, ["rules", "test", str(tmp_path)])
    assert r.exit_code == 1
    r = CliRunner().invoke(app, ["rules", "validate", str(ROOT / "usecases")])
    assert r.exit_code == 0, r.output
