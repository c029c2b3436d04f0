"""Sigma field names and log sources mapped onto the normalized `Alert`.

* `FIELD_MAP`: Sigma / ECS / vendor field name -> normalized paths (several paths = the field is any of them).
  A rule may also name a normalized path directly (`src.ip`, `rule.category`, `extra.key`).
* `getter(path)`: a function `Alert -> value` for a normalized path, including computed views
  (`http.path`, `http.query`, `http.extension`, `blocked`, `network.initiated`).
* `route_for(logsource)`: which alerts a rule's `logsource` covers (by format, family and present parts);
  `logsource_applies(logsource)` is the same as a predicate over alerts.
* `alert_from_fields(fields)`: the inverse, an `Alert` built from Sigma-named fields (tests, examples).
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from pipeline import schema
from pipeline.schema import Alert, Source

Getter = Callable[[Alert], Any]


class UnsupportedRule(Exception):
    """A rule this engine cannot evaluate faithfully; `reason` says why (grouped in reports)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- field names -------------------------------------------------------------------------------------------

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

# Normalized paths that are computed from other fields, and the stored field each one is a part of.
VIEWS: dict[str, str | None] = {
    "http.path": "http.url",
    "http.query": "http.url",
    "http.extension": "http.url",
    "blocked": None,
    "network.initiated": None,
}

_INITIATING = {"connect", "sendto", "sendmsg", "42", "44", "46"}  # x86_64 numbers when not ENRICHED
_ACCEPTING = {"accept", "accept4", "bind", "listen", "recvfrom", "43", "288", "49", "50", "45"}


def _split_url(url: str) -> tuple[str, str | None]:
    """(path, query) of a request URI or absolute URL (a '#' stays: request URIs carry none legitimately)."""
    path, sep, query = url.partition("?")
    if "://" in path[:12]:
        rest = path.partition("://")[2]
        path = "/" + rest.partition("/")[2]
    return path, (query if sep else None)


def _view_path(a: Alert) -> str | None:
    return (_split_url(a.http.url)[0] or None) if a.http is not None and a.http.url is not None else None


def _view_query(a: Alert) -> str | None:
    return _split_url(a.http.url)[1] if a.http is not None and a.http.url is not None else None


def _view_extension(a: Alert) -> str | None:
    path = _view_path(a)
    if not path:
        return None
    last = path.rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[1] if "." in last else None


def _view_blocked(a: Alert) -> str | None:
    """'true'/'false' when the product says whether it let the traffic through; None for a bare detection."""
    if a.action == "blocked":
        return "true"
    return "false" if a.action in ("allowed", "succeeded", "failed") else None


def _view_initiated(a: Alert) -> str | None:
    sc = a.extra.get("syscall")
    sc = str(sc).lower() if sc is not None else ""
    if sc in _INITIATING:
        return "true"
    if sc in _ACCEPTING:
        return "false"
    return None


_VIEW_GETTERS: dict[str, Getter] = {
    "http.path": _view_path,
    "http.query": _view_query,
    "http.extension": _view_extension,
    "blocked": _view_blocked,
    "network.initiated": _view_initiated,
}


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
    if path in _VIEW_GETTERS:
        return _VIEW_GETTERS[path]
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


# --- log sources -------------------------------------------------------------------------------------------

# Alert parts a log source may require, in the order of `source_key`'s flags.
PARTS = ("http", "process", "process.cmdline", "file", "dns", "dst.ip")
_FLAG0 = 3  # index of the first flag in a SourceKey

SourceKey = tuple[str, str, str, bool, bool, bool, bool, bool, bool]


def source_key(a: Alert) -> SourceKey:
    """(format, family, product, has http, process, process.cmdline, file, dns, dst.ip): what routing sees."""
    p, s = a.process, a.source
    return (s.format, s.family, s.product, a.http is not None, p is not None,
            p is not None and p.cmdline is not None, a.file is not None, a.dns is not None,
            a.dst.ip is not None)


def known_paths(key: SourceKey) -> Callable[[str], bool]:
    """Whether a normalized path's value is fixed by the routing key (source.*, or a part the alert lacks)."""
    absent: list[str] = []
    for flag, part in zip(key[_FLAG0:], PARTS, strict=True):
        if not flag:
            absent.append(part if "." in part else part + ".")
    if not key[_FLAG0]:
        absent.extend(v for v, base in VIEWS.items() if base and base.startswith("http."))
    fixed = {"source.format", "source.family", "source.product"}
    prefixes = tuple(a for a in absent if a.endswith("."))
    exact = {a for a in absent if not a.endswith(".")}
    return lambda p: p in fixed or p in exact or p.startswith(prefixes)


def probe_alert(key: SourceKey) -> Alert:
    """An alert carrying only what the routing key fixes (its source); every part the key says is absent."""
    return Alert(alert_id="", tenant_id="", source=Source(key[2], "", key[1], key[0]), time=_EPOCH,
                 received_at=_EPOCH)


@dataclass(frozen=True, slots=True)
class Constraint:
    """Format in `formats` or family in `families` (both None: any source), and every `requires` present."""

    formats: frozenset[str] | None = None
    families: frozenset[str] | None = None
    requires: tuple[str, ...] = ()

    def admits(self, key: SourceKey) -> bool:
        restricted = self.formats is not None or self.families is not None
        if restricted and not ((self.formats is not None and key[0] in self.formats)
                               or (self.families is not None and key[1] in self.families)):
            return False
        return all(key[_FLAG0 + PARTS.index(r)] for r in self.requires)


@dataclass(frozen=True, slots=True)
class Route:
    """The alerts a rule's log source covers: every constraint holds."""

    constraints: tuple[Constraint, ...] = ()

    def admits(self, key: SourceKey) -> bool:
        return all(c.admits(key) for c in self.constraints)

    def applies(self, a: Alert) -> bool:
        return self.admits(source_key(a))


def _c(formats: tuple[str, ...] | None = None, families: tuple[str, ...] | None = None,
       requires: tuple[str, ...] = ()) -> Constraint:
    return Constraint(frozenset(formats) if formats is not None else None,
                      frozenset(families) if families is not None else None, requires)


# Formats the project's normalizers produce (the registry adds any others at run time).
KNOWN_FORMATS: dict[str, str] = {
    "modsecurity": "waf", "modsec_error": "waf", "apache_access": "waf", "suricata": "ids", "auditd": "host",
    "aide": "fim", "clamav": "av", "sshd": "auth", "fail2ban": "host", "fail2ban_json": "host",
    "wazuh": "host", "aws_waf": "waf", "aws_nfw": "firewall", "alibaba_waf": "waf", "alibaba_ddos": "ddos",
    "alibaba_cloudfw": "firewall", "alibaba_sas": "host",
}
_LINUX = _c(families=("host", "auth", "av", "fim"))
_SYSLOG_FORMATS = ("sshd", "fail2ban")  # syslog-style Linux daemon logs we ingest

CATEGORY_ROUTES: dict[str, Constraint] = {
    **{fam: _c(families=(fam,)) for fam in schema.FAMILIES},  # our own use cases: category = alert family
    "webserver": _c(requires=("http",)),
    "proxy": _c(requires=("http",)),
    "process_creation": _c(requires=("process.cmdline",)),
    "file_event": _c(requires=("file",)),
    "file_change": _c(requires=("file",)),
    "file_access": _c(requires=("file",)),
    "network_connection": _c(requires=("dst.ip", "process")),
    "dns": _c(requires=("dns",)),
    "dns_query": _c(requires=("dns",)),
    "firewall": _c(families=("firewall", "ids")),  # SigmaHQ's firewall logs: also what our IDS sensors see
}

# (product, service) pairs of SigmaHQ log sources this project has data for.
SERVICE_ROUTES: dict[tuple[str | None, str], tuple[Constraint, ...]] = {
    ("linux", "auditd"): (_c(formats=("auditd",)),),
    ("linux", "sshd"): (_c(formats=("sshd",)),),
    ("linux", "auth"): (_c(formats=("sshd",), families=("auth",)),),
    ("linux", "syslog"): (_c(formats=_SYSLOG_FORMATS, families=("auth",)),),
    ("linux", "clamav"): (_c(formats=("clamav",)),),
    ("zeek", "dns"): (_c(requires=("dns",)),),
    ("zeek", "http"): (_c(requires=("http",)),),
    (None, "apache"): (_c(formats=("modsec_error",)),),  # our only Apache error-log source
}


def known_formats() -> set[str]:
    """Format names of this project's normalizers (static list plus whatever the registry holds)."""
    names = set(KNOWN_FORMATS)
    try:
        from pipeline.normalize import registry

        names.update(registry.formats())
    except Exception:  # a broken normalizer module must not break rule loading
        pass
    return names


def route_for(logsource: Any) -> Route:
    """The Route of a Sigma `logsource` (object or mapping); UnsupportedRule when we have no such data."""
    get = logsource.get if isinstance(logsource, Mapping) else lambda k: getattr(logsource, k, None)
    category, product, service = get("category"), get("product"), get("service")
    where = "/".join(f"{k}={v}" for k, v in (("category", category), ("product", product),
                                             ("service", service)) if v)
    constraints: list[Constraint] = []
    if service is not None:
        pair = SERVICE_ROUTES.get((product, service))
        if pair is None:
            raise UnsupportedRule("unsupported logsource", where)
        constraints.extend(pair)
    if product is not None and product != "mdr":
        if product == "linux":
            constraints.append(_LINUX)
        elif product in known_formats():
            constraints.append(_c(formats=(product,)))
        elif (product, service) not in SERVICE_ROUTES:
            raise UnsupportedRule("unsupported logsource", where)
    if category is not None:
        if category not in CATEGORY_ROUTES:
            raise UnsupportedRule("unsupported logsource", where)
        constraints.append(CATEGORY_ROUTES[category])
    return Route(tuple(constraints))


def logsource_applies(logsource: Any) -> Callable[[Alert], bool]:
    """Predicate over alerts for a Sigma logsource; raises UnsupportedRule for sources we have no data for."""
    return route_for(logsource).applies


# --- inverse: an Alert from Sigma-named fields -------------------------------------------------------------

_STRUCTS = {"http": schema.Http, "process": schema.Process, "file": schema.File, "dns": schema.Dns,
            "network": schema.Network, "host": schema.HostInfo, "src": schema.Endpoint,
            "dst": schema.Endpoint, "rule": schema.Rule}
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


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
