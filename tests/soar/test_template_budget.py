"""Playbook templates within a time and size budget (issue 13 §9): a template that cannot finish fails fast,
`mdr playbooks validate` rejects it, and at run time only its step fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from jinja2.exceptions import UndefinedError
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.soar.actions import dry_run
from pipeline.soar.connectors import load_channels
from pipeline.soar.playbooks import Playbook, PlaybookSet, Step, Trigger, load_playbooks
from pipeline.soar.templates import Budget, TemplateBudgetError, Templates, sample_context
from tests.soar.helpers import incident, playbook, write_yaml

ROOT = Path(__file__).resolve().parents[2]
NESTED = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"

RUNAWAY = {
    "nested loops": NESTED,
    "nested loops, no output": NESTED.replace("x", ""),
    "doubling string": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                       "{% endfor %}{{ ns.s | length }}",
    "doubling with +": "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                       "{% endfor %}",
    "repetition": "{{ 'x' * 1000000000 }}",
    "list repetition": "{{ ([1] * 1000000000) | length }}",
    "big power": "{{ 2 ** 100000000 }}",
    "printf width": "{{ '%1000000000s' % 'x' }}",
    "format width": "{{ '{:>1000000000}'.format('x') }}",
    "format filter": "{{ '%1000000000s' | format('x') }}",
    "center": "{{ 'x' | center(1000000000) }}",
    "ljust": "{{ 'x'.ljust(1000000000) }}",
    "slice": "{{ range(10) | slice(1000000000) | list | length }}",
    "replace": "{{ ('a' * 200000) | replace('a', 'bbbbbbbbbb') }}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                         "{{ f(40) }}",
    "output": "{% for i in range(100000) %}{{ '0123456789' }}{% endfor %}",
}


@pytest.mark.parametrize("name", list(RUNAWAY))
def test_runaway_templates_fail_fast(name: str) -> None:
    t = Templates()
    t0 = time.monotonic()
    with pytest.raises(TemplateBudgetError):
        t.value(RUNAWAY[name], sample_context())
    assert time.monotonic() - t0 < Budget().seconds + 1
    assert t.check(RUNAWAY[name]).startswith("TemplateBudgetError")


def test_time_budget() -> None:
    t = Templates(budget=Budget(steps=10**9, seconds=0.2))
    t0 = time.monotonic()
    with pytest.raises(TemplateBudgetError, match=r"took more than 0.2 s"):
        t.render(RUNAWAY["exponential macro"], {})
    assert time.monotonic() - t0 < 2


def test_budget_is_per_render_and_ordinary_templates_fit() -> None:
    t = Templates(budget=Budget(steps=1000))
    loop = "{% for i in range(600) %}.{% endfor %}"
    for _ in range(3):  # each render has its own 1,000 steps
        assert t.render(loop, {}) == "." * 600
    with pytest.raises(TemplateBudgetError):
        t.value({"a": loop, "b": loop}, {})  # one value, one budget
    assert t.render("{{ 'ab' | replace('a', 'c') }} {{ '%d items' | format(1000000000) }} {{ 5 | center(3) }}",
                    {}) == "cb 1000000000 items  5 "
    assert t.value("{{ 'x' * 3 }}", {}) == "xxx"
    with pytest.raises(UndefinedError):
        t.render("{{ lipsum(2) }}", {})  # gone: lipsum(10**8) would run for minutes


def test_shipped_templates_render_the_sample_within_budget() -> None:
    t = Templates(ROOT / "playbooks" / "templates")
    for f in sorted((ROOT / "playbooks" / "templates").glob("*.j2")):
        assert t.check_file(f.stem) is None, f
        assert t.render_file(f.stem, sample_context()).strip()


def test_validate_rejects_a_runaway_template(tmp_path: Path) -> None:
    """The nested-loop template hung at run time and `mdr playbooks validate` accepted it."""
    d = tmp_path / "pb"
    write_yaml(d / "hang.yaml", playbook("hang", [
        {"notify": {"channel": "soc", "text": NESTED}},
        {"id": "cond", "when": "range(100000) | map('string') | join | length > 0 and "
                               "(range(99999) | list) * 100000", "collect": {}},
    ], categories=["scan"]))
    errs = [str(e) for e in load_playbooks(d).errors]
    assert len(errs) == 2 and all("TemplateBudgetError" in e for e in errs), errs
    assert errs[0].startswith(f"{d / 'hang.yaml'}:") and "steps[0]" in errs[0] and "steps[1] (cond).when" in errs[1]
    r = CliRunner().invoke(app, ["playbooks", "validate", str(d), "--channels",
                                 str(ROOT / "playbooks" / "channels.yaml")])
    assert r.exit_code == 1 and "TemplateBudgetError" in r.output and "2 problems" in r.output
    (d / "templates").mkdir()
    (d / "templates" / "loop.j2").write_text(NESTED)
    write_yaml(d / "hang.yaml", playbook("hang", [{"notify": {"channel": "soc", "template": "loop"}}]))
    [err] = load_playbooks(d).errors
    assert "template loop: TemplateBudgetError" in str(err)


def test_at_run_time_only_the_runaway_step_fails() -> None:
    pbs = PlaybookSet(templates=Templates())
    pbs.playbooks["p"] = Playbook("p", "", Trigger(default=True), (
        Step("bad", "notify", {"channel": "soc", "text": NESTED}),
        Step("good", "notify", {"channel": "soc", "text": "about {{ incident.title }}"}),
    ))
    chans = load_channels(ROOT / "playbooks" / "channels.yaml", dry_run=True)
    t0 = time.monotonic()
    [(_, results)] = dry_run(incident(1), pbs, chans, only="p")
    assert time.monotonic() - t0 < Budget().seconds + 2
    (s1, r1), (s2, r2) = results
    assert (s1.id, r1.status) == ("bad", "failed") and "TemplateBudgetError" in r1.detail
    assert s2.id == "good" and r2.status in ("dry-run", "skipped"), r2  # rendered, then sent (or no channel)


def test_a_huge_value_is_clipped_not_a_budget_failure() -> None:
    """A 96 KB Host header in an incident's title and entities made the notice of that incident fail its budget:
    an attacker could silence it. A value shows at most VALUE_CHARS characters, in every markup; a secret at the
    cut is redacted, never cut in half."""
    from pipeline.redact import REDACTOR
    from pipeline.soar.templates import VALUE_CHARS

    host = "<b>x</b>&" * 12_000 + ".example"
    inc = incident(1, title=f"Web attack against {host}", hosts=[host])
    ctx = {**sample_context(), "incident": {"title": inc.title, "entities": {"hosts": [host] * 3}}}
    t = Templates(ROOT / "playbooks" / "templates")
    for markup in ("raw", "text", "slack", "markdown", "jira"):
        out = t.render_file("incident", ctx, markup)
        assert out.count("…") >= 2 and len(out) < 20 * VALUE_CHARS, (markup, len(out))
    secret = "clip-secret-0123456789"
    REDACTOR.add(secret)
    try:
        cut = "x" * (VALUE_CHARS - 5) + secret + "y" * 10
        assert t.render("{{ v }}", {"v": cut}) == "x" * (VALUE_CHARS - 5) + "***yy…"
    finally:
        REDACTOR.clear()
