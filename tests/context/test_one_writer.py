"""Priority is written in one place (issue 15 §5): `pipeline/context/priority.py: prioritize` alone writes an
incident's `priority` and `priority_reasons`; fusion records what it merged (`Incident.fused`) and prioritize reads
that record. The scan below reads every module of `pipeline/` and fails on any other writer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.context.priority import prioritize
from pipeline.core.engine import Core
from pipeline.core.fusion import Fusion
from pipeline.normalize.source import read_alerts
from pipeline.rules.usecase import load_usecases
from pipeline.schema import PRIORITIES, UNRATED, Entities, Incident, MatchExplanation

from .conftest import T0

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "pipeline"
WRITER = "context/priority.py"
FIELDS = {"priority", "priority_reasons"}
# Writes that are not an incident's priority, each with why.
ALLOWED = {
    ("soar/tickets.py", "t.priority"): "a ticket's copy of its incident's priority",
    ("soar/templates.py", "Incident(priority=)"): "the sample incident templates are checked against",
    ("soar/templates.py", "Incident(priority_reasons=)"): "the sample incident templates are checked against",
}


def writes(tree: ast.AST) -> list[str]:
    """What a module writes of FIELDS: attribute assignments and deletions, mutating calls on the reasons list,
    setattr, and keywords of `Incident(...)` / `replace(...)` calls (an incident created with `priority=UNRATED`
    is not rated)."""
    found: list[str] = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        while targets:
            t = targets.pop(0)
            if isinstance(t, ast.Tuple | ast.List):
                targets.extend(t.elts)
            elif isinstance(t, ast.Starred):
                targets.append(t.value)
            elif isinstance(t, ast.Attribute) and t.attr in FIELDS:
                found.append(ast.unparse(t))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) \
                and func.value.attr == "priority_reasons":
            found.append(ast.unparse(func))
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "setattr" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in FIELDS:
            found.append(ast.unparse(node))
        if name in ("Incident", "replace"):
            for kw in node.keywords:
                unrated = isinstance(kw.value, ast.Name) and kw.value.id == "UNRATED"
                if kw.arg in FIELDS and not (kw.arg == "priority" and unrated):
                    found.append(f"Incident({kw.arg}=)")
    return found


def test_prioritize_is_the_only_writer_of_priority_and_reasons() -> None:
    offenders, seen = [], set()
    for path in sorted(PIPELINE.rglob("*.py")):
        rel = path.relative_to(PIPELINE).as_posix()
        if rel == WRITER:
            continue
        for w in writes(ast.parse(path.read_text(encoding="utf-8"))):
            if (rel, w) in ALLOWED:
                seen.add((rel, w))
            else:
                offenders.append(f"{rel}: {w}")
    assert not offenders, "only pipeline/context/priority.py may write priority / priority_reasons"
    assert seen == set(ALLOWED), f"stale allowances: {set(ALLOWED) - seen}"
    assert writes(ast.parse((PIPELINE / WRITER).read_text(encoding="utf-8")))  # the scan sees the writer's writes


@pytest.mark.parametrize(("code", "expected"), [
    ("survivor.priority = new_prio", ["survivor.priority"]),
    ("survivor.priority_reasons.append(f'fused with {x}')", ["survivor.priority_reasons.append"]),
    ("inc.priority_reasons += ['x']", ["inc.priority_reasons"]),
    ("a.b.priority, n = 'P1', 2", ["a.b.priority"]),
    ("setattr(inc, 'priority', 'P1')", ["setattr(inc, 'priority', 'P1')"]),
    ("Incident(incident_id='x', priority=uc.mdr.priority)", ["Incident(priority=)"]),
    ("msgspec.structs.replace(inc, priority_reasons=[])", ["Incident(priority_reasons=)"]),
    ("Incident(incident_id='x', priority=UNRATED, base_priority=uc.mdr.priority)", []),
    ("t = inc.priority; reasons = list(inc.priority_reasons)", []),
    ("days[i.priority] += 1", []),
])
def test_the_scan_finds_writes(code: str, expected: list[str]) -> None:
    assert writes(ast.parse(code)) == expected


def _incident(iid: str, category: str, base: str, t_min: int, host: str = "web-01") -> Incident:
    t = T0.replace(minute=t_min)
    return Incident(incident_id=iid, tenant_id="shop", title=f"{category} on {host}", category=category,
                    class_="compromise", priority=UNRATED, base_priority=base, use_cases=[f"uc-{category}"],
                    first_seen=t, last_seen=t, alert_count=1, alert_ids=[f"a-{iid}"],
                    entities=Entities(hosts=[host]),
                    explanation=[MatchExplanation(f"uc-{category}", f"{category} rule", [f"a-{iid}"])])


def test_a_fused_incident_gets_the_highest_base_of_its_parts_with_a_reason_naming_the_fusion() -> None:
    fusion = Fusion()
    webshell = _incident("w" * 32, "webshell", "P3", 1)
    malware = _incident("m" * 32, "malware", "P1", 2)
    for inc in (webshell, malware):
        for changed in fusion.fuse(inc):
            prioritize(changed, now=T0)
    assert malware.status == "merged" and malware.merged_into == webshell.incident_id
    assert [(p.incident_id, p.category, p.base_priority) for p in webshell.fused] == [(malware.incident_id,
                                                                                      "malware", "P1")]
    assert webshell.base_priority == "P3"  # its own use case's; fusion writes no priority
    assert webshell.priority == "P1"
    assert webshell.priority_reasons[:2] == [
        f"base P1 from fused malware incident 'malware on web-01' ({'m' * 12}): the highest use-case priority "
        "of the fused incidents",
        f"fused with malware incident 'malware on web-01' ({'m' * 12})",
    ]
    assert "multi-stage attack: webshell + malware (2 incidents fused)" in webshell.priority_reasons[2]


def test_a_fused_incident_keeps_its_own_base_when_it_is_the_highest() -> None:
    fusion = Fusion()
    webshell = _incident("w" * 32, "webshell", "P2", 1)
    malware = _incident("m" * 32, "malware", "P4", 2)
    for inc in (webshell, malware):
        fusion.fuse(inc)
    prioritize(webshell, now=T0)
    assert webshell.priority_reasons[0] == "base P2 from use case 'webshell rule'"
    assert webshell.priority == "P1"  # +1 for the two stages


def test_parts_a_part_had_absorbed_are_recorded_in_the_survivor() -> None:
    """A defacement absorbed a web attack; then a webshell (ranked higher) absorbs the defacement: the survivor
    records both, so every fused incident has its reason line and its priority counts."""
    fusion = Fusion()
    deface = _incident("d" * 32, "defacement", "P3", 2)
    web = _incident("e" * 32, "web_attack", "P1", 1)
    webshell = _incident("w" * 32, "webshell", "P3", 3)
    for inc in (deface, web, webshell):
        fusion.fuse(inc)
    assert webshell.fused_from == [deface.incident_id, web.incident_id]
    assert {p.incident_id for p in webshell.fused} == {deface.incident_id, web.incident_id}
    prioritize(webshell, now=T0)
    assert webshell.priority_reasons[0].startswith(f"base P1 from fused web_attack incident 'web_attack on web-01' "
                                                   f"({'e' * 12})")
    assert sum(r.startswith("fused with ") for r in webshell.priority_reasons) == 2


def test_the_core_prioritizes_every_incident_it_emits_without_a_context() -> None:
    alerts = read_alerts([str(ROOT / "samples" / "lab-1")], "shop", "web-01").alerts
    core = Core(load_usecases(str(ROOT / "usecases")))  # no context, no prioritizer hook
    incidents: dict[str, Incident] = {}
    for i in range(0, len(alerts), 2048):
        core.feed_alerts(alerts[i:i + 2048])
        incidents.update(core.take().incidents)
    assert incidents
    for inc in incidents.values():
        assert inc.priority in PRIORITIES, inc.title
        assert inc.priority_reasons[0].startswith("base ") and inc.priority_reasons[-1].startswith("SLA ")
        assert inc.sla_due is not None
        if inc.status != "merged":
            assert sum(r.startswith("fused with ") for r in inc.priority_reasons) == len(inc.fused_from)
    assert any(inc.fused for inc in incidents.values())
