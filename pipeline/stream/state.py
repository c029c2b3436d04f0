"""The core's state for one partition of the by-tenant topic, kept in memory and persisted to a Faust table.

The core mutates state objects in place (``rep.count += 1``) and shares objects between mappings (a dedup
representative is also the correlation store's alert; an open incident is also the fusion store's). So the
working state is a set of plain dicts that live as long as the partition is assigned (object identity as in
`mdr replay`), and each mapping records the keys read or written. At the end of a batch those keys are
re-encoded (msgspec JSON for Alert/Incident, orjson for the rest) into a *delta*.

The table holds the state as a log: each batch writes its delta as ONE record (a *segment*; a large one in
pieces that a load applies only when all are there), and once the segments outweigh the state, a *snapshot*
of the whole state (chunk records, then a meta record naming them) after which the older segments and
snapshots are deleted. Loading reads the latest complete snapshot and re-applies the later complete segments
in order, so a crash anywhere leaves nothing half-written. The delta also carries the high-water marks of the
ingest offsets already applied, which makes redelivered alerts no-ops (at-least-once input, exactly-once
effect on state).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson
import zstandard

from pipeline.classify.history import ClassifierState
from pipeline.core.engine import CoreState
from pipeline.schema import decode_alert, decode_incident, encode

SEP = "\x1f"
SEGMENT = "\x00seg" + SEP  # + number: one batch's delta
SNAPSHOT = "\x00snap" + SEP  # + generation SEP chunk: part of a snapshot
SNAP_META = "\x00snapmeta"  # {"gen", "chunks", "seg": last segment included}
SNAP_MIN = 4 << 20  # segments may grow to max(this, the snapshot's size) before the next snapshot
MAX_SEGMENTS = 2000
CHUNK = 12 << 20  # most bytes of a segment record (messages may have 16 MiB)
SNAP_STEP = 2 << 20  # bytes per snapshot record, and at least this much snapshot written per batch
META_HW = "meta" + SEP + "hw"
LEGACY_WM = "meta" + SEP + "wm"  # one watermark for the partition (before they were per tenant); dropped on load
_MISSING = object()
REF = b"="  # an alert stored as "the dedup representative of this fingerprint" (JSON never starts so)

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
_ALERT: Codec = (encode, decode_alert)
_INCIDENT: Codec = (encode, decode_incident)
_PLAIN: Codec = (orjson.dumps, orjson.loads)
_TEXT: Codec = (lambda s: s.encode(), lambda b: bytes(b).decode())
# The classifier's per-source histories are Python objects; this state only ever comes back from the worker's
# own changelog topic, which nothing else writes.
_PICKLE: Codec = (lambda o: pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads)
# Load order matters: objects of the later kinds are identified with those of the earlier ones.
KINDS: dict[str, Codec] = {
    "dedup": _ALERT, "alerts": _ALERT, "fusion": _INCIDENT, "incidents": _INCIDENT,
    "dedup_events": _TEXT, "correlation": _PLAIN, "matched": _PLAIN, "suppressed": _PLAIN, "hosts": _TEXT,
    "watermark": _PLAIN, "held": _ALERT,
    "cls_sources": _PICKLE, "cls_tenants": _PICKLE,  # the noise classifier's streaming state
}
CORE_KINDS = ("dedup", "alerts", "fusion", "incidents", "dedup_events", "correlation", "matched", "suppressed",
              "hosts", "watermark", "held")


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


Encoded = dict[int, tuple[Any, bytes]]  # id(model object) -> (the object, its JSON)


def encode_once(obj: Any, encoded: Encoded) -> bytes:
    """`encode(obj)`, remembered in `encoded` for the rest of the flush (the object is alive as long as it)."""
    hit = encoded.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    data = encode(obj)
    encoded[id(obj)] = (obj, data)
    return data


def table_key(kind: str, key: str) -> bytes:
    return f"{kind}{SEP}{key}".encode()


class PartitionState:
    """Working state of one partition: the CoreState the core runs on (with the tenants' watermarks), and the
    ingest high-water marks."""

    def __init__(self) -> None:
        self.maps: dict[str, Tracked] = {k: Tracked() for k in KINDS}
        self.state = CoreState(**{k: self.maps[k] for k in CORE_KINDS})
        self.classifier = ClassifierState(self.maps["cls_sources"], self.maps["cls_tenants"])
        self.hw: dict[str, list[int]] = {}  # tenant SEP "topic:partition" -> [offset, seq] of the last applied
        self._group_keys: dict[str, str] = {}  # incident id -> its key in the open-incident map
        self._fp_rep: dict[str, Any] = {}  # dedup fingerprint -> its representative (as of the last delta)
        self._rep_fp: dict[str, str] = {}  # representative's alert id -> fingerprint
        self._ref_of: dict[str, str] = {}  # alert id -> fingerprint, of alerts stored as a reference
        self.enc: dict[bytes, bytes] = {}  # encoded value of every key (what a snapshot writes)
        self.seg = 0  # number of the next segment
        self.segs: list[tuple[bytes, int]] = []  # (key, size) of the segment records since the snapshot
        self.seg_bytes = 0
        self.snap_gen, self.snap_chunks, self.snap_bytes = 0, 0, 0  # the current (complete) snapshot
        self.max_gen = 0  # highest snapshot generation in the table, complete or not
        self._snap: _Snapshot | None = None  # the snapshot being written
        self.stale: list[bytes] = []  # records a crash left behind, deleted with the next snapshot

    # ---- idempotence --------------------------------------------------------------------------------
    def fresh(self, tenant: str, src: str, offset: int, seq: int) -> bool:
        """True (and advance the mark) unless this alert of that ingest position was applied already.

        Marks are per tenant and ingest partition: one ingest partition carries many tenants, whose alerts
        reach this partition in separate batches, in ingest order only within a tenant."""
        key = f"{tenant}{SEP}{src}"
        mark = self.hw.get(key)
        if mark is not None and (offset, seq) <= (mark[0], mark[1]):
            return False
        self.hw[key] = [offset, seq]
        return True

    # ---- delta --------------------------------------------------------------------------------------
    def _link(self) -> None:
        """Mark the shared objects' other keys: a touched dedup representative is also the correlation
        store's alert; an incident touched in one of the open/fusion maps is also in the other."""
        dedup, alerts = self.maps["dedup"], self.maps["alerts"]
        for fp in dedup.touched:
            rep = dict.get(dedup, fp)
            old = self._fp_rep.get(fp)
            if old is not None and rep is not old:  # the representative changed or left:
                if self._rep_fp.get(old.alert_id) == fp:
                    del self._rep_fp[old.alert_id]
                if self._ref_of.get(old.alert_id) == fp:  # an alert stored as a reference to it is stored anew
                    alerts.touched.add(old.alert_id)
            if rep is None:
                self._fp_rep.pop(fp, None)
                continue
            self._fp_rep[fp] = rep
            self._rep_fp[rep.alert_id] = fp
            if dict.get(alerts, rep.alert_id) is rep:
                alerts.touched.add(rep.alert_id)  # type: ignore[union-attr]  # not None: `is` narrows it to Any | None
        opened, fusion = self.maps["incidents"], self.maps["fusion"]
        for key in opened.touched:
            inc = dict.get(opened, key)
            if inc is not None:
                self._group_keys[inc.incident_id] = key
                if dict.get(fusion, inc.incident_id) is inc:
                    fusion.touched.add(inc.incident_id)  # type: ignore[union-attr]  # as above
        for iid in list(fusion.touched):
            group = self._group_keys.get(iid)
            if group is not None and dict.get(opened, group) is dict.get(fusion, iid):
                opened.touched.add(group)
        if len(self._group_keys) > 2 * len(opened) + 1000:
            self._group_keys = {inc.incident_id: k for k, inc in dict.items(opened)}

    def delta(self, encoded: Encoded | None = None) -> dict[bytes, bytes | None]:
        """Encoded values (None: deleted) of every key touched since the last delta; resets the tracking.

        Alerts and incidents are encoded once (an incident is in two maps): `encoded` (id -> (object, JSON))
        collects them for the outputs of the same flush."""
        self._link()
        encoded = {} if encoded is None else encoded
        out: dict[bytes, bytes | None] = {}
        for kind, (enc, _) in KINDS.items():
            m = self.maps[kind]
            if kind == "alerts":
                self._alerts_delta(m, out, encoded)
                continue
            model = enc is encode
            for key in m.touched:
                v = dict.get(m, key, _MISSING)
                if v is _MISSING:
                    out[table_key(kind, key)] = None
                else:
                    out[table_key(kind, key)] = encode_once(v, encoded) if model else enc(v)
            m.touched = set()
        out[META_HW.encode()] = orjson.dumps(self.hw)
        return out

    def _alerts_delta(self, alerts: Tracked, out: dict[bytes, bytes | None], encoded: Encoded) -> None:
        """The correlation store's alerts: most are also dedup representatives, stored then as a reference to
        the representative's record (`REF` + fingerprint) instead of a second copy."""
        dedup = self.maps["dedup"]
        for aid in alerts.touched:
            v = dict.get(alerts, aid, _MISSING)
            fp = self._rep_fp.get(aid)
            self._ref_of.pop(aid, None)
            if v is _MISSING:
                out[table_key("alerts", aid)] = None
            elif fp is not None and dict.get(dedup, fp) is v:
                out[table_key("alerts", aid)] = REF + fp.encode()
                self._ref_of[aid] = fp
            else:
                out[table_key("alerts", aid)] = encode_once(v, encoded)
        alerts.touched = set()

    # ---- table records ------------------------------------------------------------------------------
    def writes(self, delta: dict[bytes, bytes | None]) -> list[tuple[bytes, bytes | None]]:
        """The table records (None: delete) that persist `delta`, in write order: one segment (in pieces of
        at most CHUNK bytes, applied on load only when all are there), and when the segments outweigh the
        state, a snapshot that replaces them, written a few MB per batch so no batch stalls on it."""
        for k, v in delta.items():
            if v is None:
                self.enc.pop(k, None)
            else:
                self.enc[k] = v
        pieces = _split(list(delta.items()), CHUNK)
        out: list[tuple[bytes, bytes | None]] = []
        for i, piece in enumerate(pieces):
            value = _pack(len(pieces), piece)
            out.append((segment_key(self.seg, i), value))
            self.segs.append((out[-1][0], len(value)))
            self.seg_bytes += len(value)
        self.seg += 1
        if self._snap is None and (self.seg_bytes > max(SNAP_MIN, self.snap_bytes) or len(self.segs) > MAX_SEGMENTS):
            self.max_gen += 1
            self._snap = _Snapshot(self.max_gen, _split(list(self.enc.items()), SNAP_STEP), self.seg - 1,
                                   [k for k, _ in self.segs])
        if self._snap is not None:
            out += self._snapshot_step(max(SNAP_STEP, 2 * sum(len(v or b"") for _, v in out)))
        return out

    def _snapshot_step(self, budget: int) -> list[tuple[bytes, bytes | None]]:
        """The next chunks (about `budget` bytes) of the snapshot in progress; once all are written, the meta
        record that makes it the current one, and the deletion of what it replaces."""
        snap = self._snap
        assert snap is not None
        out: list[tuple[bytes, bytes | None]] = []
        written = 0
        while snap.done < len(snap.parts) and written < budget:
            chunk = _pack(0, snap.parts[snap.done])
            out.append((snapshot_key(snap.gen, snap.done), chunk))
            snap.parts[snap.done] = []
            snap.done += 1
            snap.bytes += len(chunk)
            written += len(chunk)
        if snap.done < len(snap.parts):
            return out
        meta = {"gen": snap.gen, "chunks": len(snap.parts), "seg": snap.base}
        out.append((SNAP_META.encode(), orjson.dumps(meta)))
        covered = set(snap.covered)
        out += [(k, None) for k in snap.covered]
        out += [(snapshot_key(self.snap_gen, i), None) for i in range(self.snap_chunks)]
        out += [(k, None) for k in self.stale]
        self.stale = []
        self.snap_gen, self.snap_chunks, self.snap_bytes = snap.gen, len(snap.parts), snap.bytes
        self.segs = [(k, n) for k, n in self.segs if k not in covered]
        self.seg_bytes = sum(n for _, n in self.segs)
        self._snap = None
        return out

    # ---- load ---------------------------------------------------------------------------------------
    def load(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Rebuild from a table partition's records: the latest snapshot, then the later segments in order.
        Returns the number of keys."""
        raw = self._replay({bytes(k): v for k, v in items})
        raw.pop(LEGACY_WM.encode(), None)  # the next snapshot leaves it out
        self.enc = {k: bytes(v) for k, v in raw.items() if v is not None}
        by_kind: dict[str, list[tuple[str, bytes]]] = {k: [] for k in KINDS}
        for k, v in self.enc.items():
            kind, _, key = k.decode().partition(SEP)
            if kind == "meta":
                if key == "hw":
                    self.hw = orjson.loads(v)
            elif kind in by_kind:
                by_kind[kind].append((key, v))
        shared: dict[str, Any] = {}  # alert / incident id -> object, so shared objects stay shared
        for kind, (_, dec) in KINDS.items():
            m = self.maps[kind]
            for key, v in by_kind[kind]:
                if kind == "alerts" and v[:1] == REF:
                    fp = v[1:].decode()
                    rep = dict.get(self.maps["dedup"], fp)
                    if rep is not None:
                        dict.__setitem__(m, key, rep)
                        self._ref_of[key] = fp
                    continue
                obj = dec(v)
                ident = getattr(obj, "alert_id", None) or getattr(obj, "incident_id", None)
                if ident is not None and kind in ("dedup", "fusion"):
                    shared[ident] = obj
                elif ident is not None and ident in shared:
                    obj = shared[ident]
                dict.__setitem__(m, key, obj)
        for kind in KINDS:
            self.maps[kind].touched = set()
        self._upgrade_suppressed()
        self._group_keys = {inc.incident_id: k for k, inc in dict.items(self.maps["incidents"])}
        self._fp_rep = dict(dict.items(self.maps["dedup"]))
        self._rep_fp = {rep.alert_id: fp for fp, rep in self._fp_rep.items()}
        return len(self.enc)

    def _upgrade_suppressed(self) -> None:
        """Suppressed marks written before they carried their tenant (an event time alone) take the tenant of
        the dedup representative they mark; a mark without one marks nothing any more and goes."""
        marks = self.maps["suppressed"]
        old = {aid: t for aid, t in dict.items(marks) if not isinstance(t, list)}
        if not old:
            return
        tenants = {rep.alert_id: rep.tenant_id for rep in dict.values(self.maps["dedup"])}
        for aid, t in old.items():
            if aid in tenants:
                marks[aid] = [tenants[aid], t]
            else:
                del marks[aid]

    def _replay(self, records: dict[bytes, bytes]) -> dict[bytes, bytes | None]:
        """Key -> encoded value from the snapshot named by the meta record and the complete segments after
        it; records a crash left behind go to `stale`."""
        raw: dict[bytes, bytes | None] = {}
        meta = records.get(SNAP_META.encode())
        last = -1
        if meta:
            m = orjson.loads(meta)
            self.snap_gen, self.snap_chunks, last = m["gen"], m["chunks"], m["seg"]
            for i in range(self.snap_chunks):
                chunk = records[snapshot_key(self.snap_gen, i)]
                self.snap_bytes += len(chunk)
                raw.update(_unpack(chunk)[1])
        current = snapshot_key(self.snap_gen, 0)[:-6]
        snaps = [k for k in records if k.startswith(SNAPSHOT.encode())]
        self.stale = [k for k in snaps if not k.startswith(current)]  # replaced, or cut short by a crash
        self.max_gen = max([self.snap_gen, *(int(k[len(SNAPSHOT):].decode().partition(SEP)[0]) for k in snaps)])
        segs: dict[int, list[tuple[int, bytes]]] = {}
        for k in records:
            if k.startswith(SEGMENT.encode()):
                seg, _, pos = k[len(SEGMENT):].decode().partition(SEP)
                segs.setdefault(int(seg), []).append((int(pos), k))
        for n in sorted(segs):
            keys = [k for _, k in sorted(segs[n])]
            decoded = [_unpack(records[k]) for k in keys] if n > last else []
            if not decoded or any(count != len(keys) for count, _ in decoded):
                self.stale += keys  # included in the snapshot, or cut short by a crash
                continue
            for _, pairs in decoded:
                raw.update(pairs)
            self.segs += [(k, len(records[k])) for k in keys]
            self.seg_bytes += sum(len(records[k]) for k in keys)
        self.seg = max([last, *segs]) + 1
        return raw


_pieces = msgspec.msgpack.Decoder(tuple[int, list[tuple[bytes, bytes | None]]])
_pieces_enc = msgspec.msgpack.Encoder()
_zc = zstandard.ZstdCompressor(level=1)  # state is repetitive JSON: ~10x less to write to RocksDB and Kafka
_zd = zstandard.ZstdDecompressor()


def _pack(count: int, pairs: list[tuple[bytes, bytes | None]]) -> bytes:
    """One table record: `count` (the pieces of its segment; 0 in a snapshot) and key/value pairs."""
    return _zc.compress(_pieces_enc.encode((count, pairs)))


def _unpack(record: bytes) -> tuple[int, list[tuple[bytes, bytes | None]]]:
    return _pieces.decode(_zd.decompress(record))


@dataclass(slots=True)
class _Snapshot:
    """A snapshot in progress: the state as it was when it began, in parts, and how many are written."""

    gen: int
    parts: list[list[tuple[bytes, bytes | None]]]
    base: int  # the last segment it includes
    covered: list[bytes]  # the segment records it replaces
    done: int = 0
    bytes: int = 0


def _split(pairs: list[tuple[bytes, bytes | None]], limit: int) -> list[list[tuple[bytes, bytes | None]]]:
    """`pairs` in parts of about `limit` bytes (at least one part)."""
    parts: list[list[tuple[bytes, bytes | None]]] = [[]]
    size = 0
    for kv in pairs:
        n = len(kv[0]) + len(kv[1] or b"")
        if size + n > limit and parts[-1]:
            parts.append([])
            size = 0
        parts[-1].append(kv)
        size += n
    return parts


def segment_key(n: int, piece: int) -> bytes:
    return f"{SEGMENT}{n:012d}{SEP}{piece:06d}".encode()


def snapshot_key(gen: int, chunk: int) -> bytes:
    return f"{SNAPSHOT}{gen:012d}{SEP}{chunk:06d}".encode()
