"""Helpers shared by the cloud-product normalizer tests (test_cloud_*.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pipeline.normalize.base import BadRecord
from pipeline.schema import to_builtins

from .conftest import fixture, fixture_lines, normalize_one, run_file, run_text


def records(fmt: str) -> list[str]:
    """The documented example records of a cloud format (tests/fixtures/cloud/<fmt>/records.jsonl)."""
    return fixture_lines(f"cloud/{fmt}/records.jsonl")


def whole(fmt: str):
    """The whole fixture file through the stage with format detection (as `mdr replay` reads it)."""
    return run_file(fixture(f"cloud/{fmt}/records.jsonl"))


def golden(fmt: str, text: str, **kw: Any) -> dict[str, Any]:
    """The one alert of a record as plain data, defaults included; raw and alert id checked and dropped."""
    [a] = normalize_one(fmt, text, **kw)
    sev = {"label": a.severity.label, "score": a.severity.score}
    d = to_builtins(a) | {"action": a.action, "severity": sev}  # defaults, omitted by to_builtins
    assert (d.pop("raw"), len(d.pop("alert_id")), d.pop("tenant_id"), d.pop("received_at")) == (
        text, 32, "shop", "2026-11-25T12:00:00Z")
    return d


def edit(text: str, fn: Callable[[dict[str, Any]], Any]) -> str:
    """A JSON record changed by `fn` (which edits the decoded object in place)."""
    d = orjson.loads(text)
    fn(d)
    return orjson.dumps(d).decode()


def assert_bad(fmt: str, text: str, reason: str, field: str | None) -> None:
    """The record is a BadRecord naming `field`, and the stage turns it into that dead letter."""
    with pytest.raises(BadRecord) as e:
        normalize_one(fmt, text)
    assert (e.value.reason, e.value.field) == (reason, field), e.value.detail
    r = run_text(fmt, text)
    [dead] = r.dead
    assert (r.alerts, dead.reason, dead.field, dead.source, dead.raw) == ([], reason, field, fmt, text)
