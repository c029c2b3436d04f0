"""One way from input files to normalized alerts: read, normalize, and merge the files in event-time order.

    files --read_records--> NormalizeStage (one per file) --reorder buffer--> heap merge --> chunks of alerts

Everything that turns files into alerts goes through here: `mdr replay`, `mdr model train`, the benches and the
tests. `AlertSource` streams (chunks in event-time order, for input of any length); `read_alerts` collects one
set (every alert in event-time order, with the dead letters, skips and record count).

Order. Each file is one stream with its own normalizers, so a stateful one (auditd's event assembly, the
ModSecurity error log's transactions) sees that file's records in order; what it still holds at the file's end
is emitted there. A file's alerts are mostly in time order already (products log as they go): a reorder buffer
per file holds each alert until the file has reached `lateness` seconds past it, or until more than `max_held`
alerts wait, and a heap merges the files' streams by event time. So the alerts come out in event-time order as
long as no alert is more than `lateness` seconds (default 600, the core's allowed lateness) behind an alert
before it in its file, nor more than `max_held` alerts late. A later one comes out when it is read (`late`
counts them) and the core takes it as a stream takes a late alert. Alerts whose event time the normalize stage
did not trust (replaced by the receipt time, `extra.time_untrusted`) sort at that time and wait at the end of
their file's buffer.

Naming. The files are one collection point: with `name_collection_point` and no `host`, the alerts of on-host
products are named after the one host name the input's on-host host records carry (`pipeline.naming`), found
beforehand by reading the files of those products (auditd, AIDE, ClamAV, fail2ban, sshd); standard input and
other inputs that cannot be read twice are not looked at for it.

Memory. A file is opened when the merge reaches its first alert's time less the lateness, found beforehand by
normalizing the file's head: files that follow each other in time (rotated logs, a directory per day) are read
one after the other and never held open together. Standard input and other inputs that cannot be read twice,
and files without an alert in their first `PROBE_RECORDS` records, are opened at once. What is held at any time
is the buffers of the files open together, whatever the length of the input; dead letters leave in the chunks
as they come.
"""

from __future__ import annotations

import heapq
import itertools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.naming import HOST_FAMILIES, at_collection_point, on_host
from pipeline.normalize.reader import Inputs, SkippedPath, read_records, walk
from pipeline.normalize.registry import get
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.schema import Alert

LATENESS = 600.0  # seconds an alert may be behind an earlier alert of its file and still come out in order
MAX_HELD = 50_000  # alerts a file's reorder buffer holds at most
BATCH = 2048  # alerts per chunk
PROBE_RECORDS = 10_000  # records read from a file's head to find its first alert
_NEVER = float("-inf")


@dataclass(slots=True)
class _File:
    index: int
    path: str
    size: int
    res: NormalizeResult  # what its normalize stage produced since the merge last took it (not the alerts)


class AlertSource:
    """The alerts of files (paths, or what `walk` found) in event-time order, as chunks (see the module doc).

    Iterating yields `NormalizeResult`s: up to `batch` alerts each, in event-time order across chunks, with the
    dead letters, skips and number of records read since the previous chunk. `progress(file, bytes)` is called
    when a file has been read. Iterate once."""

    def __init__(self, paths: Iterable[str] | Inputs, tenant: str, host: str | None = None,
                 fmt: str | None = None, *, received_at: datetime | None = None, lateness: float = LATENESS,
                 max_held: int = MAX_HELD, batch: int = BATCH,
                 progress: Callable[[str, int], None] | None = None, name_collection_point: bool = False):
        if fmt is not None:
            get(fmt)  # fail early on an unknown format
        self.inputs = paths if isinstance(paths, Inputs) else walk(list(paths))
        self.tenant, self.host, self.fmt = tenant, host, fmt
        self.received_at = received_at or datetime.now(UTC)
        self.lateness, self.max_held, self.batch = lateness, max_held, batch
        self.progress = progress
        self.name_collection_point = name_collection_point and host is None
        self.collection_point: str | None = None  # the name found for it
        self.late = 0  # alerts that came out after a later one (see the module doc)
        self.most_open = 0  # the most files open at once

    @property
    def files(self) -> list[str]:
        return self.inputs.files

    @property
    def skipped_paths(self) -> list[SkippedPath]:
        return self.inputs.skipped

    def __iter__(self) -> Iterator[NormalizeResult]:
        files = [_File(i, p, self.inputs.sizes.get(p, 0), NormalizeResult()) for i, p in enumerate(self.files)]
        if self.name_collection_point:
            self.collection_point = self._reported_name()
        seq = itertools.count()
        # (time, file, seq, alert): an alert of an open file, or None: the time to open that file
        heap: list[tuple[float, int, int, Alert | None]] = [
            (self._opening(f) if len(files) > 1 else _NEVER, f.index, -1, None) for f in files]
        heapq.heapify(heap)
        streams: dict[int, Iterator[Alert | None]] = {}
        chunk = NormalizeResult()
        last = _NEVER
        while heap:
            t, i, _, alert = heapq.heappop(heap)
            f = files[i]
            if alert is None:
                streams[i] = self._stream(f)
                self.most_open = max(self.most_open, len(streams))
            else:
                if t < last:
                    self.late += 1
                last = max(last, t)
                chunk.alerts.append(alert)
            while (nxt := next(streams[i], _END)) is None:  # the file hands over dead letters
                _move(f.res, chunk)
                if len(chunk.dead) >= self.batch:
                    yield chunk
                    chunk = NormalizeResult()
            _move(f.res, chunk)
            if isinstance(nxt, Alert):
                heapq.heappush(heap, (nxt.time.timestamp(), i, next(seq), nxt))
            else:
                del streams[i]
                if self.progress is not None:
                    self.progress(f.path, f.size)
            if len(chunk.alerts) >= self.batch or len(chunk.dead) >= self.batch:
                yield chunk
                chunk = NormalizeResult()
        if chunk.alerts or chunk.dead or chunk.skipped or chunk.records:
            yield chunk

    def _records(self, path: str) -> Iterator[tuple]:
        return read_records(path, self.tenant, self.host, self.received_at, self.fmt)

    def _reported_name(self) -> str | None:
        """The one host name the on-host host records of the re-readable files carry (None: none or several)."""
        names: set[str] = set()
        for path in self.files:
            if not _rereadable(path):
                continue
            stage, res = NormalizeStage(self.fmt), NormalizeResult()
            for rec, hint in self._records(path):
                if hint is not None and not _host_product(hint):
                    break  # a file is one product
                stage.process(rec, hint, res)
                names.update(a.host.name for a in res.alerts if a.host is not None and a.host.name
                             and _host_product(a.source.format))
                res.alerts.clear()
                res.dead.clear()
                res.skipped.clear()
            stage.flush(res)
            names.update(a.host.name for a in res.alerts if a.host is not None and a.host.name
                         and _host_product(a.source.format))
            if len(names) > 1:
                return None
        return next(iter(names)) if names else None

    def _opening(self, f: _File) -> float:
        """When the merge opens the file: its first trusted alert's time less the lateness, or at once."""
        if not _rereadable(f.path):
            return _NEVER
        stage, res = NormalizeStage(self.fmt), NormalizeResult()
        for n, (rec, hint) in enumerate(self._records(f.path)):
            stage.process(rec, hint, res)
            times = [a.time.timestamp() for a in res.alerts if "time_untrusted" not in a.extra]
            if times:
                return min(times) - self.lateness
            if n >= PROBE_RECORDS:
                break
            res.alerts.clear()
            res.dead.clear()
        return _NEVER

    def _stream(self, f: _File) -> Iterator[Alert | None]:
        """The file's alerts through its reorder buffer; None when dead letters wait to be handed over."""
        stage, res = NormalizeStage(self.fmt), f.res
        held: list[tuple[float, int, Alert]] = []
        seq = itertools.count()
        top = _NEVER  # newest trusted event time read

        def hold(alerts: list[Alert]) -> None:
            nonlocal top
            at_collection_point(alerts, self.collection_point)
            for a in alerts:
                t = a.time.timestamp()
                if t > top and "time_untrusted" not in a.extra:
                    top = t
                heapq.heappush(held, (t, next(seq), a))
            alerts.clear()

        for rec, hint in self._records(f.path):
            stage.process(rec, hint, res)
            if res.alerts:
                hold(res.alerts)
                while held and (top - held[0][0] > self.lateness or len(held) > self.max_held):
                    yield heapq.heappop(held)[2]
            if len(res.dead) >= self.batch:
                yield None
        stage.flush(res)
        hold(res.alerts)
        while held:
            yield heapq.heappop(held)[2]


_END = object()


def _rereadable(path: str) -> bool:
    """A regular file (standard input, a FIFO or a device can be read once only)."""
    try:
        return path != "-" and stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # read_records reports it


def _host_product(fmt: str | None) -> bool:
    """Records of a product that runs on the host it reports about (auditd, AIDE, ClamAV, fail2ban, sshd)."""
    try:
        return fmt is not None and get(fmt).family in HOST_FAMILIES and on_host(fmt)
    except KeyError:
        return False


def _move(src: NormalizeResult, dst: NormalizeResult) -> None:
    """Dead letters, skips and the record count (not the alerts) from `src` to `dst`."""
    if src.dead:
        dst.dead.extend(src.dead)
        src.dead.clear()
    if src.skipped:
        dst.skipped.update(src.skipped)
        src.skipped.clear()
    dst.records += src.records
    src.records = 0


def read_alerts(paths: Iterable[str] | Inputs, tenant: str, host: str | None = None, fmt: str | None = None, *,
                received_at: datetime | None = None) -> NormalizeResult:
    """Every alert of the files, in event-time order (ties in file and record order), with the dead letters,
    skips and record count: for callers that want one set at once (training, benches, tests)."""
    out = NormalizeResult()
    for chunk in AlertSource(paths, tenant, host, fmt, received_at=received_at):
        out.alerts.extend(chunk.alerts)
        _move(chunk, out)
    out.alerts.sort(key=lambda a: a.time)  # in order already unless some came late
    return out
