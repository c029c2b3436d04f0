"""The core gives the same incidents whatever the size of the `feed_alerts` calls (the streaming worker feeds
whatever has arrived; `mdr replay` feeds chunks of 2048)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.engine import Core
from pipeline.normalize.source import read_alerts
from pipeline.rules.usecase import load_usecases
from pipeline.schema import Alert, decode_alert, encode

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
