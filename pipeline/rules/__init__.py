"""Detection rules: Sigma rules compiled into matchers over normalized alerts, and their index.

    from pipeline.rules import compile_rule, RuleIndex, UnsupportedRule
    index = RuleIndex([compile_rule(r) for r in collection.rules])
    index.match(alert)  # -> [CompiledRule, ...]
"""

from pipeline.rules.compile import CompiledRule, compile_all, compile_rule
from pipeline.rules.index import RuleIndex
from pipeline.rules.mapping import (
    FIELD_MAP,
    UnsupportedRule,
    alert_from_fields,
    field_getter,
    getter,
    logsource_applies,
    resolve_field,
    route_for,
)

__all__ = [
    "FIELD_MAP",
    "CompiledRule",
    "RuleIndex",
    "UnsupportedRule",
    "alert_from_fields",
    "compile_all",
    "compile_rule",
    "field_getter",
    "getter",
    "logsource_applies",
    "resolve_field",
    "route_for",
]
