"""Helpers for the context tests: data files, a realistic alert builder, and a fixed clock."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.schema import (
    UNRATED,
    Alert,
    Dns,
    Endpoint,
    File,
    HostInfo,
    Http,
    Incident,
    MatchExplanation,
    Process,
    Source,
)

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MDR_SHARED", ROOT.parent / "shared"))
FIXTURES_WAF = ROOT / "tests" / "fixtures" / "waf"
T0 = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)

FAMILY = {"modsecurity": ("ModSecurity", "OWASP", "waf"), "suricata": ("Suricata", "OISF", "ids"),
          "auditd": ("auditd", "Linux", "host"), "clamav": ("ClamAV", "Cisco Talos", "av")}


def data(name: str) -> Path:
    p = DATA / name
    assert p.exists(), f"missing test data {p}"
    return p


def alert(fmt: str = "suricata", tenant: str = "shop", time: datetime = T0, **kw: Any) -> Alert:
    """An alert as the named product's normalizer shapes it (family decides which side is the asset)."""
    product, vendor, family = FAMILY[fmt]
    for k, cls in (("src", Endpoint), ("dst", Endpoint), ("http", Http), ("host", HostInfo), ("dns", Dns),
                   ("file", File), ("process", Process)):
        if isinstance(kw.get(k), dict):
            kw[k] = cls(**kw[k])
    return Alert(alert_id=f"a-{id(kw)}", tenant_id=tenant, source=Source(product, vendor, family, fmt),
                 time=time, received_at=time, **kw)


def incident(base: str = "P3", **kw: Any) -> Incident:
    kw.setdefault("first_seen", T0)
    kw.setdefault("last_seen", T0)
    return Incident(incident_id="i-1", tenant_id=kw.pop("tenant_id", "shop"),
                    title=kw.pop("title", "Web attack"), category=kw.pop("category", "web_attack"),
                    class_="network_attack", priority=UNRATED, base_priority=base,
                    explanation=[MatchExplanation(use_case="uc-1", title="Web attack campaign", alert_ids=["a-1"])],
                    use_cases=["uc-1"], alert_count=1, alert_ids=["a-1"], **kw)


@pytest.fixture
def mdr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mdr-home"
    monkeypatch.setenv("MDR_HOME", str(home))
    return home
