"""Read records from files, directories (recursive), `.gz` files and stdin, with per-file format detection."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pipeline.normalize.base import Origin, RawRecord
from pipeline.normalize.registry import Detector, get, ordered

WHOLE_FILE_MAX = 50_000_000
_SKIP_NAMES = {"SCENARIO.md", "README.md", "labels.jsonl"}


def expand(paths: list[str]) -> list[str]:
    """Files named or found under the named directories (sorted, hidden files and docs left out)."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(os.path.join(root, f) for f in sorted(files)
                           if not f.startswith(".") and f not in _SKIP_NAMES)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise FileNotFoundError(p)
    return out


def _open_text(path: str) -> io.TextIOBase:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="surrogateescape")
    return open(path, encoding="utf-8", errors="surrogateescape", newline="")


def _whole_file_format(head: str) -> str | None:
    for cls in ordered():
        if cls.whole_file:
            try:
                if cls().sniff(head):
                    return cls.name
            except Exception:
                continue
    return None


def read_records(path: str, tenant_id: str, host: str | None, received_at: datetime,
                 forced_format: str | None = None, detector: Detector | None = None
                 ) -> Iterator[tuple[RawRecord, str | None]]:
    """(record, format hint) pairs of one file. The hint is the forced format, or the format detected on the
    file's first non-blank record; stdin is detected record by record. Whole-document formats (AIDE's JSON
    report) come as one record."""
    detector = detector or Detector()
    name = "<stdin>" if path == "-" else str(Path(path))
    with _open_text(path) as fh:
        head = ""
        if path != "-":
            head = fh.read(4096)
            if forced_format is not None:
                whole = forced_format if get(forced_format).whole_file else None
            else:
                whole = _whole_file_format(head)
            if whole is not None:
                text = head + fh.read(WHOLE_FILE_MAX)
                yield RawRecord(text, tenant_id, received_at, host, Origin(file=name, line=1)), whole
                return
        lines = itertools.chain(io.StringIO(head + fh.readline(), newline=""), fh) if head else fh
        hint = forced_format
        for n, line in enumerate(lines, 1):
            line = line.rstrip("\r\n")
            if hint is None and path != "-" and line.strip():
                hint = detector.detect(line)
            yield RawRecord(line, tenant_id, received_at, host, Origin(file=name, line=n)), hint
