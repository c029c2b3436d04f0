"""The model registry: which noise model suppresses (active), which one only scores (shadow), and the gate
between them.

A registry is a directory:

    registry.json        {"active": version | null, "shadow": version | null, "events": [...]}
    <version>/           a model directory (manifest.json, model.skops)
    <version>/shadow.jsonl   what the model decided while in shadow: one line per alert it scored
                         {"alert_id", "tenant_id", "score", "threshold", "suppress", "at"}

`mdr model retrain` adds a model and puts it in shadow; `mdr replay --model REGISTRY` and the worker run the
active model and, beside it, the shadow model (`Shadowed`): the shadow scores every alert the core classifies and
logs its decisions, and suppresses nothing. `promote` moves the shadow model to active only through the gate
(`gate`): over the last N alert verdicts whose alerts it scored, its false-negative rate (verdict attacks it would
have suppressed) must be at or below the target, with at least `MIN_GATE_ATTACKS` attacks among them; a model
this build cannot load (another feature schema) is never promoted. The worker watches registry.json and loads a
newly promoted model without a restart (one it cannot load leaves the running model in place). registry.json is
replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.core.hooks import Classifier
from pipeline.errors import UserError
from pipeline.rules.usecase import UseCase
from pipeline.schema import Alert, Suppressed

REGISTRY_FILE = "registry.json"
SHADOW_LOG = "shadow.jsonl"
DEFAULT_LAST_N = 1000
DEFAULT_MAX_FN = 0.005
MIN_GATE_ATTACKS = 20


class RegistryError(UserError):
    """Unknown model, nothing to promote, or a gate that refuses (`mdr` reports it as one line, exit status 1)."""


def is_registry(path: str | Path) -> bool:
    return (Path(path) / REGISTRY_FILE).exists()


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def create(cls, root: str | Path) -> Registry:
        r = cls(root)
        r.root.mkdir(parents=True, exist_ok=True)
        if not (r.root / REGISTRY_FILE).exists():
            r._write({"active": None, "shadow": None, "events": []})
        return r

    # ---- state -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / REGISTRY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RegistryError(f"cannot read {self.root / REGISTRY_FILE}: {e}") from None

    def _write(self, st: dict[str, Any]) -> None:
        tmp = self.root / f".{REGISTRY_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(st, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.root / REGISTRY_FILE)

    def _event(self, st: dict[str, Any], kind: str, version: str, **data: Any) -> None:
        st["events"].append({"at": datetime.now(UTC).isoformat(timespec="seconds"), "event": kind,
                             "version": version, **data})

    @property
    def active(self) -> str | None:
        return self.state().get("active")

    @property
    def shadow(self) -> str | None:
        return self.state().get("shadow")

    def path(self, version: str) -> Path:
        p = self.root / version
        if not (p / "manifest.json").exists():
            raise RegistryError(f"no model {version!r} in {self.root}")
        return p

    def load(self, version: str, state: Any = None, shadow: bool = False) -> Any:
        """The registry's model `version` as a NoiseClassifier (ModelError when this build cannot run it; for
        another feature schema, the message says how to retrain it into this registry)."""
        from pipeline.classify.model import NoiseClassifier, SchemaMismatch

        try:
            return NoiseClassifier.load(self.path(version), state, shadow)
        except SchemaMismatch as e:  # an active model this build cannot run cannot shadow a new one: no gate
            force = " --force" if self.state().get("active") == version else ""
            raise SchemaMismatch(e.manifest, e.found, f"mdr model retrain --registry {self.root}, then mdr model "
                                                      f"promote --registry {self.root}{force}") from None

    # ---- changes -----------------------------------------------------------------------------------
    def add(self, model_dir: str | Path, shadow: bool = True) -> str:
        """Copy a saved model directory into the registry (as the shadow model unless `shadow` is false)."""
        manifest = json.loads((Path(model_dir) / "manifest.json").read_text(encoding="utf-8"))
        version = str(manifest["model_version"])
        dest = self.root / version
        if not dest.exists():
            shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns(SHADOW_LOG))
        st = self.state()
        self._event(st, "added", version)
        if shadow and st.get("active") != version:
            st["shadow"] = version
            self._event(st, "shadow", version)
        self._write(st)
        return version

    def promote(self, version: str | None = None, report: dict[str, Any] | None = None,
                force: bool = False) -> str:
        """Make `version` (default: the shadow model) active. Without `force`, `report` (from `gate`) must
        have passed. Even with `force`, a model this build cannot load (another feature schema, a damaged file)
        is refused (ModelError) and the active model stays."""
        st = self.state()
        version = version or st.get("shadow")
        if not version:
            raise RegistryError("no shadow model to promote")
        self.load(version)  # a model this build cannot run (another feature schema) is never made active
        if not force and not (report and report.get("passed")):
            raise RegistryError(f"the promotion gate did not pass for {version}: "
                                f"{(report or {}).get('reason', 'no gate report')}")
        previous = st.get("active")
        st["active"] = version
        if st.get("shadow") == version:
            st["shadow"] = None
        self._event(st, "promoted", version, previous=previous, forced=force,
                    gate={k: v for k, v in (report or {}).items() if k != "alerts"})
        self._write(st)
        return version

    def shadow_log(self, version: str) -> Path:
        return self.root / version / SHADOW_LOG


def append_shadow(path: Path, decisions: Iterable[dict[str, Any]]) -> int:
    """Append shadow decisions (JSON lines) to a model's shadow log."""
    lines = [json.dumps(d, separators=(",", ":")) + "\n" for d in decisions]
    if lines:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(lines))
    return len(lines)


def read_shadow(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(tenant, alert id) -> the shadow model's last decision for it."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    d = json.loads(line)
                    out[(d["tenant_id"], d["alert_id"])] = d
    return out


def gate(decisions: dict[tuple[str, str], dict[str, Any]], verdicts: Sequence[tuple[str, str, int]],
         last_n: int = DEFAULT_LAST_N, max_fn: float = DEFAULT_MAX_FN, min_attacks: int = MIN_GATE_ATTACKS
         ) -> dict[str, Any]:
    """The promotion gate. `verdicts`: (tenant, alert id, label 1 attack / 0 benign), oldest first; the last
    `last_n` of those whose alert the shadow model scored are judged. Passes when the FN rate <= `max_fn` and
    there were at least `min_attacks` attacks among them."""
    judged = [(t, a, lab) for t, a, lab in verdicts if (t, a) in decisions][-last_n:]
    att = [d for t, a, lab in judged if lab == 1 and (d := decisions[(t, a)])]
    ben = [d for t, a, lab in judged if lab == 0 and (d := decisions[(t, a)])]
    fn = sum(1 for d in att if d["suppress"])
    nr = sum(1 for d in ben if d["suppress"])
    fn_rate = fn / len(att) if att else 0.0
    out: dict[str, Any] = {
        "verdicts_judged": len(judged), "attacks": len(att), "benign": len(ben), "false_negatives": fn,
        "fn_rate": fn_rate, "suppressed_benign": nr, "noise_reduction": nr / len(ben) if ben else 0.0,
        "last_n": last_n, "max_fn": max_fn, "min_attacks": min_attacks}
    if len(att) < min_attacks:
        out.update(passed=False, reason=f"only {len(att)} attack verdicts on alerts it scored (need {min_attacks})")
    elif fn_rate > max_fn:
        out.update(passed=False, reason=f"FN rate {fn_rate:.2%} above {max_fn:.2%}")
    else:
        out.update(passed=True, reason=f"FN rate {fn_rate:.2%} <= {max_fn:.2%} on {len(att)} attack verdicts")
    return out


@dataclass(slots=True)
class Shadowed(Classifier):
    """The core's classifier hook with a shadow beside the active model: the active model decides; the shadow
    (a NoiseClassifier with shadow=True) scores the same alerts and logs what it would have done."""

    active: Any  # NoiseClassifier | None
    shadow: Any  # NoiseClassifier (shadow=True)
    log_path: Path | None = None

    def decide(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        out = self.active.decide(alerts, matched) if self.active is not None else [None] * len(alerts)
        self._shadow(alerts, matched, None)
        return out

    def judge_alone(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        out = self.active.judge_alone(alerts, matched) if self.active is not None else [None] * len(alerts)
        self._shadow(alerts, matched, [False] * len(alerts))
        return out

    def _shadow(self, alerts: list[Alert], matched: list[list[UseCase]], record: list[bool] | None) -> None:
        """The shadow model's decisions on the same alerts, appended to its log."""
        p, _ = self.shadow.assess(alerts, matched, record)
        would = {id(s.alert): s for s in self.shadow.shadow_log}
        self.shadow.shadow_log.clear()
        rows = []
        for a, s in zip(alerts, p.tolist(), strict=True):
            w = would.get(id(a))
            known, novel = self.shadow.thresholds(a.tenant_id)
            thr = known if self.shadow.scope.rules_known(a) else novel
            rows.append({"alert_id": a.alert_id, "tenant_id": a.tenant_id, "score": round(s, 6),
                         "threshold": w.threshold if w else (thr if thr > float("-inf") else None),
                         "suppress": w is not None,
                         "model_version": self.shadow.version, "at": a.time.isoformat()})
        if self.log_path is not None:
            append_shadow(self.log_path, rows)

    @property
    def dedup_window(self) -> float | None:
        m = self.active if self.active is not None else self.shadow
        return m.dedup_window

    def __copy__(self) -> Shadowed:
        """A copy for another partition: copies of both models (each then `reset` to its own state)."""
        import copy

        return Shadowed(copy.copy(self.active), copy.copy(self.shadow), self.log_path)

    def reset(self, state: Any = None) -> None:
        if self.active is not None:
            self.active.reset(state)
        self.shadow.reset()


def load_classifier(path: str | Path, state: Any = None) -> Any:
    """The core's classifier for `--model PATH`: a model directory, or a registry (its active model, with its
    shadow model beside it when there is one). None when a registry has neither."""
    from pipeline.classify.model import NoiseClassifier

    if not is_registry(path):
        return NoiseClassifier.load(path, state)
    reg = Registry(path)
    st = reg.state()
    active = reg.load(st["active"], state) if st.get("active") else None
    if st.get("shadow"):
        shadow = reg.load(st["shadow"], shadow=True)
        return Shadowed(active, shadow, reg.shadow_log(st["shadow"]))
    return active
