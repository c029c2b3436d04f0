"""Sigma values (after pySigma applied their modifiers) -> leaf tests, and leaf tests -> closures.

The rule tree is a small IR (`Leaf`, `And`, `Or`, `Not`) that `compile.py` builds from pySigma objects and
`index.py` reads for prefilter literals. Closures take a `compile.Ctx`, the per-alert value cache.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import re._constants as sre_c
import re._parser as sre_parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import re2
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
    TimestampPart,
)

from pipeline.rules.unsupported import UnsupportedRule
from pipeline.rules.values import Ctx, raw_values

Matcher = Callable[["Ctx"], bool]

# --- IR ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    """One value test on a field key (comma-joined normalized paths: the field is any of them).

    op: eq | contains | prefix | suffix | glob | re | null | exists | num | cmp | cidr | ref | ts
    """

    key: str
    op: str
    arg: Any
    cased: bool = False


@dataclass(frozen=True, slots=True)
class And:
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Or:
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Not:
    arg: Any


Node = Leaf | And | Or | Not

# --- values -> leaves -------------------------------------------------------------------------------------

_UNSUPPORTED_MODIFIERS = {
    "SigmaWideModifier": "wide", "SigmaUTF16Modifier": "utf16", "SigmaUTF16BEModifier": "utf16be",
}


def check_modifiers(modifiers: list[type]) -> None:
    """UTF-16 encodings cannot occur in the normalized text fields."""
    for m in modifiers:
        if m.__name__ in _UNSUPPORTED_MODIFIERS:
            raise UnsupportedRule("unsupported modifier", f"{_UNSUPPORTED_MODIFIERS[m.__name__]} "
                                  "(UTF-16 bytes never occur in normalized text fields)")


def _string_leaf(key: str, s: SigmaString, keyword: bool) -> Leaf:
    parts = list(s.s)
    if any(isinstance(p, Placeholder) for p in parts):
        names = ", ".join(f"%{p.name}%" for p in parts if isinstance(p, Placeholder))
        raise UnsupportedRule("unexpanded placeholder (expand modifier)", names)
    cased = isinstance(s, SigmaCasedString)
    if keyword:  # keywords match anywhere in the text
        if not parts or parts[0] is not SpecialChars.WILDCARD_MULTI:
            parts.insert(0, SpecialChars.WILDCARD_MULTI)
        if parts[-1] is not SpecialChars.WILDCARD_MULTI:
            parts.append(SpecialChars.WILDCARD_MULTI)
    fold = (lambda x: x) if cased else str.lower
    star = SpecialChars.WILDCARD_MULTI
    texts = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if not isinstance(p, str)]
    if not specials:
        return Leaf(key, "eq", fold("".join(texts)), cased)
    if all(p is star for p in specials) and len(texts) <= 1:
        lit = fold(texts[0]) if texts else ""
        if not texts:  # only wildcards: any present value
            return Leaf(key, "glob", _glob_regex(parts, fold), cased)
        if parts[0] is star and parts[-1] is star and len(parts) == 3:
            return Leaf(key, "contains", lit, cased)
        if parts[-1] is star and len(parts) == 2:
            return Leaf(key, "prefix", lit, cased)
        if parts[0] is star and len(parts) == 2:
            return Leaf(key, "suffix", lit, cased)
    return Leaf(key, "glob", _glob_regex(parts, fold), cased)


def _glob_regex(parts: list[Any], fold: Callable[[str], str]) -> tuple[str, tuple[str, ...]]:
    """(regex source, literal segments) of a wildcard pattern; the regex matches a whole value."""
    out = []
    lits = []
    for p in parts:
        if isinstance(p, str):
            out.append(re.escape(fold(p)))
            lits.append(fold(p))
        elif p is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        else:
            out.append(".")
    return "(?s)" + "".join(out), tuple(lits)


def value_leaves(key: str, value: Any, keyword: bool, resolve: Callable[[str], str]) -> Node:
    """The IR of one Sigma value on a field key (keyword=True: a field-less search of the text fields)."""
    if isinstance(value, SigmaExpansion):
        return Or(tuple(value_leaves(key, v, keyword, resolve) for v in value.values))
    if isinstance(value, SigmaString):
        return _string_leaf(key, value, keyword)
    if isinstance(value, SigmaRegularExpression):
        return Leaf(key, "re", regex_source(value))
    if isinstance(value, SigmaTimestampPart):
        if keyword:
            raise UnsupportedRule("unsupported keyword value", "timestamp part")
        return Leaf(key, "ts", (value.timestamp_part, value.number))
    if isinstance(value, SigmaBool):
        word = "true" if value.boolean else "false"
        if keyword:
            return Leaf(key, "contains", word)
        return Or((Leaf(key, "eq", word), Leaf(key, "num", int(value.boolean))))
    if isinstance(value, SigmaNumber):
        if keyword:
            return Leaf(key, "contains", str(value.number))
        return Leaf(key, "num", value.number)
    if keyword:
        raise UnsupportedRule("unsupported keyword value", type(value).__name__)
    if isinstance(value, SigmaNull):  # presence is the field's own (first) path, not its alternatives
        return Leaf(key.split(",")[0], "null", None)
    if isinstance(value, SigmaExists):
        return Leaf(key.split(",")[0], "exists", value.exists)
    if isinstance(value, SigmaCompareExpression):
        return Leaf(key, "cmp", (value.op, value.number.number))
    if isinstance(value, SigmaCIDRExpression):
        return Leaf(key, "cidr", value.network)
    if isinstance(value, SigmaFieldReference):
        return Leaf(key, "ref", (resolve(value.field), value.starts_with, value.ends_with))
    raise UnsupportedRule("unsupported value type", type(value).__name__)


# --- regular expressions ----------------------------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 32 << 20
_FLAG_LETTERS = {SigmaRegularExpressionFlag.IGNORECASE: "i", SigmaRegularExpressionFlag.MULTILINE: "m",
                 SigmaRegularExpressionFlag.DOTALL: "s"}


def regex_source(value: SigmaRegularExpression) -> str:
    """The regex with its Sigma flags as an inline (?ims) prefix."""
    flags = "".join(sorted(_FLAG_LETTERS[f] for f in value.flags))
    return (f"(?{flags})" if flags else "") + str(value.regexp)


_REPEATS = {sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", sre_c.MAX_REPEAT)}


def _catastrophic(items: Any, in_repeat: bool = False) -> bool:
    """True when a quantifier nests another quantifier or an alternation (exponential backtracking shapes)."""
    for op, av in items:
        if op in _REPEATS:
            _, hi, sub = av
            many = hi is sre_c.MAXREPEAT or hi > 1
            if many and in_repeat:
                return True
            if _catastrophic(sub, in_repeat or many):
                return True
        elif op is sre_c.BRANCH:
            branches = av[1]
            if in_repeat and len(branches) > 1:
                return True
            if any(_catastrophic(b, in_repeat) for b in branches):
                return True
        elif op is sre_c.SUBPATTERN:
            if _catastrophic(av[-1], in_repeat):
                return True
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            if _catastrophic(av[1], in_repeat):
                return True
        elif op is sre_c.GROUPREF_EXISTS:  # noqa: SIM102
            if any(_catastrophic(b, in_repeat) for b in av[1:] if b is not None):
                return True
    return False


@functools.cache
def compile_regex(source: str) -> Callable[[str], Any]:
    """A ReDoS-safe `search` for a regex: RE2 when it supports it, else Python `re` if statically safe."""
    try:
        return re2.compile(source, _RE2_OPTIONS).search
    except re2.error:
        pass
    try:
        tree = sre_parse.parse(source)
        compiled = re.compile(source)
    except re.error as e:
        raise UnsupportedRule("invalid regex", f"{source!r}: {e}") from None
    if _catastrophic(tree):
        raise UnsupportedRule("regex not RE2-compatible and potentially catastrophic", source)
    return compiled.search


# Letters that a case-insensitive regex also matches in a non-ASCII form which str.lower() does not map back
# to them: RE2 folds s with ſ; Python's re (our fallback) also folds i with ı and İ. A literal containing
# them is no safe prefilter for such a regex.
_FOLD_UNSAFE_RE2 = frozenset("sS")
_FOLD_UNSAFE_PY = frozenset("sSiI")


def regex_literals(source: str) -> frozenset[str] | None:
    """Lower-cased literals of which at least one occurs in every match of the regex; None if unknown."""
    try:
        tree = sre_parse.parse(source)
    except re.error:
        return None
    try:
        re2.compile(source, _RE2_OPTIONS)
        unsafe = _FOLD_UNSAFE_RE2
    except re2.error:
        unsafe = _FOLD_UNSAFE_PY
    return _required(list(tree), bool(tree.state.flags & re.IGNORECASE), unsafe)


def _required(items: list[Any], icase: bool, unsafe: frozenset[str]) -> frozenset[str] | None:
    options: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            options.append(frozenset(["".join(run).lower()]))
            run.clear()

    for op, av in items:
        if op is sre_c.LITERAL:
            c = chr(av)
            if icase and (not c.isascii() or c in unsafe):
                flush()
            else:
                run.append(c)
        elif op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
            continue  # zero-width: the literals around it stay adjacent
        else:
            flush()
            sub: frozenset[str] | None = None
            if op is sre_c.SUBPATTERN:
                local = (icase or bool(av[1] & re.IGNORECASE)) and not av[2] & re.IGNORECASE
                sub = _required(list(av[-1]), local, unsafe)
            elif op is sre_c.BRANCH:
                alts = [_required(list(b), icase, unsafe) for b in av[1]]
                sub = None if any(a is None for a in alts) else frozenset().union(*alts)  # type: ignore[arg-type]  # no None in alts here
            elif op in _REPEATS and av[0] >= 1:
                sub = _required(list(av[2]), icase, unsafe)
            if sub:
                options.append(sub)
    flush()
    options = [o for o in options if o and all(o)]
    if not options:
        return None
    return max(options, key=lambda o: (min(map(len, o)), -len(o)))


# --- leaves -> closures -----------------------------------------------------------------------------------

_MANY_LITERALS = 8  # above this, a list of `contains` literals is searched with one RE2 set


def _view(ctx_attr: str, key: str) -> Callable[[Ctx], tuple[Any, ...]]:
    if ctx_attr == "vals":
        return lambda c: c.vals[key]
    if ctx_attr == "low":
        return lambda c: c.low[key]
    return lambda c: c.num[key]


def group_matcher(key: str, op: str, cased: bool, args: list[Any]) -> Matcher:
    """One closure for OR-linked literal tests of one kind (eq/contains/prefix/suffix) on one key."""
    attr = "vals" if cased else "low"
    if op == "eq":
        lits = frozenset(args)
        if attr == "low":
            return lambda c: not lits.isdisjoint(c.low[key])
        return lambda c: not lits.isdisjoint(c.vals[key])
    get = _view(attr, key)
    if op == "prefix":
        pre = tuple(args)
        return lambda c: any(v.startswith(pre) for v in get(c))
    if op == "suffix":
        suf = tuple(args)
        return lambda c: any(v.endswith(suf) for v in get(c))
    if op == "contains":
        subs = tuple(dict.fromkeys(args))
        if len(subs) == 1:
            one = subs[0]
            return lambda c: any(one in v for v in get(c))
        if len(subs) > _MANY_LITERALS and not cased:
            match = literal_set(subs)
            return lambda c: any(match(b) for b in c.enc[key])

        def contains_any(c: Ctx) -> bool:
            for v in get(c):
                for s in subs:
                    if s in v:
                        return True
            return False

        return contains_any
    raise ValueError(op)


GROUPABLE = {"eq", "contains", "prefix", "suffix"}

_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 64 << 20


def literal_set(literals: Iterable[str]) -> Callable[[bytes], list[int] | None]:
    """`match(utf8)` -> numbers of the literals found in it (empty/None: none), one RE2 set; self-checked."""
    lits = list(literals)
    s = re2.Set.SearchSet(_SET_OPTIONS)
    for lit in lits:
        s.Add(re2.escape(lit))
    s.Compile()
    inner = getattr(s, "_set", None)  # the C++ set: skips the wrapper's per-call str encoding
    match = inner.Match if inner is not None else s.Match
    if lits and 0 not in (match(lits[0].encode()) or []):
        raise RuntimeError("RE2 literal set failed its self-check")
    return match

_CMP = {
    CompareOperators.LT: lambda x, n: x < n, CompareOperators.LTE: lambda x, n: x <= n,
    CompareOperators.GT: lambda x, n: x > n, CompareOperators.GTE: lambda x, n: x >= n,
    CompareOperators.NEQ: lambda x, n: x != n,
}
_TS_PART = {
    TimestampPart.MINUTE: lambda d: d.minute, TimestampPart.HOUR: lambda d: d.hour,
    TimestampPart.DAY: lambda d: d.day, TimestampPart.WEEK: lambda d: d.isocalendar().week,
    TimestampPart.MONTH: lambda d: d.month, TimestampPart.YEAR: lambda d: d.year,
}


@functools.lru_cache(maxsize=65536)
def _ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(s.strip())
    except ValueError:
        return None


def _as_datetime(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


@functools.lru_cache(maxsize=1 << 16)
def leaf_matcher(leaf: Leaf) -> Matcher:
    """A closure for one leaf test."""
    key, op, arg = leaf.key, leaf.op, leaf.arg
    if op in GROUPABLE:
        return group_matcher(key, op, leaf.cased, [arg])
    if op == "glob":
        full = re2.compile(arg[0], _RE2_OPTIONS).fullmatch
        get = _view("vals" if leaf.cased else "low", key)
        return lambda c: any(full(v) is not None for v in get(c))
    if op == "re":
        search = compile_regex(arg)
        return lambda c: any(search(v) is not None for v in c.vals[key])
    if op == "null":
        return lambda c: not c.vals[key]
    if op == "exists":
        want = bool(arg)
        return lambda c: bool(c.vals[key]) is want
    if op == "num":
        return lambda c: arg in c.num[key]
    if op == "cmp":
        cmp, n = _CMP[arg[0]], arg[1]
        return lambda c: any(cmp(x, n) for x in c.num[key])
    if op == "cidr":
        net = arg
        return lambda c: any((ip := _ip(v)) is not None and ip in net for v in c.vals[key])
    if op == "ref":
        other, starts, ends = arg
        if starts and ends:
            return lambda c: any(o in v for v in c.low[key] for o in c.low[other])
        if starts:
            return lambda c: any(v.startswith(o) for v in c.low[key] for o in c.low[other])
        if ends:
            return lambda c: any(v.endswith(o) for v in c.low[key] for o in c.low[other])
        return lambda c: not set(c.low[key]).isdisjoint(c.low[other])
    if op == "ts":
        part, n = _TS_PART[arg[0]], arg[1]

        def ts(c: Ctx) -> bool:
            for v in raw_values(c.alert, key):
                d = _as_datetime(v)
                if d is not None and part(d) == n:
                    return True
            return False

        return ts
    raise ValueError(op)
