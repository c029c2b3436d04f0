"""The event-time policy (docs/streaming.md, "Event time"), applied once in the normalize stage for every format.

- readable but implausible (before 1970, more than 1 h after receipt): the alert goes on with the received time,
  `extra.time_untrusted` says why and `extra.time_reported` what the product wrote;
- unreadable, including a time no UTC datetime holds once its zone offset is applied: `bad_timestamp`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.normalize.base import BadRecord
from pipeline.normalize.reader import expand
from pipeline.normalize.source import read_alerts
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.normalize.timeparse import MAX_AHEAD, check_time, parse_clf, parse_ctime, parse_iso, to_utc
from pipeline.schema import Alert, Source
from pipeline.stream.envelope import Message, unpack
from tests.time_repros import LAB, reproductions

from .conftest import RECEIVED, record

NOW = datetime.now(UTC)


def _alert(t: datetime, received: datetime = RECEIVED) -> Alert:
    return Alert(alert_id="a", tenant_id="t", source=Source("p", "v", "ids", "suricata"), time=t, received_at=received)


@pytest.mark.parametrize(("t", "why"), [
    (datetime(1, 1, 1, tzinfo=UTC), "before 1970"),
    (datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), "before 1970"),
    (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), "more than 1 h after it was received"),
    (RECEIVED + MAX_AHEAD + timedelta(seconds=1), "more than 1 h after it was received"),
])
def test_implausible_time_is_replaced_by_the_received_time_and_flagged(t: datetime, why: str) -> None:
    a = _alert(t)
    check_time(a)
    assert a.time == RECEIVED
    assert a.extra == {"time_untrusted": why, "time_reported": t.isoformat()}


@pytest.mark.parametrize("t", [datetime(1970, 1, 1, tzinfo=UTC), RECEIVED - timedelta(days=400), RECEIVED,
                               RECEIVED + MAX_AHEAD])
def test_plausible_time_is_kept(t: datetime) -> None:
    a = _alert(t)
    check_time(a)
    assert (a.time, a.extra) == (t, {})


@pytest.mark.parametrize(("parse", "text"), [
    (parse_iso, "0001-01-01T00:30:00+01:00"),
    (parse_iso, "9999-12-31T23:30:00-01:00"),
    (parse_clf, "01/Jan/0001:00:30:00 +0100"),
])
def test_a_time_outside_utc_after_its_zone_shift_is_bad_timestamp(parse, text: str) -> None:
    with pytest.raises(BadRecord) as e:
        parse(text, "timestamp")
    assert (e.value.reason, e.value.field) == ("bad_timestamp", "timestamp")


def test_every_zone_shift_goes_through_to_utc() -> None:
    with pytest.raises(BadRecord):
        to_utc(datetime(1, 1, 1, 3, tzinfo=timezone(timedelta(hours=8))), "OccurrenceTime")
    assert parse_ctime("Fri Dec 31 23:59:59.000001 9999") == datetime(9999, 12, 31, 23, 59, 59, 1, tzinfo=UTC)


def test_the_year_0001_record_with_a_zone_is_bad_timestamp_not_normalizer_error() -> None:
    """Issue 13 §9: it was `normalizer_error` (an OverflowError escaped the parser)."""
    _, text = reproductions()["eve_0001_tz"]
    res = NormalizeResult()
    stage = NormalizeStage()
    for line in text.splitlines():
        stage.process(record(line), None, res)
    assert [(d.reason, d.field, d.source) for d in res.dead] == [("bad_timestamp", "timestamp", "suricata")]
    assert len(res.alerts) == 1 and "time_untrusted" not in res.alerts[0].extra


@pytest.mark.parametrize("name", ["eve_9999", "eve_0001", "aide_9999"])
def test_reproductions_become_flagged_alerts(name: str, tmp_path) -> None:
    fname, text = reproductions()[name]
    (tmp_path / fname).write_text(text)
    res = read_alerts([str(tmp_path / fname)], "t", "web-01", received_at=RECEIVED)
    assert res.dead == []
    flagged = [a for a in res.alerts if "time_untrusted" in a.extra]
    assert flagged and all(a.time == RECEIVED and a.extra["time_reported"][:4] in ("9999", "0001") for a in flagged)
    assert len(res.alerts) - len(flagged) == (1 if name == "eve_0001" else 0)  # the normal record is untouched


LAB_FILES = [f for f in expand([str(LAB)]) if not f.endswith("audit.log")]


@pytest.mark.parametrize("path", LAB_FILES, ids=lambda p: p.rsplit("/", 1)[-1])
@pytest.mark.parametrize("year", ["9999", "0001"])
def test_every_format_goes_through_the_policy(path: str, year: str, tmp_path) -> None:
    """Each lab file with its year moved to 9999 or 0001: no record is lost to an error, no alert keeps an
    implausible time, and the shifted ones say so (sshd's syslog times carry no year: they stay as they are)."""
    shifted = tmp_path / path.rsplit("/", 1)[-1]
    shifted.write_text(Path(path).read_text(encoding="utf-8").replace("2026", year))
    res = read_alerts([str(shifted)], "t", "web-01", received_at=NOW)
    assert not [d for d in res.dead if d.reason == "normalizer_error"], res.dead[:3]
    for a in res.alerts:
        assert datetime(1970, 1, 1, tzinfo=UTC) <= a.time <= a.received_at + MAX_AHEAD
    flagged = [a for a in res.alerts if "time_untrusted" in a.extra]
    assert all(a.time == a.received_at and a.extra["time_reported"].startswith(year) for a in flagged)
    if not path.endswith("sshd_auth.log") and res.alerts:
        assert flagged


def test_auditd_epoch_far_ahead_is_flagged() -> None:
    lines = (LAB / "host" / "audit.log").read_text().splitlines()
    stage, res = NormalizeStage("auditd"), NormalizeResult()
    for line in lines:
        head, _, rest = line.partition("msg=audit(")
        stage.process(record(f"{head}msg=audit(99999999999.{rest.partition('.')[2]}"), None, res)
    stage.flush(res)
    assert not [d for d in res.dead if d.reason == "normalizer_error"]
    assert res.alerts and all(a.extra["time_untrusted"].startswith("more than") for a in res.alerts)


@pytest.mark.parametrize("ts_ms", [-1, 2**62, 10**15, (int(NOW.timestamp()) + 7200) * 1000])
def test_an_implausible_kafka_timestamp_is_not_the_received_time(ts_ms: int) -> None:
    u = unpack(Message(json.dumps({"tenant": "t", "record": "x"}).encode(), "mdr.alerts.waf", 0, 1, ts_ms), {})
    assert u.dead is None
    assert abs((u.records[0].received_at - datetime.now(UTC)).total_seconds()) < 60


def test_modsecurity_error_log_at_the_end_of_year_9999() -> None:
    """Transactions of the Apache error log are closed by time arithmetic (idle gap): at the very end of the
    datetime range it must not overflow inside the normalizer."""
    import re

    lines = [ln for ln in (LAB / "waf" / "apache_error.log").read_text().splitlines() if "unique_id" in ln]
    stage, res = NormalizeStage("modsec_error"), NormalizeResult()
    for ln in lines[:40]:
        stage.process(record(re.sub(r"^\[[^]]+\]", "[Fri Dec 31 23:59:59.999000 9999]", ln)), None, res)
    stage.flush(res)
    assert not [d for d in res.dead if d.reason == "normalizer_error"], res.dead[:2]
    assert res.alerts and all("time_untrusted" in a.extra for a in res.alerts)
