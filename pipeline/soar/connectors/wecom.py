"""WeCom (企业微信) group robot webhook: `POST .../cgi-bin/webhook/send?key=KEY` with a markdown message.
Success is `{"errcode": 0}`; 45009 (API frequency limit) is retried. Titles and values are escaped for the
markdown (no injected link or image)."""

from __future__ import annotations

from typing import Any

from pipeline.soar.connectors.base import HttpConnector, Message, Request, RetryPolicy
from pipeline.textsafe import clip

MAX_BYTES = 4096
RETRY_CODES = frozenset({45009, -1})


class WeCom(HttpConnector):
    type = "wecom"
    required = ("url",)
    markup = "markdown"

    def notify(self, msg: Message, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> dict[str, Any]:
        content = clip(f"**{self.esc(msg.title)}**\n{self.body(msg.text, msg.markup)}", MAX_BYTES, utf8=True)
        req = Request("POST", self.settings["url"], json={"msgtype": "markdown", "markdown": {"content": content}})
        self.preview(req)
        return self.with_retry(
            lambda: self.errcode_answer(self._once(req, timeout or self.timeout), "wecom", RETRY_CODES), retry
        )
