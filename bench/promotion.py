"""Shadow mode leading to promotion, on a new source: the commands an operator runs, with their figures.

    .venv/bin/python bench/promotion.py [--data data/waf-lab-pl12] [--base ../shared/labeled/waf-pl4-train]
                                        [--model models/noise-default] [--workdir DIR]

The new source's records are cut in event-time order into day 1 (the first 60 %) and day 2 (the rest).

1. A registry whose active model is `--model` (trained on another source; the new source is read as tenant
   `--tenant`, a deployment the model never saw).
2. `mdr replay` of day 1 with the registry; analysts give a verdict on every alert of day 1 the store holds
   (`record_verdict`, from the labels: the console's call).
3. `mdr model retrain` on the store's verdicts plus `--base` (the data the active model learned from): the new
   model goes into shadow.
4. `mdr replay` of day 2: the active model decides, the shadow model scores and logs; verdicts on day 2's alerts.
5. `mdr model promote`: the gate judges the shadow model on the last 1,000 verdicts it scored (day 2's: it never
   trained on them) and promotes it when its FN rate is at most 0.5 %.

Printed: both models' noise reduction and FN rate on day 2's verdicts (the active one from its real decisions,
the shadow one from its log), the gate's report, and the registry's state.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from pipeline.classify.registry import Registry, read_shadow  # noqa: E402
from pipeline.cli import app  # noqa: E402
from pipeline.soar.evidence import tenant_alerts  # noqa: E402
from pipeline.soar.tickets import TicketStore  # noqa: E402
from pipeline.soar.verdicts import list_verdicts, record_verdict  # noqa: E402

runner = CliRunner(env={"COLUMNS": "200"})


def run(*args: str) -> str:
    r = runner.invoke(app, list(args))
    if r.exit_code not in (0, 1):
        raise SystemExit(f"mdr {' '.join(args)} failed ({r.exit_code}):\n{r.output}")
    return r.output


def split_days(data: Path, work: Path) -> tuple[Path, Path, dict[str, int]]:
    """day1/ and day2/ record files (60 / 40 % in log order) and transaction id -> label."""
    with gzip.open(data / "modsec_audit.jsonl.gz", "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    cut = int(len(lines) * 0.6)
    days = []
    for name, part in (("day1", lines[:cut]), ("day2", lines[cut:])):
        d = work / name
        d.mkdir(parents=True)
        (d / "modsec_audit.jsonl").write_text("\n".join(part) + "\n", encoding="utf-8")
        days.append(d)
    labels = {r["transaction_id"]: int(r["label"] == "attack") for r in
              map(json.loads, (data / "labels.jsonl").read_text(encoding="utf-8").splitlines())}
    return days[0], days[1], labels


def judge(store: TicketStore, tenant: str, labels: dict[str, int]) -> list[tuple[str, str, int]]:
    """Analysts' verdicts on every alert of `tenant` the store holds (representatives and suppressed ones, as
    `mdr replay` stored them) and that has none yet, one by one in event time."""
    judged = {v.alert_id for v, _ in list_verdicts(store, tenant)}
    with store.tx() as s:
        alerts = [a for a in tenant_alerts(s, tenant) if a.alert_id not in judged]
    done = []
    for a in alerts:
        lab = labels.get(str(a.extra.get("transaction_id")))
        if lab is None:
            continue
        record_verdict(store, tenant, [a.alert_id], "true_positive" if lab else "false_positive", "analyst",
                       source="console")
        done.append((a.tenant_id, a.alert_id, lab))
    return done


def rates(suppressed: set[str], verdicts: list[tuple[str, str, int]]) -> str:
    att = [a for _, a, y in verdicts if y == 1]
    ben = [a for _, a, y in verdicts if y == 0]
    fn = sum(a in suppressed for a in att)
    nr = sum(a in suppressed for a in ben)
    return (f"noise reduction {nr / max(len(ben), 1):.2%} ({nr}/{len(ben)}), FN rate {fn / max(len(att), 1):.2%} "
            f"({fn}/{len(att)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "waf-lab-pl12")
    ap.add_argument("--base", type=Path, default=ROOT.parent / "shared" / "labeled" / "waf-pl4-train")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "noise-default")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--tenant", default="lab", help="the new deployment's tenant (one the active model never saw)")
    ap.add_argument("--kind", action="append", default=None, help="model families retrain compares")
    args = ap.parse_args()
    args.kind = args.kind or ["hgb", "linear"]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mdr-promotion-"))
    os.environ["MDR_HOME"] = str(work / "home")
    day1, day2, labels = split_days(args.data, work)
    reg = Registry.create(work / "registry")
    a = reg.add(args.model, shadow=False)
    reg.promote(a, force=True)
    print(f"active model {a} (trained on {args.model}); new source {args.data}: day 1 {day1}, day 2 {day2}")
    out1, db = work / "out1", f"sqlite:///{work / 'soar.db'}"
    run("replay", str(day1), "--out", str(out1), "--model", str(reg.root), "--db", db, "--tenant", args.tenant)
    store = TicketStore(db)
    v1 = judge(store, args.tenant, labels)
    print(f"day 1: {len(v1)} alert verdicts recorded")
    print(run("model", "retrain", "--registry", str(reg.root), "--db", db, *(f"--kind={k}" for k in args.kind),
              *(["--data", str(args.base)] if args.base.exists() else [])).strip())
    b = reg.shadow
    assert b is not None, "the retrain left no shadow model"
    out2 = work / "out2"
    run("replay", str(day2), "--out", str(out2), "--model", str(reg.root), "--db", db, "--tenant", args.tenant)
    v2 = judge(store, args.tenant, labels)
    store.close()
    sup_a = {json.loads(x)["alert"]["alert_id"] for x in (out2 / "suppressed.jsonl").read_text().splitlines()}
    sup_b = {aid for (_, aid), d in read_shadow(reg.shadow_log(b)).items() if d["suppress"]}
    print(f"day 2: {len(v2)} alert verdicts")
    print(f"  active {a}: {rates(sup_a, v2)}")
    print(f"  shadow {b}: {rates(sup_b, v2)} (logged, nothing suppressed)")
    print(run("model", "promote", "--registry", str(reg.root), "--db", db).strip())
    st = reg.state()
    print(f"registry: active {st['active']}, shadow {st['shadow']}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
