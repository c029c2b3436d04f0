"""Noise must not hide an attack behind dedup: a duplicate of a suppressed alert is judged on its own."""

from __future__ import annotations

from pipeline.authoring import alert_from_dict
from pipeline.core.engine import Core
from pipeline.core.hooks import Classifier
from pipeline.rules.usecase import UseCaseSet
from pipeline.schema import Alert, Suppressed


class QueryWordClassifier(Classifier):
    """Calls an alert noise when its query holds the word "benign" (a stand-in for the model's decision)."""

    def decide(self, alerts: list[Alert], matched: list) -> list[Suppressed | None]:
        return [Suppressed(alert=a, score=0.01, threshold=0.5, model_version="word", reason="noise")
                if a.http and "benign" in (a.http.url or "") else None for a in alerts]


def _alert(n: int, query: str) -> Alert:
    return alert_from_dict({"src": {"ip": "198.51.100.7"}, "rule": {"id": "942100"},
                            "http": {"url": f"/app?{query}", "host": "shop.example"}}, n)


def test_attack_after_suppressed_lookalike_is_not_merged_into_it() -> None:
    core = Core(UseCaseSet(), classifier=QueryWordClassifier())
    core.feed_alerts([_alert(0, "q=benign"), _alert(1, "q=benign+shoes")])
    out = core.take()
    assert len(out.suppressed) == 1 and out.suppressed[0].alert.count == 2  # noise still deduplicates
    core.feed_alerts([_alert(2, "id=1+UNION+SELECT+password")])  # same fingerprint (rule, source, path)
    out = core.take()
    assert [a.http.url for a in out.alerts] == ["/app?id=1+UNION+SELECT+password"]
    assert not out.suppressed and out.duplicates == 0
