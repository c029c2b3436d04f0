"""The normalize stage: raw records in, alerts / dead letters / skipped counts out. Never raises.

Every alert of every format leaves through here, so the event-time policy (`timeparse.check_time`) is applied
here, once: no implausible time reaches the core's windows, SLAs or watermarks.

Records that are not UTF-8 text: products write bytes they did not choose as they are (ClamAV file names, the
ModSecurity JSON audit log's headers, Wazuh's `full_log`), so one byte an attacker picks must not turn a
detection into a dead letter. Such a record is normalized with each invalid byte shown as U+FFFD; when the
normalizer rejects it even so, the dead letter is `not_utf8` with the exact bytes (base64)."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pipeline.naming import at_collection_point
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, ReadProblem, Skipped
from pipeline.normalize.registry import Detector, get
from pipeline.normalize.timeparse import check_time
from pipeline.schema import Alert, DeadLetter

MAX_RECORD_BYTES = 1_000_000
DLQ_PREFIX_BYTES = 16 * 1024  # raw bytes a dead letter keeps of an input over the record limit


@dataclass(slots=True)
class NormalizeResult:
    alerts: list[Alert] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    records: int = 0


def oversized(data: bytes, limit: int = MAX_RECORD_BYTES) -> ReadProblem:
    """The `oversized` problem of an input held whole: its first bytes, length and sha256."""
    return ReadProblem("oversized", f"{len(data)} bytes > {limit}", utf8_prefix(data),
                       len(data), hashlib.sha256(data).hexdigest())


def utf8_prefix(data: bytes, size: int = DLQ_PREFIX_BYTES) -> bytes:
    """The first `size` bytes of `data`, cut before a UTF-8 sequence the cut would split."""
    cut = data[:size]
    if len(data) <= size:
        return cut
    lead = len(cut) - 1
    while lead > 0 and len(cut) - lead < 4 and cut[lead] & 0xC0 == 0x80:  # back over continuation bytes
        lead -= 1
    if cut and cut[lead] >= 0xC0:
        need = 2 if cut[lead] < 0xE0 else 3 if cut[lead] < 0xF0 else 4
        if len(cut) - lead < need:
            return cut[:lead]
    return cut


def dead_letter(rec: RawRecord | None, reason: str, detail: str = "", source: str = "unknown",
                fieldname: str | None = None, raw: bytes | str | None = None,
                tenant_id: str | None = None, problem: ReadProblem | None = None) -> DeadLetter:
    """A dead-letter record carrying the raw input (base64 when it is not text) and where it came from.

    With `problem` (an input over the record limit) it keeps the input's first bytes, its length and sha256
    instead of the whole input."""
    if problem is not None:
        raw = problem.prefix
    elif raw is None and rec is not None:
        raw = rec.text
    if isinstance(raw, str) and not raw.isascii():
        raw = raw.encode("utf-8", "surrogateescape")  # text that is not valid UTF-8 goes out as base64
    if isinstance(raw, bytes):
        try:
            text, enc = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, enc = base64.b64encode(raw).decode("ascii"), "base64"
    else:
        text, enc = raw or "", "utf-8"
    o = rec.origin if rec is not None else None
    return DeadLetter(
        reason=reason, detail=detail[:500], source=source,
        tenant_id=tenant_id if tenant_id is not None else (rec.tenant_id or None if rec else None),
        file=o.file if o else None, line=o.line if o else None, topic=o.topic if o else None,
        partition=o.partition if o else None, offset=o.offset if o else None,
        field=fieldname, raw=text, raw_encoding=enc,
        raw_length=problem.length if problem else None, raw_sha256=problem.sha256 if problem else None,
    )


def _exact_bytes(text: str) -> bytes:
    """The bytes behind text read with `surrogateescape` (other lone surrogates as their invalid UTF-8)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _rejected(rec: RawRecord, raw: bytes | None, reason: str, detail: str, source: str = "unknown",
              fieldname: str | None = None) -> DeadLetter:
    """The dead letter of a record the stage could not normalize; a record that is not UTF-8 (`raw`: its exact
    bytes) is `not_utf8`, the reason it failed as text in the detail."""
    if raw is not None:
        reason, detail = "not_utf8", f"record is not UTF-8 text; as text: {reason}: {detail}"
    return dead_letter(rec, reason, detail, source, fieldname, raw=raw)


class NormalizeStage:
    """Normalizes records of any registered format; keeps one normalizer per (format, tenant, host).

    State (auditd event assembly) lives in those instances; `flush()` emits what is still buffered.
    """

    def __init__(self, forced_format: str | None = None):
        self.forced_format = forced_format
        if forced_format is not None:
            get(forced_format)  # fail early on an unknown format
        self._detector = Detector()
        self._instances: dict[tuple[str, str, str | None], Normalizer] = {}

    def normalizer(self, fmt: str, tenant_id: str, host: str | None) -> Normalizer:
        key = (fmt, tenant_id, host)
        inst = self._instances.get(key)
        if inst is None:
            inst = self._instances[key] = get(fmt)()
        return inst

    def detect(self, text: str) -> str | None:
        return self._detector.detect(text)

    def process(self, rec: RawRecord, fmt: str | None = None, out: NormalizeResult | None = None
                ) -> NormalizeResult:
        """Normalize one record into `out` (a new result when None)."""
        out = out if out is not None else NormalizeResult()
        out.records += 1
        problem = rec.problem
        if problem is None and len(rec.text) > MAX_RECORD_BYTES:
            problem = oversized(rec.text.encode("utf-8", "surrogateescape"))
        if problem is not None:
            out.dead.append(dead_letter(rec, problem.reason, problem.detail, problem=problem))
            return out
        raw: bytes | None = None  # the exact bytes of a record that is not UTF-8 text
        if not rec.text.isascii():
            try:
                rec.text.encode("utf-8")
            except UnicodeEncodeError:
                raw = _exact_bytes(rec.text)
                rec = replace(rec, text=raw.decode("utf-8", "replace"))
        fmt = fmt or self.forced_format
        if fmt is None:
            if not rec.text.strip():  # before detection: a flood of blank lines stays cheap
                out.skipped["blank"] += 1
                return out
            fmt = self._detector.detect(rec.text)
            if fmt is None:
                out.dead.append(_rejected(rec, raw, "unknown_format", "no normalizer recognised the record"))
                return out
        try:
            alerts = self.normalizer(fmt, rec.tenant_id, rec.host).normalize(rec)
            for a in alerts:
                check_time(a)
            at_collection_point(alerts, rec.host)
            out.alerts.extend(alerts)
        except Skipped as s:
            out.skipped[f"{fmt}:{s.reason}"] += 1
        except BadRecord as b:
            out.dead.append(_rejected(rec, raw, b.reason, b.detail, fmt, b.field))
        except Exception as e:  # a normalizer bug must not stop the run nor lose the record
            out.dead.append(_rejected(rec, raw, "normalizer_error", f"{type(e).__name__}: {e}", fmt))
        return out

    def buffered_floor(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the lowest offset of a record still buffered by a stateful normalizer."""
        floor: dict[tuple[str, int], int] = {}
        for inst in self._instances.values():
            for rec in inst.buffered():
                o = rec.origin
                if o.topic is not None and o.partition is not None and o.offset is not None:
                    tp = (o.topic, o.partition)
                    if o.offset < floor.get(tp, o.offset + 1):
                        floor[tp] = o.offset
        return floor

    def discard_from(self, partitions: set[tuple[str, int]]) -> None:
        """Forget what stateful normalizers buffer from these (topic, partition)s: after a rebalance their
        uncommitted records are read again by the partition's new owner."""
        def revoked(rec: RawRecord) -> bool:
            return (rec.origin.topic, rec.origin.partition) in partitions

        for inst in self._instances.values():
            inst.discard(revoked)

    def flush(self, out: NormalizeResult | None = None,
              where: Callable[[str, str, str | None], bool] | None = None) -> NormalizeResult:
        """Emit what stateful normalizers buffer; `where(fmt, tenant, host)` limits it to some of them."""
        out = out if out is not None else NormalizeResult()
        for key, inst in self._instances.items():
            if where is not None and not where(*key):
                continue
            try:
                alerts = inst.flush()
                for a in alerts:
                    check_time(a)
                at_collection_point(alerts, key[2])
                out.alerts.extend(alerts)
            except Exception as e:
                out.dead.append(dead_letter(None, "normalizer_error", f"flush {inst.name}: {e}", inst.name))
        return out
