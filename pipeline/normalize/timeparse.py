"""Fast timestamp parsing for the formats products write, and the event-time policy.

Every parser returns a tz-aware UTC datetime or raises `BadRecord("bad_timestamp")`: a text that is not a time
in the product's format, or a time no UTC datetime can hold (outside years 1-9999 once its zone offset is
applied, an epoch beyond that) is unreadable. `check_time` is the policy for readable but implausible times;
the normalize stage applies it to every alert of every format (docs/streaming.md, "Event time").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

from pipeline.normalize.base import BadRecord

if TYPE_CHECKING:
    from pipeline.schema import Alert

# Event-time policy. A time before the Unix epoch, or more than MAX_AHEAD after the record was received, is not
# when the event happened (a clock never set, a wrong zone, a forged field): the alert keeps going with the
# received time and says so in `extra` (`time_untrusted`: why, `time_reported`: what the product wrote).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_AHEAD = timedelta(hours=1)
# The received time of records read as history, not arrivals (labeled training sets, use-case tests): fixed, so
# their alerts are the same in every run, and after any real record, so the policy keeps the times they carry.
HISTORY_RECEIVED = datetime(2100, 1, 1, tzinfo=UTC)

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MONTH_DIGITS = {m: f"{i:02d}" for m, i in _MONTHS.items()}
_fromisoformat = datetime.fromisoformat


def parse_iso(s: str, field: str = "time") -> datetime:
    """ISO 8601 / RFC 3339, with `Z`, `+0000` or `+00:00`; naive times are taken as UTC."""
    try:
        dt = _fromisoformat(s)
    except (TypeError, ValueError):
        raise BadRecord("bad_timestamp", f"not an ISO 8601 time: {s!r}"[:200], field) from None
    tz = dt.tzinfo
    if tz is UTC:  # a zero offset is read as UTC itself
        return dt
    return dt.replace(tzinfo=UTC) if tz is None else to_utc(dt, field)


def to_utc(dt: datetime, field: str = "time") -> datetime:
    """An aware datetime in UTC; a shift past year 1 or 9999 makes it unreadable (`bad_timestamp`)."""
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        raise BadRecord("bad_timestamp", f"out of range in UTC: {dt.isoformat()}", field) from None


def parse_epoch(v: float | int | str, field: str = "time") -> datetime:
    """Seconds (or milliseconds, when > 1e11) since the epoch."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise BadRecord("bad_timestamp", f"not an epoch time: {v!r}"[:200], field) from None
    if x > 1e11:
        x /= 1000.0
    try:
        return datetime.fromtimestamp(x, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadRecord("bad_timestamp", f"epoch out of range: {v!r}", field) from None


def parse_clf(s: str, field: str = "time") -> datetime:
    """Common Log Format time as ModSecurity writes it: `24/Nov/2026:06:38:34.034750 +0000`."""
    mon = _MONTH_DIGITS.get(s[3:6])
    if mon is None:
        raise BadRecord("bad_timestamp", f"not a CLF time: {s!r}"[:200], field)
    hms, _, tz = s[12:].partition(" ")
    return parse_iso(f"{s[7:11]}-{mon}-{s[:2]}T{hms}{tz or '+0000'}", field)


def parse_syslog(s: str, reference: datetime, field: str = "time") -> datetime:
    """`Nov 24 06:38:43` (no year, taken as UTC): the year that puts it closest before `reference` + 1 day."""
    try:
        mon = _MONTHS[s[:3]]
        day = int(s[4:6])
        h, m, sec = s[7:15].split(":")
        dt = datetime(reference.year, mon, day, int(h), int(m), int(float(sec)), tzinfo=UTC)
    except (KeyError, ValueError, IndexError):
        raise BadRecord("bad_timestamp", f"not a syslog time: {s!r}"[:200], field) from None
    if dt > reference + timedelta(days=1):
        dt = dt.replace(year=dt.year - 1)
    return dt


def parse_ctime(s: str, field: str = "time") -> datetime:
    """Apache error-log time: `Tue Nov 24 06:38:34.033263 2026`."""
    try:
        parts = s.split()
        date, hms = _ctime_date(parts[1], parts[2], parts[4]), parts[3]
    except (KeyError, ValueError, IndexError):
        raise BadRecord("bad_timestamp", f"not an Apache error-log time: {s!r}"[:200], field) from None
    return parse_iso(f"{date}T{hms}+00:00", field)


@lru_cache(maxsize=1024)  # a log's lines share few dates
def _ctime_date(mon: str, day: str, year: str) -> str:
    """`2026-11-24` of ("Nov", "24", "2026"); KeyError / ValueError when they are not a date's parts."""
    return f"{int(year):04d}-{_MONTHS[mon]:02d}-{int(day):02d}"


def check_time(a: Alert) -> None:
    """The event-time policy for one alert: a time before 1970 or more than `MAX_AHEAD` after `received_at`
    is replaced by `received_at`, and `extra` records why and what the product wrote."""
    t = a.time
    if t < EARLIEST:
        why = "before 1970"
    elif t - a.received_at > MAX_AHEAD:
        why = f"more than {MAX_AHEAD.total_seconds() / 3600:g} h after it was received"
    else:
        return
    a.extra = {**a.extra, "time_untrusted": why, "time_reported": t.isoformat()}
    a.time = a.received_at


def plausible_received(t: datetime, now: datetime) -> datetime:
    """The time a record was received, as a producer stamped it (a Kafka message timestamp): `now` when that
    stamp is before 1970 or more than `MAX_AHEAD` ahead of `now`, so the policy above has a sound reference."""
    return t if t >= EARLIEST and t - now <= MAX_AHEAD else now
