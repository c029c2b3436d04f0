"""Shared helpers for normalizer tests; import them with `from .conftest import run_file, ...`.

- `fixture(rel)`, `shared(rel)`: project fixture paths; /work/shared paths (skip when absent).
- `run_file(path, fmt=None)`: a whole file via `read_records` + `NormalizeStage` (+ flush) -> NormalizeResult.
- `run_text(fmt, text)`: one record through the stage -> NormalizeResult (dead letters, never raises).
- `normalize_one(fmt, text)`: one record straight through the normalizer (BadRecord / Skipped propagate).
- `check_contract(fmt, text)`: asserts "only alerts, Skipped or BadRecord" for any input.
- `mutated(lines)`: hypothesis strategy of real records with random mutations (fuzz tests).
- `json_mutated(lines)`: the same for JSON records, mutating the parsed tree (values swapped, keys dropped).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import orjson
import pytest
from hypothesis import strategies as st

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped
from pipeline.normalize.reader import read_records
from pipeline.normalize.registry import Detector, get
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.schema import Alert, encode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHARED = Path(os.environ.get("MDR_SHARED", Path(__file__).resolve().parents[3] / "shared"))
TENANT = "shop"
RECEIVED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # after every fixture record (the event-time policy)


def fixture(rel: str) -> Path:
    """A file under tests/fixtures (must exist: fixtures are part of the project)."""
    p = FIXTURES / rel
    assert p.exists(), f"missing fixture {p}"
    return p


def shared(rel: str) -> Path:
    """A file under the shared data directory; skips the test when it is absent."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


def fixture_lines(rel: str) -> list[str]:
    """Non-blank lines of a fixture file."""
    return [ln for ln in fixture(rel).read_text(encoding="utf-8").splitlines() if ln.strip()]


def run_file(path: str | Path, fmt: str | None = None, tenant: str = TENANT, host: str | None = None,
             received_at: datetime = RECEIVED) -> NormalizeResult:
    """Normalize a whole file as `mdr replay` would: per-file detection unless `fmt` is forced, then flush."""
    stage = NormalizeStage(fmt)
    out = NormalizeResult()
    for rec, hint in read_records(str(path), tenant, host, received_at, forced_format=fmt):
        stage.process(rec, hint, out)
    stage.flush(out)
    return out


def record(text: str, tenant: str = TENANT, host: str | None = None,
           received_at: datetime = RECEIVED) -> RawRecord:
    return RawRecord(text, tenant, received_at, host)


def run_text(fmt: str, text: str, **kw) -> NormalizeResult:
    """One record through the stage with the format forced (dead letters are returned, never raised)."""
    stage = NormalizeStage(fmt)
    out = stage.process(record(text, **kw), fmt)
    stage.flush(out)
    return out


def normalizer(fmt: str) -> Normalizer:
    return get(fmt)()


def normalize_one(fmt: str, text: str, **kw) -> list[Alert]:
    """One record straight through a fresh normalizer; BadRecord / Skipped propagate to the test."""
    n = normalizer(fmt)
    try:
        out = n.normalize(record(text, **kw))
    except Skipped as s:  # stateful formats hold a record until its event is complete
        if s.reason != "buffered":
            raise
        out = []
    return out + n.flush()


def detect(text: str) -> str | None:
    """The format auto-detection picks for a record."""
    return Detector().detect(text)


def check_contract(fmt: str, text: str, n: Normalizer | None = None) -> list[Alert]:
    """Any input gives alerts (that encode and round-trip), Skipped or BadRecord — never another exception."""
    n = n or normalizer(fmt)
    try:
        alerts = n.normalize(record(text))
    except (BadRecord, Skipped):
        return []
    assert isinstance(alerts, list)
    for a in alerts:
        assert isinstance(a, Alert)
        assert a.time.tzinfo is not None and a.time.utcoffset().total_seconds() == 0
        assert a.raw == text
        msgspec.json.decode(encode(a))
    return alerts


def _mutate(text: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["truncate", "delete", "insert", "replace", "swap_token", "raw"]))
    n = len(text)
    if kind == "raw" or n == 0:
        return text
    i = data.draw(st.integers(0, n - 1))
    if kind == "truncate":
        return text[:i]
    if kind == "delete":
        j = data.draw(st.integers(i, min(n, i + 40)))
        return text[:i] + text[j:]
    junk = data.draw(st.text(max_size=12) | st.sampled_from(
        ['"', "{", "}", "[", "]", ":", ",", "null", "0", "-1", '""', "[]", "{}", " ", "\\", "1e999", "\x00"]))
    if kind == "insert":
        return text[:i] + junk + text[i:]
    if kind == "replace":
        j = data.draw(st.integers(i, min(n, i + 20)))
        return text[:i] + junk + text[j:]
    # swap_token: replace one JSON-ish value/word with another type
    toks = text.split('"')
    if len(toks) > 2:
        k = data.draw(st.integers(0, len(toks) - 1))
        toks[k] = junk
        return '"'.join(toks)
    return junk + text


def mutated(lines: list[str]) -> st.SearchStrategy[str]:
    """Real records with one to three random mutations each (and some unmodified)."""

    @st.composite
    def strat(draw: st.DrawFn) -> str:
        text = draw(st.sampled_from(lines))
        data = draw(st.data())
        for _ in range(draw(st.integers(1, 3))):
            text = _mutate(text, data)
        return text

    return strat()


_JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
                 | st.text(max_size=20))
_JSON = st.recursive(_JSON_SCALARS, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
    st.text(max_size=8), kids, max_size=3), max_leaves=6)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def json_mutated(lines: list[str]) -> st.SearchStrategy[str]:
    """Real JSON records with one to three nodes replaced by random JSON values or removed."""

    @st.composite
    def strat(draw: st.DrawFn) -> str:
        doc = orjson.loads(draw(st.sampled_from(lines)))
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(_paths(doc)))
            if not path:
                doc = draw(_JSON)
                continue
            parent = doc
            try:
                for k in path[:-1]:
                    parent = parent[k]
            except (KeyError, IndexError, TypeError):
                continue
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, (dict, list)):
                try:
                    parent[path[-1]] = draw(_JSON)
                except (IndexError, TypeError):
                    continue
        return orjson.dumps(doc).decode()

    return strat()
