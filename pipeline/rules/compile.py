"""Sigma detection rules (pySigma objects) compiled into closures over normalized alerts.

`compile_rule(rule)` walks the rule once: each named detection becomes an IR tree (`modifiers.Leaf`, `And`,
`Or`, `Not`) over normalized field keys, the condition is resolved over those trees, and the whole is turned
into nested closures. Matching an alert never looks at the pySigma objects again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule

from pipeline.rules.fieldmap import KEYWORD_PATHS, resolve_field
from pipeline.rules.logsources import Route, route_for
from pipeline.rules.modifiers import (
    GROUPABLE,
    And,
    Leaf,
    Matcher,
    Node,
    Not,
    Or,
    check_modifiers,
    group_matcher,
    leaf_matcher,
    value_leaves,
)
from pipeline.rules.unsupported import UnsupportedRule
from pipeline.rules.values import Ctx
from pipeline.schema import Alert

KEYWORD_KEY = ",".join(KEYWORD_PATHS)
_TITLE_NS = uuid.UUID("6f1c1f3e-5d0a-4b8e-9d55-0c7a2f1b9e21")

__all__ = ["CompiledRule", "UnsupportedRule", "compile_all", "compile_rule"]


# --- pySigma -> IR ----------------------------------------------------------------------------------------

class _Builder:
    def __init__(self, rule: SigmaRule):
        self.rule = rule
        self.product = rule.logsource.product

    def key(self, field: str) -> str:
        paths = resolve_field(field, self.product)
        if not paths:
            raise UnsupportedRule("unmapped field", field)
        return ",".join(paths)

    def item(self, item: SigmaDetectionItem) -> Node:
        check_modifiers(item.modifiers)
        keyword = item.field is None
        key = KEYWORD_KEY if item.field is None else self.key(item.field)
        if not item.value:
            node: Node = Leaf(key.split(",")[0], "null", None)
        else:
            leaves = tuple(value_leaves(key, v, keyword, self.key) for v in item.value)
            node = And(leaves) if item.value_linking is ConditionAND else Or(leaves)
        return Not(node) if item.negated else node

    def detection(self, det: SigmaDetection) -> Node:
        args = tuple(self.detection(d) if isinstance(d, SigmaDetection) else self.item(d)
                     for d in det.detection_items)
        return And(args) if det.item_linking is ConditionAND else Or(args)

    def condition(self, cond: Any, named: dict[str, Node]) -> Node:
        if isinstance(cond, ConditionIdentifier):
            if cond.identifier not in named:
                raise UnsupportedRule("invalid condition", f"detection {cond.identifier!r} not defined")
            return named[cond.identifier]
        if isinstance(cond, ConditionSelector):
            ids = cond.resolve_referenced_detections(self.rule.detection)
            if not ids:
                raise UnsupportedRule("invalid condition",
                                      f"'{cond.args[0]} of {cond.pattern}' matches nothing")
            args = tuple(named[i.identifier] for i in ids)
            return And(args) if cond.cond_class is ConditionAND else Or(args)
        if isinstance(cond, ConditionNOT):
            return Not(self.condition(cond.args[0], named))
        if isinstance(cond, (ConditionAND, ConditionOR)):
            args = tuple(self.condition(a, named) for a in cond.args)
            return And(args) if isinstance(cond, ConditionAND) else Or(args)
        if isinstance(cond, ConditionItem):
            raise UnsupportedRule("unsupported condition element", type(cond).__name__)
        raise UnsupportedRule("invalid condition", repr(cond))


# --- IR -> closures ---------------------------------------------------------------------------------------

def _cost(n: Node) -> float:
    """Static evaluation cost, used to order AND operands (cheap tests first)."""
    if isinstance(n, Leaf):
        return {"eq": 1, "num": 1, "null": 1, "exists": 1, "prefix": 2, "suffix": 2, "contains": 3,
                "cidr": 4, "glob": 6, "ref": 6, "ts": 8, "re": 10}.get(n.op, 5)
    if isinstance(n, Not):
        return _cost(n.arg)
    return sum(_cost(a) for a in n.args)


def _flatten(n: And | Or) -> list[Node]:
    out: list[Node] = []
    for a in n.args:
        if type(a) is type(n):
            out.extend(_flatten(a))
        else:
            out.append(a)
    return out


def _any(fs: list[Matcher]) -> Matcher:
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        a, b = fs
        return lambda c: a(c) or b(c)
    t = tuple(fs)

    def any_of(c: Ctx) -> bool:  # a loop: no generator object per call
        for f in t:  # noqa: SIM110
            if f(c):
                return True
        return False

    return any_of


def _all(fs: list[Matcher]) -> Matcher:
    if len(fs) == 1:
        return fs[0]
    if len(fs) == 2:
        a, b = fs
        return lambda c: a(c) and b(c)
    t = tuple(fs)

    def all_of(c: Ctx) -> bool:
        for f in t:  # noqa: SIM110
            if not f(c):
                return False
        return True

    return all_of


def build(node: Node) -> Matcher:
    """Nested closures for an IR tree; OR-ed literal tests of one kind on one field become one set test."""
    if isinstance(node, Leaf):
        return leaf_matcher(node)
    if isinstance(node, Not):
        f = build(node.arg)
        return lambda c: not f(c)
    args = _flatten(node)
    if isinstance(node, And):
        return _all([build(a) for a in sorted(args, key=_cost)])
    groups: dict[tuple[str, str, bool], list[Any]] = {}
    rest: list[Node] = []
    for a in args:
        if isinstance(a, Leaf) and a.op in GROUPABLE:
            groups.setdefault((a.key, a.op, a.cased), []).append(a.arg)
        else:
            rest.append(a)
    fs = [group_matcher(k, op, cased, lits) for (k, op, cased), lits in groups.items()]
    return _any(fs + [build(a) for a in sorted(rest, key=_cost)])


def leaves(node: Node) -> Iterable[Leaf]:
    if isinstance(node, Leaf):
        yield node
    elif isinstance(node, Not):
        yield from leaves(node.arg)
    else:
        for a in node.args:
            yield from leaves(a)


# --- compiled rules ---------------------------------------------------------------------------------------

class CompiledRule:
    """A Sigma rule ready to match normalized alerts.

    `matches(alert)` = the log source covers the alert and the condition holds; `detects(alert)` is the
    condition alone; `explain(alert)` tells each named detection's result.
    """

    __slots__ = ("_explainers", "detections", "fields", "id", "level", "logsource", "match_ctx", "name",
                 "node", "route", "rule", "status", "tags", "title")

    def __init__(self, rule: SigmaRule, route: Route, node: Node, detections: dict[str, Node]):
        self.rule = rule
        self.id = str(rule.id) if rule.id else str(uuid.uuid5(_TITLE_NS, rule.title or ""))
        self.name = rule.name
        self.title = rule.title
        self.level = rule.level.name.lower() if rule.level else None
        self.status = rule.status.name.lower() if rule.status else None
        self.tags = [f"{t.namespace}.{t.name}" for t in rule.tags]
        self.logsource = rule.logsource
        self.route = route
        self.node = node
        self.detections = detections
        paths: dict[str, None] = {}
        for leaf in leaves(node):
            for p in leaf.key.split(","):
                paths[p] = None
            if leaf.op == "ref":
                for p in leaf.arg[0].split(","):
                    paths[p] = None
        self.fields = sorted(paths)
        self.match_ctx: Matcher = build(node)
        self._explainers = {name: build(n) for name, n in detections.items()}

    def applies(self, alert: Alert) -> bool:
        """The rule's log source covers this alert."""
        return self.route.applies(alert)

    def detects(self, alert: Alert) -> bool:
        """The detection condition holds (log source not checked)."""
        return self.match_ctx(Ctx(alert))

    def matches(self, alert: Alert) -> bool:
        return self.route.applies(alert) and self.match_ctx(Ctx(alert))

    def explain(self, alert: Alert) -> dict[str, bool]:
        """Each named detection (selection, filter, keywords...) -> whether it matched this alert."""
        ctx = Ctx(alert)
        return {name: f(ctx) for name, f in self._explainers.items()}

    def __repr__(self) -> str:
        return f"CompiledRule({self.id!r}, {self.title!r})"


def compile_rule(rule: SigmaRule) -> CompiledRule:
    """Compile one Sigma detection rule; UnsupportedRule(reason) when it cannot be evaluated faithfully."""
    if not isinstance(rule, SigmaRule):
        raise UnsupportedRule("not a detection rule", type(rule).__name__)
    if rule.errors:
        raise UnsupportedRule("invalid rule", str(rule.errors[0]))
    route = route_for(rule.logsource)
    b = _Builder(rule)
    named = {name: b.detection(det) for name, det in rule.detection.detections.items()}
    try:
        conditions = [b.condition(c.parse(postprocess=False), named) for c in rule.detection.parsed_condition]
    except SigmaError as e:
        raise UnsupportedRule("invalid condition", str(e)) from None
    node = conditions[0] if len(conditions) == 1 else Or(tuple(conditions))
    return CompiledRule(rule, route, node, named)


def compile_all(rules: Iterable[Any]) -> tuple[list[CompiledRule], list[tuple[Any, UnsupportedRule]]]:
    """Compile many rules: (compiled, [(rule, UnsupportedRule)]); non-detection rules are reported too."""
    ok: list[CompiledRule] = []
    bad: list[tuple[Any, UnsupportedRule]] = []
    for r in rules:
        try:
            ok.append(compile_rule(r))
        except UnsupportedRule as e:
            bad.append((r, e))
    return ok, bad

