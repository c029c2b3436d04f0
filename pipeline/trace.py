"""`mdr trace`: what became of a raw alert, from the outputs of `mdr replay` (fates.jsonl, incidents.jsonl).

An alert is found by its alert id or by the product's own record id (a ModSecurity transaction id, an event id).
Its fate (`pipeline.schema.Fate`) is exactly one of:

- in incident X (a representative kept and correlated; an incident fused into another is followed to it);
- kept, in no incident (a representative that matched no use case that opens one);
- suppressed, with its score, threshold and model (judged on its own when it was a duplicate);
- a duplicate (or another log's view) of alert Y, followed by Y's fate;
- a dead letter: the core failed on it (the stage; its raw record is in dlq.jsonl).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from pipeline.schema import Fate, Incident, decode_incident

_fate_decoder = msgspec.json.Decoder(Fate)


@dataclass(slots=True)
class Outputs:
    """The replay outputs trace reads: fates by alert id and record id, incidents by alert id."""

    fates: dict[str, Fate] = field(default_factory=dict)
    by_record: dict[str, list[str]] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    by_alert: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: str | Path) -> Outputs:
        d = Path(out_dir)
        o = cls()
        f = d / "fates.jsonl"
        if not f.exists():
            raise FileNotFoundError(f"{f}: not an mdr replay output directory (no fates.jsonl)")
        for line in _lines(f):
            fate = _fate_decoder.decode(line)
            o.fates[fate.alert_id] = fate
            if fate.record_id:
                o.by_record.setdefault(fate.record_id, []).append(fate.alert_id)
        for line in _lines(d / "incidents.jsonl"):
            inc = decode_incident(line)
            o.incidents[inc.incident_id] = inc
            for aid in inc.alert_ids:
                o.by_alert.setdefault(aid, []).append(inc.incident_id)
        return o


def _lines(path: Path) -> Iterable[bytes]:
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                yield line


def _survivor(o: Outputs, incident_id: str) -> Incident:
    inc = o.incidents[incident_id]
    seen = {incident_id}
    while inc.merged_into and inc.merged_into in o.incidents and inc.merged_into not in seen:
        seen.add(inc.merged_into)
        inc = o.incidents[inc.merged_into]
    return inc


def fate_of(o: Outputs, alert_id: str) -> list[dict[str, Any]]:
    """The chain of steps from an alert to its final fate (the last step is final)."""
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    aid: str | None = alert_id
    while aid is not None and aid not in seen:
        seen.add(aid)
        f = o.fates.get(aid)
        if f is None:
            chain.append({"alert_id": aid, "fate": "unknown", "text": f"alert {aid}: not in these outputs"})
            break
        step: dict[str, Any] = {**msgspec.to_builtins(f)}
        if f.fate in ("duplicate", "same_event"):
            step["text"] = (f"alert {aid}: {'duplicate' if f.fate == 'duplicate' else 'another log of the event'} "
                            f"of alert {f.of}")
            chain.append(step)
            aid = f.of
            continue
        if f.fate == "dead_letter":
            step["text"] = (f"alert {aid}: dead letter, the core failed in stage {f.stage} (see dlq.jsonl)"
                            + (f"; it was a duplicate of alert {f.of}" if f.of else ""))
        elif f.fate == "suppressed":
            step["text"] = (f"alert {aid}: suppressed as noise, P(attack) {f.score:.4f} < threshold "
                            f"{f.threshold:.4f}, model {f.model_version}"
                            + (f" (judged on its own; merged into suppressed alert {f.of})" if f.judged_alone else ""))
        else:
            incs = sorted({_survivor(o, i).incident_id for i in o.by_alert.get(aid, [])})
            step["incidents"] = [{"incident_id": i, "title": o.incidents[i].title,
                                  "priority": o.incidents[i].priority} for i in incs]
            if incs:
                step["fate"] = "incident"
                step["text"] = f"alert {aid}: in incident " + ", ".join(
                    f"{i} ({o.incidents[i].priority} {o.incidents[i].title})" for i in incs)
            else:
                step["fate"] = "kept"
                step["text"] = f"alert {aid}: kept, in no incident (it matched no use case that opens one)"
            if f.judged_alone:
                step["text"] += " (a duplicate of a suppressed alert, judged on its own)"
        chain.append(step)
        break
    return chain


def trace(out_dir: str | Path, ref: str, outputs: Outputs | None = None) -> dict[str, list[dict[str, Any]]]:
    """Alert id or record id -> for each matching alert, its chain of fates."""
    o = outputs or Outputs.load(out_dir)
    ids = [ref] if ref in o.fates else o.by_record.get(ref, [])
    return {aid: fate_of(o, aid) for aid in ids}
