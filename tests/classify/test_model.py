"""The NoiseClassifier: persistence, decisions, contributions and the guardrails (in the classifier and the core)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from pipeline.classify.explain import LinearExplainer, TreeExplainer
from pipeline.classify.features import FeatureSchema, ua_family
from pipeline.classify.guardrails import keep_reason
from pipeline.classify.model import MANIFEST_FILE, MODEL_FILE, ModelError, NoiseClassifier
from pipeline.classify.train import Dataset, core_view, features, fit_calibrated, train
from pipeline.core.engine import Core
from pipeline.rules.usecase import UseCaseSet
from pipeline.schema import Alert, IntelHit, Rule

from .conftest import SAMPLE, TEST_RECALL, usecases_from

USECASES = """
title: Any ModSecurity alert at {prio}
id: 0b7c3e52-6a1e-4c39-9d7a-5f0e0c2a9{num}
status: test
logsource: {{product: mdr}}
detection:
  sel:
    source.format: modsecurity
  condition: sel
level: medium
mdr:
  priority: {prio}
  category: {cat}
  group_by: [src.ip]
"""


def usecase(tmp_path: Path, prio: str, cat: str = "web_attack") -> UseCaseSet:
    return usecases_from(tmp_path, USECASES.format(prio=prio, cat=cat, num=prio[1] + "01"))


def noise_alerts(model: NoiseClassifier, ds: Dataset) -> list[Alert]:
    """Alerts of the sample the model suppresses when nothing keeps them."""
    dec = model.decide(ds.alerts, [[] for _ in ds.alerts])
    return [a for a, d in zip(ds.alerts, dec, strict=True) if d is not None]


def test_manifest_and_roundtrip(sample_model_dir: Path, sample_model: NoiseClassifier, sample_ds: Dataset) -> None:
    m = json.loads((sample_model_dir / MANIFEST_FILE).read_text())
    for key in ("model_version", "model_sha256", "threshold", "target_recall", "training_data", "selection",
                "versions", "features", "history_view", "split"):
        assert key in m, key
    assert m["features"]["version"] == "3" and m["versions"]["sklearn"]
    assert m["training_data"]["sha256"] == sample_ds.data_hash and m["target_recall"] == TEST_RECALL
    assert set(m["selection"]["candidates"]) == {"hgb", "hgb-nohistory", "linear", "linear-nohistory"}
    again = NoiseClassifier.load(sample_model_dir)
    a = sample_model.decide(sample_ds.alerts, [[] for _ in sample_ds.alerts])
    b = again.decide(sample_ds.alerts, [[] for _ in sample_ds.alerts])
    assert [msgspec.json.encode(x) for x in a] == [msgspec.json.encode(x) for x in b]
    assert sum(x is not None for x in a) > 0


def test_suppressed_records(sample_model: NoiseClassifier, sample_ds: Dataset) -> None:
    dec = sample_model.decide(sample_ds.alerts, [[] for _ in sample_ds.alerts])
    sup = [d for d in dec if d is not None]
    assert sup and len(sup) < len(dec)
    for s in sup:
        assert s.score < s.threshold == sample_model.threshold
        assert s.model_version == sample_model.version and s.model_version.startswith("noise-")
        assert 0 < len(s.contributions) <= 5 and s.reason.startswith("noise: P(attack)")
        assert set(s.contributions) <= set(sample_model.used)


def test_tampered_or_foreign_model_is_refused(sample_model_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(sample_model_dir, bad)
    with open(bad / MODEL_FILE, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelError, match="checksum"):
        NoiseClassifier.load(bad)
    foreign = tmp_path / "foreign"
    shutil.copytree(sample_model_dir, foreign)
    sio.dump(FunctionTransformer(ua_family), foreign / MODEL_FILE)  # a function skops does not trust
    m = json.loads((foreign / MANIFEST_FILE).read_text())
    from pipeline.classify.model import sha256_file

    m["model_sha256"] = sha256_file(foreign / MODEL_FILE)
    (foreign / MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="allowlist"):
        NoiseClassifier.load(foreign)
    with pytest.raises(ModelError):
        NoiseClassifier.load(tmp_path / "missing")


@pytest.mark.parametrize("kind", ["linear", "hgb"])
def test_contributions_decompose_the_score(kind: str, sample_ds: Dataset) -> None:
    """Contributions + bias = the uncalibrated log-odds, for both explainers."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pipeline.classify.features import Vocabulary

    schema = FeatureSchema(Vocabulary.learn(sample_ds.alerts))
    X = features(sample_ds, schema, core_view(sample_ds, 600.0))
    y = sample_ds.y
    base = (HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, random_state=0) if kind == "hgb"
            else make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)))
    est = fit_calibrated(base, X, y).calibrated_classifiers_[0].estimator
    exp = TreeExplainer(est) if kind == "hgb" else LinearExplainer(est)
    C = exp.contributions(X)
    want = est.decision_function(X.astype(np.float64))
    np.testing.assert_allclose(C.sum(axis=1) + exp.bias, want, rtol=1e-6, atol=1e-6)
    assert (np.abs(C) > 0).sum(axis=1).min() >= 1


def test_hgb_model_explains_its_suppressions(sample_ds: Dataset) -> None:
    model, _, _ = train([SAMPLE], TEST_RECALL, kinds=("hgb",), variants=((),), ds=sample_ds)
    dec = model.decide(sample_ds.alerts, [[] for _ in sample_ds.alerts])
    sup = [d for d in dec if d is not None]
    assert sup and all(d.contributions for d in sup)


# ---- guardrails ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("prio", "kept"), [("P1", True), ("P2", True), ("P3", False), ("P4", False)])
def test_priority_guardrail(prio: str, kept: bool, tmp_path: Path, sample_model: NoiseClassifier,
                            sample_ds: Dataset) -> None:
    alone = {a.alert_id for a in noise_alerts(sample_model, sample_ds)}
    uc = usecase(tmp_path, prio).usecases[0]
    sample_model.reset()
    dec = sample_model.decide(sample_ds.alerts, [[uc] for _ in sample_ds.alerts])
    assert {d.alert.alert_id for d in dec if d is not None} == (set() if kept else alone)


def test_intel_and_unblocked_exploit_guardrails(tmp_path: Path, sample_model: NoiseClassifier,
                                                sample_ds: Dataset) -> None:
    """Each variant replaces one alert the model suppresses, inside the same stream."""
    noise = noise_alerts(sample_model, sample_ds)
    a = noise[len(noise) // 2]
    j = next(i for i, x in enumerate(sample_ds.alerts) if x.alert_id == a.alert_id)
    with_intel = msgspec.structs.replace(a, intel=[IntelHit("127.0.0.9", "ip", "src.ip", "test-feed")])
    sqli_detected = msgspec.structs.replace(a, action="detected", rules=[*a.rules, Rule(id="942100", category="sqli")])
    sqli_blocked = msgspec.structs.replace(sqli_detected, action="blocked")
    protocol_detected = msgspec.structs.replace(a, action="detected")
    exploit_uc = usecase(tmp_path, "P3", "exploit").usecases[0]
    cases = [(with_intel, [], True), (sqli_detected, [], True), (protocol_detected, [exploit_uc], True),
             (sqli_blocked, [], False), (protocol_detected, [], False), (a, [exploit_uc], False), (a, [], False)]
    for alert, ucs, kept in cases:
        assert (keep_reason(alert, ucs) is not None) == kept, (alert.action, ucs, alert.intel)
        stream = [*sample_ds.alerts[:j], alert, *sample_ds.alerts[j + 1:]]
        matched = [ucs if i == j else [] for i in range(len(stream))]
        sample_model.reset()
        dec = sample_model.decide(stream, matched)[j]
        if kept:
            assert dec is None
        elif alert is a:
            assert dec is not None  # same features as in the plain run: the use case alone does not keep it


def test_assess_tells_why_each_alert_was_kept(tmp_path: Path, sample_model: NoiseClassifier,
                                              sample_ds: Dataset) -> None:
    """`why` gets one fate per alert: suppressed exactly for the decisions, guardrail for a P1 match below the
    threshold, out_of_scope and guardrail counted in `stats` as before."""
    alerts = sample_ds.alerts
    p1 = usecase(tmp_path, "P1").usecases[0]
    matched = [[p1] if i % 2 else [] for i in range(len(alerts))]
    why: list[str] = []
    sample_model.reset()
    p, dec = sample_model.assess(alerts, matched, None, why)
    assert len(why) == len(alerts) and set(why) <= {"suppressed", "score", "out_of_scope", "guardrail"}
    assert [w == "suppressed" for w in why] == [d is not None for d in dec]
    assert any(d is not None for d in dec) and "guardrail" in why
    assert not any(matched[i] for i, w in enumerate(why) if w == "suppressed")
    lo, hi = sorted(sample_model.thresholds("default"))
    for i, w in enumerate(why):
        assert (p[i] >= lo) if w == "score" else (p[i] < hi)  # kept for its score, or below its threshold
        assert (keep_reason(alerts[i], matched[i]) is not None) >= (w == "guardrail")
    assert sample_model.stats["guardrail"] == why.count("guardrail")
    assert sample_model.stats["out_of_scope"] == why.count("out_of_scope")


def test_core_never_suppresses_p1_p2(tmp_path: Path, sample_model_dir: Path, sample_ds: Dataset) -> None:
    """Through the real core: a P2 use case over every ModSecurity alert, one P4; no P1/P2 match is suppressed."""
    text = USECASES.format(prio="P2", cat="web_attack", num="201") + "---\n" + USECASES.format(
        prio="P4", cat="web_attack", num="401").replace("source.format: modsecurity", "action: blocked")
    ucs = usecases_from(tmp_path, text)
    core = Core(ucs, classifier=NoiseClassifier.load(sample_model_dir))
    core.feed_alerts([msgspec.structs.replace(a) for a in sample_ds.alerts])
    out = core.take()
    assert out.alerts and not out.suppressed
    p4 = usecases_from(tmp_path, USECASES.format(prio="P4", cat="web_attack", num="402"))
    core = Core(p4, classifier=NoiseClassifier.load(sample_model_dir))
    core.feed_alerts([msgspec.structs.replace(a) for a in sample_ds.alerts])
    assert core.take().suppressed  # the same alerts are suppressed when only a P4 use case matches


# ---- scope ---------------------------------------------------------------------------------------------
def in_stream(model: NoiseClassifier, ds: Dataset, j: int, alert: Alert) -> bool:
    """Is `alert`, in place of alert j of the sample stream, suppressed?"""
    stream = [*ds.alerts[:j], alert, *ds.alerts[j + 1:]]
    model.reset()
    return model.decide(stream, [[] for _ in stream])[j] is not None


def test_unfamiliar_alerts_are_kept(sample_model: NoiseClassifier, sample_ds: Dataset) -> None:
    noise = noise_alerts(sample_model, sample_ds)
    a = noise[len(noise) // 3]
    j = next(i for i, x in enumerate(sample_ds.alerts) if x.alert_id == a.alert_id)
    assert in_stream(sample_model, sample_ds, j, a)
    unknown_rule = msgspec.structs.replace(a, rules=[*a.rules, Rule(id="999999", category="protocol")])
    long_args = msgspec.structs.replace(a, http=msgspec.structs.replace(a.http, url="/app?q=" + "ab" * 900))
    other_product = msgspec.structs.replace(a, source=msgspec.structs.replace(a.source, format="other_waf"))
    for variant in (unknown_rule, long_args, other_product):
        assert not in_stream(sample_model, sample_ds, j, variant)
        assert sample_model.stats["out_of_scope"] >= 1


def test_scope_range_variant_leaves_ngram_shares_unchecked() -> None:
    """`no-ngrams` range-checks every feature but the 3-gram shares; it survives the manifest, and a manifest
    without a variant (models trained before the choice existed) checks every feature."""
    from pipeline.classify.scope import Scope

    names = ["args_len", "ng:3", "ng:40"]
    scope = Scope.learn([], np.array([[1.0, 0.0, 0.1], [3.0, 0.2, 0.3]]))
    X = np.array([[2.0, 0.9, 0.2], [9.0, 0.1, 0.2], [2.0, 0.1, 0.2]])
    assert scope.inside(X).tolist() == [False, False, True]
    loose = scope.with_variant("no-ngrams", names)
    assert loose.inside(X).tolist() == [True, False, True]
    assert loose.inside(X, np.array([False, True, True])).tolist() == [True, True, True]
    d = loose.to_dict(names)
    assert d["range_variant"] == "no-ngrams" and d["unchecked_prefixes"] == ["ng:"]
    back = Scope.from_dict(json.loads(json.dumps(d)), names)
    assert back.variant == "no-ngrams" and back.inside(X).tolist() == [True, False, True]
    del d["range_variant"]
    old = Scope.from_dict(d, names)
    assert old.variant == "all" and old.inside(X).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="range variant"):
        Scope.from_dict({**d, "range_variant": "wide"}, names)


def test_the_trained_range_variant_is_saved_and_loaded(sample_model: NoiseClassifier, tmp_path: Path) -> None:
    from pipeline.classify.scope import RANGE_VARIANTS

    chosen = sample_model.manifest["novel_rules"]["range_variant"]
    assert chosen in RANGE_VARIANTS and sample_model.scope.variant == chosen
    loaded = NoiseClassifier.load(sample_model.save(tmp_path / "m"))
    assert loaded.scope.variant == chosen and loaded.manifest["scope"]["range_variant"] == chosen


def test_other_products_are_never_suppressed(sample_model: NoiseClassifier) -> None:
    from pipeline.classify.train import normalize_dir

    ids = normalize_dir(SAMPLE.parents[1] / "ids", "default")[0]
    assert ids and {a.source.format for a in ids} == {"suricata"}
    assert not any(sample_model.scope.known(a) for a in ids)  # a product the model never saw
    assert not any(sample_model.decide(ids, [[] for _ in ids]))


def test_a_redecided_alert_enters_the_history_once(sample_model: NoiseClassifier, sample_ds: Dataset) -> None:
    """The core may decide a representative again (its content changed): the history counts it once."""
    src = sample_ds.alerts[0].src.ip
    same = [a for a in sample_ds.alerts if a.src.ip == src][:3]
    col = sample_model.schema.index["src_alerts_5m"]
    sample_model.decide(same[:1], [[]])
    sample_model.decide(same[:1], [[]])
    X, _ = sample_model.score(same[1:2], [False])
    assert X[0, col] == pytest.approx(np.log1p(1))
