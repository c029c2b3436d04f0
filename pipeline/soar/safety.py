"""Response safety: which targets a `block_ip` or `isolate_host` step may act on without an analyst.

Addresses and host names in playbook steps come from parsed alerts, and attackers write much of what is
parsed. Before a response connector is called, every target is checked; a target that fails a check is held
for an analyst's approval on the ticket (the run waits; the reason is on the timeline), never dropped:

- an address or host in the tenant's own inventory (`mdr assets import`, pipeline/context/assets.py);
- an address of a refused class: loopback, link-local, multicast, unspecified, reserved (`refuse`);
- the platform's own addresses and host names (`platform`, plus this machine's own name and addresses);
- an entry of the protect list (`protect`: CIDRs and host names; per tenant too), and the channel's own
  `protect` setting (channels.yaml);
- beyond the tenant's budget of automated actions (`rate_limit`: so many targets per window, counted over all
  of the tenant's tickets in the store, so every worker shares it).

Every action also records the parsed fields that justified it (`justify`). The policy is YAML, read from the
first of: `MDR_RESPONSE_SAFETY`, `$MDR_HOME/response-safety.yaml`, `response-safety.yaml` beside the playbooks
(shipped: playbooks/response-safety.yaml); without any file the defaults below apply. See docs/response-safety.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select, text

from pipeline import paths, safeyaml
from pipeline.context.assets import AssetInventory, host_part
from pipeline.durations import parse_duration
from pipeline.schema import Alert, Incident
from pipeline.soar.models import Ticket, TimelineEvent

POLICY_FILE = "response-safety.yaml"
CLASSES = ("loopback", "link_local", "multicast", "unspecified", "reserved", "private")
DEFAULT_REFUSE = ("loopback", "link_local", "multicast", "unspecified", "reserved")
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
KEYS = frozenset({"refuse", "platform", "platform_auto", "protect", "inventory", "rate_limit", "approval_timeout",
                  "tenants"})
TENANT_KEYS = frozenset({"refuse", "protect", "inventory", "rate_limit"})
MAX_EVIDENCE = 2000  # alerts of an incident scanned for a justification
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(ValueError):
    """A response-safety file was rejected (file, key and problem in the message)."""


@dataclass(frozen=True, slots=True)
class Targets:
    """CIDRs and host names (lower case, without port or trailing dot)."""

    nets: tuple[IpNet, ...] = ()
    names: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, items: Any, where: str) -> Targets:
        if items is None:
            return cls()
        if not isinstance(items, list):
            raise PolicyError(f"{where}: a list of CIDRs and host names")
        nets, names = [], set()
        for x in items:
            try:
                nets.append(ipaddress.ip_network(str(x).strip(), strict=False))
            except ValueError:
                name = host_part(str(x))
                if not name or " " in name:
                    raise PolicyError(f"{where}: not a CIDR nor a host name: {x!r}") from None
                names.add(name)
        return cls(tuple(nets), frozenset(names))

    def __add__(self, other: Targets) -> Targets:
        return Targets(self.nets + other.nets, self.names | other.names)

    def has(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None, name: str | None) -> bool:
        """True when the address is in one of the networks, or the host name is listed."""
        if addr is not None:
            return any(addr.version == n.version and addr in n for n in self.nets)
        return name in self.names


@dataclass(frozen=True, slots=True)
class RateLimit:
    actions: int = 20  # automated block / isolate targets per tenant and window
    window: float = 3600.0  # seconds


@dataclass(frozen=True, slots=True)
class Policy:
    refuse: frozenset[str] = frozenset(DEFAULT_REFUSE)
    platform: Targets = field(default_factory=Targets)
    platform_auto: bool = True  # add this machine's own host name and addresses
    protect: Targets = field(default_factory=Targets)
    inventory: bool = True
    rate_limit: RateLimit = field(default_factory=RateLimit)
    approval_timeout: float = 4 * 3600.0
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: str = "<defaults>"

    def for_tenant(self, tenant: str) -> Policy:
        """This policy with the tenant's overrides (its protect entries add to the global ones)."""
        t = self.tenants.get(tenant)
        if not t:
            return self
        return replace(self, refuse=t.get("refuse", self.refuse), protect=self.protect + t.get("protect", Targets()),
                       inventory=t.get("inventory", self.inventory), rate_limit=t.get("rate_limit", self.rate_limit),
                       tenants={})


def _duration(v: Any, where: str) -> float:
    try:
        return parse_duration(v)
    except ValueError as e:
        raise PolicyError(f"{where}: {e}") from None


def _refuse(v: Any, where: str) -> frozenset[str]:
    if not isinstance(v, list) or any(x not in CLASSES for x in v):
        raise PolicyError(f"{where}: a list of {', '.join(CLASSES)}")
    return frozenset(v)


def _rate(v: Any, where: str) -> RateLimit:
    if not isinstance(v, dict) or set(v) - {"actions", "window"}:
        raise PolicyError(f"{where}: {{actions: N, window: DURATION}}")
    n = v.get("actions", RateLimit().actions)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise PolicyError(f"{where}.actions: a number >= 0")
    return RateLimit(n, _duration(v.get("window", "1h"), f"{where}.window"))


def _overrides(d: dict[str, Any], where: str, allowed: frozenset[str]) -> dict[str, Any]:
    bad = set(d) - allowed
    if bad:
        raise PolicyError(f"{where}: unknown key(s) {sorted(bad)} (allowed: {', '.join(sorted(allowed))})")
    out: dict[str, Any] = {}
    if "refuse" in d:
        out["refuse"] = _refuse(d["refuse"], f"{where}refuse")
    if "protect" in d:
        out["protect"] = Targets.parse(d["protect"], f"{where}protect")
    if "inventory" in d:
        out["inventory"] = bool(d["inventory"])
    if "rate_limit" in d:
        out["rate_limit"] = _rate(d["rate_limit"], f"{where}rate_limit")
    return out


def parse_policy(doc: Any, origin: str) -> Policy:
    if doc is None:
        return Policy(origin=origin)
    if not isinstance(doc, dict):
        raise PolicyError(f"{origin}: a mapping of {', '.join(sorted(KEYS))}")
    where = f"{origin}: "
    base = _overrides({k: v for k, v in doc.items() if k in TENANT_KEYS}, where, TENANT_KEYS)
    bad = set(doc) - KEYS
    if bad:
        raise PolicyError(f"{where}unknown key(s) {sorted(bad)} (allowed: {', '.join(sorted(KEYS))})")
    tenants = doc.get("tenants") or {}
    if not isinstance(tenants, dict):
        raise PolicyError(f"{where}tenants: a mapping of tenant -> overrides")
    return Policy(
        platform=Targets.parse(doc.get("platform"), f"{where}platform"),
        platform_auto=bool(doc.get("platform_auto", True)),
        approval_timeout=_duration(doc.get("approval_timeout", "4h"), f"{where}approval_timeout"),
        tenants={str(t): _overrides(o or {}, f"{where}tenants.{t}.", TENANT_KEYS) for t, o in tenants.items()},
        origin=origin, **base)


def policy_path(playbooks: str | Path | None = None) -> Path | None:
    """The policy file in force (see the module docstring), or None for the defaults."""
    if os.environ.get("MDR_RESPONSE_SAFETY"):
        return Path(os.environ["MDR_RESPONSE_SAFETY"])
    from pipeline.context.store import mdr_home

    root = Path(playbooks) if playbooks else paths.playbooks_dir()
    for p in (mdr_home() / POLICY_FILE, (root if root.is_dir() else root.parent) / POLICY_FILE):
        if p.is_file():
            return p
    return None


def load_policy(path: str | Path | None = None, *, playbooks: str | Path | None = None) -> Policy:
    p = Path(path) if path else policy_path(playbooks)
    if p is None:
        return Policy()
    try:
        doc = safeyaml.load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise PolicyError(f"{p}: {e}") from None
    return parse_policy(doc, str(p))


@cache
def own_addresses() -> Targets:
    """This machine's host name(s) and the addresses they resolve to (the platform's own)."""
    names = {host_part(socket.gethostname()), host_part(socket.getfqdn())} - {""}
    nets: list[IpNet] = []
    for n in names:
        try:
            infos = socket.getaddrinfo(n, None)
        except OSError:
            continue
        nets += [ipaddress.ip_network(str(i[4][0]).split("%")[0]) for i in infos]
    return Targets(tuple(dict.fromkeys(nets)), frozenset(names))


class SavedInventories:
    """Tenants' inventories as saved under MDR_HOME by `mdr assets import`, re-read when the file changes."""

    def __init__(self, home: Path | None = None):
        self.home = home
        self._cache: dict[str, tuple[float, AssetInventory]] = {}
        self._lock = threading.Lock()

    def __call__(self, tenant: str) -> AssetInventory:
        from pipeline.context.store import load_saved_assets

        inv, mtime = load_saved_assets(tenant, self.home, since=self._cache.get(tenant, (None, None))[0])
        with self._lock:
            if inv is not None:
                self._cache[tenant] = (mtime, inv)
            return self._cache.get(tenant, (0.0, AssetInventory()))[1]


Inventories = Callable[[str], AssetInventory]


def _address(v: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        a = ipaddress.ip_address(v.split("%")[0])
    except ValueError:
        return None
    return a.ipv4_mapped or a if isinstance(a, ipaddress.IPv6Address) else a


def refusal(policy: Policy, inventory: AssetInventory | None, target: str, kind: str,
            channel_protect: Targets = Targets()) -> str | None:
    """Why `target` (an address for `kind` "ip", a host for "host") may not be acted on automatically."""
    addr = _address(target)
    name = None if addr is not None else host_part(target)
    if kind == "ip" and addr is None:
        return "not an IP address"
    for cls in sorted(policy.refuse) if addr is not None else ():
        if getattr(addr, f"is_{cls}"):
            return f"{cls.replace('_', '-')} address"
    platform = policy.platform + (own_addresses() if policy.platform_auto else Targets())
    if platform.has(addr, name) or name in LOCAL_NAMES:
        return "the platform's own " + ("address" if addr is not None else "host")
    if policy.protect.has(addr, name):
        return f"on the protect list ({policy.origin})"
    if channel_protect.has(addr, name):
        return "on the channel's protect list"
    if policy.inventory and inventory is not None and len(inventory):
        ref = inventory.by_ip(str(addr)) if addr is not None else inventory.by_name(target)
        if ref is not None:
            return f"in the tenant's own inventory (asset {ref.name}, {ref.criticality})"
    return None


# ---- justification --------------------------------------------------------------------------------------
def _asset(a: Alert) -> str | None:
    from pipeline.core.incidents import asset_of

    return asset_of(a)


_FIELDS: dict[str, tuple[tuple[str, str, Callable[[Alert], Any]], ...]] = {
    "ip": (("src_ips", "src.ip", lambda a: a.src.ip), ("dst_ips", "dst.ip", lambda a: a.dst.ip)),
    "host": (("hosts", "host", _asset),),
}


def justify(inc: Incident, target: str, kind: str, evidence: Callable[[str], Alert | None] | None) -> str:
    """Which parsed fields of which alerts named `target`, e.g. `target 203.0.113.7 from src.ip of alerts
    [a1, a2] (sshd: failed password, 8 alerts)`."""
    for attr, path, get in _FIELDS[kind]:
        if target not in getattr(inc.entities, attr):
            continue
        hits: list[Alert] = []
        if evidence is not None:
            for aid in inc.alert_ids[:MAX_EVIDENCE]:
                a = evidence(aid)
                if a is not None and str(get(a)) == target:
                    hits.append(a)
        if hits:
            rules = Counter(a.rule.name or a.rule.id or "?" for a in hits).most_common(2)
            ids = ", ".join(a.alert_id for a in hits[:5]) + (", ..." if len(hits) > 5 else "")
            what = "; ".join(r for r, _ in rules)
            n = sum(max(a.count, 1) for a in hits)  # a dedup representative stands for `count` alerts
            return f"target {target} from {path} of alerts [{ids}] ({what}, {n} alerts)"
        ids = ", ".join(inc.alert_ids[:5]) + (", ..." if len(inc.alert_ids) > 5 else "")
        ucs = "; ".join(dict.fromkeys(e.title for e in inc.explanation)) or inc.title
        return (f"target {target} from {path} (incident.entities.{attr}) of incident {inc.incident_id} alerts "
                f"[{ids}] ({ucs}, {inc.alert_count} alerts)")
    return f"target {target} from the playbook's parameters: no parsed field of incident {inc.incident_id} names it"


# ---- the per-tenant budget of automated actions ----------------------------------------------------------
RESPONSE = "response"  # timeline kind of one acted-on target; status automated | approved


def _lock_key(tenant: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"mdr-response:{tenant}".encode(), digest_size=8).digest(), "big",
                          signed=True)


def reserve(store: Any, ticket: Ticket, action: str, channel: str, wanted: dict[str, str], limit: RateLimit,
            now: datetime) -> tuple[list[str], int]:
    """The targets of `wanted` (target -> justification) the tenant's budget still allows, recorded on the
    ticket as automated `response` events in the same transaction as the count (PostgreSQL: under a per-tenant
    advisory lock; SQLite: one writer at a time). A target this ticket's step already reserved is granted
    again without counting twice. Returns (granted, actions used in the window before this call)."""
    since = now - timedelta(seconds=limit.window)
    with store.tx() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(ticket.tenant_id)})
        mine = {
            (d or {}).get("target")
            for d in s.scalars(select(TimelineEvent.data).where(
                TimelineEvent.ticket_id == ticket.id, TimelineEvent.kind == RESPONSE,
                TimelineEvent.status == "automated"))
            if (d or {}).get("action") == action}
        used = s.scalar(
            select(func.count()).select_from(TimelineEvent).join(Ticket, Ticket.id == TimelineEvent.ticket_id)
            .where(Ticket.tenant_id == ticket.tenant_id, TimelineEvent.kind == RESPONSE,
                   TimelineEvent.status == "automated", TimelineEvent.at >= since)) or 0
        fresh = [t for t in wanted if t not in mine][: max(0, limit.actions - used)]
        s.add_all(TimelineEvent(
            ticket_id=ticket.id, at=now, kind=RESPONSE, actor="safety", status="automated",
            text=f"automated {action} via {channel}: {wanted[t]}",
            data={"action": action, "channel": channel, "target": t, "justification": wanted[t]}) for t in fresh)
    return [t for t in wanted if t in mine or t in fresh], used


def record_approved(store: Any, ticket: Ticket, action: str, channel: str, targets: dict[str, str], by: str,
                    now: datetime) -> None:
    """`response` events for targets an analyst approved (not counted against the automated budget)."""
    with store.tx() as s:
        s.add_all(TimelineEvent(
            ticket_id=ticket.id, at=now, kind=RESPONSE, actor=by, status="approved",
            text=f"{action} via {channel} approved by {by}: {why}",
            data={"action": action, "channel": channel, "target": t, "justification": why})
            for t, why in targets.items())


@dataclass(slots=True)
class Safety:
    """The policy and the tenants' inventories a runner checks targets against."""

    policy: Policy = field(default_factory=Policy)
    inventories: Inventories | None = None

    def inventory(self, tenant: str) -> AssetInventory | None:
        return self.inventories(tenant) if self.inventories is not None else None


_default: Safety | None = None
_default_lock = threading.Lock()


def default_safety() -> Safety:
    """The policy in force and the inventories saved under MDR_HOME (loaded once per process)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Safety(load_policy(), SavedInventories())
        return _default
