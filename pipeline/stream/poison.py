"""Poison messages: the ones the worker failed on, counted across restarts, so none can crash it in a loop.

When an error escapes the handling of some consumed messages (anything the per-record and per-alert containment
of the normalize stage and the core did not absorb), the worker records one failed attempt for each of those
messages in `<data dir>/attempts.json`, reports itself unhealthy and exits non-zero; the messages are not
committed, so they come back after the restart. A message that comes back with failed attempts is handled alone
(so the count lands on the culprit, not on its batch); one that failed `limit` times goes to the dead letters
(reason `poison_message`, the last error) and is committed without being run again.

A hard crash (a signal, the OOM killer) records nothing: only exceptions are counted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("mdr.worker")
POISON = "poison_message"


def key(topic: str, partition: int, offset: int) -> str:
    return f"{topic}:{partition}:{offset}"


class Attempts:
    """Failed attempts per message (topic, partition, offset), kept in a small JSON file."""

    def __init__(self, path: Path, limit: int):
        self.path = path
        self.limit = max(1, limit)
        self.entries: dict[str, dict[str, Any]] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self.entries = {k: v for k, v in data.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            log.warning("attempts file %s unreadable (%s); starting from none", path, e)
        if self.entries:
            log.warning("%d messages failed before the last restart: they are run alone, or dead-lettered after "
                        "%d attempts", len(self.entries), self.limit)

    def count(self, topic: str, partition: int, offset: int) -> int:
        e = self.entries.get(key(topic, partition, offset))
        return int(e.get("attempts", 0)) if e else 0

    def error(self, topic: str, partition: int, offset: int) -> str:
        e = self.entries.get(key(topic, partition, offset))
        return str(e.get("error", "")) if e else ""

    def failed(self, messages: list[tuple[str, int, int]], error: str) -> None:
        """One more failed attempt for each message (written at once: the process is about to exit)."""
        for m in messages:
            e = self.entries.setdefault(key(*m), {"attempts": 0})
            e["attempts"] = int(e.get("attempts", 0)) + 1
            e["error"] = error[:500]
        self._save()

    def forget(self, messages: list[tuple[str, int, int]]) -> None:
        """Messages that are done (processed, or dead-lettered)."""
        if self.entries and [k for m in messages if self.entries.pop(k := key(*m), None) is not None]:
            self._save()

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("cannot write the attempts file %s: %s", self.path, e)
