"""The one assembly of the core: use cases, the tenants' context and the noise classifier put together the same
way for every driver (`mdr replay`, the streaming worker, the tests); the classifier comes from
`pipeline.classify.registry.load_classifier`. SOAR is assembled by `Soar.open` (store,
playbooks, channels, response-safety policy), which both drivers call.

What differs between drivers is only what they hand in: their state (the worker's partition tables), their
settings (dedup window, lateness), and which context they load (`mdr replay` the saved state
of its tenant plus the files named on its command line; the worker every tenant's saved state).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.core.engine import Core
from pipeline.core.hooks import Classifier
from pipeline.rules.usecase import UseCaseSet

if TYPE_CHECKING:
    from pipeline.context.store import Context


def build_core(usecases: UseCaseSet, context: Context | None = None, classifier: Classifier | None = None,
               **settings: Any) -> Core:
    """A core over `usecases` that enriches alerts and prioritizes incidents with `context` (none: no assets,
    intel or escort calendar) and lets `classifier` suppress noise; `settings` are the driver's (`state`,
    `dedup_window`, `lateness`); a forced input format is the file reader's (`normalize.source`)."""
    return Core(usecases, enricher=context.enrich if context is not None else None,
                prioritizer=context.prioritize if context is not None else None, classifier=classifier, **settings)

