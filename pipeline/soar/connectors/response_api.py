"""The customer's response API: firewall blocks and host isolation as JSON calls.

`POST {url}{block_path}` with `{"action": "block_ip", "ip", "duration", "reason", "ref"}` and
`POST {url}{isolate_path}` with `{"action": "isolate_host", "host", "reason", "ref"}`; bearer `token`.
Addresses inside `protect` (CIDRs: the customer's own ranges, scanners they run) are never blocked.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pipeline.soar.connectors.base import ConnectorError, HttpConnector, Request, RetryPolicy


class ResponseApi(HttpConnector):
    type = "response_api"
    required = ("url",)

    def _req(self, path: str, body: dict[str, Any]) -> Request:
        headers = {"Authorization": f"Bearer {self.settings['token']}"} if self.settings.get("token") else {}
        return Request("POST", self.endpoint(path), json=body, headers=headers)

    def protected(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        return any(addr in ipaddress.ip_network(n, strict=False) for n in self.settings.get("protect") or [])

    def block_ip(
        self,
        ip: str,
        *,
        duration: float,
        reason: str,
        ref: str,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise ConnectorError(f"not an IP address: {ip!r}", retryable=False) from None
        if self.protected(ip):
            return {"ip": ip, "skipped": "protected address"}
        body = {"action": "block_ip", "ip": ip, "duration": int(duration), "reason": reason, "ref": ref}
        r = self.send(self._req(self.settings.get("block_path", "/block"), body), timeout=timeout, retry=retry)
        return {"ip": ip, "http_status": r.status_code}

    def isolate_host(
        self,
        host: str,
        *,
        reason: str,
        ref: str,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> dict[str, Any]:
        body = {"action": "isolate_host", "host": host, "reason": reason, "ref": ref}
        r = self.send(self._req(self.settings.get("isolate_path", "/isolate"), body), timeout=timeout, retry=retry)
        return {"host": host, "http_status": r.status_code}
