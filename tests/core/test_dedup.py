"""Dedup: merge by fingerprint within the window, deterministically whatever the chunking."""

from __future__ import annotations

import random
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.authoring import alert_from_dict
from pipeline.core.dedup import DUPLICATE, NEW, SAME_EVENT, Dedup
from pipeline.core.engine import Core
from pipeline.rules.usecase import UseCaseSet
from pipeline.schema import Alert


def _alert(seq: int, src: str = "203.0.113.7", rule: str = "942100", minutes: float = 0.0, **kw):
    a = alert_from_dict({"src": {"ip": src}, "rule": {"id": rule}, "http": {"url": f"/a?x={seq}"}, **kw}, seq)
    a.time = a.time + timedelta(minutes=minutes)
    return a


def test_repeats_merge_with_count_and_times() -> None:
    d = Dedup(window=600)
    first, kind = d.merge(_alert(0))
    assert kind == NEW
    for i in range(1, 5):
        rep, kind = d.merge(_alert(i, minutes=i))
        assert kind == DUPLICATE and rep is first
    assert first.count == 5
    assert first.last_seen - first.first_seen == timedelta(minutes=4, seconds=4)


def test_window_closes_and_new_representative_starts() -> None:
    d = Dedup(window=600)
    a, _ = d.merge(_alert(0))
    b, kind = d.merge(_alert(1, minutes=11))
    assert kind == NEW and b is not a
    assert d.holds(b) and not d.holds(a)  # a is final


def test_different_target_or_rule_is_different() -> None:
    d = Dedup()
    d.merge(_alert(0))
    assert d.merge(_alert(1, rule="941100"))[1] == NEW
    assert d.merge(_alert(2, src="198.51.100.1"))[1] == NEW


def test_secondary_log_merges_into_primary_event() -> None:
    d = Dedup()
    err = alert_from_dict({"source": {"product": "ModSecurity", "vendor": "OWASP", "family": "waf",
                                      "format": "modsec_error"}, "extra": {"transaction_id": "T1"}}, 0)
    audit = alert_from_dict({"source": {"product": "ModSecurity", "vendor": "OWASP", "family": "waf",
                                        "format": "modsecurity"}, "extra": {"transaction_id": "T1"},
                             "action": "blocked", "http": {"status": 403}}, 1)
    rep, kind = d.merge(err)
    assert kind == NEW
    rep2, kind = d.merge(audit)
    assert kind == SAME_EVENT and rep2 is rep and rep.count == 1
    assert rep.alert_id == err.alert_id  # the id stays; the content is the primary log's
    assert rep.action == "blocked" and rep.http is not None and rep.http.status == 403


def test_an_upgrade_takes_every_field_of_the_primary_but_the_id_and_tally() -> None:
    err = alert_from_dict({"source": {"product": "ModSecurity", "vendor": "OWASP", "family": "waf",
                                      "format": "modsec_error"}, "extra": {"transaction_id": "T1"},
                           "message": "error-log line", "attack": ["T1190"]}, 0)
    audit = alert_from_dict({"source": {"product": "ModSecurity", "vendor": "OWASP", "family": "waf",
                                        "format": "modsecurity"}, "extra": {"transaction_id": "T1", "x": 1},
                             "action": "blocked", "http": {"status": 403}, "user": "u", "raw": "audit"}, 1)
    d = Dedup()
    rep, _ = d.merge(err)
    rep.count = 3
    kept = {f: getattr(rep, f) for f in ("alert_id", "fingerprint", "count", "first_seen", "last_seen")}
    assert d.upgrade(rep, audit)
    for f in Alert.__struct_fields__:  # a field added to Alert later is taken too
        assert getattr(rep, f) == kept.get(f, getattr(audit, f)), f
    assert not d.upgrade(rep, audit)  # the primary's content has nothing more to give


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=8), st.randoms())
def test_same_output_in_any_chunking(chunks: list[int], rnd: random.Random) -> None:
    alerts = [_alert(i, src=f"203.0.113.{i % 3}", rule=str(942100 + i % 2), minutes=i * 0.7) for i in range(60)]

    def run(sizes: list[int]) -> list[tuple[str, int]]:
        core = Core(UseCaseSet())
        out, i, k = [], 0, 0
        fresh = [alert_from_dict({"src": {"ip": a.src.ip}, "rule": {"id": a.rule.id},
                                  "http": {"url": a.http.url}, "time": a.time.isoformat()}, n)
                 for n, a in enumerate(alerts)]
        while i < len(fresh):
            n = sizes[k % len(sizes)]
            core.feed_alerts(fresh[i:i + n])
            out.extend(core.take().alerts)
            i, k = i + n, k + 1
        return [(a.alert_id, a.count) for a in out]

    assert run(chunks) == run([len(alerts)])
