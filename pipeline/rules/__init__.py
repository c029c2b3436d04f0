"""Detection rules: Sigma rules compiled into matchers over normalized alerts, and their index.

    from pipeline.rules import compile_rule, RuleIndex, UnsupportedRule
    index = RuleIndex([compile_rule(r) for r in collection.rules])
    index.match(alert)  # -> [CompiledRule, ...]

The modules, bottom to top (each imports only those above it in this list):

    unsupported   UnsupportedRule
    views         computed paths (http.path, http.query, http.extension, blocked, network.initiated)
    fieldmap      Sigma / ECS / vendor field names -> normalized paths (FIELD_MAP, resolve_field)
    values        an alert's values at a path (getter, raw_values, field_getter; FETCH and Ctx for matchers)
    logsources    which alerts a rule's logsource covers (route_for, SourceKey)
    alert_builder alerts built from Sigma-named fields (tests) and routing probes (the index)
    modifiers     Sigma value modifiers -> leaf matchers
    compile       a Sigma rule -> CompiledRule
    index         RuleIndex: the rules an alert can match
    correlation_types, correlate    Sigma correlation rules (one class per type) and the Correlator
    usecase       use-case files: Sigma + the mdr block
"""

from pipeline.rules.alert_builder import alert_from_fields
from pipeline.rules.compile import CompiledRule, compile_all, compile_rule
from pipeline.rules.fieldmap import FIELD_MAP, resolve_field
from pipeline.rules.index import RuleIndex
from pipeline.rules.logsources import logsource_applies, route_for
from pipeline.rules.unsupported import UnsupportedRule
from pipeline.rules.values import field_getter, getter

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
