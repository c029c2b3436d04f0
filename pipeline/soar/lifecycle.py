"""The ticket lifecycle: statuses, the moves between them, closing verdicts (no heavy imports: the CLI uses
these as option choices)."""

from __future__ import annotations

STATUSES = ("new", "acknowledged", "investigating", "resolved", "closed")
# Allowed lifecycle moves. Any open ticket may be closed (with a verdict); a resolved one may be reopened.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"acknowledged", "closed"}),
    "acknowledged": frozenset({"investigating", "resolved", "closed"}),
    "investigating": frozenset({"resolved", "closed"}),
    "resolved": frozenset({"investigating", "closed"}),
    "closed": frozenset(),
}
VERDICTS = ("true_positive", "false_positive", "benign", "duplicate")
