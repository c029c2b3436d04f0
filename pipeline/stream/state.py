"""The core's state for one partition of the by-tenant topic, kept in memory and persisted to a Faust table.

The core mutates state objects in place (``rep.count += 1``) and shares objects between mappings (a dedup
representative is also the correlation store's alert; an open incident is also the fusion store's). So the
working state is a set of plain dicts that live as long as the partition is assigned (object identity as in
`mdr replay`), and each mapping records the keys read or written. At the end of a batch those keys are
re-encoded (msgspec JSON for Alert/Incident, orjson for the rest) into a *delta*, which the worker writes to
the table: first as one compressed redo record (atomic: one changelog message), then key by key. Loading a
partition reads the table's keys and re-applies the last redo record, so a crash between the two leaves
nothing half-written. The delta also carries the high-water marks of the ingest offsets already applied,
which makes redelivered alerts no-ops (at-least-once input, exactly-once effect on state).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pipeline.engine import CoreState
from pipeline.schema import decode_alert, decode_incident, encode

SEP = "\x1f"
REDO = "\x00redo"
META_HW = "meta" + SEP + "hw"
META_WM = "meta" + SEP + "wm"
_MISSING = object()

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
_ALERT: Codec = (encode, decode_alert)
_INCIDENT: Codec = (encode, decode_incident)
_PLAIN: Codec = (orjson.dumps, orjson.loads)
_TEXT: Codec = (lambda s: s.encode(), lambda b: bytes(b).decode())
# Load order matters: objects of the later kinds are identified with those of the earlier ones.
KINDS: dict[str, Codec] = {
    "dedup": _ALERT, "alerts": _ALERT, "fusion": _INCIDENT, "incidents": _INCIDENT,
    "dedup_events": _TEXT, "correlation": _PLAIN, "matched": _PLAIN,
}


class Tracked(dict):
    """A dict that remembers which keys were read or written since the last `reset()`."""

    __slots__ = ("touched",)

    def __init__(self) -> None:
        super().__init__()
        self.touched: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.touched.add(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        v = dict.get(self, key, _MISSING)
        if v is _MISSING:
            return default
        self.touched.add(key)
        return v

    def __setitem__(self, key: str, value: Any) -> None:
        self.touched.add(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self.touched.add(key)
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        self.touched.add(key)
        return dict.pop(self, key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.touched.add(key)
        return dict.setdefault(self, key, default)


def table_key(kind: str, key: str) -> bytes:
    return f"{kind}{SEP}{key}".encode()


class PartitionState:
    """Working state of one partition: the CoreState the core runs on, ingest high-water marks, watermark."""

    def __init__(self) -> None:
        self.maps: dict[str, Tracked] = {k: Tracked() for k in KINDS}
        self.state = CoreState(**self.maps)  # type: ignore[arg-type]
        self.hw: dict[str, list[int]] = {}  # "topic:partition" -> [offset, seq] of the last alert applied
        self.watermark = 0.0  # max event time seen (epoch seconds)
        self._group_keys: dict[str, str] = {}  # incident id -> its key in the open-incident map

    # ---- idempotence --------------------------------------------------------------------------------
    def fresh(self, src: str, offset: int, seq: int) -> bool:
        """True (and advance the mark) unless this alert of that ingest position was applied already."""
        mark = self.hw.get(src)
        if mark is not None and (offset, seq) <= (mark[0], mark[1]):
            return False
        self.hw[src] = [offset, seq]
        return True

    # ---- delta --------------------------------------------------------------------------------------
    def _link(self) -> None:
        """Mark the shared objects' other keys: a touched dedup representative is also the correlation
        store's alert; an incident touched in one of the open/fusion maps is also in the other."""
        dedup, alerts = self.maps["dedup"], self.maps["alerts"]
        for fp in dedup.touched:
            rep = dict.get(dedup, fp)
            if rep is not None and dict.get(alerts, rep.alert_id) is rep:
                alerts.touched.add(rep.alert_id)
        opened, fusion = self.maps["incidents"], self.maps["fusion"]
        for key in opened.touched:
            inc = dict.get(opened, key)
            if inc is not None:
                self._group_keys[inc.incident_id] = key
                if dict.get(fusion, inc.incident_id) is inc:
                    fusion.touched.add(inc.incident_id)
        for iid in list(fusion.touched):
            key = self._group_keys.get(iid)
            if key is not None and dict.get(opened, key) is dict.get(fusion, iid):
                opened.touched.add(key)
        if len(self._group_keys) > 2 * len(opened) + 1000:
            self._group_keys = {inc.incident_id: k for k, inc in dict.items(opened)}

    def delta(self) -> dict[bytes, bytes | None]:
        """Encoded values (None: deleted) of every key touched since the last delta; resets the tracking."""
        self._link()
        out: dict[bytes, bytes | None] = {}
        for kind, (enc, _) in KINDS.items():
            m = self.maps[kind]
            for key in m.touched:
                v = dict.get(m, key, _MISSING)
                out[table_key(kind, key)] = None if v is _MISSING else enc(v)
            m.touched = set()
        out[META_HW.encode()] = orjson.dumps(self.hw)
        out[META_WM.encode()] = orjson.dumps(self.watermark)
        return out

    # ---- load ---------------------------------------------------------------------------------------
    def load(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Rebuild from a table partition's (key, value) pairs, re-applying its redo record. Returns keys."""
        raw: dict[bytes, bytes | None] = {bytes(k): v for k, v in items}
        redo = raw.pop(REDO.encode(), None)
        if redo:
            raw.update(decode_redo(redo))
        by_kind: dict[str, list[tuple[str, bytes]]] = {k: [] for k in KINDS}
        for k, v in raw.items():
            if v is None:
                continue
            kind, _, key = k.decode().partition(SEP)
            if kind == "meta":
                if key == "hw":
                    self.hw = orjson.loads(v)
                elif key == "wm":
                    self.watermark = orjson.loads(v)
            elif kind in by_kind:
                by_kind[kind].append((key, v))
        shared: dict[str, Any] = {}  # alert / incident id -> object, so shared objects stay shared
        for kind, (_, dec) in KINDS.items():
            m = self.maps[kind]
            for key, v in by_kind[kind]:
                obj = dec(v)
                ident = getattr(obj, "alert_id", None) or getattr(obj, "incident_id", None)
                if ident is not None and kind in ("dedup", "fusion"):
                    shared[ident] = obj
                elif ident is not None and ident in shared:
                    obj = shared[ident]
                dict.__setitem__(m, key, obj)
        for kind in KINDS:
            self.maps[kind].touched = set()
        self._group_keys = {inc.incident_id: k for k, inc in dict.items(self.maps["incidents"])}
        return len(raw)


def encode_redo(delta: dict[bytes, bytes | None]) -> bytes:
    pairs = [[k.decode(), None if v is None else v.decode()] for k, v in delta.items()]
    return zlib.compress(orjson.dumps(pairs), 1)


def decode_redo(data: bytes) -> dict[bytes, bytes | None]:
    return {k.encode(): (None if v is None else v.encode()) for k, v in orjson.loads(zlib.decompress(data))}
