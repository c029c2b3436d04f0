"""Differential test: our matcher against pySigma's SQLite backend on events made from SigmaHQ rules.

For every SigmaHQ rule that we compile and `pysigma-backend-sqlite` converts, events are generated from the
rule's own detection values (matches) and mutations of them (near misses). The events of all rules of one log
source go into one SQLite table whose columns are the Sigma field names (keyword searches use a `fulltext`
column); each rule's SQL runs over that table, and our compiled rule runs over Alerts built from the same
events through the field mapping. Both must select the same events.
"""

from __future__ import annotations

import ipaddress
import re
import sqlite3
from collections import defaultdict
from typing import Any

import pytest
from sigma.exceptions import SigmaError
from sigma.modifiers import SigmaCIDRModifier
from sigma.rule import SigmaDetection, SigmaRule

from pipeline.rules import UnsupportedRule, alert_from_fields, getter, resolve_field
from pipeline.rules.compile import CompiledRule, compile_rule
from pipeline.rules.views import VIEWS
from tests.rules import events_for, sigma_rules

sqlite_backend = pytest.importorskip("sigma.backends.sqlite")

MIN_COMPARED = 350  # rules compared (383 compile; all of them convert with backend 2.1.1)


def _fields(det: SigmaDetection) -> set[str]:
    out: set[str] = set()
    for it in det.detection_items:
        if isinstance(it, SigmaDetection):
            out |= _fields(it)
        elif it.field is not None:
            out.add(it.field)
    return out


def _cidr_fields(det: SigmaDetection) -> set[str]:
    out: set[str] = set()
    for it in det.detection_items:
        if isinstance(it, SigmaDetection):
            out |= _cidr_fields(it)
        elif it.field is not None and SigmaCIDRModifier in it.modifiers:
            out.add(it.field)
    return out


def _explained(rule: SigmaRule, event: dict[str, Any]) -> str | None:
    """Why a disagreement is expected, or None.

    The backend writes `|cidr` as string prefixes (10.0.0.0/8 -> LIKE '10.%'), which also match strings that
    are no address at all ('10.0.0.1x'); we test real membership.
    """
    for d in rule.detection.detections.values():
        for f in _cidr_fields(d):
            try:
                ipaddress.ip_address(str(event.get(f)))
            except ValueError:
                if f in event:
                    return "cidr on a non-address"
    return None


def _regexp(pattern: str, value: Any) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def _fulltext(event: dict[str, Any]) -> str:
    words = [str(v) for k, v in event.items() if k != "keywords"] + list(event.get("keywords", []))
    return " ".join(words)


def _compare_group(members: list[tuple[SigmaRule, CompiledRule, list[str]]]) -> tuple[int, int, list[str]]:
    events = [e for r, _, _ in members for e in events_for(r)]
    columns: dict[str, str] = {}  # lower-case name -> the spelling used (SQLite names ignore case)
    for r, _, _ in members:
        for d in r.detection.detections.values():
            for f in _fields(d):
                columns.setdefault(f.lower(), f)
    cols = list(columns.values())
    db = sqlite3.connect(":memory:")
    db.create_function("regexp", 2, _regexp, deterministic=True)
    names = ["eid", "fulltext", *('"' + c + '"' for c in cols)]
    db.execute(f"CREATE TABLE logs ({', '.join(names)})")
    product = members[0][0].logsource.product
    alerts = []
    views = {c: resolve_field(c, product)[0] for c in cols if resolve_field(c, product)[0] in VIEWS}
    for eid, e in enumerate(events):
        text = _fulltext(e)
        fields = {k: v for k, v in e.items() if k != "keywords"}
        alert = alert_from_fields(fields, product=product, raw=text)
        alerts.append(alert)
        given = {k.lower(): v for k, v in fields.items()}
        # A column the event lacks but that is a view of what it has (the query part of a URL, its file
        # extension) holds what the log would have written there.
        row = [eid, text] + [given[c.lower()] if c.lower() in given
                             else getter(views[c])(alert) if c in views else None for c in cols]
        db.execute(f"INSERT INTO logs VALUES ({', '.join('?' * len(row))})", row)
    problems = []
    firing = 0  # rules that select at least one event in both engines
    for rule, comp, queries in members:
        sql_ids: set[int] = set()
        for q in queries:
            cur = db.execute(q)
            pos = [d[0] for d in cur.description].index("eid")
            sql_ids |= {row[pos] for row in cur}
        ours = {i for i, a in enumerate(alerts) if comp.detects(a)}
        firing += bool(ours & sql_ids)
        for i in sorted(sql_ids ^ ours):
            why = _explained(rule, events[i])
            problems.append(f"{rule.title}: event {events[i]!r}: sqlite={i in sql_ids} ours={i in ours}"
                            + (f" [expected: {why}]" if why else ""))
    return len(events), firing, problems


def test_matcher_agrees_with_sqlite_backend() -> None:
    backend = sqlite_backend.sqliteBackend(fulltext_field="fulltext", collate_nocase=True)
    groups: dict[tuple[Any, ...], list[tuple[SigmaRule, CompiledRule, list[str]]]] = defaultdict(list)
    unconverted = 0
    for _, rule in sigma_rules():
        try:
            comp = compile_rule(rule)
        except UnsupportedRule:
            continue
        try:
            queries = backend.convert_rule(rule)
        except SigmaError:
            unconverted += 1
            continue
        ls = rule.logsource
        groups[(ls.category, ls.product, ls.service)].append((rule, comp, queries))
    compared = sum(len(m) for m in groups.values())
    n_events, firing, problems = 0, 0, []
    for members in groups.values():
        n, f, p = _compare_group(members)
        n_events += n
        firing += f
        problems += p
    print(f"\nsqlite differential: {compared} rules compared over {n_events} events in {len(groups)} tables "
          f"({unconverted} not convertible); {firing} rules select some event; "
          f"{len(problems)} disagreements (explained below)")
    assert compared >= MIN_COMPARED
    assert n_events >= 5000
    assert firing >= 0.95 * compared  # the generated events do exercise the rules
    unexplained = [p for p in problems if "[expected:" not in p]
    print("\n".join(problems))
    assert not unexplained, "\n".join(unexplained[:40])
    assert len(problems) <= 10
