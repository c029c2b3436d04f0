"""The stages the core calls out to, as interfaces: what the core needs from a noise classifier, an enricher
and a prioritizer. Below both the engine and their implementations (`pipeline.classify`, `pipeline.context`),
so neither imports the other's classes."""

from __future__ import annotations

from typing import Protocol

from pipeline.rules.usecase import UseCase
from pipeline.schema import Alert, Incident, Suppressed


class Classifier(Protocol):
    """The noise classifier stage: decide which new alerts are noise (one batch call)."""

    def decide(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        """One verdict per alert, in order: a `Suppressed` for noise, None to keep it."""
        ...

    def judge_alone(self, alerts: list[Alert], matched: list[list[UseCase]]) -> list[Suppressed | None]:
        """Decide duplicates of suppressed representatives on their own (they are not representatives: a
        classifier with history may score them without recording them)."""
        return self.decide(alerts, matched)


class Enricher(Protocol):
    """Adds context (asset, intel) to a new alert in place."""

    def __call__(self, alert: Alert, /) -> None: ...


class Prioritizer(Protocol):
    """Sets an incident's priority and its reasons in place."""

    def __call__(self, incident: Incident, /) -> None: ...
