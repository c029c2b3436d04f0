"""Read records from files, directories (recursive), `.gz` files and stdin, with per-file format detection.

Input files may be hostile, so reading is bounded and never stops a run:

- Directories are walked in name order (a directory's files, then its subdirectories). Symbolic links are
  followed, and each directory and file is read once: a link back to a directory on the current path is a
  loop, a second way to reach a directory or file already read is a duplicate. What is not read is a
  `SkippedPath` with its reason (hidden, documentation, dangling link, link loop, duplicate, special file,
  unreadable). FIFOs, sockets and devices inside a directory are skipped, since reading one can block
  forever; a path named explicitly (`mdr replay <(zcat day.gz)`) is read whatever its type.
- A line (or whole-file document) over `Limits.record_bytes` is never held whole: its record carries a
  `ReadProblem` with the first bytes, the length and the sha256 of the whole line (a dead letter
  `oversized`), and reading goes on with the next line.
- A `.gz` file stops after `Limits.decompressed(compressed size)` decompressed bytes, with a dead letter
  `decompression_limit` (a gzip bomb expands about 1000:1; real logs 5-50:1).
- A file that cannot be opened, or whose read fails half-way (a truncated gzip, an I/O error), ends with a
  dead letter `read_error` at the line reached.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from pipeline.normalize.base import Origin, RawRecord, ReadProblem
from pipeline.normalize.registry import Detector, get, ordered
from pipeline.normalize.stage import MAX_RECORD_BYTES, oversized, utf8_prefix

HEAD_BYTES = 4096
_SKIP_NAMES = {"SCENARIO.md", "README.md", "labels.jsonl"}
_SCAN_CHUNK = 1 << 20
_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one input file: the record size, and the decompressed size of a `.gz` file (the larger of
    `expansion_floor` and `expansion_ratio` times its compressed size)."""

    record_bytes: int = MAX_RECORD_BYTES
    expansion_ratio: int = 100
    expansion_floor: int = 8 << 20

    def decompressed(self, compressed: int) -> int:
        return max(self.expansion_floor, self.expansion_ratio * compressed)


LIMITS = Limits()


# ---- which files ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SkippedPath:
    path: str
    reason: str  # hidden | documentation | dangling link | link loop | duplicate | special file | unreadable
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


@dataclass(slots=True)
class Inputs:
    """The files to read, in order, with their sizes; and the paths under the named directories left out."""

    files: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    skipped: list[SkippedPath] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


class _Walk:
    def __init__(self) -> None:
        self.out = Inputs()
        self.seen_dirs: dict[tuple[int, int], str] = {}
        self.seen_files: dict[tuple[int, int], str] = {}

    def named(self, p: str) -> None:
        """A path given by the user: a directory is walked, anything else is read (FileNotFoundError, or the
        OSError of a link loop, when it cannot be)."""
        if p == "-":
            self.out.files.append(p)
            return
        st = os.stat(p)
        if stat.S_ISDIR(st.st_mode):
            self.directory(p, st, ())
        else:
            self.file(p, st)

    def file(self, p: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            self.skip(p, "duplicate", f"same file as {self.seen_files[key]}")
            return
        self.seen_files[key] = p
        self.out.files.append(p)
        self.out.sizes[p] = st.st_size if stat.S_ISREG(st.st_mode) else 0

    def directory(self, d: str, st: os.stat_result, ancestors: tuple[tuple[int, int], ...]) -> None:
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            self.skip(d, "link loop", "leads back to a directory above it")
            return
        if key in self.seen_dirs:
            self.skip(d, "duplicate", f"same directory as {self.seen_dirs[key]}")
            return
        self.seen_dirs[key] = d
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            self.skip(d, "unreadable", err.strerror or str(err))
            return
        subdirs: list[tuple[str, os.stat_result]] = []
        for e in entries:
            if e.name.startswith("."):
                self.skip(e.path, "hidden")
                continue
            try:
                est = os.stat(e.path)  # follows links
            except OSError as err:
                if not e.is_symlink():
                    self.skip(e.path, "unreadable", err.strerror or str(err))
                elif err.errno == errno.ELOOP:
                    self.skip(e.path, "link loop", f"-> {os.readlink(e.path)}")
                else:
                    self.skip(e.path, "dangling link", f"-> {os.readlink(e.path)}")
                continue
            if stat.S_ISDIR(est.st_mode):
                subdirs.append((e.path, est))
            elif not stat.S_ISREG(est.st_mode):
                self.skip(e.path, "special file", _kind(est.st_mode))
            elif e.name in _SKIP_NAMES:
                self.skip(e.path, "documentation")
            else:
                self.file(e.path, est)
        for path, est in subdirs:
            self.directory(path, est, (*ancestors, key))

    def skip(self, p: str, reason: str, detail: str = "") -> None:
        self.out.skipped.append(SkippedPath(p, reason, detail))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "not a regular file"


def walk(paths: list[str]) -> Inputs:
    """The files named or found under the named directories, and what was left out (see the module doc).
    A named path that does not exist raises FileNotFoundError; one that cannot be resolved, OSError."""
    w = _Walk()
    for p in paths:
        w.named(p)
    return w.out


def expand(paths: list[str]) -> list[str]:
    """The files `walk` finds (for callers that do not report what it leaves out)."""
    return walk(paths).files


# ---- reading one file ----------------------------------------------------------------------------------
class _Bomb(Exception):
    """The decompressed size passed the file's limit (`prefix`: the start of the record being read)."""

    def __init__(self, prefix: bytes = b""):
        super().__init__()
        self.prefix = prefix


class _Lines:
    """Lines of a binary stream, each at most `limit` bytes, counting the bytes read against `cap`."""

    def __init__(self, fh: BinaryIO, limit: int, cap: int | None):
        self.fh, self.limit, self.cap = fh, limit, cap
        self.read = 0

    def count(self, n: int, record: bytes) -> None:
        """Add `n` bytes read; past the cap, _Bomb with the start of `record` (the record being read)."""
        self.read += n
        if self.cap is not None and self.read > self.cap:
            raise _Bomb(utf8_prefix(record))

    def __iter__(self) -> Iterator[bytes | ReadProblem]:
        """Each line without its line ending, or an `oversized` ReadProblem for a line over the limit."""
        readline, want, limit = self.fh.readline, self.limit + 2, self.limit  # room for "\r\n"
        while chunk := readline(want):
            self.count(len(chunk), chunk)
            if len(chunk) == want and chunk[-1:] != b"\n":
                yield self.rest_of_line(chunk)
                continue
            line = chunk.rstrip(b"\r\n")  # the last line may have no line ending
            yield line if len(line) <= limit else oversized(line, limit)

    def rest_of_line(self, first: bytes) -> ReadProblem:
        """Read to the end of an over-long line, keeping only its first bytes, length and hash."""
        h, length, chunk = hashlib.sha256(first), len(first), first
        while chunk[-1:] != b"\n" and (chunk := self.fh.readline(_SCAN_CHUNK)):
            self.count(len(chunk), first)
            body = chunk.rstrip(b"\r\n") if chunk[-1:] == b"\n" else chunk
            h.update(body)
            length += len(body)
        return ReadProblem("oversized", f"{length} bytes > {self.limit}", utf8_prefix(first), length,
                           h.hexdigest())

    def document(self) -> bytes | ReadProblem:
        """The whole stream as one record, or `oversized`."""
        data = self.fh.read(self.limit + 1)
        self.count(len(data), data)
        if len(data) <= self.limit:
            return data
        h, length = hashlib.sha256(data), len(data)
        while chunk := self.fh.read(_SCAN_CHUNK):
            self.count(len(chunk), data)
            h.update(chunk)
            length += len(chunk)
        return ReadProblem("oversized", f"{length} bytes > {self.limit}", utf8_prefix(data), length,
                           h.hexdigest())


def _open(path: str, limits: Limits) -> tuple[contextlib.AbstractContextManager[BinaryIO], int | None]:
    """The binary stream of a path (stdin for `-`, not closed after) and its decompressed-size cap."""
    if path == "-":
        return contextlib.nullcontext(sys.stdin.buffer), None
    if path.endswith(".gz"):
        size = os.stat(path).st_size
        return gzip.open(path, "rb"), limits.decompressed(size)  # type: ignore[return-value]  # GzipFile is a binary stream
    return open(path, "rb"), None


def _head(fh: BinaryIO) -> bytes:
    """The first bytes of a file, left unread (the stream rewinds, or is peeked when it cannot)."""
    if fh.seekable():
        head = fh.read(HEAD_BYTES)
        fh.seek(0)
        return head
    peek = getattr(fh, "peek", None)
    return peek(HEAD_BYTES)[:HEAD_BYTES] if peek is not None else b""


def _whole_file_format(head: str) -> str | None:
    for cls in ordered():
        if cls.whole_file:
            try:
                if cls().sniff(head):
                    return cls.name
            except Exception:
                continue
    return None


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def read_records(path: str, tenant_id: str, host: str | None, received_at: datetime,
                 forced_format: str | None = None, detector: Detector | None = None, limits: Limits = LIMITS
                 ) -> Iterator[tuple[RawRecord, str | None]]:
    """(record, format hint) pairs of one file. The hint is the forced format, or the format detected on the
    file's first non-blank record; stdin is detected record by record. Whole-document formats (AIDE's JSON
    report) come as one record. What cannot be read whole comes as a record with a `problem` (see the module
    docstring); this never raises for a bad file."""
    detector = detector or Detector()
    name = "<stdin>" if path == "-" else str(Path(path))
    hint = forced_format
    n = 0

    def record(text: str, problem: ReadProblem | None = None) -> RawRecord:
        return RawRecord(text, tenant_id, received_at, host, Origin(file=name, line=n), problem)

    try:
        opened, cap = _open(path, limits)
        with opened as fh:
            lines = _Lines(fh, limits.record_bytes, cap)
            try:
                if path != "-":
                    head = _text(_head(fh))
                    whole = (forced_format if get(forced_format).whole_file else None) if forced_format \
                        else _whole_file_format(head)
                    if whole is not None:
                        n = 1
                        doc = lines.document()
                        yield (record(_text(doc)) if isinstance(doc, bytes) else record("", doc)), whole
                        return
                for line in lines:
                    n += 1
                    if isinstance(line, ReadProblem):
                        yield record("", line), hint
                        continue
                    text = _text(line)
                    if hint is None and path != "-" and text.strip():
                        hint = detector.detect(text)
                    yield record(text), hint
            except _Bomb as bomb:
                n += 1
                yield record("", ReadProblem(
                    "decompression_limit", f"more than {cap} bytes decompressed (limit: {limits.expansion_ratio}x "
                    f"the compressed size, at least {limits.expansion_floor}); the rest of the file was not read",
                    bomb.prefix)), hint
    except _READ_ERRORS as e:
        n += 1
        detail = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
        yield record("", ReadProblem("read_error", f"{detail}; the rest of the file was not read")), hint
