"""One Kafka message of an ingest topic -> raw records for the normalize stage, or a dead letter.

A value is either one raw product record, or a JSON envelope
``{"tenant": ..., "format": ..., "host": ..., "record": "<one record>"}`` (or ``"records": [...]`` to carry
many records of one tenant/host/format in one message, which amortises the per-message cost).
Headers ``tenant``, ``format``, ``host`` may carry the same; ``envelope: 1`` marks a value as an envelope.
Tenant precedence: envelope, header, the topic's binding. A message with no tenant is a dead letter
(`missing_tenant`), never given to a default tenant; a tenant that is present but not a valid tenant id
(`pipeline.tenant`; empty included) is a dead letter `bad_tenant`, never passed on to a lower-precedence
source. A dead letter names a tenant only when it is a valid id. A raw record that is not UTF-8 text goes to
the normalize stage as a file's line does (pipeline/normalize/stage.py); an envelope must be UTF-8 JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import orjson

from pipeline.normalize.base import Origin, RawRecord, ReadProblem
from pipeline.normalize.registry import formats
from pipeline.normalize.stage import MAX_RECORD_BYTES, dead_letter, oversized
from pipeline.normalize.timeparse import plausible_received
from pipeline.schema import DeadLetter
from pipeline.tenant import TenantError, check_tenant, is_tenant

ENVELOPE_KEYS = frozenset({"tenant", "format", "host", "record", "records"})


@dataclass(slots=True)
class Message:
    """The parts of a consumed message the envelope needs."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(slots=True)
class Unpacked:
    records: list[RawRecord]
    fmt: str | None = None
    dead: DeadLetter | None = None


def _headers(msg: Message) -> dict[str, str]:
    """Header values as text (bytes that are not UTF-8 become U+FFFD, so a bad tenant header is rejected
    rather than ignored)."""
    return {k: v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)
            for k, v in msg.headers or ()}


def _dead(msg: Message, origin: Origin, reason: str, detail: str, tenant: object = None,
          raw: bytes | None = None, problem: ReadProblem | None = None) -> Unpacked:
    tenant = tenant if is_tenant(tenant) else None
    rec = RawRecord("", tenant or "", _received(msg), origin=origin)
    return Unpacked([], None, dead_letter(rec, reason, detail, raw=raw if raw is not None else msg.value or b"",
                                          tenant_id=tenant, problem=problem))


def _received(msg: Message) -> datetime:
    """The message's timestamp (the producer sets it): now when it is missing or implausible."""
    now = datetime.now(UTC)
    if msg.timestamp_ms is None:
        return now
    try:
        return plausible_received(datetime.fromtimestamp(msg.timestamp_ms / 1000, UTC), now)
    except (OverflowError, OSError, ValueError):
        return now


def unpack(msg: Message, bindings: dict[str, str]) -> Unpacked:
    """Raw records of one message (all of one tenant, host and format), or a dead letter with its reason."""
    origin = Origin(topic=msg.topic, partition=msg.partition, offset=msg.offset)
    hdr = _headers(msg)
    value = msg.value
    if value is None or not value.strip():
        return _dead(msg, origin, "empty", "message has no value", hdr.get("tenant"), b"")
    if len(value) > MAX_RECORD_BYTES:
        big = oversized(value)
        return _dead(msg, origin, big.reason, big.detail, hdr.get("tenant"), problem=big)
    marked = hdr.get("envelope") in ("1", "true")
    try:
        text, utf8 = value.decode("utf-8"), True
    except UnicodeDecodeError as e:
        if marked:
            return _dead(msg, origin, "not_utf8", f"message is not UTF-8 text: {e}", hdr.get("tenant"))
        # one raw record: the normalize stage reads it as `mdr replay` reads a line of a file
        text, utf8 = value.decode("utf-8", "surrogateescape"), False
    env: dict | None = None
    if marked or (utf8 and text.startswith("{") and '"record' in text[:200] + text[-200:]):
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            if marked:
                return _dead(msg, origin, "bad_envelope", f"envelope is not JSON: {e}", hdr.get("tenant"))
            obj = None
        if isinstance(obj, dict) and ("record" in obj or "records" in obj) and set(obj) <= ENVELOPE_KEYS:
            env = obj
        elif marked:
            return _dead(msg, origin, "bad_envelope", "envelope must be an object with record or records",
                         hdr.get("tenant"))
    tenant = _tenant(env, hdr, bindings.get(msg.topic))
    fmt = (env or {}).get("format") or hdr.get("format")
    host = (env or {}).get("host") or hdr.get("host")
    if env is not None:
        given = env.get("records") if "records" in env else [env.get("record")]
        bad = _check_envelope(given, fmt, host)
        if bad:
            return _dead(msg, origin, "bad_envelope", bad, tenant)
        texts = cast("list[str]", given)  # checked just above: a non-empty list of strings
    else:
        texts = [text]
    if tenant is None:
        return _dead(msg, origin, "missing_tenant", "no tenant in envelope, headers or topic binding")
    try:
        tenant = check_tenant(tenant)
    except TenantError as e:
        return _dead(msg, origin, "bad_tenant", str(e))
    when = _received(msg)
    return Unpacked([RawRecord(t, tenant, when, host, origin) for t in texts], fmt)


def _tenant(env: dict | None, hdr: dict[str, str], bound: str | None) -> object:
    """The tenant the message names first (envelope, header, binding), as given; None when none does."""
    if env is not None and "tenant" in env and env["tenant"] is not None:
        return env["tenant"]
    if "tenant" in hdr:
        return hdr["tenant"]
    return bound


def _check_envelope(texts: object, fmt: object, host: object) -> str:
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return "record must be a string (records a non-empty list of strings)"
    for name, v in (("format", fmt), ("host", host)):
        if v is not None and not isinstance(v, str):
            return f"{name} must be a string"
    if fmt is not None and fmt not in formats():
        return f"unknown format {fmt!r}"
    return ""


def envelope(records: list[str], tenant: str | None, fmt: str | None = None, host: str | None = None) -> bytes:
    """The value `mdr produce` sends: one envelope for one or many records."""
    body: dict[str, object] = {"record": records[0]} if len(records) == 1 else {"records": records}
    for k, v in (("tenant", tenant), ("format", fmt), ("host", host)):
        if v is not None:
            body[k] = v
    return orjson.dumps(body)
