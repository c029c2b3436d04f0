"""A ModSecurity error-log line waits for the audit record of its transaction (the same event: the audit record
comes after it) and is matched once, with the audit record's content; a line whose audit record does not come
within the hold (event time) is matched on its own (pipeline/core/engine.py, "pairs of logs"; docs/streaming.md)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.core.engine import PAIR_HOLD, Core
from pipeline.normalize.source import read_alerts
from pipeline.replay import ReplayResult, replay
from pipeline.rules.usecase import load_usecases
from pipeline.schema import Alert, decode_alert, encode

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "samples" / "lab-1"


@pytest.fixture(scope="module")
def lab_alerts() -> list[bytes]:
    return [encode(a) for a in read_alerts([str(LAB / d) for d in ("waf", "ids", "host")], "shop", "web-01").alerts]


def _core() -> Core:
    return Core(load_usecases(str(ROOT / "usecases")))


def _pair(lab_alerts: list[bytes]) -> tuple[Alert, Alert, Alert]:
    """The day's first error-log line, its audit record, and an IDS alert of the tenant (fresh copies)."""
    alerts = [decode_alert(b) for b in lab_alerts]
    line = next(a for a in alerts if a.source.format == "modsec_error")
    audit = next(a for a in alerts if a.source.format == "modsecurity"
                 and a.extra.get("transaction_id") == line.extra["transaction_id"])
    other = next(a for a in alerts if a.source.family == "ids")
    return line, audit, other


def _at(a: Alert, after: Alert, seconds: float, n: int) -> Alert:
    """A copy of `a` at `seconds` after `after` (an alert of its own)."""
    b = decode_alert(encode(a))
    b.alert_id, b.time = f"{a.alert_id}-{n}", after.time + timedelta(seconds=seconds)
    return b


def _fates(core: Core) -> list[tuple[str, str, str | None]]:
    return [(f.alert_id, f.fate, f.of) for f in core.take().fates]


def test_a_line_and_its_audit_record_are_matched_once_whatever_the_calls(lab_alerts, monkeypatch) -> None:
    """Every line of lab-1 is matched once, upgraded to its audit record's content (the core used to match the
    line alone, then again once upgraded: 975 second matches a day), in calls of one alert as in one call."""
    rematched: list[str] = []
    real = Core._rematch

    def rematch(self: Core, rep: Alert) -> None:
        rematched.append(rep.alert_id)
        real(self, rep)

    monkeypatch.setattr(Core, "_rematch", rematch)
    for size in (1, len(lab_alerts)):
        core, alerts = _core(), [decode_alert(b) for b in lab_alerts]
        for lo in range(0, len(alerts), size):
            core.feed_alerts(alerts[lo:lo + size])
        out = core.take()
        assert not core.state.held
        lines = [a for a in out.alerts if a.extra.get("transaction_id") and a.source.format == "modsec_error"]
        assert lines == [] and out.same_event >= 1000
    assert rematched == []


def test_the_line_takes_the_audit_records_content_at_its_turn(lab_alerts) -> None:
    line, audit, _ = _pair(lab_alerts)
    core, line_time = _core(), line.time
    core.feed_alerts([line])
    assert _fates(core) == [] and list(core.state.held.values()) == [line]
    core.feed_alerts([audit])
    out = core.out
    assert [(f.alert_id, f.fate, f.of) for f in out.fates] == [
        (line.alert_id, "representative", None), (audit.alert_id, "same_event", line.alert_id)]
    [rep] = out.alerts
    assert rep.alert_id == line.alert_id and rep.source.format == "modsecurity" and rep.time == audit.time
    assert rep.first_seen == line_time < audit.time and not core.state.held


def test_a_line_is_matched_alone_once_its_tenants_time_passed_the_hold(lab_alerts) -> None:
    """The tenant's event time (its alerts in input order) releases the line: not at PAIR_HOLD - 1 s, at
    PAIR_HOLD + 1 s, just before the alert that moved it there; its audit record, later still, upgrades it."""
    line, audit, other = _pair(lab_alerts)
    core = _core()
    core.feed_alerts([line])
    core.feed_alerts([early := _at(other, line, PAIR_HOLD - 1, 1)])
    assert [f[0] for f in _fates(core)] == [early.alert_id] and line.alert_id in {a.alert_id for a in
                                                                                core.state.held.values()}
    core.feed_alerts([late := _at(other, line, PAIR_HOLD + 1, 2), _at(audit, line, PAIR_HOLD + 2, 3)])
    fates = _fates(core)
    assert fates[0] == (line.alert_id, "representative", None) and fates[1][0] == late.alert_id
    assert fates[2][1:] == ("same_event", line.alert_id) and not core.state.held
    assert core.dedup.state[line.fingerprint].source.format == "modsecurity"  # upgraded (and matched again)


def test_another_tenants_time_does_not_release_a_line(lab_alerts) -> None:
    line, _, other = _pair(lab_alerts)
    core = _core()
    core.feed_alerts([line])
    stranger = _at(other, line, 3600, 1)
    stranger.tenant_id = "other"
    core.feed_alerts([stranger])
    assert line.alert_id in {a.alert_id for a in core.state.held.values()}


def test_expiry_and_the_end_of_input_release_what_is_held(lab_alerts) -> None:
    line, _, _ = _pair(lab_alerts)
    core = _core()
    core.feed_alerts([line])
    core.expire(line.time + timedelta(seconds=PAIR_HOLD / 2))
    assert core.state.held
    core.expire(line.time + timedelta(seconds=PAIR_HOLD + 1))
    assert _fates(core) == [(line.alert_id, "representative", None)] and not core.state.held
    core = _core()
    core.feed_alerts([decode_alert(encode(line))])
    core.release_held()
    assert _fates(core) == [(line.alert_id, "representative", None)] and not core.state.held


def test_a_replay_of_an_error_log_alone_gives_every_alert_a_fate(tmp_path: Path) -> None:
    """`mdr replay` of error-log lines whose audit records it never reads: its final flush matches them alone."""
    (tmp_path / "error.log").write_text("".join((LAB / "waf" / "apache_error.log").read_text().splitlines(True)[:40]))
    res = replay([str(tmp_path)], _core(), "shop", "web-01")
    assert isinstance(res, ReplayResult) and res.alerts_raw > 0
    assert len(res.fates) == res.alerts_raw and {a.source.format for a in res.alerts} == {"modsec_error"}
