"""The core gives the same incidents whatever the size of the `feed_alerts` calls (the streaming worker feeds
whatever has arrived; `mdr replay` feeds chunks of 2048)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.context.priority import prioritize
from pipeline.core.engine import Core
from pipeline.core.fusion import Fusion
from pipeline.normalize.source import read_alerts
from pipeline.rules.usecase import load_usecases
from pipeline.schema import Alert, Incident, decode_alert, encode

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "samples" / "lab-1"


@pytest.fixture(scope="module")
def lab_alerts() -> list[bytes]:
    """lab-1's normalized alerts in event-time order (encoded: each run decodes its own fresh objects)."""
    return [encode(a) for a in read_alerts([str(LAB / d) for d in ("waf", "ids", "host")], "shop", "web-01").alerts]


def _incidents(alerts: list[Alert], cuts: list[int]) -> dict[str, tuple]:
    core = Core(load_usecases(str(ROOT / "usecases")))
    incidents = {}
    for lo, hi in zip([0, *cuts], [*cuts, len(alerts)], strict=True):
        core.feed_alerts(alerts[lo:hi])
        incidents.update(core.take().incidents)
    return {i.incident_id: (i.status == "merged", i.merged_into, sorted(i.alert_ids), i.alert_count)
            for i in incidents.values()}


def test_secondary_log_upgraded_in_a_later_call_is_matched(lab_alerts: list[bytes]) -> None:
    """An error-log alert fed alone, its audit-log alert of the same transaction in the next call: the
    representative takes the audit log's content and must then match the use cases that content matches."""
    alerts = [decode_alert(b) for b in lab_alerts]
    cuts = [i + 1 for i in range(len(alerts) - 1)
            if alerts[i].source.format == "modsec_error" and alerts[i + 1].source.format == "modsecurity"
            and alerts[i].extra.get("transaction_id") == alerts[i + 1].extra.get("transaction_id")]
    assert cuts, "lab-1 has error-log lines just before their audit-log record"
    whole = _incidents([decode_alert(b) for b in lab_alerts], [])
    assert _incidents(alerts, cuts) == whole


def _summary(incidents: dict) -> dict[str, tuple]:
    return {i.incident_id: (i.status, i.merged_into, frozenset(i.alert_ids), i.alert_count, i.priority, i.category,
                            i.title, tuple(i.fused_from)) for i in incidents.values()}


def _feed_in_calls(alerts: list[Alert], size: int, core: Core | None = None) -> dict:
    core = core or Core(load_usecases(str(ROOT / "usecases")))
    incidents = {}
    for lo in range(0, len(alerts), size):
        core.feed_alerts(alerts[lo:lo + size])
        incidents.update(core.take().incidents)
    return incidents


@pytest.mark.parametrize("size", [97, 500])
def test_fusion_and_priority_settled_per_call_give_the_same_incidents_whatever_the_call_size(lab_alerts, size):
    """The core fuses and prioritizes each changed incident once per call: the final incidents (ids, fusion,
    alerts, counts, priorities, titles) do not depend on how the input is cut into calls (the worker feeds what
    has arrived, `mdr replay` chunks of 2048). Calls of a few alerts are left out: dedup merges the repeats of
    one call into their representative before it is correlated, so a correlation can reach its threshold at
    another alert than with the repeats fed one by one (as before fusion was settled per call)."""
    whole = _summary(_feed_in_calls([decode_alert(b) for b in lab_alerts], 2048))
    assert _summary(_feed_in_calls([decode_alert(b) for b in lab_alerts], size)) == whole
    assert sum(1 for v in whole.values() if v[0] == "merged") >= 5


class _Counting:
    """A prioritizer that counts its calls per incident (and rates with the real function)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, inc: Incident) -> None:
        self.calls[inc.incident_id] += 1
        prioritize(inc)


def test_each_changed_incident_is_fused_and_prioritized_once_per_call(lab_alerts, monkeypatch) -> None:
    fused: Counter[str] = Counter()
    real_fuse = Fusion.fuse

    def fuse(self: Fusion, inc: Incident) -> list[Incident]:
        fused[inc.incident_id] += 1
        return real_fuse(self, inc)

    monkeypatch.setattr(Fusion, "fuse", fuse)
    rate = _Counting()
    core = Core(load_usecases(str(ROOT / "usecases")), prioritizer=rate)
    alerts = [decode_alert(b) for b in lab_alerts]
    emitted = 0
    for lo in range(0, len(alerts), 2048):
        core.feed_alerts(alerts[lo:lo + 2048])
        out = core.take()
        emitted += len(out.incidents)
        assert max(fused.values(), default=0) <= 1 and max(rate.calls.values(), default=0) <= 1
        assert set(rate.calls) <= set(out.incidents)
        fused.clear()
        rate.calls.clear()
    assert emitted and len(alerts) > 10 * emitted  # hundreds of alerts changed a handful of incidents


# ---- one core whatever the call size: `mdr replay` (big chunks) and the worker (what has arrived) alike --------
def _final(incidents: dict[str, Incident]) -> dict[str, tuple]:
    """What an analyst sees of the day's final incidents."""
    return {i.incident_id: (i.status, i.merged_into, sorted(i.alert_ids), i.alert_count, i.priority,
                            i.priority_reasons, i.first_seen, i.last_seen, i.outcome) for i in incidents.values()}


def _replayed(lab_alerts: list[bytes], cuts: list[int]) -> tuple[dict[str, tuple], list[bytes]]:
    """Lab-1 fed to the core `mdr replay` builds (tests/lab.py), cut into calls at `cuts`: (final incidents,
    fates in the order they were recorded)."""
    from tests.lab import lab_core

    core, alerts = lab_core(), [decode_alert(b) for b in lab_alerts]
    incidents: dict[str, Incident] = {}
    fates: list[bytes] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(alerts)], strict=True):
        core.feed_alerts(alerts[lo:hi])
        out = core.take()
        incidents.update(out.incidents)
        fates.extend(encode(f) for f in out.fates)
    return _final(incidents), fates


def _burst_cuts(lab_alerts: list[bytes]) -> list[int]:
    """Cuts inside each burst of repeats of lab-1: right after the alert that opens it and in its middle (the
    repeats of one call and of the next merge into one representative)."""
    from pipeline.core.dedup import fingerprint

    fps = [fingerprint(decode_alert(b)) for b in lab_alerts]
    cuts: set[int] = set()
    i = 0
    while i < len(fps):
        j = i
        while j + 1 < len(fps) and fps[j + 1] == fps[i]:
            j += 1
        if j - i >= 3:  # a run of four or more of one fingerprint
            cuts |= {i + 1, (i + j + 1) // 2}
        i = j + 1
    return sorted(cuts)


@pytest.fixture(scope="module")
def big_chunks(lab_alerts: list[bytes]) -> tuple[dict[str, tuple], list[bytes]]:
    return _replayed(lab_alerts, list(range(2048, len(lab_alerts), 2048)))


@pytest.mark.parametrize("size", [1, 7, 97, 2048])
def test_the_day_gives_the_same_incidents_and_fates_in_calls_of_any_size(lab_alerts, big_chunks, size) -> None:
    """Replay feeds chunks of 2048, the worker what has arrived (one alert under light load): the final
    incidents (ids, alert sets, counts, priorities, status, merged_into) and every alert's fate must not
    depend on it. A repeat merged by dedup counts in correlation at its own time and weight, whether it came in
    its representative's call or a later one."""
    incidents, fates = _replayed(lab_alerts, list(range(size, len(lab_alerts), size)))
    whole, whole_fates = big_chunks
    assert len(whole) >= 15 and sum(1 for v in whole.values() if v[0] == "merged") >= 5
    assert sorted(set(incidents) ^ set(whole)) == []
    assert {k: v for k, v in incidents.items() if v != whole[k]} == {}
    assert fates == whole_fates


def test_a_call_boundary_inside_a_burst_of_repeats_changes_nothing(lab_alerts, big_chunks) -> None:
    cuts = _burst_cuts(lab_alerts)
    assert len(cuts) >= 10, "lab-1 has bursts of repeats (scans, brute force)"
    incidents, fates = _replayed(lab_alerts, cuts)
    assert incidents == big_chunks[0]
    assert fates == big_chunks[1]


def test_the_big_chunk_core_gives_what_mdr_replay_gives(lab_alerts, big_chunks, lab1_replay) -> None:
    """The cut-up feeds above are compared with the core `mdr replay` runs: the shared replay of the day."""
    assert big_chunks[0] == _final(lab1_replay.incidents)


def _corr_core(tmp_path: Path) -> Core:
    """A 5-minute event_count (3 or more) over rule a, grouped by source (tests/core/test_correlate.py)."""
    from tests.core.test_correlate import CORR, core_with

    return core_with(tmp_path, CORR.format(type="event_count", rules="[rule_a]", cond="  condition: {gte: 3}"))


def _repeats(minutes: list[float], url: str = "/login") -> list[Alert]:
    """One alert of rule a and its repeats (one fingerprint), at these minutes of event time."""
    from pipeline.authoring import alert_from_dict

    out = []
    for n, m in enumerate(minutes):
        a = alert_from_dict({"rule": {"id": "a"}, "src": {"ip": "203.0.113.1"}, "http": {"url": url}}, n)
        a.time = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m)
        out.append(a)
    return out


@pytest.mark.parametrize("size", [1, 3])
def test_a_repeat_counts_at_its_own_time_in_a_correlation(tmp_path: Path, size: int) -> None:
    """Three repeats 4 minutes apart are one dedup window (10 min) but never three events in 5 minutes: the
    correlation must not fire, whether they come in one call (dedup merges them before correlating; it used to
    count all three at the first one's time) or one by one."""
    core = _corr_core(tmp_path)
    alerts = _repeats([0, 4, 8])
    for lo in range(0, len(alerts), size):
        core.feed_alerts(alerts[lo:lo + size])
    out = core.take()
    assert out.duplicates == 2 and not out.incidents


@pytest.mark.parametrize("size", [1, 2, 5])
def test_a_correlation_fires_at_the_repeat_that_reaches_its_threshold(tmp_path: Path, size: int) -> None:
    """Repeats a minute apart: the correlation fires at the third (detected then, not at the first), and its
    incident counts every raw alert it took in, repeats after the firing included."""
    core = _corr_core(tmp_path)
    alerts = [*_repeats([0, 1, 2, 3]), *_repeats([3.5], url="/admin")]
    for lo in range(0, len(alerts), size):
        core.feed_alerts(alerts[lo:lo + size])
    [inc] = core.take().incidents.values()
    assert inc.detected_at == alerts[2].time and inc.first_seen == alerts[0].time
    assert inc.alert_count == 5 and inc.alert_ids == [alerts[0].alert_id, alerts[4].alert_id]
