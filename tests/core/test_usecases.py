"""Loading use cases: broken files are reported with file:line and skipped; the rest keep working."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.authoring import run_tests, validate
from pipeline.cli import app
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


def test_a_use_cases_techniques_come_from_its_tags_and_are_its_own_list() -> None:
    uc = next(u for u in load_usecases(str(ROOT / "usecases")).usecases if u.mdr.incident)
    uc.tags = ["attack.initial_access", "attack.t1190", "attack.t1059.004", "cve.2021-44228"]
    got = uc.attack
    assert got == ["T1190", "T1059.004"]
    got.append("T0000")  # techniques are computed once per tag list: a caller's list is a copy
    assert uc.attack == ["T1190", "T1059.004"]


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


MULTI = """# header comment
title: good
id: 00000000-0000-4000-8000-000000000001
logsource: {product: mdr}
detection:
  sel: {rule.id: x}
  condition: sel
level: high
mdr:
  category: exploit
  priority: P3
tests:
  - {expect: match, alert: {rule: {id: x}}}
  - {expect: no-match, alert: {rule: {id: y}}}
"""


def _line_of(text: str, needle: str) -> int:
    """The line of the last occurrence (the use case under test is the file's last document)."""
    return max(n for n, ln in enumerate(text.splitlines(), 1) if needle in ln)


@pytest.mark.parametrize("old,new,key,needle", [
    ("  priority: P3", "  priority: P9", "mdr.priority", "priority: P9"),
    ("  category: exploit", "  category: nonsense", "mdr.category", "category: nonsense"),
    ("  priority: P3", "  priority: P3\n  windw: 10m", "mdr.windw", "windw:"),
    ("  priority: P3", "  priority: P3\n  window: forever", "mdr.window", "window: forever"),
    ("  priority: P3", "  priority: P3\n  group_by: {a: 1}", "mdr.group_by", "group_by:"),
    ("mdr:\n  category: exploit\n  priority: P3", "mdr: [exploit]", "mdr", "mdr: [exploit]"),
    ("tests:\n  - {expect: match, alert: {rule: {id: x}}}\n  - {expect: no-match, alert: {rule: {id: y}}}",
     "tests: {expect: match}", "tests", "tests: {"),
    ("level: high", "level: severe", "level", "level: severe"),
    ("id: 00000000-0000-4000-8000-000000000001", "id: not-a-uuid", "id", "id: not-a-uuid"),
    ("id: 00000000-0000-4000-8000-000000000001", "id: [1, 2]", "detection", "detection:"),  # pySigma: AttributeError
])
def test_load_errors_name_file_line_and_the_offending_key(tmp_path: Path, old: str, new: str, key: str,
                                                         needle: str) -> None:
    """A use-case error pointed at `detection:` instead of the offending `mdr:` or `tests:` key."""
    text = MULTI.replace(old, new)
    assert text != MULTI
    f = tmp_path / "u.yml"
    f.write_text("---\n" + GOOD.replace("000000000001", "000000000009") + "---\n" + text)
    ucs = load_usecases(str(f))
    [e] = ucs.errors
    line = _line_of(f.read_text(), needle)
    assert str(e).startswith(f"{f}:{line}: [good] ") and f": {key}: " in str(e), (str(e), line)
    assert [u.id for u in ucs.usecases] == ["00000000-0000-4000-8000-000000000009"]


def test_validation_and_test_failures_point_at_the_test(tmp_path: Path) -> None:
    f = tmp_path / "u.yml"
    f.write_text(MULTI.replace("  - {expect: no-match, alert: {rule: {id: y}}}", "  - {expect: no-match}"))
    [p] = validate(load_usecases(str(f)))
    assert str(p).startswith(f"{f}:14: [good] tests[1]: ")
    f.write_text(MULTI.replace("{expect: no-match, alert: {rule: {id: y}}}", "{expect: match, alert: {rule: {id: y}}}"))
    r = CliRunner().invoke(app, ["rules", "test", str(f)], env={"COLUMNS": "250"})
    assert r.exit_code == 1 and f"FAIL {f}:14 good / test 2" in r.output
