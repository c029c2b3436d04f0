"""Generic webhook: a JSON body signed with HMAC-SHA256.

Headers: `X-MDR-Timestamp` (Unix seconds) and `X-MDR-Signature: sha256=<hex>` where the MAC is computed over
`f"{timestamp}.".encode() + body` with the shared secret (the timestamp lets receivers reject replays).
The header name can be changed with the `signature_header` setting.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import asdict
from typing import Any

from pipeline.soar.connectors.base import HttpConnector, Message, Request, RetryPolicy

SIGNATURE_HEADER = "X-MDR-Signature"
TIMESTAMP_HEADER = "X-MDR-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhook(HttpConnector):
    type = "webhook"
    required = ("url",)

    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        return self.post_json({"event": msg.kind, **asdict(msg)}, timeout=timeout, retry=retry)

    def post_json(
        self, payload: dict[str, Any], *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        self.preview(Request("POST", self.settings["url"], json=payload))

        def once() -> dict[str, Any]:
            headers = {"Content-Type": "application/json"}
            secret = self.settings.get("secret")
            if secret:
                ts = str(int(time.time()))
                headers[TIMESTAMP_HEADER] = ts
                headers[self.settings.get("signature_header", SIGNATURE_HEADER)] = signature(secret, ts, body)
            r = self._once(
                Request("POST", self.settings["url"], content=body, headers=headers), timeout or self.timeout
            )
            return {"http_status": r.status_code}

        return self.with_retry(once, retry)
