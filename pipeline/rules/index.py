"""RuleIndex: the rules an alert can match, found without evaluating the others.

Three filters keep the cost of `match` nearly flat in the number of rules:

1. Log source: rules are bucketed by the alert's routing key (format, family, product, which parts it has);
   a bucket is built the first time its key is seen.
2. Specialization: in a bucket, tests on what the key fixes (source.*, parts the alert lacks) are evaluated
   once; a rule that cannot match such alerts is left out of the bucket.
3. Literals: from each rule's (specialized) condition a *trigger* is derived, a set of atoms of which at
   least one holds whenever the rule matches: `("eq", path, value)` (a lower-cased field value),
   `("num", path, n)` (a number) or `("sub", path, literal)` (a lower-cased substring, also taken from
   regexes). An AND contributes its most selective operand's atoms, an OR the union of its operands' (when
   all have some), a NOT nothing. Equality and number atoms are dict lookups; substring atoms of one field are
   searched at once with RE2 sets. Only rules with a hit, and rules without a trigger, are evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.rules.alert_builder import probe_alert
from pipeline.rules.compile import CompiledRule
from pipeline.rules.logsources import SourceKey, known_paths, source_key
from pipeline.rules.modifiers import And, Leaf, Node, Not, Or, leaf_matcher, literal_set, regex_literals
from pipeline.rules.values import FETCH, Ctx
from pipeline.rules.views import VIEWS
from pipeline.schema import Alert

Atom = tuple[str, str, Any]  # ("eq", path, lower-case value) | ("sub", path, lower-case literal) | ("num", path, n)

# Fields whose values repeat across most alerts: poor triggers.
_COMMON = frozenset((
    "http.method", "http.status", "extra.type", "extra.types", "action", "extra.action", "blocked",
    "network.initiated", "dns.rtype", "network.proto", "extra.syscall", "extra.nametype", "extra.success",
    "file.change", "source.format", "source.family", "source.product", "source.vendor", "severity.label",
    "rule.severity", "extra.res", "user", "process.uid",
))
_SET_SHARD = 4000  # literals per RE2 set


def _atom_cost(a: Atom) -> float:
    kind, path, lit = a
    size = min(len(lit), 24) if isinstance(lit, str) else 3
    return (25.0 if path in _COMMON else 1.0) * (2.0 if kind == "sub" else 1.0) / (1 + size)


def _leaf_atoms(leaf: Leaf) -> frozenset[Atom] | None:
    paths = leaf.key.split(",")
    if leaf.op == "eq":  # equality on a part of a stored field (a URL view) is a substring of that field
        lit = leaf.arg.lower()
        return frozenset(("sub", view, lit) if (view := VIEWS.get(p)) and lit else ("eq", p, lit) for p in paths)
    if leaf.op == "num":  # numbers compare by value: the probe looks them up among the field's numbers
        return frozenset(("num", p, leaf.arg) for p in paths)
    if leaf.op == "re":
        lits = regex_literals(leaf.arg)
        return None if lits is None else frozenset(("sub", VIEWS.get(p) or p, lit) for p in paths for lit in lits)
    if leaf.op in ("contains", "prefix", "suffix"):
        lit = leaf.arg.lower()
    elif leaf.op == "glob":
        lit = max(leaf.arg[1], key=len, default="").lower()
    else:
        return None
    if not lit:
        return None
    return frozenset(("sub", VIEWS.get(p) or p, lit) for p in paths)


def specialize(node: Node, known: Callable[[str], bool], probe: Ctx) -> Node | bool:
    """`node` with the leaves whose fields the routing key fixes evaluated (True/False) and folded away."""
    if isinstance(node, Leaf):
        paths = node.key.split(",") + (node.arg[0].split(",") if node.op == "ref" else [])
        if node.op != "ts" and all(map(known, paths)):
            return leaf_matcher(node)(probe)
        return node
    if isinstance(node, Not):
        sub = specialize(node.arg, known, probe)
        return (not sub) if isinstance(sub, bool) else Not(sub)
    short = isinstance(node, Or)  # the value that decides an OR (True) or an AND (False)
    rest: list[Node] = []
    for a in node.args:
        sub = specialize(a, known, probe)
        if sub is short:
            return short
        if sub is not (not short):
            rest.append(sub)  # type: ignore[arg-type]  # a Node: both bools returned above
    if not rest:
        return not short
    return rest[0] if len(rest) == 1 else type(node)(tuple(rest))


def trigger(node: Node) -> frozenset[Atom] | None:
    """Atoms of which one holds whenever `node` matches; None when no such literal set exists."""
    if isinstance(node, Leaf):
        return _leaf_atoms(node)
    if isinstance(node, Not):
        return None
    subs = [trigger(a) for a in node.args]
    if isinstance(node, Or):
        if any(s is None for s in subs):
            return None
        return frozenset().union(*subs)  # type: ignore[arg-type]  # no None in subs here
    assert isinstance(node, And)
    known = [s for s in subs if s is not None]
    if not known:
        return None
    return min(known, key=lambda s: sum(map(_atom_cost, s)))


@dataclass(slots=True)
class _Probe:
    """One field the prefilter reads: equal values and numbers (dicts), substring literals (RE2 sets)."""

    path: str
    fetch: Callable[[Alert], tuple[str, ...]]
    eq: dict[str, list[int]] | None = None
    num: dict[float, list[int]] | None = None
    shards: list[tuple[Callable[[bytes], list[int] | None], int]] = field(default_factory=list)
    sub_owners: list[list[int]] = field(default_factory=list)  # rule positions per substring literal


@dataclass(slots=True)
class _Bucket:
    rules: list[CompiledRule]
    always: list[int] = field(default_factory=list)
    # per probe: (path, fetch, eq table, num table, RE2 shards (match, offset), owners of each literal)
    plan: list[tuple[Any, ...]] = field(default_factory=list)


class RuleIndex:
    """Compiled rules indexed for matching; `match(alert)` gives every matching rule, in insertion order.

    `add`/`remove` keep the rules and drop the built buckets (they are rebuilt lazily, per routing key).
    """

    def __init__(self, rules: Iterable[CompiledRule] = ()):
        self._rules: dict[str, CompiledRule] = {}
        self._buckets: dict[SourceKey, _Bucket] = {}
        for r in rules:
            self.add(r)

    def add(self, rule: CompiledRule) -> None:
        """Add a rule (a rule with the same id is replaced)."""
        self._rules.pop(rule.id, None)
        self._rules[rule.id] = rule
        self._buckets.clear()

    def remove(self, rule_id: str) -> CompiledRule | None:
        rule = self._rules.pop(rule_id, None)
        self._buckets.clear()
        return rule

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[CompiledRule]:
        return iter(self._rules.values())

    def get(self, rule_id: str) -> CompiledRule | None:
        return self._rules.get(rule_id)

    def routing_keys(self) -> list[SourceKey]:
        """The routing keys seen so far (pass them to the next index's `warm` on a hot reload)."""
        return list(self._buckets)

    def warm(self, keys: Iterable[SourceKey]) -> None:
        """Build the buckets of these routing keys now rather than on their first alert."""
        for k in keys:
            if k not in self._buckets:
                self._bucket(k)

    def _bucket(self, key: SourceKey) -> _Bucket:
        known, probe = known_paths(key), Ctx(probe_alert(key))
        rules: list[CompiledRule] = []
        triggers: list[frozenset[Atom] | None] = []
        for r in self._rules.values():
            if not r.route.admits(key):
                continue
            node = specialize(r.node, known, probe)
            if node is False:  # cannot match alerts of this key (e.g. tests fields such alerts never carry)
                continue
            rules.append(r)
            triggers.append(None if node is True else trigger(node))
        b = _Bucket(rules)
        probes: dict[str, _Probe] = {}
        subs: dict[str, dict[str, list[int]]] = {}
        for pos, atoms in enumerate(triggers):
            if atoms is None:
                b.always.append(pos)
                continue
            for kind, path, lit in atoms:
                reads = probes.get(path) or probes.setdefault(path, _Probe(path, FETCH[path]))
                if kind == "eq":
                    reads.eq = reads.eq or {}
                    reads.eq.setdefault(lit, []).append(pos)
                elif kind == "num":
                    reads.num = reads.num or {}
                    reads.num.setdefault(lit, []).append(pos)
                else:
                    subs.setdefault(path, {}).setdefault(lit, []).append(pos)
        for path, table in subs.items():
            lits = list(table)
            probes[path].shards = [(literal_set(lits[i:i + _SET_SHARD]), i) for i in range(0, len(lits), _SET_SHARD)]
            probes[path].sub_owners = [table[lit] for lit in lits]
        b.plan = [(p.path, p.fetch, p.eq, p.num, p.shards, p.sub_owners) for p in probes.values()]
        self._buckets[key] = b
        return b

    def candidates(self, alert: Alert, ctx: Ctx | None = None) -> list[CompiledRule]:
        """Rules the prefilters leave for full evaluation."""
        key = source_key(alert)
        b = self._buckets.get(key) or self._bucket(key)
        return [b.rules[i] for i in sorted(self._positions(b, ctx or Ctx(alert)))]

    @staticmethod
    def _positions(b: _Bucket, ctx: Ctx) -> set[int]:
        """Positions of the bucket's rules whose trigger holds (plus the untriggered ones)."""
        cand = set(b.always)
        alert, low, enc = ctx.alert, ctx.low, ctx.enc
        for path, fetch, eq, num, shards, owners in b.plan:
            values = fetch(alert)
            if not values:
                low[path] = ()
                continue
            lows = (values[0].lower(),) if len(values) == 1 else tuple([v.lower() for v in values])
            low[path] = lows  # shared with the rules evaluated next
            if eq is not None:
                for v in lows:
                    hit = eq.get(v)
                    if hit:
                        cand.update(hit)
            if num is not None:
                for n in ctx.num[path]:
                    hit = num.get(n)
                    if hit:
                        cand.update(hit)
            if shards:
                datas = (lows[0].encode(),) if len(lows) == 1 else tuple([v.encode() for v in lows])
                enc[path] = datas
                for data in datas:
                    for match, start in shards:
                        hits = match(data)
                        if hits:
                            for i in hits:
                                cand.update(owners[start + i])
        return cand

    def match(self, alert: Alert) -> list[CompiledRule]:
        """Every rule whose log source covers the alert and whose condition holds."""
        key = source_key(alert)
        b = self._buckets.get(key)
        if b is None:
            b = self._bucket(key)
        if not b.rules:
            return []
        ctx = Ctx(alert)
        cand = self._positions(b, ctx)
        if not cand:
            return []
        rules = b.rules
        if len(cand) == 1:
            (i,) = cand
            return [rules[i]] if rules[i].match_ctx(ctx) else []
        return [rules[i] for i in sorted(cand) if rules[i].match_ctx(ctx)]
