"""The published JSON Schemas (`schemas/*.schema.json`) generated from the models in `pipeline.schema`.

`python -m pipeline.schema_export` rewrites them; a test fails when they drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from pipeline.schema import Alert, DeadLetter, Fate, Incident, Suppressed

OUT = Path(__file__).resolve().parent.parent / "schemas"
MODELS: dict[str, tuple[type, str]] = {
    "alert": (Alert, "A normalized security alert (aligned with OCSF Detection Finding, class 2004)."),
    "incident": (Incident, "An MDR incident: correlated alerts of one attack, prioritized P1-P5."),
    "dead_letter": (DeadLetter, "An input record or alert that could not be processed: reason, stage, origin."),
    "suppressed": (Suppressed, "An alert the noise classifier held back, with score and model version."),
    "fate": (Fate, "What the core did with one raw alert: representative, suppressed, duplicate, same event or "
                   "dead letter."),
}


def schema(name: str) -> dict[str, Any]:
    model, description = MODELS[name]
    s = msgspec.json.schema(model)
    s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    s["$id"] = f"https://mdr-pipeline.example/schemas/{name}.schema.json"
    s["title"] = model.__name__
    s["description"] = description
    return s


def render(name: str) -> str:
    return json.dumps(schema(name), indent=2, sort_keys=True) + "\n"


def write() -> list[Path]:
    OUT.mkdir(exist_ok=True)
    paths = []
    for name in MODELS:
        p = OUT / f"{name}.schema.json"
        p.write_text(render(name))
        paths.append(p)
    return paths


if __name__ == "__main__":  # pragma: no cover
    for p in write():
        print(p)
