"""Guardrails the noise model can never override: alerts that are always kept, whatever their score.

1. The alert matched a use case of priority P1 or P2.
2. The alert carries a threat-intel hit (`alert.intel` non-empty).
3. An exploit that was not blocked (`action != "blocked"`): it matched a use case of category `exploit` or
   `webshell`, or one of its rules is in an exploit category (`EXPLOIT_RULE_CATEGORIES`: CRS rce / lfi / rfi /
   php / java / sqli injection, Log4Shell, deserialization, Suricata privilege-gain and executable-code classes).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.rules.usecase import UseCase
from pipeline.schema import Alert

KEEP_PRIORITIES = frozenset({"P1", "P2"})
EXPLOIT_USECASE_CATEGORIES = frozenset({"exploit", "webshell"})
EXPLOIT_RULE_CATEGORIES = frozenset({
    "rce", "lfi", "rfi", "php", "java", "injection-php", "injection-java", "injection-generic", "sqli",
    "log4j", "log4shell", "jndi", "deserialization", "command-injection", "webshell", "exploit",
    "attempted administrator privilege gain", "attempted user privilege gain", "executable code was detected",
    "successful administrator privilege gain", "successful user privilege gain",
})


def _exploit_rule(a: Alert) -> bool:
    return any(r.category and r.category.lower() in EXPLOIT_RULE_CATEGORIES for r in (a.rule, *a.rules))


def keep_reason(a: Alert, ucs: Sequence[UseCase]) -> str | None:
    """Why the alert must be kept whatever the model says, or None when the model may suppress it."""
    for uc in ucs:
        if uc.mdr.priority in KEEP_PRIORITIES:
            return f"use case {uc.mdr.priority}: {uc.title}"
    if a.intel:
        return "threat-intel hit"
    if a.action != "blocked":
        if any(uc.mdr.category in EXPLOIT_USECASE_CATEGORIES for uc in ucs):
            return f"{a.action} exploit (use case)"
        if _exploit_rule(a):
            return f"{a.action} exploit (rule category)"
    return None
