"""`mdr produce`: stream product files into an ingest topic as envelopes (demo, tests, benchmarks).

Each file is read like `mdr replay` reads it (one record per line, whole-document formats as one record, the
format detected per file) and sent as envelopes keyed by host, so a host's records stay in order (or by tenant,
which keeps them in order too, for a worker with `--tenant-keyed`). Paths the
walk leaves out, records the reader could not read whole (over the size limit, a read error) and records that
are not UTF-8 text (an envelope is JSON) are not sent: they are reported to `problems`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from pipeline.normalize.reader import read_records, walk
from pipeline.stream.envelope import envelope

MAX_REQUEST = 16 * 1024 * 1024


def envelopes(files: Iterable[str], tenant: str | None, fmt: str | None = None, host: str | None = None,
              per_message: int = 1, problems: Callable[[str], None] | None = None) -> Iterator[bytes]:
    """Envelope values for the records of `files` (`per_message` records of one file per envelope)."""
    now = datetime.now(UTC)
    found = walk(list(files))
    for s in found.skipped:
        if problems is not None:
            problems(f"skipped {s}")
    for f in found.files:
        chunk: list[str] = []
        hint: str | None = None
        for rec, h in read_records(f, tenant or "-", host, now, fmt):
            why = f"{rec.problem.reason}: {rec.problem.detail}" if rec.problem is not None else _not_utf8(rec.text)
            if why:
                if problems is not None:
                    problems(f"not sent: {rec.origin.file}:{rec.origin.line}: {why}")
                continue
            if chunk and (h != hint or len(chunk) >= per_message):
                yield envelope(chunk, tenant, hint, host)
                chunk = []
            hint = h
            chunk.append(rec.text)
        if chunk:
            yield envelope(chunk, tenant, hint, host)


def _not_utf8(text: str) -> str:
    """Why `text` cannot go into an envelope (JSON is UTF-8), or ""."""
    if text.isascii():
        return ""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not_utf8: an envelope carries UTF-8 text only (send such a record as a raw message)"
    return ""


async def send_values(bootstrap: str, topic: str, values: Iterable[bytes | tuple[bytes | None, bytes]],
                      key: bytes | None) -> int:
    """Send values to `topic` (each with `key`, or as (key, value) pairs); returns how many were sent (all
    acknowledged)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20,
                                max_request_size=MAX_REQUEST, acks="all")
    await producer.start()
    n = 0
    try:
        pending = []
        for v in values:
            k, v = v if isinstance(v, tuple) else (key, v)
            pending.append(await producer.send(topic, v, key=k))
            n += 1
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def produce(bootstrap: str, files: list[str], topic: str, tenant: str | None, fmt: str | None = None,
            host: str | None = None, per_message: int = 1, problems: Callable[[str], None] | None = None,
            source: str = "--bootstrap", key_by: str = "host") -> int:
    """Stream files into `topic`; returns the number of messages. Keyed by host (or the tenant when there is
    none), or with `key_by="tenant"` by tenant: what a worker with `--tenant-keyed` reads. A broker that does
    not answer raises BrokerUnreachable (`source`: where its address came from)."""
    from aiokafka.errors import KafkaConnectionError

    from pipeline.stream.outage import BrokerUnreachable

    key = ((tenant if key_by == "tenant" else host or tenant) or "").encode() or None
    values = envelopes(files, tenant, fmt, host, per_message, problems)
    try:
        return asyncio.run(send_values(bootstrap, topic, values, key))
    except KafkaConnectionError as e:
        raise BrokerUnreachable(bootstrap, source, str(e)) from None
