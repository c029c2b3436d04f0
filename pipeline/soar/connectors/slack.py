"""Slack incoming webhook: a header block and a mrkdwn section; Slack answers `ok`.

Every text is escaped as Slack documents (`&`, `<`, `>` as entities): a title or value can neither ping
(`<!channel>`) nor disguise a link (`<url|text>`); the section is `verbatim`, so Slack does not turn the
URLs and channel names of attacker text into links either."""

from __future__ import annotations

from typing import Any

from pipeline.soar.connectors.base import HttpConnector, Message, Request, RetryPolicy
from pipeline.textsafe import clip


class Slack(HttpConnector):
    type = "slack"
    required = ("url",)
    markup = "slack"

    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        body = {
            "text": clip(self.esc(f"[{msg.priority}] {msg.title}"), 3000),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": clip(self.esc(msg.title), 150) or " "}},
                {"type": "section", "text": {"type": "mrkdwn", "text": clip(self.body(msg.text, msg.markup), 3000)
                                             or " ", "verbatim": True}},
            ],
        }
        r = self.send(Request("POST", self.settings["url"], json=body), timeout=timeout, retry=retry)
        return {"http_status": r.status_code}
