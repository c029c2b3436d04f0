"""Context for alerts and incidents: asset inventory, threat intelligence, priority with SLAs, escort mode.

`Context` (store.py) holds it all per tenant and gives the core its two hooks: `enrich(alert)` (asset and
intel hits) and `prioritize(incident)` (P1–P5, reasons, SLA, escort). Files: assets.py (inventory), intel.py
(indicator sets, matching), feeds.py (STIX / MISP / CSV parsers), priority.py (the priority function, SLA
table, escort calendar), loader.py (file:line: field errors), cli.py (`mdr assets`, `mdr intel`).
"""

from pipeline.context.loader import ContextFileError
from pipeline.context.store import Context

__all__ = ["Context", "ContextFileError"]
