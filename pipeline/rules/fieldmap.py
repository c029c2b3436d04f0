"""The field map: Sigma / ECS / vendor field names -> normalized `Alert` paths.

The map is data, as in pySigma's processing pipelines (a field-mapping transformation, and the same scoped to a
product by a log-source condition): `FIELD_MAP` holds the names every source shares, `PRODUCT_FIELD_MAP` the
names that mean something else in one product's logs. Several paths for a name mean the field is any of them.
A rule may also name a normalized path directly: a stored leaf (`SCHEMA_PATHS`), a computed view (views.py)
or `extra.<key>`. `resolve_field(name, product)` applies the map; unknown names give [].
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec

from pipeline import schema
from pipeline.rules.views import VIEWS
from pipeline.schema import Alert

# SigmaHQ writes paths and parameters alike into cs-uri-query: its values match the query or the whole URL.
_URL_QUERY = ("http.query", "http.url")

FIELD_MAP: dict[str, tuple[str, ...]] = {
    # W3C / webserver / proxy (SigmaHQ "webserver" and "proxy" taxonomy)
    "cs-uri-query": _URL_QUERY,
    "c-uri-query": _URL_QUERY,
    "cs-uri-stem": ("http.path",),
    "c-uri-stem": ("http.path",),
    "cs-uri": ("http.url",),
    "c-uri": ("http.url",),
    "c-uri-extension": ("http.extension",),
    "cs-method": ("http.method",),
    "sc-status": ("http.status",),
    "c-useragent": ("http.user_agent",),
    "cs-user-agent": ("http.user_agent",),
    "cs-host": ("http.host",),
    "r-dns": ("http.host",),
    "cs-username": ("user",),
    "c-ip": ("src.ip",),
    "s-ip": ("dst.ip",),
    "s-port": ("dst.port",),
    "cs-referer": ("extra.referer",),  # header fields: set by normalizers that log them (extra convention)
    "cs-cookie": ("extra.cookie",),
    "cs-content-type": ("extra.content_type",),
    # ECS
    "url.original": ("http.url",),
    "url.full": ("http.url",),
    "url.path": ("http.path",),
    "url.query": ("http.query",),
    "url.extension": ("http.extension",),
    "url.domain": ("http.host",),
    "http.request.method": ("http.method",),
    "http.response.status_code": ("http.status",),
    "user_agent.original": ("http.user_agent",),
    "source.ip": ("src.ip",),
    "source.port": ("src.port",),
    "source.domain": ("src.hostname",),
    "destination.ip": ("dst.ip",),
    "destination.port": ("dst.port",),
    "destination.domain": ("dst.hostname",),
    "user.name": ("user",),
    "process.command_line": ("process.cmdline",),
    "process.executable": ("process.exe",),
    "process.pid": ("process.pid",),
    "file.hash": ("file.hash",),
    "dns.question.name": ("dns.query",),
    "dns.question.type": ("dns.rtype",),
    "event.action": ("action", "extra.action"),
    "network.transport": ("network.proto",),
    "network.protocol": ("network.proto",),
    "network.community_id": ("network.community_id",),
    "rule.uuid": ("rule.id",),
    # Sysmon-style names used by SigmaHQ linux process / file / network rules
    "Image": ("process.exe",),
    "CommandLine": ("process.cmdline",),
    "ProcessId": ("process.pid",),
    "User": ("user", "process.uid"),
    "TargetFilename": ("file.path",),
    "DestinationIp": ("dst.ip",),
    "DestinationPort": ("dst.port",),
    "DestinationHostname": ("dst.hostname",),
    "SourceIp": ("src.ip",),
    "SourcePort": ("src.port",),
    "SourceHostname": ("src.hostname",),
    "Initiated": ("network.initiated",),
    "Protocol": ("network.proto",),
    "QueryName": ("dns.query",),
    "Computer": ("host.name",),
    "ClientIP": ("src.ip",),
    # firewall / generic network
    "src_ip": ("src.ip",),
    "src_port": ("src.port",),
    "dst_ip": ("dst.ip",),
    "dst_port": ("dst.port",),
    "src": ("src.ip",),
    "dst": ("dst.ip",),
    "proto": ("network.proto",),
    "action": ("action", "extra.action"),  # normalized verb or the product's own action word
    "blocked": ("blocked",),
    "hostname": ("host.name",),
    "username": ("user",),
    "msg": ("message",),
    "Message": ("message",),
    # DNS
    "query": ("dns.query",),
    "record_type": ("dns.rtype",),
    "qtype_name": ("dns.rtype",),
    # auditd (the auditd normalizer keeps record fields in extra under lower-case names; an event carrying
    # several records of a kind, e.g. PATH, keeps a list)
    "type": ("extra.types", "extra.type"),  # auditd: every record type of the event, and the main one
    "key": ("extra.key",),
    "exe": ("extra.exe", "process.exe"),
    "comm": ("extra.comm", "process.name"),
    "SYSCALL": ("extra.syscall",),
    "syscall": ("extra.syscall",),
    "name": ("extra.name", "file.path"),
    "nametype": ("extra.nametype",),
    "unit": ("extra.unit",),
    "cwd": ("extra.cwd",),
    "proctitle": ("extra.proctitle", "process.cmdline"),
    **{f"a{i}": (f"extra.a{i}",) for i in range(10)},
    **{k: (f"extra.{k}",) for k in ("uid", "euid", "auid", "suid", "fsuid", "gid", "egid", "ses", "tty",
                                     "success", "exit", "ppid", "mode", "ouid", "inode", "op", "res")},
}

# Product-specific names that mean something else elsewhere.
PRODUCT_FIELD_MAP: dict[str, dict[str, tuple[str, ...]]] = {
    "zeek": {
        "uri": ("http.url",), "method": ("http.method",), "host": ("http.host",),
        "user_agent": ("http.user_agent",), "status_code": ("http.status",),
        "id.orig_h": ("src.ip",), "id.orig_p": ("src.port",),
        "id.resp_h": ("dst.ip",), "id.resp_p": ("dst.port",),
        "query": ("dns.query",), "qtype_name": ("dns.rtype",), "proto": ("network.proto",),
    },
}

KEYWORD_PATHS = ("message", "raw")  # field-less (keyword) detections search the message and the raw record


# --- normalized paths --------------------------------------------------------------------------------------

def _struct_type(tp: Any) -> tuple[type | None, bool]:
    """(Struct class, is_list) inside an annotation such as `Http | None` or `list[Rule]`."""
    origin = typing.get_origin(tp)
    if origin is list:
        inner, _ = _struct_type(typing.get_args(tp)[0])
        return inner, True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            inner, many = _struct_type(arg)
            if inner is not None:
                return inner, many
        return None, False
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp, False
    return None, False


def _schema_paths(cls: type, prefix: str = "") -> dict[str, bool]:
    """Every leaf path of a Struct -> whether it crosses a list of structs."""
    out: dict[str, bool] = {}
    hints = typing.get_type_hints(cls, vars(schema))
    for f in msgspec.structs.fields(cls):
        inner, many = _struct_type(hints[f.name])
        path = prefix + f.name
        if inner is None:
            out[path] = False
        else:
            for sub, sub_many in _schema_paths(inner, path + ".").items():
                out[sub] = many or sub_many
    return out


SCHEMA_PATHS: dict[str, bool] = _schema_paths(Alert)


def is_normalized_path(path: str) -> bool:
    """True for a stored leaf path, a computed view or any `extra.<key>`."""
    return path in SCHEMA_PATHS or path in VIEWS or (path.startswith("extra.") and len(path) > 6)


def resolve_field(name: str, product: str | None = None) -> list[str]:
    """Normalized paths for a Sigma field name (or a normalized path itself); [] when unmapped."""
    scoped = PRODUCT_FIELD_MAP.get(product or "", {})
    if name in scoped:
        return list(scoped[name])
    if name in FIELD_MAP:
        return list(FIELD_MAP[name])
    if is_normalized_path(name):
        return [name]
    folded = _FOLDED.get(name.lower())
    return list(folded) if folded else []


_FOLDED = {k.lower(): v for k, v in FIELD_MAP.items()
           if not any(o != k and o.lower() == k.lower() for o in FIELD_MAP)}
