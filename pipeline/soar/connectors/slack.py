"""Slack incoming webhook: a header block and a mrkdwn section; Slack answers `ok`."""

from __future__ import annotations

from typing import Any

from pipeline.soar.connectors.base import HttpConnector, Message, Request, RetryPolicy


class Slack(HttpConnector):
    type = "slack"
    required = ("url",)

    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        body = {
            "text": f"[{msg.priority}] {msg.title}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": msg.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": msg.text[:3000] or " "}},
            ],
        }
        r = self.send(Request("POST", self.settings["url"], json=body), timeout=timeout, retry=retry)
        return {"http_status": r.status_code}
