"""Log sources: which alerts a rule's `logsource` covers.

Routes are data, as pySigma's log-source conditions are: `CATEGORY_ROUTES` (Sigma category -> constraint) and
`SERVICE_ROUTES` ((product, service) -> constraints) over the formats and families our normalizers produce; a
product names a format (or `linux` the Linux families). `route_for(logsource)` combines them into a `Route`
(every constraint must hold); UnsupportedRule when we have no data of that kind.

What routing sees of an alert is its `SourceKey` (format, family, product, and which parts it has): the index
buckets rules by it, so a route is decided once per key, not per alert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline import schema
from pipeline.rules.unsupported import UnsupportedRule
from pipeline.rules.views import VIEWS
from pipeline.schema import Alert

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
