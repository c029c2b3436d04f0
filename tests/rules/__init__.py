"""Helpers for the rule-engine tests.

- `SIGMA_DIR`, `sigma_rules()`: the SigmaHQ rules under /work/shared/sigma (tests skip when absent).
- `compiled(yaml_text)`: one rule from YAML, compiled.
- `events_for(rule)`: Sigma-named events made from a rule's own detection values (matches) and their
  mutations (near misses), for differential tests.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re._constants as sre_c
import re._parser as sre_parse
from pathlib import Path
from typing import Any

import pytest
from sigma.collection import SigmaCollection
from sigma.conditions import ConditionAND
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from pipeline.rules.compile import CompiledRule, compile_rule

SIGMA_DIR = Path(os.environ.get("MDR_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "sigma"


def sigma_rules() -> list[tuple[Path, Any]]:
    """(file, rule) for every rule of the SigmaHQ sample; skips the test when the sample is absent."""
    if not SIGMA_DIR.is_dir():
        pytest.skip(f"SigmaHQ rules not found at {SIGMA_DIR}")
    out = []
    for p in sorted(SIGMA_DIR.rglob("*.yml")):
        for r in SigmaCollection.from_yaml(p.read_text(), collect_errors=True).rules:
            out.append((p, r))
    return out


def compiled(text: str) -> CompiledRule:
    return compile_rule(SigmaRule.from_yaml(text))


# --- sample values ---------------------------------------------------------------------------------------

_FILL = "qz"  # stands for a `*`


def _regex_sample(items: Any) -> str:
    """A short string that a parsed regex matches (first branch, minimum repeats)."""
    out = []
    for op, av in items:
        if op is sre_c.LITERAL:
            out.append(chr(av))
        elif op is sre_c.NOT_LITERAL:
            out.append("a" if av != ord("a") else "b")
        elif op is sre_c.ANY:
            out.append("a")
        elif op is sre_c.IN:
            out.append(_class_sample(av))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, _, sub = av
            out.append(_regex_sample(sub) * max(lo, 1))
        elif op is sre_c.SUBPATTERN:
            out.append(_regex_sample(av[-1]))
        elif op is sre_c.BRANCH:
            out.append(_regex_sample(av[1][0]))
    return "".join(out)


def _class_sample(items: Any) -> str:
    negate = any(op is sre_c.NEGATE for op, _ in items)
    if negate:
        banned = {chr(av) for op, av in items if op is sre_c.LITERAL}
        return next(c for c in "aZ0_" if c not in banned)
    for op, av in items:
        if op is sre_c.LITERAL:
            return chr(av)
        if op is sre_c.RANGE:
            return chr(av[0])
        if op is sre_c.CATEGORY:
            return {sre_c.CATEGORY_DIGIT: "1", sre_c.CATEGORY_SPACE: " "}.get(av, "a")
    return "a"


def _string_sample(s: SigmaString) -> tuple[str, str]:
    """(sample, kind) of a Sigma string: kind is eq, prefix, suffix or contains."""
    parts = list(s.s)
    lead = bool(parts) and parts[0] is SpecialChars.WILDCARD_MULTI
    trail = bool(parts) and parts[-1] is SpecialChars.WILDCARD_MULTI
    text = "".join(p if isinstance(p, str) else (_FILL if p is SpecialChars.WILDCARD_MULTI else "q")
                   for p in parts)
    kind = "contains" if lead and trail else "suffix" if lead else "prefix" if trail else "eq"
    return text, kind


def sample(value: Any) -> tuple[Any, str] | None:
    """A concrete field value a Sigma value matches, with its kind; None when the field must be absent."""
    if isinstance(value, SigmaExpansion):
        return sample(value.values[0])
    if isinstance(value, SigmaString):
        return _string_sample(value)
    if isinstance(value, SigmaRegularExpression):
        pattern = str(value.regexp)
        return _regex_sample(sre_parse.parse(re_strip_flags(pattern))), "contains"
    if isinstance(value, SigmaNumber):
        return value.number, "eq"
    if isinstance(value, SigmaBool):
        return ("true" if value.boolean else "false"), "eq"
    if isinstance(value, SigmaCIDRExpression):
        net = value.network
        return str(net.network_address + (1 if net.num_addresses > 1 else 0)), "eq"
    if isinstance(value, SigmaCompareExpression):
        n = value.number.number
        delta = {CompareOperators.GT: 1, CompareOperators.LT: -1}.get(value.op, 0)
        return n + delta, "eq"
    if isinstance(value, SigmaExists):
        return ("present", "eq") if value.exists else None
    if isinstance(value, SigmaNull):
        return None
    raise ValueError(f"no sample for {value!r}")


def re_strip_flags(pattern: str) -> str:
    if pattern.startswith("(?") and pattern[2:3].isalpha():
        return pattern[pattern.index(")") + 1:]
    return pattern


# --- events ----------------------------------------------------------------------------------------------

def _item_sample(item: SigmaDetectionItem, choice: int) -> list[tuple[Any, str]] | None:
    """Samples for one detection item: all of its values when AND-linked, else the `choice`-th one."""
    values = item.value
    if not values:
        return None
    if item.value_linking is ConditionAND:
        got = [sample(v) for v in values]
        return [g for g in got if g is not None] or None
    got = sample(values[choice % len(values)])
    return [got] if got is not None else None


def _join(samples: list[tuple[Any, str]]) -> Any:
    """One value holding every sample (prefixes first, suffixes last); an equality sample wins."""
    for v, kind in samples:
        if kind == "eq":
            return v
    order = {"prefix": 0, "contains": 1, "suffix": 2}
    ordered = sorted(samples, key=lambda s: order[s[1]])
    return " ".join(str(v) for v, _ in ordered)


Samples = dict[str, list[tuple[Any, str]]]  # field -> its samples; "keywords" -> keyword samples


def detection_samples(det: SigmaDetection, choice: int) -> Samples:
    """Samples that satisfy one named detection; `choice` picks among OR-ed values and alternatives."""
    out: Samples = {}

    def walk(d: SigmaDetection) -> None:
        items = d.detection_items
        if d.item_linking is not ConditionAND:
            items = [items[choice % len(items)]]
        for it in items:
            if isinstance(it, SigmaDetection):
                walk(it)
            elif not it.negated:
                got = _item_sample(it, choice)
                out.setdefault(it.field or "keywords", []).extend(got or [])

    walk(det)
    return out


def _event(samples: list[Samples]) -> dict[str, Any]:
    """One event from merged samples: a field's samples joined into one value, keywords kept as a list."""
    merged: Samples = {}
    for s in samples:
        for k, v in s.items():
            merged.setdefault(k, []).extend(v)
    event: dict[str, Any] = {k: _join(v) for k, v in merged.items() if v and k != "keywords"}
    if merged.get("keywords"):
        event["keywords"] = [str(v) for v, _ in merged["keywords"]]
    return event


def _mutations(event: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for k, v in event.items():
        if k == "keywords":
            out.append({**event, k: [w[1:] for w in v]})
            continue
        out.append({kk: vv for kk, vv in event.items() if kk != k})
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.extend({**event, k: v + d} for d in (-1, 1))
            continue
        s = str(v)
        cut = rng.randrange(len(s)) if s else 0
        out.extend([
            {**event, k: s.upper()}, {**event, k: s[1:]}, {**event, k: s[:-1]}, {**event, k: "x" + s},
            {**event, k: s + "x"}, {**event, k: s[:cut] + "#" + s[cut:]}, {**event, k: ""},
        ])
        try:
            ip = ipaddress.ip_address(s)
            out.append({**event, k: str(ip + 256) if ip.version == 4 else str(ip + 65536)})
        except ValueError:
            pass
    return out


def events_for(rule: SigmaRule, limit: int = 60) -> list[dict[str, Any]]:
    """Events from a rule's detection values: one per detection and choice, the merges, and mutations."""
    rng = random.Random(str(rule.id or rule.title))
    dets = rule.detection.detections
    base: list[dict[str, Any]] = []
    for choice in range(3):
        singles = {name: detection_samples(d, choice) for name, d in dets.items()}
        base.extend(_event([s]) for s in singles.values())
        base.append(_event(list(singles.values())))
        if len(singles) > 1:
            base.extend(_event([s for n, s in singles.items() if n != skip]) for skip in singles)
    unique: dict[str, dict[str, Any]] = {}
    for e in base:
        unique.setdefault(repr(sorted(e.items(), key=lambda kv: kv[0])), e)
    base = list(unique.values())
    mutated = [m for e in base for m in _mutations(e, rng)]
    rng.shuffle(mutated)
    return base + mutated[: max(0, limit - len(base))]
