"""`Context`: per-tenant assets, intel (+ global intel), escort calendars; the core's enrich/prioritize hooks.

Loading a file replaces the set it names (a tenant's inventory, one intel feed, a tenant's calendar) only when
the whole file is valid; a bad file is reported in `errors` and the last good set stays in use. An asset or
intel file without a single entry is a bad file too (an empty or truncated export would silently wipe the
set); `allow_empty=True` (`--allow-empty` on the command line) is how someone clears a set on purpose. A tenant
without an inventory or calendar gets the empty defaults, never another tenant's data.

State directory (`MDR_HOME`, default `~/.mdr`), written by `mdr assets import` / `mdr intel import`:

    context/<tenant>/assets.json          context/<tenant>/escort.json
    context/<tenant>/intel/<feed>.msgpack context/_global/intel/<feed>.msgpack

`<tenant>` is the tenant id itself (`pipeline.tenant` syntax, checked on every load and save), so each tenant
has its own folder and `_global` cannot be a tenant's; a folder whose name is not a tenant id is ignored and
reported in `errors`. `<feed>` is the feed name percent-encoded (distinct names, distinct files).
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import orjson

from pipeline.context.assets import Asset, AssetInventory, asset_to_dict, load_assets
from pipeline.context.feeds import FeedStats, load_feed
from pipeline.context.intel import IntelSet, match
from pipeline.context.loader import ContextFileError, Problem
from pipeline.context.priority import Clock, EscortCalendar, EscortPeriod, load_escort, prioritize, utcnow
from pipeline.schema import Alert, AssetRef, Incident, IntelHit, network_c2
from pipeline.tenant import GLOBAL, check_tenant, is_tenant

_MAX_FILE_STEM = 200


def mdr_home() -> Path:
    return Path(os.environ.get("MDR_HOME") or Path.home() / ".mdr")


@dataclass(slots=True)
class _IntelFile:
    """Persisted form of an intel set, columnar: the distinct metadata entries, the values, and per value the
    index of its entry (uint32 array bytes). Decoding makes no per-indicator objects besides the strings."""

    name: str
    origin: str
    entries: list[tuple[str, str, int | None, tuple[str, ...], int | None, int | None]]
    values: list[str]
    entry_index: bytes


class Context:
    """Context of all tenants; `enrich` and `prioritize` are the core's hooks."""

    def __init__(self, clock: Clock = utcnow):
        self.clock = clock
        self.assets: dict[str, AssetInventory] = {}
        self.intel: dict[str, dict[str, IntelSet]] = {}  # tenant (or GLOBAL) -> feed name -> set
        self.escort: dict[str, EscortCalendar] = {}
        self.errors: list[str] = []
        self._empty = AssetInventory()

    # ---- loading (keep the last good set on a bad file) ---------------------------------------------------
    def load_assets(self, tenant: str, path: str | Path, allow_empty: bool = False) -> bool:
        check_tenant(tenant)
        return self._load(lambda: self.assets.__setitem__(tenant, checked_assets(path, allow_empty)))

    def load_intel(self, path: str | Path, tenant: str | None = None, name: str | None = None,
                   allow_empty: bool = False) -> FeedStats | None:
        stats: list[FeedStats] = []
        if tenant is not None:
            check_tenant(tenant)

        def go() -> None:
            s, st = checked_feed(path, name, allow_empty)
            self.add_intel(s, tenant)
            stats.append(st)
        return stats[0] if self._load(go) else None

    def load_escort(self, tenant: str, path: str | Path) -> bool:
        check_tenant(tenant)
        return self._load(lambda: self.escort.__setitem__(tenant, load_escort(path)))

    def _load(self, fn: Any) -> bool:
        try:
            fn()
            return True
        except ContextFileError as e:
            self.errors.extend(str(p) for p in e.problems)
            return False

    def add_intel(self, s: IntelSet, tenant: str | None = None) -> None:
        """Add a feed for `tenant` (a tenant id), or for all tenants when `tenant` is None."""
        self.intel.setdefault(GLOBAL if tenant is None else check_tenant(tenant), {})[s.name] = s

    # ---- lookups -------------------------------------------------------------------------------------------
    def inventory(self, tenant: str) -> AssetInventory:
        return self.assets.get(tenant, self._empty)

    def intel_sets(self, tenant: str) -> list[IntelSet]:
        return [*self.intel.get(tenant, {}).values(), *self.intel.get(GLOBAL, {}).values()]

    def lookup(self, tenant: str, alert: Alert) -> list[IntelHit]:
        return match(alert, self.intel_sets(tenant))

    def escort_at(self, tenant: str, t: datetime) -> EscortPeriod | None:
        cal = self.escort.get(tenant) or self.escort.get(GLOBAL)
        return cal.at(t) if cal is not None else None

    # ---- the core's hooks ----------------------------------------------------------------------------------
    def enrich(self, alert: Alert) -> None:
        """Set `alert.asset` from the tenant's inventory and append intel hits (idempotent)."""
        inv = self.assets.get(alert.tenant_id)
        if inv is not None and alert.asset is None:
            alert.asset = inv.match(alert)
        sets = self.intel_sets(alert.tenant_id)
        if sets:
            have = {(h.indicator, h.field) for h in alert.intel}
            new = [h for h in match(alert, sets) if (h.indicator, h.field) not in have]
            if new:
                alert.intel = [*alert.intel, *new]

    def prioritize(self, inc: Incident) -> None:
        prioritize(inc, self.incident_asset(inc), self.escort_at(inc.tenant_id, inc.first_seen), self.clock())

    def incident_asset(self, inc: Incident) -> AssetRef | None:
        """The incident's asset, else the first inventory asset among its hosts and target addresses. For C2
        seen only on the network, the inventory asset of the host that asked (its source), if any."""
        if inc.asset is not None:
            return inc.asset
        inv = self.assets.get(inc.tenant_id)
        if inv is None:
            return None
        if network_c2(inc):
            return next((r for ip in inc.entities.src_ips if (r := inv.by_ip(ip)) is not None), None)
        for h in inc.entities.hosts:
            ref = inv.by_name(h)
            if ref is not None:
                return ref
        return next((r for ip in inc.entities.dst_ips if (r := inv.by_ip(ip)) is not None), None)

    # ---- persistence ---------------------------------------------------------------------------------------
    @classmethod
    def from_state(cls, home: Path | None = None, tenants: Iterable[str] | None = None,
                   clock: Clock = utcnow) -> Context:
        """A context with everything saved under `home` (only the given tenants' sets, plus global intel)."""
        ctx = cls(clock)
        wanted = None if tenants is None else {check_tenant(t) for t in tenants} | {GLOBAL}
        root = (home or mdr_home()) / "context"
        if not root.is_dir():
            return ctx
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            tenant = d.name
            if tenant != GLOBAL and not is_tenant(tenant):
                ctx.errors.append(f"{d}: not a tenant id; folder ignored")
                continue
            if wanted is not None and tenant not in wanted:
                continue
            if (d / "assets.json").exists():
                ctx.assets[tenant] = _read_assets(d / "assets.json")
            if (d / "escort.json").exists():
                doc = orjson.loads((d / "escort.json").read_bytes())
                periods = [EscortPeriod(p["name"], datetime.fromisoformat(p["start"]),
                                        datetime.fromisoformat(p["end"])) for p in doc["periods"]]
                ctx.escort[tenant] = EscortCalendar(periods, doc.get("origin", ""))
            for f in sorted((d / "intel").glob("*.msgpack")) if (d / "intel").is_dir() else []:
                ctx.add_intel(read_intel(f), None if tenant == GLOBAL else tenant)
        return ctx

    def save(self, home: Path | None = None) -> None:
        """Write every set of this context to the state directory (atomic per file)."""
        for tenant, inv in self.assets.items():
            save_assets(tenant, inv, home)
        for tenant, cal in self.escort.items():
            save_escort(tenant, cal, home)
        for tenant, feeds in self.intel.items():
            for s in feeds.values():
                save_intel(s, None if tenant == GLOBAL else tenant, home)


def _read_assets(path: Path) -> AssetInventory:
    doc = orjson.loads(path.read_bytes())
    return AssetInventory([Asset(**a) for a in doc["assets"]], doc.get("origin", ""))


def load_saved_assets(tenant: str, home: Path | None = None, since: float | None = None
                      ) -> tuple[AssetInventory | None, float]:
    """The tenant's saved inventory and its file's modification time; (None, mtime) when the file has not
    changed since `since`, (None, 0) when the tenant (not a tenant id, or GLOBAL) has none."""
    if not is_tenant(tenant):
        return None, 0.0
    path = (home or mdr_home()) / "context" / tenant / "assets.json"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None, 0.0
    return (None, mtime) if since == mtime else (_read_assets(path), mtime)


def _not_empty(n: int, path: str | Path, what: str, allow_empty: bool) -> None:
    if n == 0 and not allow_empty:
        raise ContextFileError([Problem(Path(path).name, 0, "", f"no {what} in the file; an empty file would clear "
                                        "the set in use, so it is rejected (--allow-empty clears it on purpose)")])


def checked_assets(path: str | Path, allow_empty: bool = False) -> AssetInventory:
    """A valid inventory file with at least one asset (unless `allow_empty`); raises ContextFileError."""
    inv = load_assets(path)
    _not_empty(len(inv), path, "assets", allow_empty)
    return inv


def checked_feed(path: str | Path, name: str | None = None, allow_empty: bool = False) -> tuple[IntelSet, FeedStats]:
    """A valid intel feed with at least one indicator (unless `allow_empty`); raises ContextFileError."""
    s, stats = load_feed(path, name)
    _not_empty(len(s), path, "indicators", allow_empty)
    return s, stats


def save_assets(tenant: str, inv: AssetInventory, home: Path | None = None) -> Path:
    path = _tenant_dir(tenant, home) / "assets.json"
    _write(path, orjson.dumps({"origin": inv.origin, "assets": [asset_to_dict(a) for a in inv.assets]},
                              option=orjson.OPT_INDENT_2))
    return path


def save_escort(tenant: str, cal: EscortCalendar, home: Path | None = None) -> Path:
    path = _tenant_dir(tenant, home) / "escort.json"
    _write(path, orjson.dumps({"origin": cal.origin, "periods": [
        {"name": p.name, "start": p.start.isoformat(), "end": p.end.isoformat()} for p in cal.periods]},
        option=orjson.OPT_INDENT_2))
    return path


def save_intel(s: IntelSet, tenant: str | None = None, home: Path | None = None) -> Path:
    path = _tenant_dir(GLOBAL if tenant is None else check_tenant(tenant), home) / "intel" / _feed_file(s.name)
    write_intel(path, s)
    return path


def _feed_file(name: str) -> str:
    """`<name>.msgpack`, the name percent-encoded (injective); over-long names end in a hash of the name."""
    stem = quote(name, safe="")
    if len(stem) > _MAX_FILE_STEM:
        stem = f"{stem[:_MAX_FILE_STEM - 17]}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"
    return f"{stem}.msgpack"


def _tenant_dir(tenant: str, home: Path | None = None) -> Path:
    """The tenant's folder (`tenant` is a tenant id, or GLOBAL for the shared sets)."""
    if tenant != GLOBAL:
        check_tenant(tenant)
    d = (home or mdr_home()) / "context" / tenant
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_intel(path: Path, s: IntelSet) -> None:
    entries: dict[tuple[Any, ...], int] = {}
    values: list[str] = []
    index = array("I")
    for ind in s.indicators():
        values.append(ind.value)
        index.append(entries.setdefault(
            (ind.kind, ind.source, ind.confidence, ind.tags, ind.valid_from, ind.valid_until), len(entries)))
    f = _IntelFile(s.name, s.origin, list(entries), values, index.tobytes())
    _write(path, msgspec.msgpack.encode(f))


def read_intel(path: Path) -> IntelSet:
    f = msgspec.msgpack.decode(path.read_bytes(), type=_IntelFile)  # entries decode as (hashable) tuples
    s = IntelSet(f.name, f.origin)
    index = array("I")
    index.frombytes(f.entry_index)
    entries = f.entries
    for value, i in zip(f.values, index, strict=True):
        s.put(value, entries[i])
    return s
