"""The normalizer contract: one raw record in, zero or more normalized alerts out.

A normalizer module defines one subclass of `Normalizer` and registers it with `@register`. It never raises
anything but `BadRecord` (the record becomes a dead letter with that reason and field) or `Skipped`
(the record is context on purpose, e.g. a Suricata `flow` event; counted by reason, not an alert).
Any other exception is a bug in the normalizer; the caller still turns it into a dead letter.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import ClassVar

from pipeline.schema import SEVERITY_SCORES, Alert, Severity, Source


class BadRecord(Exception):
    """The record cannot be normalized; it goes to the dead letters with this reason."""

    def __init__(self, reason: str, detail: str = "", field: str | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.field = field


class Skipped(Exception):
    """The record is valid but not an alert (context, banner, summary); counted by reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Origin:
    """Where a record came from: a file and line, or a topic, partition and offset."""

    file: str | None = None
    line: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class ReadProblem:
    """Why the reader could not hand over a record whole: `oversized` (a line or document over the record
    limit: `prefix` holds its first bytes, `length` and `sha256` describe all of it), `decompression_limit`
    or `read_error` (the rest of the input was not read). The normalize stage makes it a dead letter."""

    reason: str
    detail: str
    prefix: bytes = b""
    length: int | None = None
    sha256: str | None = None


@dataclass(slots=True)
class RawRecord:
    text: str  # one record: a line, or a whole document (AIDE JSON report)
    tenant_id: str
    received_at: datetime
    host: str | None = None  # host name for records that carry none (AIDE, ClamAV)
    origin: Origin = field(default_factory=Origin)
    problem: ReadProblem | None = None  # set (and `text` empty) when the input could not be read whole


def make_id(*parts: str | None) -> str:
    """Deterministic 32-hex id from the given parts (blake2b-128 of each part followed by 0x1f, in UTF-8)."""
    h = _ID_HASH.copy()  # cheaper than a new blake2b(digest_size=16)
    h.update(f"{_SEP.join([p or '' for p in parts])}{_SEP}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


_SEP = "\x1f"
_ID_HASH = hashlib.blake2b(digest_size=16)  # never updated: make_id hashes copies of it


class Normalizer:
    """Base class. Subclasses set the class attributes and implement `sniff` and `normalize`."""

    name: ClassVar[str]  # format name used by --format, e.g. "modsecurity"
    product: ClassVar[str]
    vendor: ClassVar[str]
    family: ClassVar[str]
    # Higher runs earlier in auto-detection (specific formats before generic ones).
    priority: ClassVar[int] = 50
    # Whole-document formats (AIDE JSON report) are read as one record per file.
    whole_file: ClassVar[bool] = False
    # A secondary log of a product that also writes a richer primary one (Apache's error log beside the
    # ModSecurity audit log): its alert for an event the primary also reports merges into the primary's.
    secondary: ClassVar[bool] = False
    # The product runs on the host its records are about (auditd, AIDE, ClamAV, fail2ban, sshd, ModSecurity in
    # the web server): the collection point's host name is their identity (pipeline/naming.py).
    on_host: ClassVar[bool] = False

    def __init__(self) -> None:
        self.source = Source(self.product, self.vendor, self.family, self.name)

    def sniff(self, text: str) -> bool:
        """True when this record looks like this format. Cheap: called on the first record of a file."""
        raise NotImplementedError

    def normalize(self, rec: RawRecord) -> list[Alert]:
        """Alerts from one record; raise BadRecord or Skipped."""
        raise NotImplementedError

    def buffered(self) -> Iterable[RawRecord]:
        """The first record of each unit still buffered (a stream must not commit past it)."""
        return ()

    def discard(self, where: Callable[[RawRecord], bool]) -> None:
        """Drop the buffered units whose first record `where` selects (their input went to another worker)."""

    def flush(self) -> list[Alert]:
        """Alerts still buffered (stateful formats such as auditd); called at end of input or on idle."""
        return []

    def alert_id(self, rec: RawRecord, sub: str = "") -> str:
        """Deterministic alert id: tenant + format + the record text (+ a sub key for multi-alert records)."""
        return make_id(rec.tenant_id, self.name, rec.text, sub)


def as_ip(value: object) -> str | None:
    """`value` as a canonical IP address, or None when it is not one (for fields that may hold a name)."""
    return _canonical_ip(value) if isinstance(value, str) and value else None


@lru_cache(maxsize=65536)  # a stream repeats its addresses: parse each once
def _canonical_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def ip_field(value: object, field: str) -> str:
    """`value` as a canonical IPv4 / IPv6 address; BadRecord("bad_ip") naming `field` when it is not one.

    Actor addresses are response targets: a record whose address field holds anything else (a host name,
    a second address, injected text) is a dead letter, never an alert with a made-up actor."""
    ip = as_ip(value)
    if ip is None:
        raise BadRecord("bad_ip", f"{field} is not an IP address: {value!r}"[:200], field)
    return ip


def port_field(value: object, field: str) -> int:
    """`value` as a TCP/UDP port 0..65535 (an int, or decimal text); BadRecord("bad_port") otherwise."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        value = int(value)
    if type(value) is not int or not 0 <= value <= 65535:
        raise BadRecord("bad_port", f"{field} is not a port 0..65535: {value!r}"[:200], field)
    return value


_SEVERITIES = {label: Severity(label, score) for label, score in SEVERITY_SCORES.items()}


def severity(label: str) -> Severity:
    """Shared Severity for a label (info/low/medium/high/critical)."""
    return _SEVERITIES[label]
