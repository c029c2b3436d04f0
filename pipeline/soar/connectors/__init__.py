"""Connectors (one module per system) and `Channels`: named, per-tenant-overridable connector instances.

Channel configuration (`playbooks/channels.yaml`, or `MDR_SOAR_CHANNELS`):

    channels:
      customer: {type: dingtalk, url: "env:MDR_DINGTALK_URL", secret: "env:MDR_DINGTALK_SECRET"}
      firewall: {type: response_api, url: "secret:fw_url", token: "secret:fw_token", protect: [10.0.0.0/8]}
    tenants:                     # per-tenant overrides of the same names
      shop: {customer: {type: wecom, url: "secret:shop_wecom_url"}}
    escalation:                  # channels notified at SLA escalation tier 1, 2, 3
      tiers: [[oncall], [oncall, soc], [oncall, soc, email]]
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import yaml

from pipeline import paths, safeyaml
from pipeline.soar.connectors.base import (
    ChannelUnavailable,
    Connector,
    ConnectorError,
    DryRun,
    Message,
    RetryPolicy,
    Secrets,
    TicketInfo,
    register_secret,
)
from pipeline.soar.connectors.dingtalk import DingTalk
from pipeline.soar.connectors.jira import Jira
from pipeline.soar.connectors.log import LogFile
from pipeline.soar.connectors.response_api import ResponseApi
from pipeline.soar.connectors.slack import Slack
from pipeline.soar.connectors.smtp import Email
from pipeline.soar.connectors.thehive import TheHive
from pipeline.soar.connectors.webhook import Webhook
from pipeline.soar.connectors.wecom import WeCom
from pipeline.tenant import SYNTAX, is_tenant

REGISTRY: dict[str, type[Connector]] = {
    c.type: c for c in (DingTalk, WeCom, Slack, Email, Webhook, TheHive, Jira, ResponseApi, LogFile)
}
CHANNELS_FILE = "channels.yaml"

__all__ = [
    "REGISTRY",
    "ChannelUnavailable",
    "Channels",
    "Connector",
    "ConnectorError",
    "DryRun",
    "Message",
    "RetryPolicy",
    "TicketInfo",
    "load_channels",
    "register_secrets",
]


class ChannelConfigError(ValueError):
    pass


class Channels:
    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        source: str = "<config>",
        dry_run: bool = False,
        secrets: Secrets | None = None,
    ):
        config = config or {}
        self.source = source
        self.dry_run = dry_run
        self.secrets = secrets or Secrets()
        self.specs: dict[str, dict[str, Any]] = dict(config.get("channels") or {})
        self.tenants: dict[str, dict[str, dict[str, Any]]] = dict(config.get("tenants") or {})
        self.tiers: list[list[str]] = [list(t) for t in (config.get("escalation") or {}).get("tiers") or []]
        self._cache: dict[tuple[str, str], Connector | ChannelUnavailable] = {}
        self._lock = threading.Lock()
        self._check()
        self._register_secrets()

    def _check(self) -> None:
        for t in self.tenants:
            if not is_tenant(t):
                raise ChannelConfigError(f"{self.source}: tenants: {t!r} is not a tenant id ({SYNTAX})")
        specs = [(n, s) for n, s in self.specs.items()]
        specs += [(f"{t}/{n}", s) for t, m in self.tenants.items() for n, s in (m or {}).items()]
        for name, spec in specs:
            if not isinstance(spec, dict) or spec.get("type") not in REGISTRY:
                got = spec.get("type") if isinstance(spec, dict) else spec
                raise ChannelConfigError(
                    f"{self.source}: channel {name}: unknown type {got!r} (known: {', '.join(sorted(REGISTRY))})"
                )
        for tier in self.tiers:
            for n in tier:
                if n not in self.names():
                    raise ChannelConfigError(f"{self.source}: escalation tier names unknown channel {n!r}")

    def _register_secrets(self) -> None:
        """Every secret of the configuration is known to the redaction at once, whether or not its channel
        is ever used (a secret that cannot be resolved leaves its channel unavailable, as in `get`), and so is
        every value of the secrets file."""
        self.secrets.register()
        specs = [*self.specs.values(), *(s for m in self.tenants.values() for s in (m or {}).values())]
        for spec in specs:
            for k, v in spec.items():
                try:
                    val, is_secret = self.secrets.resolve(v)
                except ChannelUnavailable:
                    continue
                register_secret(k, val, is_secret)

    def names(self) -> set[str]:
        return set(self.specs) | {n for m in self.tenants.values() for n in (m or {})}

    def get(self, name: str, tenant: str = "") -> Connector:
        """The connector behind a channel name for a tenant; raises ChannelUnavailable when unconfigured."""
        spec = (self.tenants.get(tenant) or {}).get(name)
        key = (name, tenant if spec is not None else "")
        spec = spec if spec is not None else self.specs.get(name)
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                try:
                    if spec is None:
                        raise ChannelUnavailable(f"no channel named {name!r}")
                    settings = {k: v for k, v in spec.items() if k != "type"}
                    hit = REGISTRY[spec["type"]](name, settings, secrets=self.secrets, dry_run=self.dry_run)
                except ChannelUnavailable as e:
                    hit = e
                self._cache[key] = hit
        if isinstance(hit, ChannelUnavailable):
            raise hit
        return hit

    def available(self, name: str, tenant: str = "") -> bool:
        try:
            self.get(name, tenant)
        except ChannelUnavailable:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            for c in self._cache.values():
                if isinstance(c, Connector):
                    c.close()
            self._cache.clear()


def channels_path(path: str | Path | None = None) -> Path:
    if path:
        return Path(path)
    if os.environ.get("MDR_SOAR_CHANNELS"):
        return Path(os.environ["MDR_SOAR_CHANNELS"])
    return paths.playbooks_dir() / CHANNELS_FILE


def register_secrets(path: str | Path | None = None) -> None:
    """Register the secrets of the channel configuration for redaction before anything is written (a bad
    configuration is reported where the channels are loaded)."""
    with contextlib.suppress(ChannelConfigError):
        load_channels(path)


def load_channels(path: str | Path | None = None, *, dry_run: bool = False) -> Channels:
    """Channels from `path`, `MDR_SOAR_CHANNELS` or playbooks/channels.yaml (none when the file is absent)."""
    p = channels_path(path)
    if not p.is_file():
        if path:
            raise ChannelConfigError(f"{p}: no such file")
        return Channels({}, source=str(p), dry_run=dry_run)
    try:
        data = safeyaml.load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ChannelConfigError(f"{p}: {e}") from None
    return Channels(data, source=str(p), dry_run=dry_run)
