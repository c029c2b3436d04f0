"""`mdr model retrain` and `mdr model promote`: learn from the analysts' verdicts in the store, shadow, gate.

Retraining reads every alert verdict of the ticket store (`pipeline.soar.verdicts`) with its alert's content
(the store's evidence: the alerts `mdr replay` and the worker stored), optionally adds labeled data directories
(the data the running model was trained on), trains exactly as `mdr model train` does (selection and thresholds
on the train / validation splits; per-tenant thresholds where a tenant has enough attack verdicts) and adds the
model to the registry in shadow. Promotion goes through `pipeline.classify.registry.gate`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.classify.registry import DEFAULT_LAST_N, DEFAULT_MAX_FN, Registry, gate, read_shadow
from pipeline.classify.train import DEFAULT_TARGET_RECALL, Dataset, dataset_from_alerts, load_data, merge, train
from pipeline.core.dedup import DEFAULT_WINDOW


def verdict_dataset(store: Any) -> tuple[Dataset, int]:
    """(dataset of the store's labeled alert verdicts, verdicts whose alert is not in the store's evidence)."""
    from pipeline.soar.verdicts import labeled_alerts

    alerts, labels, missing = labeled_alerts(store)
    return dataset_from_alerts(alerts, labels), missing


def retrain(store: Any, registry: str | Path, data: Sequence[str | Path] = (),
            target_recall: float = DEFAULT_TARGET_RECALL, dedup_window: float | None = DEFAULT_WINDOW,
            kinds: Sequence[str] = ("hgb", "linear")) -> tuple[str, Any, dict[str, Any]]:
    """Train on the store's verdicts (+ `data`), add the model to the registry in shadow; (version, model,
    facts)."""
    vds, missing = verdict_dataset(store)
    ds = merge(load_data(data), vds) if data else vds
    model, ds, _ = train([str(d) for d in data], target_recall, tuple(kinds), tenant="default",
                         dedup_window=dedup_window, ds=ds)
    model.manifest["training_data"]["verdicts"] = {"alerts": len(vds.alerts), "without_content": missing,
                                                   "attack": int(sum(1 for v in vds.labels if v == 1))}
    reg = Registry.create(registry)
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model")
        version = reg.add(Path(tmp) / "model", shadow=True)
    return version, model, {"verdicts": len(vds.alerts), "without_content": missing, "alerts": len(ds.alerts)}


def verdict_labels(store: Any) -> list[tuple[str, str, int]]:
    """(tenant, alert id, label) of the store's labeled verdicts, oldest first."""
    from pipeline.soar.verdicts import list_verdicts

    return [(r.tenant_id, r.alert_id, int(r.label)) for r, _ in list_verdicts(store) if r.label is not None]


def promote(store: Any, registry: str | Path, version: str | None = None, last_n: int = DEFAULT_LAST_N,
            max_fn: float = DEFAULT_MAX_FN, force: bool = False) -> tuple[str, dict[str, Any]]:
    """Gate the shadow model (or `version`) on the last verdicts and promote it when it passes."""
    reg = Registry(registry)
    version = version or reg.shadow
    if not version:
        from pipeline.classify.registry import RegistryError

        raise RegistryError("no shadow model to promote")
    reg.load(version)  # ModelError for a model this build cannot run, before its gate is judged
    report = gate(read_shadow(reg.shadow_log(version)), verdict_labels(store), last_n, max_fn)
    if report["passed"] or force:
        reg.promote(version, report, force=force)
    return version, report
