"""Guardrails the noise model can never override: alerts that are always kept, whatever their score.

1. The alert matched a use case of priority P1 or P2.
2. The alert carries a threat-intel hit (`alert.intel` non-empty).
3. An exploit that was not blocked (`action != "blocked"`): it matched a use case of category `exploit` or
   `webshell`, or one of its rules is in an exploit category (`EXPLOIT_RULE_CATEGORIES`: CRS rce / lfi / rfi /
   php / java / sqli injection, Log4Shell, deserialization, Suricata privilege-gain and executable-code classes).
4. Its payload carries an injection signature (`injection_signature`: a quote or parenthesis followed by a SQL
   keyword, SQL keywords with a comment or tautology, a value ended by a SQL comment after a quote or number, an HTML
   event handler or script scheme, a script tag calling a JavaScript sink, repeated traversal, a system file path, a
   shell command chain, an XML entity, an LDAP filter): the shapes ordinary values do not have, whatever a model
   learned from other traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.classify.content import CONTENT_FEATURES, content_matrix, content_of
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


_COL = {n: i for i, n in enumerate(CONTENT_FEATURES)}
SIGNATURES: tuple[tuple[str, tuple[str, ...], float], ...] = (  # (name, features that must all reach, minimum)
    ("SQL keyword after a quote", ("sql_quote_kw",), 1),
    ("SQL keywords with a comment", ("tok:sql_kw", "tok:sql_comment"), 1),
    ("SQL keywords with a tautology", ("tok:sql_kw", "tok:sql_logic"), 1),
    ("SQL comment ending a value after a quote or number", ("tok:sql_tail",), 1),
    ("HTML event handler", ("tok:html_event",), 1),
    ("script scheme", ("tok:script_scheme",), 1),
    ("script tag with a JavaScript sink", ("tok:html_tag", "tok:js_sink"), 1),
    ("repeated path traversal", ("tok:traversal",), 2),
    ("system file path", ("tok:unix_path",), 1),
    ("Windows system path", ("tok:win_path",), 1),
    ("shell command chain", ("tok:shell",), 1),
    ("XML entity", ("tok:xml_entity",), 1),
    ("LDAP filter", ("tok:ldap",), 1),
)


def injection_signature(a: Alert) -> str | None:
    """The first injection signature the alert's payload content carries (`SIGNATURES`), or None."""
    raw, n = content_of(a)
    if not raw:
        return None
    row = content_matrix([(raw, n)])[0]
    for name, feats, least in SIGNATURES:
        if all(row[_COL[f]] >= least for f in feats):
            return name
    return None


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
    sig = injection_signature(a)
    if sig is not None:
        return f"payload: {sig}"
    return None
