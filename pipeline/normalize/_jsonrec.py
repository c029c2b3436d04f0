"""Typed access to JSON records for normalizers: every bad value becomes a `BadRecord` naming the field path.

`load(text)` gives a `Rec` view of the top-level object; `rec.sub("event")` a view of a nested object whose
errors name `event.<key>`. Cloud products export values as strings even when they hold numbers (Alibaba Cloud
SLS stores every value as text), so `integer` and `port` accept decimal strings too. Empty
values ("", "-", null) read as absent.

`loads` is the JSON parser of every JSON normalizer: orjson, except for a text whose strings hold a lone UTF-16
surrogate escape (`\\udfff`: writers in other languages emit them for bytes they could not decode, and an
attacker can put one in a URL). Such a text is read with each lone surrogate as U+FFFD, as a record with bytes
that are not UTF-8 is (pipeline/normalize/stage.py): one character an attacker chose must not turn a detection
into a dead letter.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, overload

import orjson

from pipeline.normalize.base import BadRecord, ip_field

_EMPTY = ("", "-")


def _absent(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v in _EMPTY)


class Rec:
    """A JSON object and its path in the record (for error messages)."""

    __slots__ = ("d", "px")

    def __init__(self, d: dict[str, Any], px: str = ""):
        self.d = d
        self.px = px

    def __bool__(self) -> bool:
        return bool(self.d)

    def _bad(self, key: str, want: str, v: Any) -> BadRecord:
        f = self.px + key
        return BadRecord("bad_field", f"{f}: expected {want}, got {v!r}"[:200], f)

    def _missing(self, key: str) -> BadRecord:
        return BadRecord("missing_field", f"{self.px}{key} is required", self.px + key)

    def has(self, key: str) -> bool:
        return not _absent(self.d.get(key))

    def flag(self, key: str) -> bool:
        """True for JSON true or the text "true"."""
        v = self.d.get(key)
        return v is True or v == "true"

    @overload
    def text(self, key: str, required: Literal[True]) -> str: ...
    @overload
    def text(self, key: str, required: bool = False) -> str | None: ...
    def text(self, key: str, required: bool = False) -> str | None:
        """A string (numbers are turned into text)."""
        v = self.d.get(key)
        if isinstance(v, str):
            if v not in _EMPTY:
                return v
        elif isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        elif v is not None:
            raise self._bad(key, "a string", v)
        if required:
            raise self._missing(key)
        return None

    def first(self, *keys: str) -> str | None:
        """The first present string value among `keys`."""
        for k in keys:
            if (v := self.text(k)) is not None:
                return v
        return None

    def texts(self, *keys: str) -> dict[str, str]:
        """The present string values of `keys`, by key (for `extra`)."""
        return {k: v for k in keys if (v := self.text(k)) is not None}

    @overload
    def integer(self, key: str, required: Literal[True]) -> int: ...
    @overload
    def integer(self, key: str, required: bool = False) -> int | None: ...
    def integer(self, key: str, required: bool = False) -> int | None:
        """An integer, given as a JSON number or a decimal string."""
        v = self.d.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, str) and v not in _EMPTY:
            s = v.strip()
            digits = s[1:] if s[:1] == "-" else s
            if digits.isascii() and digits.isdigit() and len(digits) < 19:
                return int(s)
            raise self._bad(key, "an integer", v)
        if _absent(v):
            if required:
                raise self._missing(key)
            return None
        raise self._bad(key, "an integer", v)

    @overload
    def ip(self, key: str, required: Literal[True]) -> str: ...
    @overload
    def ip(self, key: str, required: bool = False) -> str | None: ...
    def ip(self, key: str, required: bool = False) -> str | None:
        """A valid IPv4/IPv6 address in canonical form."""
        v = self.text(key, required)
        return None if v is None else ip_field(v, self.px + key)

    def port(self, key: str) -> int | None:
        """A TCP/UDP port 0..65535."""
        p = self.integer(key)
        if p is not None and not 0 <= p <= 65535:
            raise self._bad(key, "a port 0..65535", p)
        return p

    def sub(self, key: str, required: bool = False) -> Rec:
        """A nested object (empty when absent or null)."""
        v = self.d.get(key)
        if isinstance(v, dict):
            return Rec(v, f"{self.px}{key}.")
        if v is None:
            if required:
                raise self._missing(key)
            return Rec({}, f"{self.px}{key}.")
        raise self._bad(key, "an object", v)

    def items(self, key: str) -> list[Rec]:
        """A list of objects (null items dropped)."""
        v = self.d.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise self._bad(key, "a list", v)
        out = []
        for i, item in enumerate(v):
            if isinstance(item, dict):
                out.append(Rec(item, f"{self.px}{key}[{i}]."))
            elif item is not None:
                raise self._bad(key, "a list of objects", item)
        return out

    def strings(self, key: str) -> list[str]:
        """A list of strings (a single string counts as a one-item list)."""
        v = self.d.get(key)
        if isinstance(v, str):
            return [v] if v else []
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self._bad(key, "a list of strings", v)
        return v


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(text: str) -> Any:
    """JSON (orjson), lone surrogate escapes read as U+FFFD; raises orjson.JSONDecodeError."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        if not _SURROGATE_ESCAPE.search(text):
            raise
        error = e
    try:
        obj = json.loads(text)  # the standard library keeps a lone surrogate as a character
    except ValueError:
        raise error from None
    return _no_surrogates(obj)


def _no_surrogates(v: Any) -> Any:
    if isinstance(v, str):
        return _SURROGATE.sub("\ufffd", v)
    if isinstance(v, dict):
        return {_no_surrogates(k): _no_surrogates(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_no_surrogates(x) for x in v]
    return v


def json_object(text: str) -> dict[str, Any]:
    """The record as a plain dict (for normalizers that read it without the `Rec` view)."""
    try:
        d = loads(text)
    except orjson.JSONDecodeError as e:
        raise BadRecord("bad_json", str(e)) from None
    if not isinstance(d, dict):
        raise BadRecord("bad_json", "not a JSON object")
    return d


def load(text: str) -> Rec:
    """The record as a JSON object."""
    try:
        obj = loads(text)
    except orjson.JSONDecodeError as e:
        raise BadRecord("bad_json", str(e)[:200], "record") from None
    if not isinstance(obj, dict):
        raise BadRecord("bad_json", f"expected a JSON object, got {type(obj).__name__}", "record")
    return Rec(obj)


def host_only(host: str | None) -> str | None:
    """A Host header value without its port (`[v6]:443` and `name:80` forms)."""
    if not host:
        return None
    if host.startswith("["):
        return host[1:].partition("]")[0] or None
    name, sep, rest = host.rpartition(":")
    return name if sep and rest.isdigit() and ":" not in name else host
