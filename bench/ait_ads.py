"""Noise reduction on IDS and host alerts: the AIT Alert Data Set, per product family, as the core decides.

    .venv/bin/python bench/ait_ads.py --ait DIR [--train russellmitchell shaw wardbeck] [--test santos]

DIR holds the AIT-ADS alert tables (`<scenario>_alerts.txt`: time,name,ip,host,short,time_label,event_label; the
`alerts_csv` directory of the ait-aecid/alert-data-set repository, derived from the AIT-ADS, CC-BY-4.0,
Landauer et al. 2024). They are not shipped here. Each row becomes an alert: product and family from the name's
prefix (Suricata -> ids, Wazuh -> host, AMiner -> host anomaly detection), rule id = the data set's short code, rule
category = its middle part, source address, host name, event time; tenant = scenario. Label: attack when the row
falls in an attack phase (`time_label` other than `false_positive`), else benign.

Protocol: the model is trained (`mdr model train`'s procedure, `--kind`, core dedup window 600 s) on the train
scenarios' labels only; the test scenarios are other networks (a new deployment): nothing about them is used for a
choice. Figures are as the core decides: representatives after dedup, each decision weighted by the raw alerts it
covers, per product family. Also the figures with the test scenario's own verdicts: a model trained on the
train scenarios plus the test scenario's train / validation splits, judged on its held-out split.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.classify.evaluate import model_decisions  # noqa: E402
from pipeline.classify.metrics import core_rates, core_view  # noqa: E402
from pipeline.classify.train import dataset_from_alerts, train  # noqa: E402
from pipeline.normalize.base import make_id  # noqa: E402
from pipeline.schema import Alert, Endpoint, HostInfo, Rule, Source  # noqa: E402

PRODUCTS = {"Suricata": ("Suricata", "OISF", "ids", "suricata"), "Wazuh": ("Wazuh", "Wazuh", "host", "wazuh"),
            "AMiner": ("AMiner", "AIT", "host", "aminer")}
RECEIVED = datetime(2000, 1, 1, tzinfo=UTC)


def read_ait(path: Path, scenario: str) -> tuple[list[Alert], list[int]]:
    """Alerts and labels (1 attack phase, 0 outside) of one AIT-ADS alert table."""
    alerts, labels = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.DictReader(fh)):
            prefix = row["name"].partition(":")[0]
            prod = PRODUCTS.get(prefix)
            if prod is None:
                continue
            short = row["short"]
            parts = short.split("-")
            alerts.append(Alert(
                alert_id=make_id(scenario, str(n)), tenant_id=scenario, source=Source(*prod),
                time=datetime.fromtimestamp(float(row["time"]), UTC), received_at=RECEIVED,
                rule=Rule(id=short, name=row["name"][:200], category=parts[1].lower() if len(parts) > 2 else None),
                src=Endpoint(ip=row["ip"] or None), host=HostInfo(name=row["host"] or None),
                message=row["name"][:200], extra={"record_id": f"{scenario}:{n}"}))
            labels.append(0 if row["time_label"] == "false_positive" else 1)
    return alerts, labels


def family_of(a: Alert) -> str:
    return a.source.product


def report(title: str, ds, sup: np.ndarray, mask: np.ndarray, view) -> None:
    fams = np.asarray([family_of(a) for a in ds.alerts])
    print(title)
    for fam in ["all", *sorted(set(fams[mask].tolist()))]:
        m = mask if fam == "all" else mask & (fams == fam)
        r = core_rates(sup, ds.y, m, view)
        print(f"  {fam:>9}: {r['representatives']:>7} representatives; noise reduction {r['noise_reduction']:.2%} "
              f"({r['suppressed_benign']}/{r['benign']} benign alerts), FN rate {r['fn_rate']:.2%} "
              f"({r['suppressed_attack']}/{r['attack']} attack alerts)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ait", type=Path, required=True, help="directory of <scenario>_alerts.txt")
    ap.add_argument("--train", nargs="+", default=["russellmitchell", "shaw", "wardbeck"])
    ap.add_argument("--test", nargs="+", default=["santos"])
    ap.add_argument("--window", type=float, default=600.0, help="core dedup window, seconds")
    ap.add_argument("--target-recall", type=float, default=0.995)
    ap.add_argument("--kind", default="linear", help="model family: linear or hgb")
    args = ap.parse_args()
    t0 = time.process_time()
    alerts: list[Alert] = []
    labels: list[int] = []
    for scen in [*args.train, *args.test]:
        a, y = read_ait(args.ait / f"{scen}_alerts.txt", scen)
        alerts += a
        labels += y
    ds = dataset_from_alerts(alerts, labels)
    tenant = np.asarray([a.tenant_id for a in ds.alerts])
    test = np.isin(tenant, args.test) & (ds.y >= 0)
    print(f"{len(ds.alerts)} alerts ({int(test.sum())} in the test scenarios {args.test}); "
          f"read in {time.process_time() - t0:.0f} s CPU")
    view = core_view(ds, args.window)
    model = train([], args.target_recall, (args.kind,), ((),), dedup_window=args.window, ds=ds.subset(~test))[0]
    print(f"trained on {args.train}: threshold {model.threshold:.4g}, unseen rules {model.threshold_novel:.4g}")
    _, sup, kept = model_decisions(model, ds, view)
    report(f"new deployment, no labels of it ({args.test}), as the core decides ({args.window:g} s dedup):",
           ds, sup, test, view)
    print(f"  kept although below the threshold: {dict(kept)}")
    own = ds.subset(~test | (np.asarray(ds.splits) != "heldout"))
    model2 = train([], args.target_recall, (args.kind,), ((),), dedup_window=args.window, ds=own)[0]
    _, sup2, _ = model_decisions(model2, ds, view)
    held = test & (np.asarray(ds.splits) == "heldout")
    report("with the test scenarios' own verdicts (train+validation splits), on their held-out split:",
           ds, sup2, held, view)
    print(f"total {time.process_time() - t0:.0f} s CPU")


if __name__ == "__main__":
    main()
