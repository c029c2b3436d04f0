"""The published JSON Schemas match the models, and real outputs validate against them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec

from pipeline import schema_export
from tests.lab import LabReplay

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_are_current() -> None:
    for name in schema_export.MODELS:
        committed = (ROOT / "schemas" / f"{name}.schema.json").read_text()
        assert committed == schema_export.render(name), f"run `python -m pipeline.schema_export` ({name} drifted)"


def test_real_outputs_validate(lab1_replay: LabReplay) -> None:
    res = lab1_replay.result
    alert_v = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas/alert.schema.json").read_text()))
    inc_v = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas/incident.schema.json").read_text()))
    for a in res.alerts[::25]:
        alert_v.validate(msgspec.to_builtins(a))
    for i in res.incidents.values():
        inc_v.validate(msgspec.to_builtins(i))
    bad = dict(msgspec.to_builtins(res.alerts[0]))
    del bad["tenant_id"]
    assert not alert_v.is_valid(bad)
