"""The trained noise model on disk and the `NoiseClassifier` the core calls.

A model is a directory:

    manifest.json   model version and kind, feature schema (version, vocabulary, features used), training data
                    hash, split, metrics, threshold and target recall, library versions, sha256 of model.skops
    model.skops     the fitted estimator (a CalibratedClassifierCV), saved with skops; loading checks the sha256
                    and accepts only the sklearn types in `TRUSTED`

`NoiseClassifier.decide` scores a batch: features for every alert (the source history must see them all), one
`predict_proba` call, then an alert is suppressed when P(attack) is below its threshold, it looks like the training
data (`pipeline.classify.scope`: known product, features within the training range) and no guardrail keeps it
(`pipeline.classify.guardrails`). Its threshold: `threshold` when all its rules were seen in training, else the
stricter `threshold_novel` (`pipeline.classify.generalize`); a tenant may have its own pair (`tenants` in the
manifest, from that tenant's verdicts), and a tenant absent from the training data gets `threshold_novel` for
every alert (a new deployment). A model in *shadow* mode (`shadow=True`) scores and records what it would
have suppressed (`shadow_log`) but suppresses nothing. Per tenant it counts alerts, out-of-scope alerts, alerts
with unseen rules and a histogram of scores (`drift`, see `pipeline.classify.drift`).
Each `Suppressed` carries the score, the threshold, the model version and the
top `TOP_K` feature contributions (`pipeline.classify.explain`). Every `EXPIRE_EVERY` alerts, sources idle for a
day leave the state. The state (`ClassifierState`) can be handed in by a streaming worker (`state=`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from pipeline.classify.drift import TenantDrift
from pipeline.classify.explain import explainer_for
from pipeline.classify.features import FEATURE_VERSION, ClassifierState, FeatureExtractor, FeatureSchema, Vocabulary
from pipeline.classify.guardrails import keep_reason
from pipeline.classify.scope import Scope
from pipeline.errors import UsageError
from pipeline.rules.usecase import UseCase
from pipeline.schema import Alert, Suppressed

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
TOP_K = 5
EXPIRE_EVERY = 20_000  # alerts between sweeps of idle sources out of the state (never changes a result)
# Columns that describe an alert's rules and the product's per-family scores: for an alert whose rules the model
# never saw (a rule family new to it), values outside the training range there are expected, and the range check
# of the scope looks at the other columns only; the threshold for unseen rules was chosen for exactly that case.
FAMILY_PREFIXES = ("rule=", "cat=", "rule_sev=", "x:")
FAMILY_FEATURES = frozenset({"severity", "n_rules", "n_distinct_rules", "n_techniques", "min_paranoia_level",
                             "rule_rarity", "rule_rarity_max", "family_score_max", "families_scored",
                             "n_rule_families"})
RECORDED_MAX = 200_000  # alert ids remembered so that a re-decided alert is not recorded twice
TRUSTED = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)


def generic_columns(used: Sequence[str]) -> np.ndarray:
    """Per used feature: not one of a rule family's own columns (`FAMILY_PREFIXES`, `FAMILY_FEATURES`)."""
    return np.asarray([not n.startswith(FAMILY_PREFIXES) and n not in FAMILY_FEATURES for n in used], dtype=bool)


class ModelError(UsageError):
    """The model directory is missing, damaged or incompatible (`mdr` reports it as one line, exit status 2)."""


class SchemaMismatch(ModelError):
    """A model of another feature schema than this build's: the message names the manifest, both schemas and the
    command that retrains it (`hint`)."""

    def __init__(self, manifest: Path, found: str | None, hint: str):
        self.manifest, self.found = manifest, found
        super().__init__(f"{manifest}: the model has feature schema {found or 'unknown'}, this build reads feature "
                         f"schema {FEATURE_VERSION} only; retrain it: {hint}")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A model directory's manifest, checked to be of this build's feature schema before anything else of the
    model is read (`SchemaMismatch` otherwise)."""
    d = Path(path)
    try:
        manifest = json.loads((d / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {d / MANIFEST_FILE}: {e}") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{d / MANIFEST_FILE} is not a model manifest (a JSON object)")
    features = manifest.get("features")
    found = features.get("version") if isinstance(features, dict) else None
    if found != FEATURE_VERSION:
        td = manifest.get("training_data")
        dirs = td.get("dirs") if isinstance(td, dict) else None
        data = " ".join(f"--data {x}" for x in dirs) if isinstance(dirs, list) and dirs else "--data DIR"
        raise SchemaMismatch(d / MANIFEST_FILE, None if found is None else str(found),
                             f"mdr model train {data} --out {d} (or mdr model retrain from the analysts' verdicts)")
    return manifest


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class NoiseClassifier:
    """Suppresses alerts the model scores as noise, under the guardrails; implements
    `pipeline.core.hooks.Classifier`."""

    def __init__(self, estimator: Any, schema: FeatureSchema, used: Sequence[str], threshold: float,
                 scope: Scope, manifest: dict[str, Any], state: ClassifierState | None = None,
                 threshold_novel: float = float("-inf"), tenants: dict[str, dict[str, float]] | None = None,
                 shadow: bool = False):
        self.estimator = estimator
        self.schema = schema
        self.used = list(used)
        self.columns = np.asarray([schema.index[n] for n in self.used], dtype=np.int64)
        self.threshold = float(threshold)
        self.threshold_novel = float(threshold_novel)
        self.tenants = {t: {k: float(v) for k, v in d.items()} for t, d in (tenants or {}).items()}
        self.shadow = shadow
        known = manifest.get("training_data", {}).get("tenants")
        self.trained_tenants: frozenset[str] | None = frozenset(known) if known is not None else None
        self.shadow_log: list[Suppressed] = []  # what a shadow model would have suppressed (drained by callers)
        self.drift: dict[tuple[str, date], TenantDrift] = {}  # (tenant, event day) -> counts
        self.scope = scope
        self._generic = generic_columns(self.used)
        self.manifest = manifest
        self.version = str(manifest.get("model_version", "unsaved"))
        self.extractor = FeatureExtractor(schema, state)
        self.stats: Counter[str] = Counter()  # below threshold but kept: out_of_scope, guardrail
        self._explainer: Any = None
        self._since_expire = 0
        self._recorded: OrderedDict[str, None] = OrderedDict()  # alert ids already in the history (bounded)

    # ---- persistence -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, state: ClassifierState | None = None, shadow: bool = False
             ) -> NoiseClassifier:
        """Load a model directory (verifies the checksum, the trusted types and the feature schema version)."""
        d = Path(path)
        manifest = read_manifest(d)
        mfile = d / MODEL_FILE
        if not mfile.exists():
            raise ModelError(f"missing {mfile}")
        if sha256_file(mfile) != manifest.get("model_sha256"):
            raise ModelError(f"{mfile} does not match the checksum in its manifest")
        untrusted = sio.get_untrusted_types(file=mfile)
        unknown = sorted(set(untrusted) - set(TRUSTED))
        if unknown:
            raise ModelError(f"{mfile} holds types outside the allowlist: {unknown}")
        estimator = sio.load(mfile, trusted=untrusted)
        try:
            fs = manifest["features"]
            schema = FeatureSchema(Vocabulary(**fs["vocabulary"]), fs["version"])
            missing = [n for n in fs["used"] if n not in schema.index]
            if missing:
                raise ModelError(f"features unknown to this build: {missing[:5]}")
            scope = Scope.from_dict(manifest["scope"], fs["used"])
            return cls(estimator, schema, fs["used"], manifest["threshold"], scope, manifest, state,
                       _num(manifest.get("threshold_novel")), manifest.get("tenants"), shadow)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"{d / MANIFEST_FILE}: incomplete or incompatible manifest ({e!r})") from None

    def save(self, path: str | Path) -> Path:
        """Write model.skops and manifest.json (the model version is derived from the model's bytes)."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        sio.dump(self.estimator, d / MODEL_FILE)
        digest = sha256_file(d / MODEL_FILE)
        self.version = f"noise-{self.manifest.get('kind', 'model')}-{digest[:12]}"
        self.manifest.update(model_version=self.version, model_sha256=digest, threshold=self.threshold,
                             threshold_novel=_json_num(self.threshold_novel), tenants=self.tenants)
        self.manifest["features"] = {**self.schema.describe(), "used": self.used}
        self.manifest["scope"] = self.scope.to_dict(self.used)
        (d / MANIFEST_FILE).write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
        return d

    # ---- scoring -----------------------------------------------------------------------------------
    @property
    def dedup_window(self) -> float | None:
        """The core dedup window the source history was trained under (None: every alert classified)."""
        v = self.manifest.get("history_view", {}).get("dedup_window_s")
        return None if v is None else float(v)

    @property
    def base_estimator(self) -> Any:
        """The fitted model under the calibration (CalibratedClassifierCV with ensemble=False)."""
        return self.estimator.calibrated_classifiers_[0].estimator

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(attack) for feature rows (full schema width)."""
        return self.estimator.predict_proba(X[:, self.columns])[:, 1]

    def score(self, alerts: Sequence[Alert], record: Sequence[bool] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """(features, P(attack)) for a batch; updates the streaming state (see `FeatureExtractor.transform`)."""
        X = self.extractor.transform(alerts, record)
        return X, (self.predict(X) if len(alerts) else np.zeros(0))

    def contributions(self, X: np.ndarray, top: int = TOP_K) -> list[dict[str, float]]:
        """Top feature contributions (log-odds of attack) for each row, largest magnitude first."""
        if self._explainer is None:
            self._explainer = explainer_for(self.base_estimator)
        C = self._explainer.contributions(X[:, self.columns])
        if not len(C):
            return []
        top = min(top, C.shape[1])
        mag = -np.abs(C)
        idx = np.argpartition(mag, top - 1, axis=1)[:, :top]
        idx = np.take_along_axis(idx, np.argsort(np.take_along_axis(mag, idx, 1), axis=1, kind="stable"), 1)
        vals = np.round(np.take_along_axis(C, idx, 1), 4).tolist()
        names = self.used
        return [{names[j]: v for j, v in zip(ri, rv, strict=True) if v != 0.0}
                for ri, rv in zip(idx.tolist(), vals, strict=True)]

    def deployment_known(self, tenant: str) -> bool:
        """The model trained on this tenant's data or has a threshold of its own for it."""
        return tenant in self.tenants or self.trained_tenants is None or tenant in self.trained_tenants

    def thresholds(self, tenant: str) -> tuple[float, float]:
        """(threshold for alerts whose rules were all seen in training, threshold for the others) of a tenant.
        A tenant the model has neither trained on nor a threshold for is a new deployment: every one of its
        alerts is judged against the threshold for unseen rules (suppress nothing it is not sure of)."""
        t = self.tenants.get(tenant)
        if t is not None:
            return t.get("threshold", self.threshold), t.get("threshold_novel", self.threshold_novel)
        if self.trained_tenants is not None and tenant not in self.trained_tenants:
            return self.threshold_novel, self.threshold_novel
        return self.threshold, self.threshold_novel

    def assess(self, alerts: Sequence[Alert], matched: Sequence[Sequence[UseCase]],
               record: Sequence[bool] | None = None, why: list[str] | None = None
               ) -> tuple[np.ndarray, list[Suppressed | None]]:
        """(P(attack) of every alert, the decisions): what `decide` returns, with the scores. `why`, when given,
        gets one entry per alert: suppressed, score (at or above its threshold), out_of_scope or guardrail."""
        X, p = self.score(alerts, record)
        out: list[Suppressed | None] = [None] * len(alerts)
        if not len(alerts):
            return p, out
        novel = np.fromiter((not self.scope.rules_known(a) for a in alerts), dtype=bool, count=len(alerts))
        product = np.fromiter((self.scope.product_known(a) for a in alerts), dtype=bool, count=len(alerts))
        Xc = X[:, self.columns]
        inside = self.scope.inside(Xc) & product
        thr = np.empty(len(alerts))
        family_free = np.zeros(len(alerts), dtype=bool)  # unseen rules at a known deployment
        for i, a in enumerate(alerts):
            known_t, novel_t = self.thresholds(a.tenant_id)
            thr[i] = novel_t if novel[i] else known_t
            family_free[i] = novel[i] and self.deployment_known(a.tenant_id)
        if family_free.any():  # their rule family's own columns are new by definition: not a reason to keep
            inside[family_free] = self.scope.inside(Xc[family_free], self._generic) & product[family_free]
        self._observe(alerts, p, inside, novel)
        pick = []
        fate = ["score"] * len(alerts)
        for i in np.flatnonzero(p < thr).tolist():
            if not inside[i]:
                fate[i] = "out_of_scope"
            elif keep_reason(alerts[i], matched[i]) is not None:
                fate[i] = "guardrail"
            else:
                fate[i] = "suppressed"
                pick.append(i)
                continue
            self.stats[fate[i]] += 1
        if why is not None:
            why.extend(fate)
        if pick:
            for i, contrib in zip(pick, self.contributions(X[pick]), strict=True):
                s, t = float(p[i]), float(thr[i])
                which = "threshold for unseen rules" if novel[i] else "threshold"
                out[i] = Suppressed(alert=alerts[i], score=round(s, 6), threshold=t,
                                    model_version=self.version, contributions=contrib,
                                    reason=f"noise: P(attack) {s:.4f} < {which} {t:.4f}")
        if self.shadow:
            self.shadow_log.extend(d for d in out if d is not None)
            return p, [None] * len(alerts)
        return p, out

    def _observe(self, alerts: Sequence[Alert], p: np.ndarray, inside: np.ndarray, novel: np.ndarray) -> None:
        """Per tenant and event day: drift counters (alerts, out of scope, unseen rules, score histogram)."""
        for a, s, ok, nv in zip(alerts, p.tolist(), inside.tolist(), novel.tolist(), strict=True):
            key = (a.tenant_id, a.time.date())
            d = self.drift.get(key)
            if d is None:
                d = self.drift[key] = TenantDrift()
            d.observe(s, not ok, nv)

    def decide(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        """The core's hook. An alert decided again (the core re-decides a representative whose content changed)
        is scored with its new content but enters the source history only once."""
        seen = self._recorded
        record = [a.alert_id not in seen for a in alerts]
        for a in alerts:
            seen[a.alert_id] = None
        while len(seen) > RECORDED_MAX:
            seen.popitem(last=False)
        out = self.assess(alerts, matched, record)[1]
        self._since_expire += len(alerts)
        if self._since_expire >= EXPIRE_EVERY:
            self._since_expire = 0
            self.extractor.state.expire(self.extractor.newest)
        return out

    def judge_alone(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        """Duplicates of suppressed representatives, judged on their own: scored against the history without
        entering it (only representatives do, as in training)."""
        return self.assess(alerts, matched, [False] * len(alerts))[1]

    def reset(self, state: ClassifierState | None = None) -> None:
        """Start a new stream: fresh (or the given) streaming state."""
        self.extractor = FeatureExtractor(self.schema, state)
        self._since_expire = 0
        self._recorded.clear()
        self.stats.clear()
        self.drift = {}  # new objects: copies made for other partitions keep theirs
        self.shadow_log = []


def _num(v: Any) -> float:
    """A threshold from a manifest (JSON has no infinity: null and "-inf" stand for it)."""
    return float("-inf") if v is None else float(v)


def _json_num(v: float) -> float | None:
    return None if not np.isfinite(v) else v
