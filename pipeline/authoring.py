"""`mdr rules validate` and `mdr rules test`: the checks a rule author runs before committing a use case (above
the core, which runs the tests; `pipeline.rules` stays free of core imports).

Inline tests live in the use-case file:

    tests:
      - name: blocked UNION select
        expect: match                 # or no-match
        format: modsecurity           # optional; auto-detected otherwise
        record: '{"transaction": ...}'  # a raw product record ...
      - expect: no-match
        alert: {rule: {id: "920350"}, src: {ip: 10.0.0.1}}   # ... or a normalized alert (partial)
      - expect: match                 # correlations: a sequence of events
        events: [{alert: {...}}, {record: '...'}]

A test runs through the same core as production (normalize, dedup, match, correlate), with all loaded use cases
so that correlations see the rules they reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson

from pipeline.core.engine import Core
from pipeline.normalize.base import Origin, RawRecord, make_id
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.normalize.timeparse import HISTORY_RECEIVED
from pipeline.rules.usecase import LoadError, UseCase, UseCaseSet
from pipeline.schema import Alert

TEST_TENANT = "rules-test"
_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class TestResult:
    usecase: UseCase
    index: int
    name: str
    expect: str
    ok: bool
    detail: str = ""


def alert_from_dict(d: dict[str, Any], seq: int = 0) -> Alert:
    """A full Alert from a partial normalized one (defaults for what a rule test leaves out)."""
    d = dict(d)
    d.setdefault("tenant_id", TEST_TENANT)
    d.setdefault("source", {"product": "test", "vendor": "test", "family": "waf", "format": "test"})
    d.setdefault("time", (_BASE_TIME + timedelta(seconds=seq)).isoformat())
    d.setdefault("received_at", d["time"])
    d.setdefault("alert_id", make_id("test", orjson.dumps(d, default=str).decode(), str(seq)))
    d.setdefault("raw", orjson.dumps(d, default=str).decode())
    return msgspec.convert(d, Alert, strict=False)


def _event_alerts(stage: NormalizeStage, ev: dict[str, Any], seq: int, where: str) -> list[Alert]:
    if "alert" in ev:
        return [alert_from_dict(ev["alert"], seq)]
    if "record" in ev:
        text = ev["record"] if isinstance(ev["record"], str) else orjson.dumps(ev["record"]).decode()
        rec = RawRecord(text, ev.get("tenant", TEST_TENANT), HISTORY_RECEIVED, ev.get("host"), Origin(file=where))
        res = NormalizeResult()
        stage.process(rec, ev.get("format"), res)
        stage.flush(res)
        if res.dead:
            raise ValueError(f"record did not normalize: {res.dead[0].reason} {res.dead[0].detail}")
        return res.alerts
    raise ValueError("a test needs `alert`, `record` or `events`")


def run_test(ucs: UseCaseSet, uc: UseCase, i: int, t: dict[str, Any]) -> TestResult:
    name = str(t.get("name") or f"test {i + 1}")
    expect = str(t.get("expect", "match")).replace("_", "-")
    where = f"{uc.path}:{uc.test_line(i)} {uc.title} / {name}"
    if expect not in ("match", "no-match"):
        return TestResult(uc, i, name, expect, False, f"expect must be match or no-match, not {expect!r}")
    core, stage = Core(ucs, lateness=1e9), NormalizeStage()
    try:
        events = t.get("events", [t])
        fired = False
        for n, ev in enumerate(events):
            alerts = _event_alerts(stage, ev, n, where)
            if uc.compiled is not None:
                fired = fired or any(uc.compiled.matches(a) for a in alerts)
            core.feed_alerts(alerts)
        core.release_held()
        out = core.take()
        fired = fired or out.matches.get(uc.id, 0) > 0
    except (ValueError, KeyError, TypeError, msgspec.ValidationError) as e:
        return TestResult(uc, i, name, expect, False, f"bad test: {e}")
    ok = fired == (expect == "match")
    return TestResult(uc, i, name, expect, ok, "" if ok else f"expected {expect}, got "
                      f"{'match' if fired else 'no-match'}")


def run_tests(ucs: UseCaseSet) -> list[TestResult]:
    return [run_test(ucs, uc, i, t) for uc in ucs.usecases for i, t in enumerate(uc.tests)]


def validate(ucs: UseCaseSet) -> list[LoadError]:
    """Load errors plus authoring rules: every use case has inline tests, with both outcomes for detections."""
    problems = list(ucs.errors)
    for uc in ucs.usecases:
        if not uc.tests:
            problems.append(LoadError(uc.path, uc.line, "tests: use case has no inline tests", uc.title))
            continue
        for i, t in enumerate(uc.tests):
            if not isinstance(t, dict) or not ({"alert", "record", "events"} & set(t)):
                problems.append(LoadError(uc.path, uc.test_line(i),
                                          f"tests[{i}]: test {i + 1} needs alert, record or events", uc.title))
    return problems
