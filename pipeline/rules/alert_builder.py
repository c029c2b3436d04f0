"""Alerts built from the rules' side: a test alert from Sigma-named fields (use-case tests, examples, the
differential tests), and the probe alert of a routing key (what the index specializes rules against).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline import schema
from pipeline.rules.fieldmap import resolve_field
from pipeline.rules.logsources import SourceKey
from pipeline.rules.unsupported import UnsupportedRule
from pipeline.rules.views import VIEWS
from pipeline.schema import Alert, Source

_STRUCTS = {"http": schema.Http, "process": schema.Process, "file": schema.File, "dns": schema.Dns,
            "network": schema.Network, "host": schema.HostInfo, "src": schema.Endpoint,
            "dst": schema.Endpoint, "rule": schema.Rule}
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def probe_alert(key: SourceKey) -> Alert:
    """An alert carrying only what the routing key fixes (its source); every part the key says is absent."""
    return Alert(alert_id="", tenant_id="", source=Source(key[2], "", key[1], key[0]), time=_EPOCH,
                 received_at=_EPOCH)


def alert_from_fields(fields: Mapping[str, Any], source: Source | None = None, product: str | None = None,
                      **alert_kw: Any) -> Alert:
    """An Alert holding `fields` (Sigma names or normalized paths) where the rules will read them.

    Each field goes to its first path; computed views are composed back: the URL is cs-uri-stem + '?' +
    cs-uri-query, `blocked` sets the action, `Initiated` the syscall; a product's own action word (not one of
    the normalized verbs) goes to extra.action.
    """
    parts: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    views: dict[str, Any] = {}
    for name, value in fields.items():
        paths = resolve_field(name, product)
        if not paths:
            raise UnsupportedRule("unmapped field", name)
        path = paths[0]
        if path == "action" and value not in schema.ACTIONS:
            path = "extra.action"
        if path in VIEWS:
            views[path] = value
        elif path.startswith("extra."):
            extra[path[6:]] = value
        elif "." in path and path.split(".", 1)[0] in _STRUCTS:
            outer, leaf = path.split(".", 1)
            parts.setdefault(outer, {})[leaf] = value
        else:
            top[path] = value
    _compose_views(views, parts, top, extra)
    for outer, kw in parts.items():
        top[outer] = _STRUCTS[outer](**kw)
    raw = top.pop("raw", None)
    base: dict[str, Any] = {
        "alert_id": schema_id(fields), "tenant_id": "test",
        "source": source or Source("test", "test", "waf", "test"), "time": _EPOCH, "received_at": _EPOCH,
    }
    return Alert(**{**base, **top, "extra": extra, "raw": raw or "", **alert_kw})


def _compose_views(views: dict[str, Any], parts: dict[str, dict[str, Any]], top: dict[str, Any],
                   extra: dict[str, Any]) -> None:
    flag = {"true": True, "false": False}
    blocked = flag.get(str(views.pop("blocked", "")).lower())
    if blocked is not None:
        top.setdefault("action", "blocked" if blocked else "allowed")
    initiated = flag.get(str(views.pop("network.initiated", "")).lower())
    if initiated is not None:
        extra.setdefault("syscall", "connect" if initiated else "accept")
    if not views:
        return
    http = parts.setdefault("http", {})
    path, query, ext = views.get("http.path"), views.get("http.query"), views.get("http.extension")
    url = http.get("url")
    if url is None:
        if path is None and ext is not None:
            path = f"/file.{ext}"
        url = (str(path) if path is not None else "") + (f"?{query}" if query is not None else "")
    elif query is not None and "?" not in str(url):
        url = f"{url}?{query}"
    if url:
        http["url"] = url


def schema_id(fields: Mapping[str, Any]) -> str:
    """A deterministic alert id for a field mapping."""
    from pipeline.normalize.base import make_id

    return make_id(*(f"{k}={v!r}" for k, v in sorted(fields.items(), key=lambda kv: kv[0])))
