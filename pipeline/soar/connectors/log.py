"""A local channel: appends each notification as one JSON line to a file (demos, replays, audits)."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.soar.connectors.base import Connector, ConnectorError, DryRun, Message, RetryPolicy

_lock = threading.Lock()


class LogFile(Connector):
    type = "log"
    required = ("path",)

    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        rec = {"channel": self.name, "at": datetime.now(UTC).isoformat(), **asdict(msg)}
        if self.dry_run:
            raise DryRun({"method": "APPEND", "url": str(self.settings["path"]), "body": rec})
        path = Path(self.settings["path"])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _lock, path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        except OSError as e:
            raise ConnectorError(f"log {path}: {e}", retryable=True) from None
        return {"path": str(path)}
