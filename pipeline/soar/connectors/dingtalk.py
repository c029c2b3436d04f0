"""DingTalk custom robot (钉钉自定义机器人) webhook with the "加签" signature.

DingTalk's scheme: string_to_sign = f"{timestamp}\\n{secret}" (timestamp in milliseconds), HMAC-SHA256 keyed
with the secret, Base64, then URL-encoded as the `sign` query parameter next to `timestamp`. The robot answers
HTTP 200 with `{"errcode": 0}` on success; 130101 means "sending too fast" (retried). The message is
markdown: titles and values are escaped for it (no injected link, image or heading); the notification
title is plain text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from pipeline.soar.connectors.base import HttpConnector, Message, Request, RetryPolicy
from pipeline.textsafe import clip, visible

RETRY_CODES = frozenset({130101, -1})


def sign(secret: str, timestamp_ms: int) -> str:
    """Base64 HMAC-SHA256 of "timestamp\\nsecret" (URL encoding is left to the HTTP client)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class DingTalk(HttpConnector):
    type = "dingtalk"
    required = ("url",)
    markup = "markdown"

    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "msgtype": "markdown",
            "markdown": {"title": clip(visible(msg.title), 100),
                         "text": f"### {self.esc(msg.title)}\n\n{self.body(msg.text, msg.markup)}"},
        }
        mobiles = self.settings.get("at_mobiles") or []
        if mobiles:
            body["at"] = {"atMobiles": list(mobiles), "isAtAll": False}
            body["markdown"]["text"] += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        self.preview(Request("POST", self.settings["url"], json=body))
        return self.with_retry(lambda: self._post(body, timeout or self.timeout), retry)

    def _post(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        params = {}
        secret = self.settings.get("secret")
        if secret:
            ts = int(time.time() * 1000)
            params = {"timestamp": str(ts), "sign": sign(secret, ts)}
        r = self._once(Request("POST", self.settings["url"], json=body, params=params), timeout)
        return self.errcode_answer(r, "dingtalk", RETRY_CODES)
