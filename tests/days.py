"""Days of normalized lab-1 alerts for the event-time tests: the lab day's alerts moved some days back, for a
tenant of choice, with their own ids (fresh objects each call: the core updates alerts in place)."""

from __future__ import annotations

import functools
from datetime import timedelta

import msgspec

from pipeline.normalize.base import make_id
from pipeline.normalize.source import read_alerts
from pipeline.schema import Alert
from tests.time_repros import LAB


@functools.cache
def _lab() -> bytes:
    return msgspec.msgpack.encode(read_alerts([str(LAB)], "shop", "web-01").alerts)


def lab_day(tenant: str = "shop", back: int = 0) -> list[Alert]:
    """lab-1's alerts, in event-time order, `back` days earlier, of `tenant`."""
    alerts = msgspec.msgpack.decode(_lab(), type=list[Alert])
    for a in alerts:
        a.tenant_id = tenant
        a.time -= timedelta(days=back)
        a.alert_id = make_id(a.alert_id, tenant, str(back))
    return alerts
