"""File helpers shared by the context loaders: located errors, line-aware YAML, CSV rows with line numbers.

Every problem in a context file is reported as `file:line: field: message`; a file with problems is rejected
as a whole (`ContextFileError`) so the caller keeps its last good set.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import yaml

from pipeline.safeyaml import SafeLoader
from pipeline.safeyaml import load as safe_load

MAX_SHOWN = 20


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ContextFileError(ValueError):
    """A context file (assets, intel, escort calendar) was rejected; `problems` says where and why."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = [str(p) for p in problems[:MAX_SHOWN]]
        if len(problems) > MAX_SHOWN:
            shown.append(f"... and {len(problems) - MAX_SHOWN} more problems")
        super().__init__("\n".join(shown))


class Collector:
    """Collects problems of one file; `check()` raises when there are any."""

    def __init__(self, file: str | Path):
        self.file = Path(file).name
        self.problems: list[Problem] = []

    def add(self, line: int, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, field, message))

    def check(self) -> None:
        if self.problems:
            raise ContextFileError(self.problems)


class LDict(dict):
    """A YAML mapping that remembers its line and each key's line (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class LList(list):
    """A YAML sequence that remembers its line and each item's line (1-based)."""

    line: int = 0
    lines: list[int]


class _Loader(SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> LDict:
    loader.flatten_mapping(node)
    d = LDict()
    d.line, d.lines = node.start_mark.line + 1, {}
    for k_node, v_node in node.value:
        k = loader.construct_object(k_node, deep=True)
        d[k] = loader.construct_object(v_node, deep=True)
        d.lines[k] = k_node.start_mark.line + 1
    return d


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> LList:
    lst = LList(loader.construct_object(n, deep=True) for n in node.value)
    lst.line, lst.lines = node.start_mark.line + 1, [n.start_mark.line + 1 for n in node.value]
    return lst


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def load_yaml(text: str, errors: Collector) -> Any:
    """Parse YAML keeping line numbers (LDict / LList); a syntax error or a file over the safe loader's limits
    (`pipeline.safeyaml`) is recorded, giving None."""
    try:
        return safe_load(text, _Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        errors.add(mark.line + 1 if mark else 0, "", f"not valid YAML: {getattr(e, 'problem', None) or e}")
        return None


def key_line(d: Any, key: str) -> int:
    return d.lines.get(key, d.line) if isinstance(d, LDict) else 0


def item_line(lst: Any, i: int, default: int = 0) -> int:
    return lst.lines[i] if isinstance(lst, LList) and i < len(lst.lines) else default


def csv_rows(lines: str | Iterable[str], errors: Collector, required: tuple[str, ...]
             ) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) of CSV text (or an open file) with a header; blank rows and `#` rows are left out."""
    reader = csv.reader(io.StringIO(lines, newline="") if isinstance(lines, str) else lines)
    header: list[str] | None = None
    for row in reader:
        if not row or not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            missing = [c for c in required if c not in header]
            if missing:
                errors.add(reader.line_num, "header", f"missing column(s): {', '.join(missing)}")
                return
            continue
        if len(row) > len(header):
            errors.add(reader.line_num, "", f"{len(row)} cells but the header has {len(header)} columns")
            continue
        yield reader.line_num, {h: c.strip() for h, c in zip(header, row, strict=False)}


def split_list(v: Any) -> list[str]:
    """A list field: a YAML list, or a string separated by `;`, `|` or `,`."""
    if v is None or v == "":
        return []
    if isinstance(v, list):
        return [str(x).strip() for x in v if str(x).strip()]
    s = str(v)
    for sep in (";", "|", ","):
        if sep in s:
            return [x.strip() for x in s.split(sep) if x.strip()]
    return [s.strip()]


def parse_time(v: Any, *, end: bool = False, tz: Any = UTC) -> datetime:
    """ISO 8601 date or datetime (YAML may hand over date/datetime objects) -> aware datetime.

    Naive values are taken in `tz`; a bare date means its start, or with `end=True` the end of that day.
    Raises ValueError.
    """
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime.combine(v, time.max if end else time.min)
    else:
        s = str(v).strip()
        if not s:
            raise ValueError("empty time")
        if s.isdigit():
            return datetime.fromtimestamp(int(s), UTC)
        if len(s) == 10:
            dt = datetime.combine(date.fromisoformat(s), time.max if end else time.min)
        else:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt


def read_text(path: str | Path, errors: Collector) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        errors.add(0, "", f"cannot read: {e}")
        return None
