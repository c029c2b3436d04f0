"""One alert's field values at normalized paths.

* `getter(path)`: a function `Alert -> raw value` (computed views included; lists stay lists);
  `raw_values(alert, key)` the flat list of a key's values (paths joined by commas), `field_getter(name)` the
  same for a Sigma field name (for group-by and displays).
* `FETCH[key](alert)`: the string values compiled rules compare, and `Ctx`, the per-alert cache of them.

Below `compile`, `index` and `modifiers`, which all read values through it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pipeline.rules.fieldmap import SCHEMA_PATHS, resolve_field
from pipeline.rules.unsupported import UnsupportedRule
from pipeline.rules.views import READERS
from pipeline.schema import Alert

__all__ = ["FETCH", "Ctx", "Getter", "field_getter", "getter", "raw_values"]

Getter = Callable[[Alert], Any]


def _extra_getter(key: str) -> Getter:
    def get(a: Alert) -> Any:
        extra = a.extra
        if key in extra:
            return extra[key]
        node: Any = extra
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    return get


def _walk_getter(parts: list[str]) -> Getter:
    def get(a: Alert) -> Any:
        nodes: list[Any] = [a]
        many = False
        for p in parts:
            nxt: list[Any] = []
            for n in nodes:
                v = getattr(n, p, None)
                if isinstance(v, list):
                    many = True
                    nxt.extend(v)
                elif v is not None:
                    nxt.append(v)
            nodes = nxt
        if many:
            return nodes
        return nodes[0] if nodes else None

    return get


@functools.cache
def getter(path: str) -> Getter:
    """A function Alert -> the raw value at a normalized path (None when absent; lists stay lists).

    A Sigma field name is accepted too (its first present path); unknown names raise KeyError.
    """
    if path in READERS:
        return READERS[path]
    if path.startswith("extra.") and len(path) > 6:
        return _extra_getter(path[6:])
    if path not in SCHEMA_PATHS:
        paths = resolve_field(path)
        if not paths:
            raise KeyError(f"unknown field {path!r}")
        gets = [getter(p) for p in paths]
        if len(gets) == 1:
            return gets[0]
        return lambda a: next((v for g in gets if (v := g(a)) is not None), None)
    parts = path.split(".")
    if len(parts) == 1:
        name = parts[0]
        return lambda a: getattr(a, name)
    if len(parts) == 2 and not SCHEMA_PATHS[path]:
        outer, leaf = parts

        def get2(a: Alert) -> Any:
            s = getattr(a, outer)
            return None if s is None else getattr(s, leaf)

        return get2
    return _walk_getter(parts)


def raw_values(alert: Alert, key: str) -> list[Any]:
    """Raw values of a key (normalized paths joined by commas); lists flattened, absent values dropped."""
    out: list[Any] = []
    for p in key.split(","):
        v = getter(p)(alert)
        if isinstance(v, (list, tuple)):
            out.extend(x for x in v if x is not None)
        elif v is not None:
            out.append(v)
    return out


def field_getter(name: str, product: str | None = None) -> Callable[[Alert], list[Any]]:
    """Values of a Sigma field or normalized path in an alert, as a flat list (for group-by and displays)."""
    paths = resolve_field(name, product)
    if not paths:
        raise UnsupportedRule("unmapped field", name)
    key = ",".join(paths)
    return lambda a: raw_values(a, key)


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
        v = getter(key)(self.alert) if "," not in key else None
        if v.__class__ is int:  # one plain number (an HTTP status, a port): the usual case, no flattening
            t: tuple[float | int, ...] = (v,)
        else:
            t = tuple(n for n in map(_number, raw_values(self.alert, key)) if n is not None)
        self[key] = t
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
