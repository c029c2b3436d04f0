"""Jira (REST API v2): `POST /rest/api/2/issue` opens an issue, comments carry updates and escalations.

Idempotency: the issue carries the label `mdr-<incident id>`; before creating, a JQL search on that label
finds an issue a previous (timed-out) attempt already made. Auth: `token` as a bearer token (Data Center
personal access token) or `username` + `token` as basic auth (Jira Cloud e-mail + API token).
Settings: url, project, issue_type (Task), token, username, priorities (P1..P5 -> Jira priority names).
Descriptions and comments are Jira wiki markup: text in them is escaped for it (no link, image, macro or
mention from a value); the summary is plain text.
"""

from __future__ import annotations

import base64
from typing import Any

from pipeline.soar.connectors.base import (
    ConnectorError,
    HttpConnector,
    Request,
    RetryPolicy,
    TicketInfo,
    json_or_error,
)
from pipeline.textsafe import visible

PRIORITIES = {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low", "P5": "Lowest"}


class Jira(HttpConnector):
    type = "jira"
    required = ("url", "project", "token")
    markup = "jira"

    def _req(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Request:
        token = self.settings["token"]
        if self.settings.get("username"):
            auth = "Basic " + base64.b64encode(f"{self.settings['username']}:{token}".encode()).decode()
        else:
            auth = f"Bearer {token}"
        return Request(
            method,
            self.endpoint(path),
            json=body,
            params=params or {},
            headers={"Authorization": auth, "Accept": "application/json"},
        )

    def open_ticket(
        self, t: TicketInfo, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        label = f"mdr-{t.incident_id}"
        prios = {**PRIORITIES, **(self.settings.get("priorities") or {})}
        fields: dict[str, Any] = {
            "project": {"key": self.settings["project"]},
            "summary": visible(f"[{t.priority}] {t.title}")[:255],
            "description": self.body(t.text, t.markup),
            "issuetype": {"name": self.settings.get("issue_type", "Task")},
            "labels": [label, *(x.replace(" ", "_") for x in t.tags)],
        }
        if self.settings.get("set_priority", True):
            fields["priority"] = {"name": prios.get(t.priority, "Medium")}
        create = self._req("POST", "/rest/api/2/issue", {"fields": fields})
        self.preview(create)
        search = self._req(
            "GET",
            "/rest/api/2/search",
            params={"jql": f'labels = "{label}"', "fields": "key", "maxResults": "1"},
        )
        found = json_or_error(self.send(search, timeout=timeout, retry=retry), "jira search").get("issues") or []
        if found:
            return {"key": found[0]["key"], "id": found[0].get("id")}
        issue = json_or_error(self.send(create, timeout=timeout, retry=retry), "jira create")
        if not issue.get("key"):
            raise ConnectorError("jira: no issue key in the answer", retryable=False)
        return {"key": issue["key"], "id": issue.get("id")}

    def update_ticket(
        self,
        ref: dict[str, Any],
        text: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        r = self.send(
            self._req("POST", f"/rest/api/2/issue/{ref['key']}/comment", {"body": text}),
            timeout=timeout,
            retry=retry,
        )
        return {"comment_id": json_or_error(r, "jira comment").get("id")}

    def escalate_ticket(
        self,
        ref: dict[str, Any],
        text: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        return self.update_ticket(ref, text or "Escalated by the MDR service.", timeout=timeout, retry=retry)
