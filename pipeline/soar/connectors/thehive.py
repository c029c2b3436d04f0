"""TheHive 5: alerts (`POST /api/v1/alert`, bearer API key), optional promotion to a case, comments.

The alert's `sourceRef` is the incident id, which TheHive keeps unique per source: when a retry meets
"already exists", the existing alert is looked up with the query API instead of failing.
Settings: url, api_key, organisation (X-Organisation), source (default "mdr-pipeline"), type
("mdr-incident"), promote (create a case at once), tlp / pap (2).
Descriptions and comments are markdown, which TheHive renders with HTML: text in them is escaped for it.
"""

from __future__ import annotations

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

SEVERITY = {"P1": 4, "P2": 3, "P3": 2, "P4": 1, "P5": 1}


class TheHive(HttpConnector):
    type = "thehive"
    required = ("url", "api_key")
    markup = "markdown"

    def _req(self, method: str, path: str, body: Any) -> Request:
        headers = {"Authorization": f"Bearer {self.settings['api_key']}"}
        if self.settings.get("organisation"):
            headers["X-Organisation"] = self.settings["organisation"]
        return Request(method, self.endpoint(path), json=body, headers=headers)

    @property
    def source(self) -> str:
        return self.settings.get("source", "mdr-pipeline")

    def open_ticket(
        self, t: TicketInfo, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        body = {
            "type": self.settings.get("alert_type", "mdr-incident"),
            "source": self.source,
            "sourceRef": t.incident_id,
            "title": visible(f"[{t.priority}] {t.title}"),
            "description": self.body(t.text, t.markup),
            "severity": SEVERITY.get(t.priority, 2),
            "date": t.created_ms,
            "tags": t.tags,
            "tlp": int(self.settings.get("tlp", 2)),
            "pap": int(self.settings.get("pap", 2)),
            "observables": [{"dataType": dt, "data": v} for dt, v in t.observables],
        }
        req = self._req("POST", "/api/v1/alert", body)
        self.preview(req)
        try:
            alert = json_or_error(self.send(req, timeout=timeout, retry=retry), "thehive alert")
            alert_id = alert.get("_id")
        except ConnectorError as e:
            if e.status != 400 or "exist" not in str(e).lower():
                raise
            alert_id = self._find(t.incident_id, timeout, retry)
        if not alert_id:
            raise ConnectorError("thehive: no alert id in the answer", retryable=False)
        ref: dict[str, Any] = {"alert_id": alert_id}
        if self.settings.get("promote"):
            ref.update(self.escalate_ticket(ref, "", timeout=timeout, retry=retry))
        return ref

    def _find(self, source_ref: str, timeout: float | None, retry: RetryPolicy | None) -> str | None:
        query = {
            "query": [
                {"_name": "listAlert"},
                {
                    "_name": "filter",
                    "_and": [
                        {"_eq": {"_field": "sourceRef", "_value": source_ref}},
                        {"_eq": {"_field": "source", "_value": self.source}},
                    ],
                },
                {"_name": "page", "from": 0, "to": 1},
            ]
        }
        r = self.send(self._req("POST", "/api/v1/query", query), timeout=timeout, retry=retry)
        found = r.json()
        return found[0].get("_id") if isinstance(found, list) and found else None

    def update_ticket(
        self,
        ref: dict[str, Any],
        text: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        path = (
            f"/api/v1/case/{ref['case_id']}/comment"
            if ref.get("case_id")
            else f"/api/v1/alert/{ref['alert_id']}/comment"
        )
        r = self.send(self._req("POST", path, {"message": text}), timeout=timeout, retry=retry)
        return {"comment_id": json_or_error(r, "thehive comment").get("_id")}

    def escalate_ticket(
        self,
        ref: dict[str, Any],
        text: str,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        """Promote the alert to a case (once); a note goes along as a case comment."""
        if not ref.get("case_id"):
            r = self.send(self._req("POST", f"/api/v1/alert/{ref['alert_id']}/case", {}), timeout=timeout, retry=retry)
            ref = {**ref, "case_id": json_or_error(r, "thehive promote").get("_id")}
        if text:
            self.update_ticket(ref, text, timeout=timeout, retry=retry)
        return {"alert_id": ref["alert_id"], "case_id": ref["case_id"]}
