"""Threat intelligence: compact indicator sets and matching of alert fields against them.

An `IntelSet` holds the indicators of one feed (one imported file) in structures sized for millions of
entries: dicts of normalized strings for exact values (IPs, domains, URLs, hashes), PyTricia tries for CIDRs,
and a suffix walk for domains (an indicator for `malware-lab.test` matches `c2.malware-lab.test`). Each value
maps to an interned metadata tuple `Entry` (kind, source, confidence, tags, valid_from, valid_until),
shared by all indicators of a feed that have the same metadata.

An indicator matches an alert only inside its validity window (`valid_from <= alert.time <= valid_until`,
either bound optional). Fields checked (`alert_candidates`): src.ip, dst.ip, host.ip, dns.query, http.host,
dst.hostname, src.hostname, the URL (http.host + http.url, or an absolute http.url), file.hash, and from host
products the outbound address auditd records (`extra.saddr_ip`) and URLs / addresses in `process.cmdline`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytricia

from pipeline.context.assets import host_part
from pipeline.schema import Alert, IntelHit

KINDS = ("ip", "cidr", "domain", "url", "md5", "sha1", "sha256", "sha512")
HASH_KINDS = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_HEX = re.compile(r"^[0-9a-f]+$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))+$")
_CMD_URL = re.compile(r"\b(?:https?|ftp)://[^\s'\"<>|;`]+", re.IGNORECASE)
_IPV4 = re.compile(r"^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$")
_CMD_IP = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_TABLE = {"ip": "ip", "domain": "domain", "url": "url", **{k: "hash" for k in HASH_KINDS.values()}}
_DEFAULT_PORTS = {"http": "80", "https": "443", "ftp": "21"}

# (kind, source, confidence, tags, valid_from, valid_until); times are epoch seconds or None.
Entry = tuple[str, str, int | None, tuple[str, ...], int | None, int | None]
Table = dict[str, "Entry | list[Entry]"]


@dataclass(slots=True)
class Indicator:
    """One parsed indicator (normalized value) before it goes into a set."""

    value: str
    kind: str
    source: str
    confidence: int | None = None
    tags: tuple[str, ...] = ()
    valid_from: int | None = None
    valid_until: int | None = None


# ---- value normalization (raise ValueError with a readable message) ----------------------------------------
def norm_ip(v: str) -> tuple[str, str]:
    """An address or CIDR -> ("ip", "1.2.3.4") or ("cidr", "10.0.0.0/8")."""
    try:
        net = ipaddress.ip_network(v.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP or CIDR: {v!r}") from None
    return ("ip", str(net.network_address)) if net.num_addresses == 1 else ("cidr", str(net))


def norm_domain(v: str) -> str:
    d = v.strip().lower().rstrip(".")
    d = d.removeprefix("*.")
    if not d.isascii():
        try:
            d = d.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"not a domain name: {v!r}") from None
    if not _DOMAIN.match(d) or d.replace(".", "").isdigit():
        raise ValueError(f"not a domain name: {v!r}")
    return d


def url_key(netloc: str, path: str, scheme: str = "http") -> str:
    """Comparable form of a URL: lower-case host, default port dropped, path and query kept, no scheme."""
    host = netloc.lower().rsplit("@", 1)[-1]
    if host.endswith(":" + _DEFAULT_PORTS.get(scheme, "")):
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".") + (path if path.startswith("/") else "/" + path)


def norm_url(v: str) -> str:
    s = v.strip()
    parts = urlsplit(s if "://" in s else "http://" + s)
    if not parts.netloc or parts.scheme not in ("http", "https", "ftp", "ftps"):
        raise ValueError(f"not a URL: {v!r}")
    path = parts.path or "/"
    return url_key(parts.netloc, path + (f"?{parts.query}" if parts.query else ""), parts.scheme)


def norm_hash(v: str, kind: str | None = None) -> tuple[str, str]:
    h = v.strip().lower()
    h = h.split(":", 1)[1] if ":" in h else h
    k = HASH_KINDS.get(len(h))
    if k is None or not _HEX.match(h):
        raise ValueError(f"not an MD5/SHA-1/SHA-256/SHA-512 hash: {v!r}")
    if kind is not None and kind != k:
        raise ValueError(f"{kind} expected, got a {len(h)}-hex-digit value: {v!r}")
    return k, h


def normalize(kind: str, value: str) -> tuple[str, str]:
    """(kind, key) for a declared kind: ip (or cidr), domain, url, or a hash kind ("hash" = any)."""
    if kind in ("ip", "cidr"):
        return norm_ip(value)
    if kind == "domain":
        return "domain", norm_domain(value)
    if kind == "url":
        return "url", norm_url(value)
    if kind == "hash" or kind in HASH_KINDS.values():
        return norm_hash(value, None if kind == "hash" else kind)
    raise ValueError(f"unknown indicator type {kind!r}")


def guess_kind(value: str) -> str:
    v = value.strip()
    if "://" in v:
        return "url"
    try:
        return norm_ip(v)[0]
    except ValueError:
        pass
    if _HEX.match(v.lower()) and len(v) in HASH_KINDS:
        return "hash"
    return "domain"


# ---- the set -----------------------------------------------------------------------------------------------
class IntelSet:
    """Indicators of one feed, indexed for lookup by kind."""

    def __init__(self, name: str = "", origin: str = ""):
        self.name = name
        self.origin = origin
        self.count = 0
        self.exact: dict[str, Table] = {k: {} for k in ("ip", "domain", "url", "hash")}
        self._v4 = pytricia.PyTricia(32)
        self._v6 = pytricia.PyTricia(128)
        self._cidrs: Table = {}
        self._nets = {4: 0, 6: 0}  # CIDRs per family (len() of a PyTricia walks the whole trie)
        self._interned: dict[Entry, Entry] = {}

    def __len__(self) -> int:
        return self.count

    def add(self, ind: Indicator) -> None:
        self.put(ind.value, (ind.kind, ind.source, ind.confidence, ind.tags, ind.valid_from, ind.valid_until))

    def put(self, value: str, e: Entry) -> None:
        """Add a normalized value with its metadata (interned: equal metadata is stored once)."""
        e = self._interned.setdefault(e, e)
        kind = e[0]
        table = self._cidrs if kind == "cidr" else self.exact[_TABLE[kind]]
        old = table.get(value)
        if old is None:
            table[value] = e
        elif isinstance(old, list):
            if e in old:
                return
            old.append(e)
        elif old != e:
            table[value] = [old, e]
        else:
            return
        if kind == "cidr":
            v6 = ":" in value
            (self._v6 if v6 else self._v4)[value] = table[value]
            self._nets[6 if v6 else 4] += old is None
        self.count += 1

    def extend(self, inds: Iterable[Indicator]) -> IntelSet:
        for i in inds:
            self.add(i)
        return self

    def indicators(self) -> Iterator[Indicator]:
        for table in (*self.exact.values(), self._cidrs):
            for value, es in table.items():
                for e in es if isinstance(es, list) else (es,):
                    yield Indicator(value, *e)

    # -- lookups: (indicator value, entry) pairs valid at time t ------------------------------------------
    def lookup_ip(self, ip: str, t: int | None) -> Iterator[tuple[str, Entry]]:
        e = self.exact["ip"].get(ip)
        if e is not None:
            yield from _valid(ip, e, t)
        v6 = ":" in ip
        if not self._nets[6 if v6 else 4]:
            return
        trie = self._v6 if v6 else self._v4
        try:
            key = trie.get_key(ip)
        except ValueError:
            return
        while key is not None:  # most specific network first; walk up while those are not valid now
            found = list(_valid(key, trie[key], t))
            if found:
                yield from found
                return
            key = trie.parent(key)

    def lookup_domain(self, d: str, t: int | None) -> Iterator[tuple[str, Entry]]:
        table = self.exact["domain"]
        if not table:
            return
        while "." in d:
            e = table.get(d)
            if e is not None:
                found = list(_valid(d, e, t))
                if found:
                    yield from found
                    return
            d = d[d.index(".") + 1:]

    def lookup(self, kind: str, value: str, t: int | None) -> Iterator[tuple[str, Entry]]:
        """Indicators matching a normalized value, valid at epoch time t (None: at any time)."""
        if kind == "ip":
            return self.lookup_ip(value, t)
        if kind == "domain":
            return self.lookup_domain(value, t)
        e = (self._cidrs if kind == "cidr" else self.exact[kind]).get(value)
        return _valid(value, e, t) if e is not None else iter(())


def _valid(value: str, es: Entry | list[Entry], t: int | None) -> Iterator[tuple[str, Entry]]:
    for e in es if isinstance(es, list) else (es,):
        if t is None or ((e[4] is None or e[4] <= t) and (e[5] is None or t <= e[5])):
            yield value, e


# ---- alert side --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Candidates:
    items: list[tuple[str, str, str]] = field(default_factory=list)  # (field, kind, value)
    seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, fld: str, kind: str, value: str | None) -> None:
        if value and (kind, value) not in self.seen:
            self.seen.add((kind, value))
            self.items.append((fld, kind, value))

    def ip(self, fld: str, v: str | None) -> None:
        if v and not _IPV4.match(v):
            try:
                v = str(ipaddress.ip_address(v))
            except ValueError:
                return
        self.add(fld, "ip", v)

    def name(self, fld: str, v: str | None) -> None:
        """A host / site name, or an address written in its place."""
        if not v:
            return
        h = host_part(v)
        if _IPV4.match(h):
            self.add(fld, "ip", h)
            return
        if ":" in h:
            try:
                self.add(fld, "ip", str(ipaddress.ip_address(h)))
                return
            except ValueError:
                pass
        self.add(fld, "domain", h)

    def url(self, fld: str, host: str | None, url: str | None) -> None:
        if not url:
            return
        if "://" in url[:12]:
            try:
                parts = urlsplit(url)
            except ValueError:
                return
            if not parts.netloc:
                return
            self.name(fld, parts.hostname)
            host, path, scheme = parts.netloc, parts.path or "/", parts.scheme
            query = parts.query
        elif host:
            path, _, query = url.partition("?")
            scheme = "http"
        else:
            return
        key = url_key(host, path, scheme)
        if query:
            self.add(fld, "url", f"{key}?{query}")
        self.add(fld, "url", key)
        bare = host_part(host)
        if bare != host.lower():  # Host header with a port: also try the URL without it
            self.add(fld, "url", url_key(bare, path + (f"?{query}" if query else "")))


def alert_candidates(a: Alert) -> list[tuple[str, str, str]]:
    """(field, kind, value) of every alert field that can carry an indicator, normalized, deduplicated."""
    c = _Candidates()
    c.ip("src.ip", a.src.ip)
    c.ip("dst.ip", a.dst.ip)
    if a.host is not None:
        c.ip("host.ip", a.host.ip)
    if a.dns is not None and a.dns.query:
        c.name("dns.query", a.dns.query)
    if a.http is not None:
        c.name("http.host", a.http.host)
        c.url("http.url", a.http.host or a.dst.hostname or a.dst.ip, a.http.url)
    c.name("dst.hostname", a.dst.hostname)
    c.name("src.hostname", a.src.hostname)
    if a.file is not None and a.file.hash:
        with contextlib.suppress(ValueError):
            c.add("file.hash", "hash", norm_hash(a.file.hash)[1])
    saddr = a.extra.get("saddr_ip") if a.extra else None
    if isinstance(saddr, str):
        c.ip("extra.saddr_ip", saddr)
    if a.process is not None and a.process.cmdline:
        cmd = a.process.cmdline
        for u in _CMD_URL.findall(cmd):
            c.url("process.cmdline", None, u)
        for ip in _CMD_IP.findall(cmd):
            c.ip("process.cmdline", ip)
    return c.items


def match(a: Alert, sets: Iterable[IntelSet]) -> list[IntelHit]:
    """Hits of an alert against the given sets, at the alert's event time."""
    sets = [s for s in sets if s.count]
    if not sets:
        return []
    t = int(a.time.timestamp())
    hits: list[IntelHit] = []
    for fld, kind, value in alert_candidates(a):
        for s in sets:
            for ind, e in s.lookup(kind, value, t):
                hits.append(IntelHit(indicator=ind, type=e[0], field=fld, source=e[1], confidence=e[2],
                                     tags=list(e[3])))
    return hits
