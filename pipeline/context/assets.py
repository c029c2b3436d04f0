"""Asset inventory of one tenant: which asset an alert hits, and how critical it is.

An inventory file is YAML (a list of assets, or `assets: [...]`) or CSV (header
`name,ips,hostnames,criticality,owner,tags,exposure`, list cells separated by `;`):

    - name: web-01
      ips: [10.0.0.5, 10.0.1.0/24]        # addresses and CIDRs (longest prefix wins)
      hostnames: [web-01, shop.example]    # host names and site names (HTTP Host), case-insensitive
      criticality: high                    # low | medium | high | critical (default medium)
      owner: shop-team
      tags: [pci]
      exposure: internet                   # internet | internal

The asset an alert hits: for host products (host, fim, av, auth) the reporting host (`host.name`,
`host.ip`), then the destination; for network products the destination (`http.host` without its port,
`dst.hostname`, `dst.ip`), then the reporting host. Never the source (the attacker's side). Names are tried
before addresses. A file with any problem is rejected as a whole.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytricia

from pipeline.context.loader import (
    Collector,
    LDict,
    csv_rows,
    item_line,
    key_line,
    load_yaml,
    read_text,
    split_list,
)
from pipeline.schema import HOST_FAMILIES, Alert, AssetRef

CRITICALITIES = ("low", "medium", "high", "critical")
EXPOSURES = ("internet", "internal")
FIELDS = ("name", "ips", "hostnames", "criticality", "owner", "tags", "exposure")
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")


@dataclass(slots=True)
class Asset:
    name: str
    ips: list[str] = field(default_factory=list)
    hostnames: list[str] = field(default_factory=list)
    criticality: str = "medium"
    owner: str | None = None
    tags: list[str] = field(default_factory=list)
    exposure: str | None = None

    def ref(self) -> AssetRef:
        return AssetRef(name=self.name, criticality=self.criticality, exposure=self.exposure,
                        owner=self.owner, tags=list(self.tags))


@lru_cache(maxsize=8192)
def host_part(value: str) -> str:
    """`Host` header or host name -> lower-case name or address without port, brackets or trailing dot."""
    v = value.strip().lower()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v[1:]
    if v.count(":") == 1:
        v = v.split(":", 1)[0]
    return v.rstrip(".")


def _ip_or_none(v: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


class AssetInventory:
    """Assets of one tenant with lookups by address (longest prefix) and by name."""

    def __init__(self, assets: list[Asset] | None = None, origin: str = ""):
        self.assets: list[Asset] = []
        self.origin = origin
        self._v4 = pytricia.PyTricia(32)
        self._v6 = pytricia.PyTricia(128)
        self._names: dict[str, AssetRef] = {}
        for a in assets or []:
            self.add(a)

    def add(self, a: Asset) -> None:
        ref = a.ref()
        self.assets.append(a)
        for ip in a.ips:
            net = ipaddress.ip_network(ip, strict=False)
            (self._v4 if net.version == 4 else self._v6)[str(net)] = ref
        for h in a.hostnames:
            self._names[host_part(h)] = ref
        self._names.setdefault(host_part(a.name), ref)  # `--host web-01` names the asset web-01 (naming.py)

    def __len__(self) -> int:
        return len(self.assets)

    def by_ip(self, ip: str) -> AssetRef | None:
        trie = self._v6 if ":" in ip else self._v4
        try:
            return trie.get(ip)
        except ValueError:  # not an address
            return None

    def by_name(self, name: str) -> AssetRef | None:
        """A host / site name (port and case ignored), or an address written as a name."""
        h = host_part(name)
        ref = self._names.get(h)
        if ref is None and (h[:1].isdigit() or ":" in h):
            ref = self.by_ip(h)
        return ref

    def match(self, a: Alert) -> AssetRef | None:
        if not self.assets:
            return None
        for kind, value in _candidates(a):
            ref = self.by_name(value) if kind == "name" else self.by_ip(value)
            if ref is not None:
                return ref
        return None


def _candidates(a: Alert) -> Iterator[tuple[str, str]]:
    host = a.host
    reported = a.extra.get("reported_host") if a.extra else None  # the record's own name (pipeline/naming.py)
    host_side = (("name", host.name), ("name", reported), ("ip", host.ip)) if host is not None else ()
    dst = (("name", a.http.host if a.http is not None else None), ("name", a.dst.hostname), ("ip", a.dst.ip))
    order = (*host_side, *dst) if a.source.family in HOST_FAMILIES else (*dst, *host_side)
    for kind, v in order:
        if v:
            yield kind, v


# ---- loading -----------------------------------------------------------------------------------------------
def load_assets(path: str | Path) -> AssetInventory:
    """Read and validate an inventory file (YAML or CSV); raises ContextFileError naming file:line: field."""
    errors = Collector(path)
    text = read_text(path, errors)
    rows: list[tuple[int, dict[str, Any], Any]] = []
    if text is not None:
        if str(path).lower().endswith(".csv"):
            rows = [(ln, r, None) for ln, r in csv_rows(text, errors, ("name",))]
        else:
            rows = list(_yaml_rows(load_yaml(text, errors), errors))
    assets = _validate(rows, errors)
    errors.check()
    return AssetInventory(assets, origin=str(path))


def _yaml_rows(doc: Any, errors: Collector) -> Iterator[tuple[int, dict[str, Any], Any]]:
    if doc is None:
        return
    items = doc.get("assets") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        errors.add(key_line(doc, "assets"), "assets", "expected a list of assets")
        return
    for i, item in enumerate(items):
        if not isinstance(item, LDict):
            errors.add(item_line(items, i), f"assets[{i}]", "expected a mapping")
            continue
        yield item.line, item, item


def _line(row_line: int, node: Any, key: str, index: int | None = None) -> int:
    """Line of a field (or of one list item) in YAML; the row's line in CSV."""
    if not isinstance(node, LDict):
        return row_line
    line = key_line(node, key)
    return item_line(node.get(key), index, line) if index is not None else line


def _validate(rows: list[tuple[int, dict[str, Any], Any]], errors: Collector) -> list[Asset]:
    assets: list[Asset] = []
    seen: dict[str, tuple[str, int]] = {}  # name / network / host name -> (asset, line)

    def claim(key: str, owner: str, line: int, fld: str) -> None:
        if key in seen and seen[key][0] != owner:
            errors.add(line, fld, f"{key.split(':', 1)[1]!r} already belongs to asset {seen[key][0]!r} "
                                  f"(line {seen[key][1]})")
        seen.setdefault(key, (owner, line))

    for line, row, node in rows:
        for k in row:
            if k not in FIELDS:
                errors.add(_line(line, node, k), str(k), f"unknown field (known: {', '.join(FIELDS)})")
        name = str(row.get("name") or "").strip()
        if not name:
            errors.add(line, "name", "missing asset name")
            continue
        if f"n:{name}" in seen:
            errors.add(line, "name", f"duplicate asset {name!r} (line {seen['n:' + name][1]})")
            continue
        seen[f"n:{name}"] = (name, line)
        owner = str(row["owner"]) if row.get("owner") else None
        a = Asset(name=name, owner=owner, tags=split_list(row.get("tags")))
        for i, ip in enumerate(split_list(row.get("ips"))):
            at = _line(line, node, "ips", i)
            try:
                net = ipaddress.ip_network(ip, strict=False)
            except ValueError:
                errors.add(at, f"ips[{i}]", f"not an IP or CIDR: {ip!r}")
                continue
            a.ips.append(str(net) if net.num_addresses > 1 else str(net.network_address))
            claim(f"ip:{net}", name, at, f"ips[{i}]")
        for i, h in enumerate(split_list(row.get("hostnames"))):
            at = _line(line, node, "hostnames", i)
            hp = host_part(h)
            if not (_HOSTNAME.match(hp) or _ip_or_none(hp)):
                errors.add(at, f"hostnames[{i}]", f"not a host name: {h!r}")
                continue
            a.hostnames.append(hp)
            claim(f"host:{hp}", name, at, f"hostnames[{i}]")
        crit = str(row.get("criticality") or "medium").strip().lower()
        if crit not in CRITICALITIES:
            errors.add(_line(line, node, "criticality"), "criticality",
                       f"{crit!r} is not one of {', '.join(CRITICALITIES)}")
        a.criticality = crit
        exp = str(row.get("exposure") or "").strip().lower() or None
        if exp is not None and exp not in EXPOSURES:
            errors.add(_line(line, node, "exposure"), "exposure",
                       f"{exp!r} is not one of {', '.join(EXPOSURES)}")
        a.exposure = exp
        assets.append(a)
    return assets


def asset_to_dict(a: Asset) -> dict[str, Any]:
    return {k: getattr(a, k) for k in FIELDS if getattr(a, k) not in (None, [])}
