"""Benchmark: alerts/s on one core through `RuleIndex.match`, for 100, 200 and 3,000 rules.

Alerts: the lab-1 sample (or tests/fixtures) through the normalize stage. Rules: the project's use cases and the
SigmaHQ sample, replicated with varied literal values up to the wanted count. For each rule set it prints the
match rate, a floor measured in the same run (a loop that only reads, once per alert, the fields those rules
use), and the cost ratio of 3,000 rules to 100.

    .venv/bin/python bench/rules.py [--passes 5] [--usecases usecases] [--alerts DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sigma.collection import SigmaCollection  # noqa: E402
from sigma.rule import SigmaRule  # noqa: E402

from pipeline.normalize.reader import read_records  # noqa: E402
from pipeline.normalize.stage import NormalizeStage  # noqa: E402
from pipeline.rules.compile import FETCH, CompiledRule, compile_rule  # noqa: E402
from pipeline.rules.index import RuleIndex  # noqa: E402
from pipeline.rules.mapping import UnsupportedRule, source_key  # noqa: E402
from pipeline.schema import Alert  # noqa: E402

SHARED = ROOT.parent / "shared"


def load_alerts(where: Path) -> list[Alert]:
    stage, out = NormalizeStage(), []
    for path in sorted(p for p in where.rglob("*") if p.is_file() and p.suffix != ".md"):
        for rec, fmt in read_records(str(path), "shop", "web-01", datetime(2026, 11, 24, tzinfo=UTC)):
            out.extend(stage.process(rec, fmt).alerts)
    out.extend(stage.flush().alerts)
    return out


def load_sigmahq(where: Path) -> list[CompiledRule]:
    out = []
    for p in sorted(where.rglob("*.yml")):
        for r in SigmaCollection.from_yaml(p.read_text(), collect_errors=True).rules:
            try:
                out.append(compile_rule(r))
            except UnsupportedRule:
                pass
    return out


def load_usecase_rules(where: Path) -> list[CompiledRule]:
    try:
        from pipeline.rules.usecase import load_usecases
    except ImportError:
        return []
    return [u.compiled for u in load_usecases(str(where)).usecases if u.compiled is not None]


def _vary(value: Any, rng: random.Random, tag: str) -> Any:
    """The same kind of literal with other content: a tag spliced in, or another number."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value + rng.randint(1, 999)
    if isinstance(value, str):
        if not value.strip("*?") or "%" in value:
            return value
        cut = rng.randrange(1, len(value) + 1)
        return value[:cut] + tag + value[cut:]
    if isinstance(value, list):
        return [_vary(v, rng, tag) for v in value]
    return value


def replicate(rule: CompiledRule, n: int, rng: random.Random) -> CompiledRule | None:
    """Copy n of a rule: same shape and log source, varied literals (regex values kept), new id."""
    doc = rule.rule.to_dict()
    tag = f"{n:x}"
    for name, det in doc["detection"].items():
        if name == "condition":
            continue
        items = det if isinstance(det, list) else [det]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                items[i] = {k: (v if "|re" in k or "|cidr" in k else _vary(v, rng, tag)) for k, v in item.items()}
            else:
                items[i] = _vary(item, rng, tag)
        doc["detection"][name] = items if isinstance(det, list) else items[0]
    doc["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule.id}/{n}"))
    doc["title"] = f"{rule.title} #{n}"
    try:
        return compile_rule(SigmaRule.from_dict(doc))
    except Exception:  # a variation pySigma refuses (e.g. an invalid value): skip it
        return None


def rule_set(base: list[CompiledRule], pool: list[CompiledRule], size: int, seed: int) -> list[CompiledRule]:
    """`base` first, then rules of `pool`, then replicas of both until `size` rules."""
    rules = (base + pool)[:size]
    rng, n = random.Random(seed), 0
    sources = base + pool
    while len(rules) < size and sources:
        n += 1
        copy = replicate(sources[n % len(sources)], n, rng)
        if copy is not None:
            rules.append(copy)
    return rules


def best_rate(fn: Callable[[Alert], Any], alerts: list[Alert], passes: int) -> float:
    """Alerts per CPU second, best of `passes` passes (other work on the machine only ever slows a pass)."""
    best = float("inf")
    for _ in range(passes):
        t = time.process_time()
        for a in alerts:
            fn(a)
        best = min(best, time.process_time() - t)
    return len(alerts) / best


def floor_fn(rules: Iterable[CompiledRule]) -> Callable[[Alert], Any]:
    """Reads each field the rules use once (string values, lower-cased): no rule logic at all."""
    fetchers = [FETCH[p] for p in sorted({f for r in rules for f in r.fields})]

    def read(a: Alert) -> None:
        source_key(a)
        for f in fetchers:
            for v in f(a):
                v.lower()

    return read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--usecases", type=Path, default=ROOT / "usecases")
    ap.add_argument("--sigma", type=Path, default=SHARED / "sigma")
    ap.add_argument("--alerts", type=Path, default=SHARED / "samples" / "lab-1")
    args = ap.parse_args()

    alerts = load_alerts(args.alerts if args.alerts.is_dir() else ROOT / "tests" / "fixtures")
    usecases = load_usecase_rules(args.usecases)
    sigmahq = load_sigmahq(args.sigma) if args.sigma.is_dir() else []
    print(f"{len(alerts)} alerts; {len(usecases)} use cases; {len(sigmahq)} SigmaHQ rules compiled")

    sets = {
        "use cases x200": rule_set(usecases, [], 200, 1),
        "mixed 100": rule_set(usecases, sigmahq, 100, 2),
        "mixed 200": rule_set(usecases, sigmahq, 200, 3),
        "mixed 3000": rule_set(usecases, sigmahq, 3000, 4),
        "SigmaHQ only": sigmahq,
    }
    rates: dict[str, float] = {}
    print(f"{'rule set':16} {'rules':>6} {'alerts/s':>10} {'floor/s':>10} {'of floor':>8} {'matches/alert':>13}")
    for name, rules in sets.items():
        if not rules:
            continue
        idx = RuleIndex(rules)
        hits = sum(len(idx.match(a)) for a in alerts)  # warms the buckets
        rate = best_rate(idx.match, alerts, args.passes)
        floor = best_rate(floor_fn(rules), alerts, args.passes)
        rates[name] = rate
        print(f"{name:16} {len(rules):6d} {rate:10,.0f} {floor:10,.0f} {rate / floor:8.0%} {hits / len(alerts):13.2f}")
    if "mixed 100" in rates and "mixed 3000" in rates:
        print(f"cost of 3000 rules / cost of 100 rules: {rates['mixed 100'] / rates['mixed 3000']:.2f}x")


if __name__ == "__main__":
    main()
