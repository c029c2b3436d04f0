"""Security reports of one tenant (`mdr report`): data from the ticket store and the alert statistics,
charts, HTML / Markdown / PDF rendering. `record_stats` (pipeline.report.stats) persists a replay's alert
statistics; it is imported lazily so that `mdr --help` stays fast."""

from typing import Any

FORMATS = ("html", "md", "pdf")  # what `mdr report --format` writes (pipeline/report/render.py)


def __getattr__(name: str) -> Any:
    if name == "record_stats":
        from pipeline.report.stats import record_stats

        return record_stats
    raise AttributeError(name)
