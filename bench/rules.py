"""Benchmark: alerts/s on one core through `RuleIndex.match`, for 100, 200 and 3,000 rules.

Alerts: the lab-1 sample (or tests/fixtures) through the normalize stage. Rules: the project's use cases and
SigmaHQ rules (a 100-rule sample, and all of them), grown to 200 and 3,000 with replicas that have other literal
values. For each set it prints the match rate, a floor measured in the same run (a loop that only reads, once
per alert, the fields those rules use), and how the cost grows from 100 to 3,000 rules of the same make-up.

    .venv/bin/python bench/rules.py [--passes 5] [--usecases usecases] [--alerts DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
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

from pipeline.normalize.source import read_alerts  # noqa: E402
from pipeline.rules import UnsupportedRule  # noqa: E402
from pipeline.rules.compile import CompiledRule, compile_rule  # noqa: E402
from pipeline.rules.index import RuleIndex  # noqa: E402
from pipeline.rules.logsources import source_key  # noqa: E402
from pipeline.rules.values import FETCH  # noqa: E402
from pipeline.schema import Alert  # noqa: E402

SHARED = ROOT.parent / "shared"


def load_alerts(where: Path) -> list[Alert]:
    return read_alerts([str(where)], "shop", "web-01", received_at=datetime(2026, 11, 24, tzinfo=UTC)).alerts


def load_sigmahq(where: Path) -> list[CompiledRule]:
    out = []
    for p in sorted(where.rglob("*.yml")):
        for r in SigmaCollection.from_yaml(p.read_text(), collect_errors=True).rules:
            if not isinstance(r, SigmaRule):  # correlation rules are not single-alert rules
                continue
            with contextlib.suppress(UnsupportedRule):
                out.append(compile_rule(r))
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


def _vary_regex(value: Any, tag: str) -> Any:
    """The regex with a literal of its own in front (after any inline flags)."""
    if isinstance(value, list):
        return [_vary_regex(v, tag) for v in value]
    flags = value[: value.index(")") + 1] if value.startswith("(?") and value[2:3].isalpha() else ""
    return f"{flags}{tag}-{value[len(flags):]}"


def _vary_cidr(value: Any, n: int) -> Any:
    """Another network of the same size (its top octet or hextet changed)."""
    if isinstance(value, list):
        return [_vary_cidr(v, n) for v in value]
    net = ipaddress.ip_network(value)
    top = net.max_prefixlen - (8 if net.version == 4 else 16)
    moved = int(net.network_address) ^ ((n % 200 + 1) << top)
    return str(type(net)((moved, net.prefixlen), strict=False))


def _vary_item(key: str, value: Any, rng: random.Random, n: int) -> Any:
    if "|re" in key:
        return _vary_regex(value, f"r{n:x}")
    if "|cidr" in key:
        return _vary_cidr(value, n)
    return _vary(value, rng, f"{n:x}")


def replicate(rule: CompiledRule, n: int, rng: random.Random) -> CompiledRule | None:
    """Copy n of a rule: same shape and log source, other literal values (strings, numbers, regexes, networks)."""
    doc = rule.rule.to_dict()
    for name, det in doc["detection"].items():
        if name == "condition":
            continue
        items = det if isinstance(det, list) else [det]
        for i, item in enumerate(items):
            if isinstance(item, dict):
                items[i] = {k: _vary_item(k, v, rng, n) for k, v in item.items()}
            else:
                items[i] = _vary(item, rng, f"{n:x}")
        doc["detection"][name] = items if isinstance(det, list) else items[0]
    doc["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule.id}/{n}"))
    doc["title"] = f"{rule.title} #{n}"
    try:
        return compile_rule(SigmaRule.from_dict(doc))
    except Exception:  # a variation pySigma refuses (e.g. an invalid value): skip it
        return None


def grow(rules: list[CompiledRule], size: int, seed: int) -> list[CompiledRule]:
    """`rules`, then replicas of them with other literal values, up to `size` rules."""
    out, rng, n = list(rules), random.Random(seed), 0
    while len(out) < size and rules:
        n += 1
        copy = replicate(rules[n % len(rules)], n, rng)
        if copy is not None:
            out.append(copy)
    return out


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

    sample = usecases + random.Random(1).sample(sigmahq, max(0, min(len(sigmahq), 100 - len(usecases))))
    everything = usecases + sigmahq
    sets = {
        "use cases x200": grow(usecases, 200, 1),
        "sample 100": sample,
        "sample 100 ->200": grow(sample, 200, 2),
        "sample 100 ->3000": grow(sample, 3000, 3),
        f"all {len(everything)}": everything,
        f"all {len(everything)} ->3000": grow(everything, 3000, 4),
    }
    rates: dict[str, float] = {}
    print(f"{'rule set':18} {'rules':>6} {'alerts/s':>10} {'floor/s':>10} {'of floor':>8} {'matches/alert':>13}")
    for name, rules in sets.items():
        if not rules:
            continue
        idx = RuleIndex(rules)
        hits = sum(len(idx.match(a)) for a in alerts)  # warms the buckets
        rate = best_rate(idx.match, alerts, args.passes)
        floor = best_rate(floor_fn(rules), alerts, args.passes)
        rates[name] = rate
        print(f"{name:18} {len(rules):6d} {rate:10,.0f} {floor:10,.0f} {rate / floor:8.0%} {hits / len(alerts):13.2f}")
    every = f"all {len(everything)}"
    for small, big in (("sample 100", "sample 100 ->3000"), (every, f"{every} ->3000")):
        if small in rates and big in rates:
            print(f"cost of '{big}' / cost of '{small}': {rates[small] / rates[big]:.2f}x")


if __name__ == "__main__":
    main()
