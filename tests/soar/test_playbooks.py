"""Playbook loading and validation (file:line errors), the shipped playbooks, selection, templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from pipeline.schema import CATEGORIES
from pipeline.soar.connectors import load_channels
from pipeline.soar.playbooks import load_playbooks, parse_duration
from pipeline.soar.templates import Templates
from tests.soar.helpers import incident, playbook, write_yaml

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "playbooks"


def test_shipped_playbooks_are_valid_and_cover_every_category() -> None:
    chans = load_channels(SHIPPED / "channels.yaml")
    pbs = load_playbooks(SHIPPED, channels=chans.names())
    assert pbs.errors == []
    for cat in CATEGORIES:
        chosen = pbs.select(incident(1, category=cat))
        assert len(chosen) == 1, cat
        if cat not in ("policy", "other"):
            assert chosen[0].name == cat.replace("_", "-"), cat
        else:
            assert chosen[0].name == "default"


def test_selection_prefers_the_use_case_choice_then_specificity(tmp_path: Path) -> None:
    d = tmp_path / "pb"
    step = [{"collect": {}}]
    write_yaml(d / "a.yaml", playbook("generic-web", step, categories=["web_attack"]))
    write_yaml(d / "b.yaml", playbook("shop-web", step, categories=["web_attack"], tenants=["shop"]))
    write_yaml(d / "c.yaml", playbook("critical", step, priorities=["P1"]))
    write_yaml(d / "d.yaml", playbook("fallback", step))
    pbs = load_playbooks(d)
    assert pbs.errors == []
    assert [p.name for p in pbs.select(incident(1, tenant="shop"))] == ["shop-web"]
    assert [p.name for p in pbs.select(incident(1, tenant="acme"))] == ["generic-web"]
    assert [p.name for p in pbs.select(incident(1, category="scan", priority="P1"))] == ["critical"]
    assert [p.name for p in pbs.select(incident(1, category="scan"))] == ["fallback"]
    assert [p.name for p in pbs.select(incident(1, category="scan", playbook="shop-web"))] == ["shop-web"]
    assert pbs.select(incident(1, status="merged", merged_into="x")) == []


def test_validation_reports_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "pb" / "bad.yaml"
    bad.parent.mkdir()
    bad.write_text(
        "name: Bad Name\n"                                      # 1
        "trigger: {categories: [web_attack, nonsense]}\n"       # 2
        "color: red\n"                                          # 3
        "steps:\n"                                              # 4
        "  - notify: {channel: pager, text: 'x'}\n"             # 5
        "  - block_ip: {channel: firewall}\n"                   # 6
        "  - id: twice\n"                                       # 7
        "    collect: {}\n"                                     # 8
        "  - id: twice\n"                                       # 9
        "    enrich: [asset, horoscope]\n"                      # 10
        "  - notify: {channel: soc, text: '{{ incident.title '}\n"  # 11
        "  - collect: {}\n"                                     # 12
        "    enrich: {}\n"                                      # 13
        "  - wait_approval: {prompt: ok, timeout: soon}\n"      # 14
        "    when: 'incident.outcome =='\n"                     # 15
        "  - notify: {channel: soc, template: nope}\n"          # 16
        "    retry: {attempts: 0}\n"                            # 17
    )
    pbs = load_playbooks(bad.parent, channels={"soc", "firewall"})
    got = {(e.line, e.message.split(":")[0]) for e in pbs.errors}
    text = "\n".join(str(e) for e in pbs.errors)
    assert all(str(e).startswith(f"{bad}:") for e in pbs.errors)
    assert (1, "name must be lower-case letters, digits, '-', '_' or '.'") in got
    assert "trigger.categories: unknown ['nonsense']" in text and any(e.line == 2 for e in pbs.errors)
    assert (3, "unknown key 'color' (allowed") in {(e.line, e.message[:28]) for e in pbs.errors}
    assert any(e.line == 5 and "unknown channel 'pager'" in e.message for e in pbs.errors)
    assert any(e.line == 6 and "missing parameter 'ips'" in e.message for e in pbs.errors)
    assert any(e.line == 9 and "duplicate step id 'twice'" in e.message for e in pbs.errors)
    assert any(e.line == 10 and "horoscope" in e.message for e in pbs.errors)
    assert any(e.line == 11 and "template" in e.message for e in pbs.errors)
    assert any(e.line == 12 and "exactly one action" in e.message for e in pbs.errors)
    assert any(e.line == 14 and "not a duration" in e.message for e in pbs.errors)
    assert any(e.line == 15 and "when" in e.message for e in pbs.errors)
    assert any(e.line == 16 and "no template 'nope'" in e.message for e in pbs.errors)
    assert any(e.line == 17 and "at least 1" in e.message for e in pbs.errors)
    assert pbs.playbooks == {}


def test_broken_yaml_and_duplicates_do_not_stop_the_rest(tmp_path: Path) -> None:
    d = tmp_path / "pb"
    write_yaml(d / "ok.yaml", playbook("ok", [{"collect": {}}]))
    write_yaml(d / "dup.yaml", playbook("ok", [{"collect": {}}]))
    (d / "broken.yaml").write_text("name: x\nsteps: [\n")
    pbs = load_playbooks(d)
    assert list(pbs.playbooks) == ["ok"]
    msgs = [str(e) for e in pbs.errors]
    assert any("broken.yaml" in m and "YAML" in m for m in msgs)
    assert any("duplicate playbook name 'ok'" in m for m in msgs)


def test_step_options_and_defaults(tmp_path: Path) -> None:
    d = tmp_path / "pb"
    write_yaml(d / "p.yaml", {"name": "p", "trigger": {"default": True},
                              "defaults": {"timeout": "3s", "retry": {"attempts": 4, "backoff": "500ms"}},
                              "steps": [{"collect": {}}, {"id": "n", "notify": {"channel": "x", "text": "t"},
                                                         "timeout": "1m", "retry": 2, "on_failure": "stop"}]})
    pb = load_playbooks(d).playbooks["p"]
    a, b = pb.steps
    assert (a.id, a.timeout, a.retry.attempts, a.retry.backoff, a.on_failure) == ("collect-1", 3.0, 4, 0.5,
                                                                                   "continue")
    assert (b.id, b.timeout, b.retry.attempts, b.retry.backoff, b.on_failure) == ("n", 60.0, 2, 0.5, "stop")
    assert [parse_duration(x) for x in ("250ms", "30s", "10m", "2h", "1d", 7)] == [0.25, 30, 600, 7200, 86400, 7]


def test_templates_native_values_and_sandbox() -> None:
    t = Templates()
    ctx = {"incident": {"entities": {"src_ips": ["192.0.2.1", "192.0.2.2"]}, "title": "T"}, "steps": {}}
    assert t.value("{{ incident.entities.src_ips }}", ctx) == ["192.0.2.1", "192.0.2.2"]
    assert t.value("block {{ incident.entities.src_ips | join(', ') }}", ctx) == "block 192.0.2.1, 192.0.2.2"
    assert t.value({"a": ["{{ incident.title }}", 3]}, ctx) == {"a": ["T", 3]}
    assert t.truthy("incident.entities.src_ips and not steps.approve.approved", ctx)
    assert t.value("{{ incident.nothing.deeper }}", ctx) is None
    with pytest.raises(SecurityError):
        t.render("{{ incident.__class__.__mro__[1].__subclasses__() }}", ctx)
    assert t.check("{{ broken ") is not None and t.check_expression("a ==") is not None
