"""Computed views: normalized paths a rule may name that no normalizer stores, read from other fields.

Each view is one row of `TABLE`: its path, the stored field it is a part of (None when it is derived from
several), and the function that reads it. `VIEWS` (path -> stored field) is what the index and the field map
consult; `READERS` (path -> reader) is what `values.getter` returns for a view.

    http.path, http.query, http.extension   parts of http.url
    blocked                                  'true'/'false' from the normalized action
    network.initiated                        'true'/'false' from the auditd syscall
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.schema import Alert

_INITIATING = {"connect", "sendto", "sendmsg", "42", "44", "46"}  # x86_64 numbers when not ENRICHED
_ACCEPTING = {"accept", "accept4", "bind", "listen", "recvfrom", "43", "288", "49", "50", "45"}


def split_url(url: str) -> tuple[str, str | None]:
    """(path, query) of a request URI or absolute URL (a '#' stays: request URIs carry none legitimately)."""
    path, sep, query = url.partition("?")
    if "://" in path[:12]:
        rest = path.partition("://")[2]
        path = "/" + rest.partition("/")[2]
    return path, (query if sep else None)


def _path(a: Alert) -> str | None:
    return (split_url(a.http.url)[0] or None) if a.http is not None and a.http.url is not None else None


def _query(a: Alert) -> str | None:
    return split_url(a.http.url)[1] if a.http is not None and a.http.url is not None else None


def _extension(a: Alert) -> str | None:
    path = _path(a)
    if not path:
        return None
    last = path.rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[1] if "." in last else None


def _blocked(a: Alert) -> str | None:
    """'true'/'false' when the product says whether it let the traffic through; None for a bare detection."""
    if a.action == "blocked":
        return "true"
    return "false" if a.action in ("allowed", "succeeded", "failed") else None


def _initiated(a: Alert) -> str | None:
    sc = a.extra.get("syscall")
    sc = str(sc).lower() if sc is not None else ""
    if sc in _INITIATING:
        return "true"
    if sc in _ACCEPTING:
        return "false"
    return None


@dataclass(frozen=True, slots=True)
class View:
    """A computed path, the stored field it is part of (None: derived from several), and its reader."""

    path: str
    base: str | None
    read: Callable[[Alert], Any]


TABLE: tuple[View, ...] = (
    View("http.path", "http.url", _path),
    View("http.query", "http.url", _query),
    View("http.extension", "http.url", _extension),
    View("blocked", None, _blocked),
    View("network.initiated", None, _initiated),
)

VIEWS: dict[str, str | None] = {v.path: v.base for v in TABLE}
READERS: dict[str, Callable[[Alert], Any]] = {v.path: v.read for v in TABLE}
