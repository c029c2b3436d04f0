"""Feature extraction: argument statistics against a plain reference, history semantics, batch invariance."""

from __future__ import annotations

import math
import random
from collections import Counter

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.classify.features import (
    ARG_FEATURES,
    FAMILY_SCORES,
    FIXED,
    ClassifierState,
    FeatureExtractor,
    FeatureSchema,
    Vocabulary,
    arg_bytes,
    arg_matrix,
    ua_family,
)
from pipeline.classify.generalize import rule_family
from pipeline.classify.history import GAP_CAP, RARITY_STEP, RARITY_TAU, WINDOWS, SourceHistory, TenantRules
from pipeline.classify.train import normalize_dir
from pipeline.schema import Alert, IntelHit

from .conftest import SAMPLE


@pytest.fixture(scope="module")
def alerts() -> list[Alert]:
    return normalize_dir(SAMPLE, "default")[0]


@pytest.fixture(scope="module")
def schema(alerts: list[Alert]) -> FeatureSchema:
    return FeatureSchema(Vocabulary.learn(alerts))


# ---- argument statistics -------------------------------------------------------------------------------
def reference_args(raw: bytes) -> list[float]:
    """ARG_FEATURES computed the slow, obvious way."""
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i]
        if c == 0x25 and i + 2 < len(raw) and all(chr(x) in "0123456789abcdefABCDEF" for x in raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
            continue
        out.append(0x20 if c == 0x2B else c)
        i += 1
    d, n = bytes(out), len(out)
    if n == 0:
        return [0.0] * len(ARG_FEATURES)
    cnt = Counter(d)
    ent = -sum(v / n * math.log2(v / n) for v in cnt.values())

    def k(chars: str) -> float:
        return float(sum(cnt[ord(c)] for c in chars))

    pairs = sum(1 for j in range(n - 1) if d[j:j + 2] in (b"--", b"/*"))
    digits, upper = k("0123456789"), k("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    alnum = digits + upper + k("abcdefghijklmnopqrstuvwxyz")
    return [float(n), k("&") + 1, ent, k("'\""), k("<>"), k("()"), k(";"), k("#") + pairs, k("="), k(" "),
            k("/\\"), k("."), k("%"), digits / n, upper / n, (n - alnum) / n, float(sum(1 for b in d if b > 127))]


EDGE = [b"", b"a", b"%", b"%4", b"%41", b"%zz%41", b"a+b%2Bc", b"%2527", b"--/*#", b"---", b"x%C3%A9y",
        "caf\u00e9".encode(), b"%%41", b"id=1'+or+1=1--&q=<script>", b"%4%41", b"\xff\xfe"]


def test_arg_matrix_matches_reference(alerts: list[Alert]) -> None:
    raws = [arg_bytes(a) for a in alerts] + EDGE
    got = arg_matrix(raws)
    want = np.array([reference_args(r) for r in raws])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    one_by_one = np.vstack([arg_matrix([r]) for r in raws])  # escapes never cross strings in a batch
    np.testing.assert_allclose(got, one_by_one, rtol=1e-12)


@given(st.lists(st.binary(max_size=40) | st.text(alphabet="%+-/*#'<>ab12AF", max_size=30).map(str.encode),
                max_size=8))
@settings(max_examples=200, deadline=None)
def test_arg_matrix_property(raws: list[bytes]) -> None:
    want = np.array([reference_args(r) for r in raws]).reshape(len(raws), len(ARG_FEATURES))
    np.testing.assert_allclose(arg_matrix(raws), want, rtol=1e-9, atol=1e-9)


def test_post_arguments_come_from_matched_data(alerts: list[Alert]) -> None:
    post = next(a for a in alerts if a.http and a.http.method == "POST" and a.extra.get("matched_data"))
    raw = arg_bytes(post)
    assert raw and raw.decode() in post.extra["matched_data"][0]
    get = next(a for a in alerts if a.http and a.http.url and "?" in a.http.url)
    assert arg_bytes(get).decode() == get.http.url.partition("?")[2]


@pytest.mark.parametrize(("ua", "family"), [
    (None, "empty"), ("-", "empty"), ("sqlmap/1.7.2#stable (https://sqlmap.org)", "scanner"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "browser"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", "mobile"),
    ("curl/8.4.0", "script"), ("Googlebot/2.1 (+http://www.google.com/bot.html)", "bot"), ("Foo/1.0", "other"),
    ("Mozilla/5.0 zgrab/0.x", "scanner"),
])
def test_ua_family(ua: str | None, family: str) -> None:
    assert ua_family(ua) == family


# ---- source history ------------------------------------------------------------------------------------
def brute(seen: list[tuple[float, str, str]], t: float) -> list[float]:
    """History features by definition: the alerts seen so far with time < t."""
    prior = [e for e in seen if e[0] < t]
    out: list[float] = []
    for span in WINDOWS:
        win = [e for e in prior if e[0] >= t - span]
        out += [math.log1p(len(win)), float(len({e[1] for e in win})), float(len({e[2] for e in win}))]
    out.append(math.log1p(min(t - max(e[0] for e in prior), GAP_CAP)) if prior else math.log1p(GAP_CAP))
    return out


def run_history(events: list[tuple[float, str, str]]) -> None:
    h, seen = SourceHistory(), []
    for t, r, tg in events:
        assert h.observe(t, r, tg) == pytest.approx(brute(seen, t)), (t, len(seen))
        seen.append((t, r, tg))


events_st = st.lists(st.tuples(st.integers(0, 8000).map(float), st.sampled_from("abcd"), st.sampled_from("xyz")),
                     max_size=120)


@given(events_st)
@settings(max_examples=150, deadline=None)
def test_history_in_order_matches_definition(events: list[tuple[float, str, str]]) -> None:
    run_history(sorted(events, key=lambda e: e[0]))


@given(events_st)
@settings(max_examples=150, deadline=None)
def test_history_out_of_order_sees_what_arrived_before(events: list[tuple[float, str, str]]) -> None:
    run_history(events)


def test_history_long_stream_with_compaction() -> None:
    rnd = random.Random(7)
    t, events = 0.0, []
    for _ in range(3000):
        t += rnd.choice([0.0, 0.0, 0.5, 3.0, 40.0, 700.0])
        events.append((t, rnd.choice("abcdefg"), rnd.choice("uvwxyz")))
    run_history(events)


def test_ties_never_depend_on_arrival_order() -> None:
    a, b = SourceHistory(), SourceHistory()
    fa = [a.observe(10.0, r, "x") for r in ("r1", "r2", "r3")]
    fb = [b.observe(10.0, r, "x") for r in ("r3", "r1", "r2")]
    assert fa == fb  # none of the three sees the others
    assert a.observe(11.0, "r4", "y")[:3] == [math.log1p(3), 3.0, 1.0]


def test_unrecorded_alert_leaves_no_trace() -> None:
    a, b = SourceHistory(), SourceHistory()
    for h, rec in ((a, False), (b, True)):
        h.observe(1.0, "r1", "x")
        h.observe(2.0, "r2", "y", record=rec)
    assert a.observe(3.0, "r3", "z")[:3] == [math.log1p(1), 1.0, 1.0]
    assert b.observe(3.0, "r3", "z")[:3] == [math.log1p(2), 2.0, 2.0]


def test_tenant_rarity_matches_definition() -> None:
    rnd = random.Random(3)
    tr, seen, t = TenantRules(), [], 0.0
    for _ in range(400):
        t += rnd.choice([0.0, 1.0, 30.0, 3600.0, 40000.0])
        rules = tuple(dict.fromkeys(rnd.choice("abcdef") for _ in range(rnd.randint(1, 3))))
        step = math.floor(t / RARITY_STEP)

        def w(ti: float, step: int = step) -> float:
            return math.exp(-(step - math.floor(ti / RARITY_STEP)) * RARITY_STEP / RARITY_TAU)

        prior = [(ti, rs) for ti, rs in seen if ti < t]
        total = sum(w(ti) for ti, _ in prior)
        rar = [math.log1p(total) - math.log1p(sum(w(ti) for ti, rs in prior if r in rs)) for r in rules]
        assert tr.observe(t, rules) == pytest.approx((rar[0], max(rar)), abs=1e-6)
        seen.append((t, rules))


# ---- the extractor -------------------------------------------------------------------------------------
def test_schema_names(schema: FeatureSchema) -> None:
    assert len(set(schema.names)) == len(schema.names)
    assert schema.names[:len(FIXED)] == list(FIXED)
    assert any(n.startswith("rule=") for n in schema.names) and "product=modsecurity" in schema.names
    with pytest.raises(ValueError, match="not supported"):
        FeatureSchema(schema.vocab, "0")


def test_batching_and_order_do_not_change_features(alerts: list[Alert], schema: FeatureSchema) -> None:
    whole = FeatureExtractor(schema).transform(alerts)
    for size in (1, 7, 1024):
        fx = FeatureExtractor(schema)
        got = np.vstack([fx.transform(alerts[i:i + size]) for i in range(0, len(alerts), size)])
        np.testing.assert_array_equal(got, whole)
    perm = list(range(len(alerts)))
    random.Random(1).shuffle(perm)
    shuffled = FeatureExtractor(schema).transform([alerts[i] for i in perm])  # one batch, any order
    np.testing.assert_array_equal(shuffled, whole[perm])


def test_feature_values_of_one_alert(alerts: list[Alert], schema: FeatureSchema) -> None:
    a = next(x for x in alerts if x.http and x.http.method == "GET" and "%27" in (x.http.url or ""))
    ctx = msgspec.structs.replace(a, intel=[IntelHit("1.2.3.4", "ip", "src.ip", "feed")])
    row = dict(zip(schema.names, FeatureExtractor(schema).transform([ctx])[0].tolist(), strict=True))
    assert row["method=GET"] == 1.0 and row["action=blocked"] == 1.0 and row["family=waf"] == 1.0
    assert row["x:anomaly_score"] == float(a.extra["anomaly_score"])
    assert row["args_quote"] >= 1.0 and row["intel_hits"] == 1.0 and row["asset_criticality"] == 0.0
    assert row["src_alerts_5m"] == 0.0 and row["src_gap"] == pytest.approx(math.log1p(GAP_CAP))
    assert sum(v for k, v in row.items() if k.startswith("rule=")) >= 1.0
    assert row["n_distinct_rules"] == len({r.id for r in a.rules})
    scores = [float(a.extra.get(k, 0)) for k in FAMILY_SCORES]  # what carries over to a family never seen
    assert row["family_score_max"] == max(scores) and row["families_scored"] == sum(v > 0 for v in scores)
    assert row["n_rule_families"] == len({f for f in map(rule_family, a.rules) if f})


def test_state_is_plain_mappings(alerts: list[Alert], schema: FeatureSchema) -> None:
    state = ClassifierState()
    FeatureExtractor(schema, state).transform(alerts)
    assert set(state.tenants) == {"default"}
    assert all(k.startswith("default\x1f127.") for k in state.sources)
    end = alerts[-1].time.timestamp()
    assert state.expire(end + WINDOWS[-1]) == 0  # quiet for an hour: the gap feature still remembers them
    assert state.expire(end + GAP_CAP + 1) == len({a.src.ip for a in alerts})
    assert not state.sources


def test_expiring_idle_sources_never_changes_features(alerts: list[Alert], schema: FeatureSchema) -> None:
    """A stream with a day-long pause: sweeping idle sources at every batch gives the same rows as never."""
    later = [msgspec.structs.replace(a, time=a.time.replace(day=a.time.day + 1, hour=(a.time.hour + 1) % 24))
             for a in alerts[:150]]
    stream = alerts + later
    keep, sweep = FeatureExtractor(schema), FeatureExtractor(schema)
    rows_keep, rows_sweep = [], []
    for i in range(0, len(stream), 50):
        batch = stream[i:i + 50]
        rows_keep.append(keep.transform(batch))
        rows_sweep.append(sweep.transform(batch))
        sweep.state.expire(max(a.time for a in batch).timestamp())
    np.testing.assert_array_equal(np.vstack(rows_keep), np.vstack(rows_sweep))
    assert len(sweep.state.sources) < len(keep.state.sources)


def test_state_survives_a_restart(alerts: list[Alert], schema: FeatureSchema) -> None:
    """The state pickles (as a worker's table would store it): stopping and resuming changes no feature."""
    import pickle

    whole = FeatureExtractor(schema).transform(alerts)
    first = FeatureExtractor(schema)
    head = first.transform(alerts[:170])
    state = pickle.loads(pickle.dumps(first.state))
    tail = FeatureExtractor(schema, state).transform(alerts[170:])
    np.testing.assert_array_equal(np.vstack([head, tail]), whole)
