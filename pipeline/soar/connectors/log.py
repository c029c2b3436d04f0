"""A local channel: appends each notification as one JSON line to a file (demos, replays, audits); control
and bidi characters are `\\u` escapes in it and configured secrets are redacted."""

from __future__ import annotations

import threading
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.redact import redact
from pipeline.soar.connectors.base import Connector, ConnectorError, DryRun, Message, RetryPolicy
from pipeline.textsafe import json_line

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
                fh.write(redact(json_line(rec)) + "\n")
        except OSError as e:
            raise ConnectorError(f"log {path}: {e}", retryable=True) from None
        return {"path": str(path)}
