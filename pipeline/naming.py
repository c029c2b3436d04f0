"""One host, one name: which asset an alert is about when no inventory names it (docs/assets.md).

Records from one collection point resolve to one asset name:

1. The collection point's host (`mdr replay --host`, `mdr produce --host`, the envelope's `host`) is the
   identity of the records of products that run on that host and report about it (`Normalizer.on_host`:
   auditd, AIDE, ClamAV, fail2ban, sshd, and ModSecurity / Apache inside its web server). The host name such a
   record carries itself (a syslog name like `vm`) is kept in `extra["reported_host"]`.
   `mdr replay` without --host uses the one name those records carry, when they agree on one.
2. The addresses of that host are the ones its own records state as its own (`host.ip`: ModSecurity's local
   address). WAF and IDS records aimed at one of them (`dst.ip`) are about that host too; the core learns the
   addresses per tenant (state `hosts`, kept by the worker like any other core state).
3. Otherwise, as before: the record's host for host products, the targeted site or address for network ones.

An inventory asset, when one matches, always wins (pipeline/context/assets.py).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, MutableMapping

from pipeline.schema import HOST_FAMILIES, Alert, HostInfo

SEP = "\x1f"


@functools.cache
def on_host(fmt: str) -> bool:
    """Whether a format's product runs on the host its records are about (cached: asked for every alert)."""
    from pipeline.normalize.registry import flag  # (not at the top: the normalizers import this module)

    return flag(fmt, "on_host")


def at_collection_point(alerts: Iterable[Alert], host: str | None) -> None:
    """Name the alerts of on-host products after their collection point `host` (no-op without one)."""
    if not host:
        return
    for a in alerts:
        if not on_host(a.source.format):
            continue
        if a.host is None:
            a.host = HostInfo(host)
        elif a.host.name != host:
            if a.host.name:
                a.extra = {**a.extra, "reported_host": a.host.name}
            a.host.name = host


def reported_name(alerts: Iterable[Alert]) -> str | None:
    """The one host name the on-host host-product records carry themselves (None when none or several)."""
    names = Counter(a.host.name for a in alerts
                    if a.host is not None and a.host.name and a.source.family in HOST_FAMILIES
                    and on_host(a.source.format))
    return next(iter(names)) if len(names) == 1 else None


class HostNames:
    """The core's naming stage: learns the addresses of named on-host collection points per tenant and names
    the network alerts aimed at them. State: `tenant SEP address` -> host name."""

    def __init__(self, state: MutableMapping[str, str] | None = None):
        self.addresses: MutableMapping[str, str] = state if state is not None else {}

    def learn(self, alerts: Iterable[Alert]) -> None:
        for a in alerts:
            h = a.host
            if h is not None and h.name and h.ip and on_host(a.source.format):
                key = f"{a.tenant_id}{SEP}{h.ip}"
                if self.addresses.get(key) != h.name:
                    self.addresses[key] = h.name

    def name(self, a: Alert) -> None:
        """Point a network alert at the host it targets: its on-host product's host, or the host that owns
        its destination address; name its source when a known host sent it."""
        if a.source.family in HOST_FAMILIES:
            return
        if on_host(a.source.format) and a.host is not None and a.host.name:
            target: str | None = a.host.name
        elif a.dst.ip:
            target = self.addresses.get(f"{a.tenant_id}{SEP}{a.dst.ip}")
        else:
            target = None
        if target:
            a.dst.hostname = target
        if a.src.ip and (source := self.addresses.get(f"{a.tenant_id}{SEP}{a.src.ip}")):
            a.src.hostname = source  # traffic the named host sent (a call-back, a lookup)
