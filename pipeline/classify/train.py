"""Training the noise model: labeled data in, a `NoiseClassifier` with its manifest out.

Data directory: product records (any format the normalizers read, `.gz` too) plus labels:

- `labels.jsonl`: `{"<record id key>": ..., "label": "attack"|"benign", ...}` keyed by the product's own record id
  (`RECORD_KEYS`: ModSecurity `transaction_id`, else `record_id` / `event_id` in `extra`, else `alert_id`).
- `verdicts.jsonl` (optional): the records `mdr tickets close` publishes (`{"incident_id", "alert_ids",
  "verdict", ...}`: an incident verdict for all its alerts; without `alert_ids` the incident is looked up in
  `incidents.jsonl`, an `mdr replay` output, in the same directory) or alert verdicts `{"alert_ids": [...],
  "verdict"}`. true_positive / malicious -> attack (every alert of a true-positive incident), false_positive /
  benign / noise -> benign, anything else (duplicate) is ignored. Precedence: labels.jsonl, then alert verdicts,
  then incident verdicts; between equals, attack wins.

The core classifies only what its dedup keeps (the first alert of each fingerprint window, the representative)
and that decision covers every alert merged into it. Training follows it (`--dedup-window`, default the core's):
every alert of a directory goes through the feature extractor in event-time order with one fresh state, labeled
or not, but only representatives enter the source history and rule rarity, as in the core; every labeled alert
is a training row.

Split: by a salted blake2b hash of the record id, 60 % train / 20 % validation / 20 % held-out (`split_of`);
deterministic, and the records of a stream are interleaved in every split. Training never reads held-out labels
(`mdr model evaluate` reports on them). Candidates: HistGradientBoostingClassifier and a standardized
LogisticRegression (fixed hyper-parameters), each with all features and without the source-history group, fitted on
train inside CalibratedClassifierCV (sigmoid, 5 folds, ensemble=False: one refit model + one calibrator). On
validation each gets its threshold for the target recall of attack alerts, met both per alert and as the core
decides (validation representatives weighted by the attack alerts their decision covers; `choose_threshold`).
Among the candidates that then suppress (nearly, `NR_TOLERANCE`) the largest share of benign alerts, the one
with the fewest false negatives wins (`select`; then fewer features, the linear model); alerts outside the
model's scope (`pipeline.classify.scope`, learned from the train split) count as kept, as in production. The
threshold for unseen rules and the scope's range variant come from leave-one-family-out folds inside the train
split (`pipeline.classify.generalize.novel_threshold`).
Time-of-day features are left out when the train split spans less than `MIN_SPAN_FOR_TIME` (a model cannot
learn a daily pattern from one day).
"""

from __future__ import annotations

import hashlib
import platform
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline.classify.features import (
    FEATURE_VERSION,
    GROUPS,
    PREFIX_GROUPS,
    FeatureExtractor,
    FeatureSchema,
    Vocabulary,
)
from pipeline.classify.generalize import Recalibrated, folds, novel_threshold
from pipeline.classify.metrics import CoreView, choose_threshold, core_rates, core_view, rates
from pipeline.classify.scope import RANGE_VARIANTS, Scope, checked_columns
from pipeline.core.dedup import DEFAULT_WINDOW as DEDUP_WINDOW
from pipeline.normalize.reader import expand
from pipeline.normalize.source import read_alerts
from pipeline.normalize.timeparse import HISTORY_RECEIVED
from pipeline.schema import Alert

RECORD_KEYS = ("transaction_id", "record_id", "event_id", "alert_id")
LABELS_FILE, VERDICTS_FILE, INCIDENTS_FILE = "labels.jsonl", "verdicts.jsonl", "incidents.jsonl"
SIDE_FILES = frozenset({LABELS_FILE, VERDICTS_FILE, INCIDENTS_FILE})
_DOC_PREFIXES = ("README", "LICENSE", "NOTICE", "COPYING")
SPLIT_SALT = "mdr-noise-split-v1"
SPLIT_BOUNDS = (("train", 60), ("validation", 80), ("heldout", 100))
DEFAULT_TARGET_RECALL = 0.995
MIN_SPAN_FOR_TIME = 7 * 86400.0  # time-of-day features need training data spanning at least a week
NR_TOLERANCE = 0.005  # noise reductions closer than this are a tie in model selection (a few validation alerts)
BATCH = 2048
LABEL_VALUES = {
    "attack": 1, "malicious": 1, "true_positive": 1, "tp": 1, "confirmed": 1, "anom": 1,
    "benign": 0, "false_positive": 0, "fp": 0, "noise": 0, "benign_positive": 0, "norm": 0,
}
RECEIVED = HISTORY_RECEIVED  # fixed, so alerts are byte-identical between runs


def split_of(record_id: str) -> str:
    """train / validation / heldout, from a salted hash of the record id (60/20/20)."""
    h = int.from_bytes(hashlib.blake2b(f"{SPLIT_SALT}:{record_id}".encode(), digest_size=8).digest(), "big") % 100
    return next(name for name, hi in SPLIT_BOUNDS if h < hi)


def record_id(a: Alert) -> str:
    """The product's own id of the record behind an alert (falls back to the alert id)."""
    for k in RECORD_KEYS[:-1]:
        v = a.extra.get(k)
        if isinstance(v, str | int) and v != "":
            return str(v)
    return a.alert_id


def label_value(v: Any) -> int | None:
    return LABEL_VALUES.get(str(v).strip().lower()) if v is not None else None


@dataclass(slots=True)
class Dataset:
    """Labeled alerts of one or more data directories, each directory's alerts in event-time order."""

    alerts: list[Alert] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # 1 attack, 0 benign, -1 unlabeled
    kinds: list[str] = field(default_factory=list)  # attack_type from labels.jsonl when present
    record_ids: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    streams: list[tuple[int, int]] = field(default_factory=list)  # [start, end) per directory
    files: list[str] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    data_hash: str = ""

    @property
    def y(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=np.int8)

    def subset(self, keep: np.ndarray) -> Dataset:
        """A copy whose labels outside `keep` are hidden (-1): the alerts stay in their streams (the source
        history still sees them), but nothing outside `keep` is trained on, thresholded on or scored."""
        labels = [lab if k else -1 for lab, k in zip(self.labels, keep.tolist(), strict=True)]
        digest = hashlib.sha256(np.packbits(keep).tobytes()).hexdigest()[:16]
        return Dataset(self.alerts, labels, self.kinds, self.record_ids, self.splits, self.streams, self.files,
                       Counter(self.stats), f"{self.data_hash}:{digest}")

    def mask(self, split: str) -> np.ndarray:
        """Labeled alerts of a split ("all": every labeled alert)."""
        if split == "all":
            return self.y >= 0
        return (np.asarray(self.splits) == split) & (self.y >= 0)


def dataset_from_alerts(alerts: Sequence[Alert], labels: Sequence[int], kinds: Sequence[str] | None = None
                        ) -> Dataset:
    """A dataset of already normalized alerts (e.g. the alerts analysts gave verdicts on), one stream per
    tenant in event-time order, split by alert id."""
    order = sorted(range(len(alerts)), key=lambda i: (alerts[i].tenant_id, alerts[i].time))
    ds = Dataset()
    digest = hashlib.sha256()
    for i in order:
        a = alerts[i]
        if ds.alerts and ds.alerts[-1].tenant_id != a.tenant_id:
            ds.streams.append((ds.streams[-1][1] if ds.streams else 0, len(ds.alerts)))
        ds.alerts.append(a)
        ds.labels.append(int(labels[i]))
        ds.kinds.append(kinds[i] if kinds else "")
        ds.record_ids.append(a.alert_id)
        ds.splits.append(split_of(a.alert_id))
        digest.update(f"{a.alert_id}:{labels[i]}\n".encode())
    if ds.alerts:
        ds.streams.append((ds.streams[-1][1] if ds.streams else 0, len(ds.alerts)))
    ds.data_hash = digest.hexdigest()
    ds.stats["alerts"] = len(ds.alerts)
    return ds


def _jsonl(path: Path) -> Iterable[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                d = orjson.loads(line)
                if isinstance(d, dict):
                    yield d


def data_files(d: Path) -> list[str]:
    """Product record files of a data directory (labels, verdicts, incidents, licenses and docs left out)."""
    return [f for f in expand([str(d)]) if Path(f).name not in SIDE_FILES
            and not Path(f).name.upper().startswith(_DOC_PREFIXES) and "LICENSE" not in Path(f).name.upper()]


def normalize_dir(d: Path, tenant: str) -> tuple[list[Alert], Counter[str], list[str]]:
    """Alerts of a directory's product files, sorted by event time (stable, as `mdr replay` feeds them)."""
    files = data_files(d)
    res = read_alerts(files, tenant, received_at=RECEIVED)
    stats = Counter({"records": res.records, "dead_letters": len(res.dead), "context_records": sum(
        res.skipped.values())})
    return res.alerts, stats, files


def _verdict_labels(d: Path, alerts: Sequence[Alert], stats: Counter[str]) -> dict[str, tuple[int, int]]:
    """alert id -> (label, precedence) from verdicts.jsonl (alert verdicts 1, incident verdicts 2)."""
    ids = {a.alert_id for a in alerts}
    incidents = {i["incident_id"]: i.get("alert_ids", []) for i in _jsonl(d / INCIDENTS_FILE) if "incident_id" in i}
    out: dict[str, tuple[int, int]] = {}
    for v in _jsonl(d / VERDICTS_FILE):
        lab = label_value(v.get("verdict"))
        if lab is None:
            stats["verdicts_unusable"] += 1
            continue
        if v.get("incident_id"):  # a ticket / incident verdict: its alert ids, else incidents.jsonl's
            targets = list(v.get("alert_ids") or incidents.get(v["incident_id"], []))
            prec = 2
        else:
            targets, prec = list(v.get("alert_ids") or []), 1
        if not targets:
            stats["verdicts_unresolved"] += 1
            continue
        stats["verdicts_joined"] += 1
        for aid in targets:
            if aid not in ids:
                stats["verdict_alerts_missing"] += 1
                continue
            old = out.get(aid)
            if old is None or prec < old[1] or (prec == old[1] and lab > old[0]):  # attack wins a tie
                if old is not None and old[0] != lab:
                    stats["verdict_conflicts"] += 1
                out[aid] = (lab, prec)
    return out


def load_data(dirs: Sequence[str | Path], tenant: str = "default") -> Dataset:
    """Normalize and label every data directory (see the module docstring)."""
    ds = Dataset()
    digest = hashlib.sha256()
    for d in map(Path, dirs):
        if not d.is_dir():
            raise FileNotFoundError(f"not a data directory: {d}")
        alerts, stats, files = normalize_dir(d, tenant)
        ds.stats.update(stats)
        for f in [*files, *(str(d / n) for n in sorted(SIDE_FILES) if (d / n).exists())]:
            digest.update(f"{Path(f).relative_to(d)}\0{_sha256(f)}\n".encode())
        labels: dict[tuple[str, str], dict[str, Any]] = {}
        for row in _jsonl(d / LABELS_FILE):
            key = next((k for k in RECORD_KEYS if k in row), None)
            if key is not None:
                labels[(key, str(row[key]))] = row
        key_used = next((k for k, _ in labels), RECORD_KEYS[0])
        verdicts = _verdict_labels(d, alerts, ds.stats)
        start = len(ds.alerts)
        for a in alerts:
            rid = a.alert_id if key_used == "alert_id" else record_id(a)
            labeled = labels.get((key_used, rid))
            lab = label_value(labeled.get("label")) if labeled else None
            if lab is None and a.alert_id in verdicts:
                lab = verdicts[a.alert_id][0]
                ds.stats["labeled_by_verdict"] += 1
            ds.alerts.append(a)
            ds.labels.append(-1 if lab is None else lab)
            ds.kinds.append(str(labeled.get("attack_type", "")) if labeled else "")
            ds.record_ids.append(rid)
            ds.splits.append(split_of(rid))
        ds.streams.append((start, len(ds.alerts)))
        ds.files += files
        ds.stats["labels_unmatched"] += len(labels) - sum(
            1 for i in range(start, len(ds.alerts)) if (key_used, ds.record_ids[i]) in labels)
    ds.data_hash = digest.hexdigest()
    ds.stats["unlabeled_alerts"] = sum(1 for v in ds.labels if v < 0)
    return ds


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def features(ds: Dataset, schema: FeatureSchema, view: CoreView, batch: int = BATCH) -> np.ndarray:
    """Feature rows of every alert: each directory is one stream with a fresh state, fed in batches; only the
    representatives enter the history, as in the core (the others are scored without leaving a trace)."""
    X = np.zeros((len(ds.alerts), len(schema)), dtype=np.float32)
    rec = view.is_rep.tolist()
    for start, end in ds.streams:
        fx = FeatureExtractor(schema)
        for i in range(start, end, batch):
            j = min(i + batch, end)
            X[i:j] = fx.transform(ds.alerts[i:j], rec[i:j])
    return X


def guarded_alerts(alerts: Sequence[Alert]) -> np.ndarray:
    """Alerts a payload guardrail keeps whatever their score (`guardrails.injection_signature`): an attack among
    them can never be a false negative, so threshold choices treat its score as +inf."""
    from pipeline.classify.guardrails import injection_signature

    return np.fromiter((injection_signature(a) is not None for a in alerts), dtype=bool, count=len(alerts))


def candidates() -> dict[str, Any]:
    """The two model families compared, with fixed hyper-parameters (not tuned on held-out data)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "hgb": HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20, l2_regularization=1.0,
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=15, random_state=0),
        "linear": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)),
    }


def clone(est: Any) -> Any:
    from sklearn.base import clone as sk_clone

    return sk_clone(est)


def fit_calibrated(base: Any, X: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.calibration import CalibratedClassifierCV

    return CalibratedClassifierCV(base, method="sigmoid", cv=5, ensemble=False).fit(X, y)


def used_features(schema: FeatureSchema, without: Sequence[str] = ()) -> list[str]:
    """Feature names the model uses: the schema minus the named groups (`GROUPS`, `PREFIX_GROUPS`) and features."""
    drop: set[str] = set()
    prefixes = tuple(PREFIX_GROUPS[w] for w in without if w in PREFIX_GROUPS)
    for w in without:
        drop |= GROUPS.get(w, set() if w in PREFIX_GROUPS else {w})
    return [n for n in schema.names if n not in drop and not (prefixes and n.startswith(prefixes))]


def train(dirs: Sequence[str | Path], target_recall: float = DEFAULT_TARGET_RECALL,
          kinds: Sequence[str] = ("hgb", "linear"), variants: Sequence[Sequence[str]] = ((), ("history",)),
          tenant: str = "default", dedup_window: float | None = DEDUP_WINDOW, ds: Dataset | None = None,
          novel: bool = True, per_tenant: bool = True) -> tuple[Any, Dataset, np.ndarray]:
    """Fit every kind x feature variant (groups left out), threshold each on validation representatives for the
    target recall of attack alerts as the core decides them, keep the best; then the threshold for alerts with
    rules never seen (`novel`: leave-rule-family-out on the train split) and per-tenant thresholds (`per_tenant`:
    each tenant's own validation alerts, where it has enough attacks). Returns (NoiseClassifier, dataset,
    feature matrix). Not saved."""
    from sklearn.metrics import average_precision_score

    from pipeline.classify.model import NoiseClassifier, generic_columns

    ds = ds or load_data(dirs, tenant)
    tr, va = ds.mask("train"), ds.mask("validation")
    y = ds.y
    if len(set(y[tr].tolist())) < 2 or (y[va] == 1).sum() == 0:
        raise ValueError("training needs both labels in the train split and attacks in the validation split")
    train_alerts = [a for a, m in zip(ds.alerts, tr, strict=True) if m]
    schema = FeatureSchema(Vocabulary.learn(train_alerts))
    view = core_view(ds, dedup_window)
    X = features(ds, schema, view)
    span = (max(a.time for a in train_alerts) - min(a.time for a in train_alerts)).total_seconds()
    auto = ("time",) if span < MIN_SPAN_FOR_TIME else ()
    full = Scope.learn(train_alerts, X[tr])
    guarded = guarded_alerts(ds.alerts)
    known = np.array([bool(m) and full.product_known(a) for a, m in zip(ds.alerts, va, strict=True)])
    seen = np.array([bool(m) and full.rules_known(a) for a, m in zip(ds.alerts, va, strict=True)])
    results: dict[str, dict[str, Any]] = {}
    fitted: dict[str, tuple[Any, list[str], Scope]] = {}
    for kind, base in candidates().items():
        for without in variants if kind in kinds else ():
            name = "-".join((kind, *(f"no{w}" for w in without)))
            used = used_features(schema, (*without, *auto))
            cols = [schema.index[n] for n in used]
            est = fit_calibrated(base, X[tr][:, cols], y[tr])
            scope = full.select(cols)
            p = np.zeros(len(y))
            p[va] = est.predict_proba(X[va][:, cols])[:, 1]
            thr = choose_threshold(np.where(guarded, np.inf, p), y, va & seen, view, target_recall)
            inside = np.zeros(len(y), dtype=bool)
            inside[va] = scope.inside(X[va][:, cols])
            sup = (p < thr) & inside & known & seen & ~guarded  # unseen rules: the novel threshold, afterwards
            results[name] = {"threshold": thr, "features": len(used), "per_alert": rates(sup, y, va),
                             "core": core_rates(sup, y, va, view),
                             "out_of_scope": int((va & ~(inside & known)).sum()),
                             "average_precision": float(average_precision_score(y[va], p[va]))}
            fitted[name] = (est, used, scope)
    best = select(results)
    manifest = {
        "kind": best.split("-")[0], "variant": best, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target_recall": target_recall, "training_data": {
            "sha256": ds.data_hash, "dirs": [str(d) for d in dirs], "records": int(ds.stats["records"]),
            "alerts": len(ds.alerts), "stats": dict(ds.stats),
            "rows": {s: int(ds.mask(s).sum()) for s, _ in SPLIT_BOUNDS},
            "tenants": sorted({a.tenant_id for a in train_alerts}),
            "attacks": {s: int((y[ds.mask(s)] == 1).sum()) for s, _ in SPLIT_BOUNDS}},
        "split": {"method": "blake2b(salt:record_id) % 100", "salt": SPLIT_SALT,
                  "bounds": dict(SPLIT_BOUNDS), "record_keys": list(RECORD_KEYS)},
        "selection": {"criterion": "at the target-recall threshold on validation (out-of-scope alerts kept): "
                                   f"noise reduction within {NR_TOLERANCE} of the best (as the core decides and "
                                   "per alert), then fewest FN (core, per alert), fewer features, linear",
                      "candidates": results, "always_without": list(auto),
                      "training_span_s": span},
        "calibration": "CalibratedClassifierCV(method=sigmoid, cv=5, ensemble=False)",
        "threshold_rule": "split-conformal on validation attacks, k-th lowest score with k=floor((1-target)(n+1)), "
                          "per alert and as the core decides (representatives weighted by the attack alerts "
                          "they cover); the lower of the two; attacks a payload guardrail always keeps count "
                          "with score +inf (they can never be suppressed)",
        "versions": _versions(), "feature_schema_version": FEATURE_VERSION,
        "history_view": {"dedup_window_s": dedup_window,
                         "note": "only the alerts the core classifies (dedup representatives under this window) "
                                 "enter the source history and rule rarity; run the core with the same window"},
    }
    est, used, scope = fitted[best]
    cols = [schema.index[n] for n in used]
    thr_novel = float("-inf")
    if novel:
        base = candidates()[best.split("-")[0]]
        generic = generic_columns(used)  # what the range check of an alert with unseen rules looks at
        thr_novel, detail = novel_threshold(
            lambda m: Recalibrated(clone(base).fit(X[m][:, cols], y[m]), est), X[:, cols], y, folds(ds, tr), tr,
            target_recall, guarded, {v: generic & checked_columns(used, v) for v in RANGE_VARIANTS})
        manifest["novel_rules"] = detail
        scope = scope.with_variant(detail.get("range_variant", "all"), used)
    tenants = tenant_thresholds(ds, va & seen, est.predict_proba, X[:, cols], view, target_recall) \
        if per_tenant else {}
    model = NoiseClassifier(est, schema, used, results[best]["threshold"], scope, manifest,
                            threshold_novel=thr_novel, tenants=tenants)
    return model, ds, X


MIN_TENANT_ATTACKS = 200  # validation attack alerts a tenant needs for a threshold of its own (k >= 1 at 0.995)


def tenant_thresholds(ds: Dataset, mask: np.ndarray, predict: Any, X: np.ndarray, view: CoreView, target: float,
                      min_attacks: int = MIN_TENANT_ATTACKS) -> dict[str, dict[str, float]]:
    """Per tenant with at least `min_attacks` attacks among the `mask` alerts: its own threshold, from its own
    validation alerts (the others use the global one). Only when the data has more than one tenant."""
    tenant = np.asarray([a.tenant_id for a in ds.alerts])
    names = sorted(set(tenant[mask].tolist()))
    if len(names) < 2:
        return {}
    p = np.zeros(len(ds.alerts))
    p[mask] = predict(X[mask])[:, 1]
    out = {}
    for t in names:
        m = mask & (tenant == t)
        if int((ds.y[m] == 1).sum()) >= min_attacks:
            out[t] = {"threshold": choose_threshold(p, ds.y, m, view, target)}
    return out


def select(results: dict[str, dict[str, Any]], tolerance: float = NR_TOLERANCE) -> str:
    """The candidate to keep: among those whose validation noise reduction (as the core decides, and per alert)
    is within `tolerance` of the best, the one with the fewest false negatives (core, then per alert), then
    fewer features, then the linear model (cheaper, exact contributions)."""
    top_core = max(r["core"]["noise_reduction"] for r in results.values())
    top_alert = max(r["per_alert"]["noise_reduction"] for r in results.values())
    near = [k for k, r in results.items() if r["core"]["noise_reduction"] >= top_core - tolerance
            and r["per_alert"]["noise_reduction"] >= top_alert - tolerance]
    return min(near, key=lambda k: (results[k]["core"]["fn_rate"], results[k]["per_alert"]["fn_rate"],
                                    results[k]["features"], not k.startswith("linear")))


def _versions() -> dict[str, str]:
    import sklearn
    import skops

    return {"python": platform.python_version(), "sklearn": sklearn.__version__, "skops": skops.__version__,
            "numpy": np.__version__}


def merge(*sets: Dataset) -> Dataset:
    """One dataset of several (each keeps its own streams)."""
    out = Dataset()
    digest = hashlib.sha256()
    for d in sets:
        off = len(out.alerts)
        out.alerts += d.alerts
        out.labels += d.labels
        out.kinds += d.kinds
        out.record_ids += d.record_ids
        out.splits += d.splits
        out.streams += [(a + off, b + off) for a, b in d.streams]
        out.files += d.files
        out.stats.update(d.stats)
        digest.update(d.data_hash.encode())
    out.data_hash = digest.hexdigest()
    return out
