"""One alert's field values as compiled rules read them: `FETCH[key](alert)` and the per-alert cache `Ctx`.

Below `compile`, `index` and `modifiers`, which all read values through it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pipeline.rules.mapping import SCHEMA_PATHS, getter, raw_values
from pipeline.schema import Alert

__all__ = ["FETCH", "Ctx"]


def _strings(v: Any, out: list[str]) -> None:
    if v is None:
        return
    if isinstance(v, str):
        out.append(v)
    elif isinstance(v, bool):
        out.append("true" if v else "false")
    elif isinstance(v, (int, float)):
        out.append(str(v))
    elif isinstance(v, (list, tuple)):
        for x in v:
            _strings(x, out)
    elif isinstance(v, datetime):
        out.append(v.isoformat())


def _as_strings(v: Any) -> tuple[str, ...]:
    out: list[str] = []
    _strings(v, out)
    return tuple(out)


def _fetcher(key: str) -> Callable[[Alert], tuple[str, ...]]:
    """Alert -> the string values of a key (comma-joined paths); one plain string is the fast path."""
    paths = key.split(",")
    if len(paths) > 1:
        gets = [getter(p) for p in paths]
        return lambda a: tuple(s for g in gets for s in _as_strings(g(a)))
    path = paths[0]
    parts = path.split(".")
    if len(parts) == 2 and SCHEMA_PATHS.get(path) is False:  # struct.field: no wrapper frame
        outer, leaf = parts

        def two(a: Alert) -> tuple[str, ...]:
            s = getattr(a, outer)
            if s is None:
                return ()
            v = getattr(s, leaf)
            if v.__class__ is str:
                return (v,)
            return () if v is None else _as_strings(v)

        return two
    g = getter(path)

    def one(a: Alert) -> tuple[str, ...]:
        v = g(a)
        if v.__class__ is str:
            return (v,)
        return () if v is None else _as_strings(v)

    return one


class _Fetchers(dict[str, Callable[[Alert], tuple[str, ...]]]):
    """key -> its string fetcher, built on first use."""

    def __missing__(self, key: str) -> Callable[[Alert], tuple[str, ...]]:
        f = self[key] = _fetcher(key)
        return f


FETCH = _Fetchers()


# A key of several paths is the concatenation of its paths' entries, so each path is computed once.

class _Vals(dict[str, tuple[str, ...]]):
    __slots__ = ("alert",)
    alert: Alert

    def __missing__(self, key: str) -> tuple[str, ...]:
        if "," in key:
            t = self[key] = tuple(s for p in key.split(",") for s in self[p])
        else:
            t = self[key] = FETCH[key](self.alert)
        return t


class _Low(dict[str, tuple[str, ...]]):
    __slots__ = ("vals",)
    vals: _Vals

    def __missing__(self, key: str) -> tuple[str, ...]:
        if "," in key:
            t = self[key] = tuple(s for p in key.split(",") for s in self[p])
            return t
        v = self.vals[key]
        t = self[key] = (v[0].lower(),) if len(v) == 1 else tuple([s.lower() for s in v])
        return t


class _Enc(dict[str, tuple[bytes, ...]]):
    __slots__ = ("low",)
    low: _Low

    def __missing__(self, key: str) -> tuple[bytes, ...]:
        if "," in key:
            t = self[key] = tuple(s for p in key.split(",") for s in self[p])
            return t
        v = self.low[key]
        t = self[key] = (v[0].encode(),) if len(v) == 1 else tuple([s.encode() for s in v])
        return t


def _number(v: Any) -> float | int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):
        try:
            return int(v) if v.isdigit() else float(v)
        except ValueError:
            return None
    return None


class _Nums(dict[str, tuple[float | int, ...]]):
    __slots__ = ("alert",)
    alert: Alert

    def __missing__(self, key: str) -> tuple[float | int, ...]:
        t = self[key] = tuple(n for n in map(_number, raw_values(self.alert, key)) if n is not None)
        return t


class Ctx:
    """One alert's field values as rules see them, each computed on first use and shared by all rules.

    `vals[key]` strings, `low[key]` lower-cased, `enc[key]` lower-cased UTF-8 (RE2 sets), `num[key]` numbers;
    a key is a normalized path or several joined by commas (the field is any of them).
    """

    __slots__ = ("alert", "enc", "low", "num", "vals")

    def __init__(self, alert: Alert):
        self.alert = alert
        vals = self.vals = _Vals()
        vals.alert = alert
        low = self.low = _Low()
        low.vals = vals
        enc = self.enc = _Enc()
        enc.low = low
        num = self.num = _Nums()
        num.alert = alert
