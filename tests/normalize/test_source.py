"""The one way from files to alerts (`pipeline.normalize.source`): files merged in event-time order through a
bounded reorder buffer, files opened when the merge reaches them, dead letters handed over as they come."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.normalize.reader import expand, read_records
from pipeline.normalize.source import AlertSource, read_alerts
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from tests.time_repros import LAB, dns_alert, with_time

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 12, 1, tzinfo=UTC)


def eve(path: Path, offsets: list[float]) -> Path:
    """A Suricata EVE file of the lab's DNS alert at T0 + each offset (seconds), in that order."""
    line = dns_alert()
    path.write_text("".join(with_time(line, (T0 + timedelta(seconds=s)).isoformat()) + "\n" for s in offsets))
    return path


def times(chunks: list[NormalizeResult]) -> list[float]:
    return [(a.time - T0).total_seconds() for c in chunks for a in c.alerts]


def test_files_are_merged_in_event_time_order(tmp_path: Path) -> None:
    a = eve(tmp_path / "a.jsonl", [0, 20, 40, 60, 80])
    b = eve(tmp_path / "b.jsonl", [10, 30, 50, 70])
    src = AlertSource([str(a), str(b)], "t", received_at=RECEIVED, batch=3)
    chunks = list(src)
    assert times(chunks) == [0, 10, 20, 30, 40, 50, 60, 70, 80]
    assert [len(c.alerts) for c in chunks] == [3, 3, 3] and sum(c.records for c in chunks) == 9
    assert src.late == 0


def test_an_alert_within_the_lateness_comes_in_order_a_later_one_is_counted(tmp_path: Path) -> None:
    f = eve(tmp_path / "a.jsonl", [0, 100, 200, 150, 300, 400, 500, 90])
    src = AlertSource([str(f)], "t", received_at=RECEIVED, lateness=120)
    # 150 was 50 s behind 200: in order; 90 was 410 s behind 500: out as soon as read (400 and 500 still wait)
    assert times(list(src)) == [0, 100, 150, 200, 300, 90, 400, 500]
    assert src.late == 1


def test_the_reorder_buffer_is_bounded_in_alerts(tmp_path: Path) -> None:
    f = eve(tmp_path / "a.jsonl", [10, 20, 30, 0])
    src = AlertSource([str(f)], "t", received_at=RECEIVED, max_held=2)
    assert times(list(src)) == [10, 0, 20, 30] and src.late == 1  # 10 had to go before 0 was read


def test_untrusted_times_wait_for_the_end_of_their_file(tmp_path: Path) -> None:
    """A record stamped in year 9999 gets the receipt time (the event-time policy): it neither overtakes the
    file's other alerts nor makes them late."""
    line = dns_alert()
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(with_time(line, s) for s in (
        T0.isoformat(), "9999-12-31T23:59:59+00:00", (T0 + timedelta(seconds=5)).isoformat())) + "\n")
    src = AlertSource([str(f)], "t", received_at=RECEIVED)
    alerts = [a for c in src for a in c.alerts]
    assert [a.time for a in alerts] == [T0, T0 + timedelta(seconds=5), RECEIVED]
    assert "time_untrusted" in alerts[-1].extra and src.late == 0


def test_files_that_follow_each_other_are_read_one_after_the_other(tmp_path: Path) -> None:
    days = [eve(tmp_path / f"day{d}.jsonl", [d * 86400 + s for s in (0, 60, 120)]) for d in (2, 0, 1)]
    src = AlertSource([str(p) for p in days], "t", received_at=RECEIVED)
    assert times(list(src)) == [d * 86400 + s for d in (0, 1, 2) for s in (0, 60, 120)]
    assert src.most_open == 1
    overlapping = AlertSource([str(eve(tmp_path / f"o{i}.jsonl", [i, 100 + i])) for i in range(3)], "t",
                              received_at=RECEIVED)
    assert times(list(overlapping)) == [0, 1, 2, 100, 101, 102] and overlapping.most_open == 3


def test_dead_letters_leave_in_chunks(tmp_path: Path) -> None:
    """A file of garbage is never held whole: its dead letters come in chunks of about `batch`."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event_type": "alert"}\n' * 1000)
    good = eve(tmp_path / "good.jsonl", [0, 1])
    chunks = list(AlertSource([str(bad), str(good)], "t", "suricata", received_at=RECEIVED, batch=100))
    assert sum(len(c.dead) for c in chunks) == 1000 and max(len(c.dead) for c in chunks) <= 200
    assert times(chunks) == [0, 1] and sum(c.records for c in chunks) == 1002


def test_the_lab_day_is_what_each_file_normalized_alone_gives(tmp_path: Path) -> None:
    """Same alerts, dead letters and counts as normalizing each file by itself, and in event-time order."""
    res = read_alerts([str(LAB)], "shop", "web-01", received_at=RECEIVED)
    want = NormalizeResult()
    for f in expand([str(LAB)]):
        stage = NormalizeStage()
        for rec, hint in read_records(f, "shop", "web-01", RECEIVED):
            stage.process(rec, hint, want)
        stage.flush(want)
    assert sorted(a.alert_id for a in res.alerts) == sorted(a.alert_id for a in want.alerts)
    assert [a.time for a in res.alerts] == sorted(a.time for a in want.alerts)
    assert (res.records, res.skipped, len(res.dead)) == (want.records, want.skipped, len(want.dead))
