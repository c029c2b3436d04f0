"""Report periods: a day, an ISO week (Monday to Sunday) or a calendar month, in UTC, and the one before."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

KINDS = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Period:
    kind: str  # day | week | month | custom
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC

    @property
    def days(self) -> list[date]:
        n = (self.end - self.start).days
        return [self.start.date() + timedelta(days=i) for i in range(n)]

    @property
    def label(self) -> str:
        first, last = self.start.date(), (self.end - timedelta(days=1)).date()
        if self.kind == "day":
            return f"{first:%A %d %B %Y}"
        if self.kind == "week":
            iso = first.isocalendar()
            return f"week {iso.year}-W{iso.week:02d} ({first:%d %b} – {last:%d %b %Y})"
        if self.kind == "month":
            return f"{first:%B %Y}"
        return f"{first:%d %b %Y} – {last:%d %b %Y}"

    @property
    def noun(self) -> str:
        return {"day": "day", "week": "week", "month": "month"}.get(self.kind, "period")

    def previous(self) -> Period:
        if self.kind == "month":
            start = _month_start((self.start - timedelta(days=1)).date())
            return Period("month", start, self.start)
        return Period(self.kind, self.start - (self.end - self.start), self.start)

    def __contains__(self, t: datetime) -> bool:
        return self.start <= t < self.end


def _at(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _month_start(d: date) -> datetime:
    return _at(d.replace(day=1))


def period_of(kind: str, anchor: date) -> Period:
    """The day, ISO week or month that contains `anchor`."""
    if kind == "day":
        return Period("day", _at(anchor), _at(anchor) + timedelta(days=1))
    if kind == "week":
        start = _at(anchor - timedelta(days=anchor.weekday()))
        return Period("week", start, start + timedelta(days=7))
    if kind == "month":
        start = _month_start(anchor)
        nxt = (start + timedelta(days=32)).date().replace(day=1)
        return Period("month", start, _at(nxt))
    raise ValueError(f"unknown period {kind!r}; one of {', '.join(KINDS)}")


def resolve(kind: str, frm: date | None = None, to: date | None = None, today: date | None = None) -> Period:
    """`--from` and `--to` (inclusive dates) give a custom window; `--from` alone anchors the period kind;
    neither: the period that contains `today` (UTC)."""
    if kind not in KINDS:
        raise ValueError(f"unknown period {kind!r}; one of {', '.join(KINDS)}")
    if frm is not None and to is not None:
        if to < frm:
            raise ValueError("--to is before --from")
        p = Period(kind, _at(frm), _at(to) + timedelta(days=1))
        return p if p == period_of(kind, frm) else Period("custom", p.start, p.end)
    anchor = frm or to or today or datetime.now(UTC).date()
    return period_of(kind, anchor)
