"""`UnsupportedRule`: a rule this engine cannot evaluate faithfully (an unmapped field, a log source we have no
data for, a modifier we do not implement). Raised while compiling; reports group rules by its `reason`."""

from __future__ import annotations


class UnsupportedRule(Exception):
    """A rule this engine cannot evaluate faithfully; `reason` says why (grouped in reports)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
