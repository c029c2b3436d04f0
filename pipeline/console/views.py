"""Template filters: times, SLA countdowns, flattened alert fields, pretty JSON. They return plain strings;
the templates' autoescape escapes them (nothing here is marked safe)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment

from pipeline.console.redact import redact, text

SKIP_FIELDS = {"raw"}


def dt(v: datetime | str | None) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, str):
        try:
            when = datetime.fromisoformat(v)
        except ValueError:
            return v
        v = when
    return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(v: datetime | None) -> str:
    return v.astimezone(UTC).isoformat() if v else ""


def span(seconds: float) -> str:
    s = int(abs(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def left(due: datetime, now: datetime) -> str:
    """Time left to the SLA due time, or how long ago it passed (the page's script keeps it ticking)."""
    secs = (due - now).total_seconds()
    return f"{span(secs)} left" if secs >= 0 else f"overdue {span(secs)}"


def fields(doc: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested alert document as (dotted path, text value) rows, empty values left out."""
    out: list[tuple[str, str]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in SKIP_FIELDS and not prefix:
                continue
            out += fields(v, f"{prefix}{k}.")
    elif isinstance(doc, list):
        if doc and all(not isinstance(x, dict | list) for x in doc):
            out.append((prefix[:-1], ", ".join(map(str, doc))))
        else:
            for i, v in enumerate(doc):
                out += fields(v, f"{prefix}{i}.")
    elif doc not in (None, "", [], {}):
        out.append((prefix[:-1], str(doc)))
    return out


def pretty(v: Any) -> str:
    return json.dumps(v, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def top(contributions: dict[str, float] | None, n: int = 5) -> list[tuple[str, float]]:
    """The `n` contributions of largest magnitude."""
    return sorted((contributions or {}).items(), key=lambda kv: -abs(kv[1]))[:n]


def install_filters(env: Environment) -> None:
    env.filters.update(dt=dt, iso=iso, left=left, fields=fields, pretty=pretty, top=top, redact=text,
                       redact_all=redact)
