"""The SigmaHQ sample (/work/shared/sigma): every rule loads unchanged, compiles or says why not, and the
index finds exactly what evaluating every rule finds."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec

from pipeline.rules import UnsupportedRule, alert_from_fields
from pipeline.rules.compile import CompiledRule, compile_rule
from pipeline.rules.fieldmap import is_normalized_path
from pipeline.rules.index import RuleIndex
from pipeline.schema import Alert, Source
from tests.rules import events_for, sigma_rules

MIN_COMPILED = 380  # of 460; the rest need log sources we have no data for, or fields our schema lacks
REASONS = {"unsupported logsource", "unmapped field"}
# Sigma fields with no meaning in the normalized alert (no parent process, no DNS answers, no zeek internals).
NO_MEANING = {
    "ParentImage",
    "ParentCommandLine",
    "LogonId",
    "resp_mime_types",
    "client_header_names",
    "answer",
    "answers",
    "Z",
}
SOURCES = [
    Source("ModSecurity", "OWASP", "waf", "modsecurity"),
    Source("auditd", "Linux Audit", "host", "auditd"),
    Source("OpenSSH", "OpenBSD", "auth", "sshd"),
    Source("ClamAV", "Cisco Talos", "av", "clamav"),
    Source("Suricata", "OISF", "ids", "suricata"),
    Source("AWS Network Firewall", "AWS", "firewall", "aws_nfw"),
    Source("ModSecurity", "OWASP", "waf", "modsec_error"),
]


def _compile_all() -> tuple[list[CompiledRule], list[tuple[str, UnsupportedRule]]]:
    ok, bad = [], []
    for path, rule in sigma_rules():
        assert not rule.errors, (path, rule.errors)  # pySigma loads every rule unchanged
        try:
            ok.append(compile_rule(rule))
        except UnsupportedRule as e:
            bad.append((path.name, e))
    return ok, bad


def test_every_rule_compiles_or_says_why() -> None:
    ok, bad = _compile_all()
    by_reason = Counter(e.reason for _, e in bad)
    detail = Counter(str(e) for _, e in bad)
    print(
        f"\nSigmaHQ: {len(ok) + len(bad)} rules loaded, {len(ok)} compiled, {len(bad)} unsupported: "
        f"{dict(by_reason)}"
    )
    for what, n in detail.most_common():
        print(f"  {n:3d}  {what}")
    assert set(by_reason) <= REASONS
    assert {e.detail for _, e in bad if e.reason == "unmapped field"} <= NO_MEANING
    assert len(ok) >= MIN_COMPILED
    for r in ok:
        assert r.fields and all(is_normalized_path(f) for f in r.fields), r.title


def _alert(rule: CompiledRule, event: dict[str, Any]) -> Alert:
    """The event as an alert from a product the rule's log source covers (when one of ours does)."""
    fields = {k: v for k, v in event.items() if k != "keywords"}
    text = " ".join([str(v) for v in fields.values()] + list(event.get("keywords", [])))
    alert = alert_from_fields(fields, product=rule.logsource.product, raw=text)
    for src in SOURCES:
        candidate = msgspec.structs.replace(alert, source=src)
        if rule.applies(candidate):
            return candidate
    return alert


def test_index_agrees_with_every_rule_on_generated_events() -> None:
    rules, _ = _compile_all()
    idx = RuleIndex(rules)
    alerts = [_alert(r, e) for r in rules for e in events_for(r.rule, limit=20)]
    found_own = Counter()
    for a in alerts:
        got = idx.match(a)
        assert got == [r for r in rules if r.matches(a)], a
        for r in got:
            found_own[r.id] += 1
    assert len(found_own) >= 0.9 * len(rules)  # most rules fire on their own events, through the index
