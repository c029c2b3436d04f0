"""Durations written in configuration files: `500ms`, `30s`, `10m`, `2h`, `1d` or a number of seconds."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(v: Any) -> float:
    """`500ms`, `30s`, `10m`, `2h`, `1d` or a number of seconds."""
    if isinstance(v, bool):
        raise ValueError(f"not a duration: {v!r}")
    if isinstance(v, int | float):
        return float(v)
    m = _DURATION.match(str(v).strip())
    if not m:
        raise ValueError(f"not a duration: {v!r} (use e.g. 30s, 10m, 2h, 1d)")
    return float(m.group(1)) * _UNITS[m.group(2)]
