"""The alert statistics tables the reports read (`alert_stats`, `funnel_stats`; Alembic revision
`0002_alert_stats`; `noise_drift`). `pipeline.report.stats.record_stats` writes them."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.soar.models import Base, JsonType, RedactedString

KEY_LEN = 300  # longest stored dimension value


class AlertStat(Base):
    """Alerts of one tenant and day, grouped by product, rule, source address, target asset and action."""

    __tablename__ = "alert_stats"
    __table_args__ = (Index("ix_alert_stats_tenant_day", "tenant_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch: Mapped[str] = mapped_column(String(64), index=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    day: Mapped[date] = mapped_column(Date)
    product: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str] = mapped_column(RedactedString(KEY_LEN))
    rule_name: Mapped[str] = mapped_column(RedactedString(KEY_LEN))
    src_ip: Mapped[str | None] = mapped_column(String(64))
    asset: Mapped[str | None] = mapped_column(RedactedString(KEY_LEN))
    action: Mapped[str] = mapped_column(String(16))
    alerts: Mapped[int] = mapped_column(Integer)  # alerts after dedup
    raw: Mapped[int] = mapped_column(Integer)  # alerts before dedup (sum of the representatives' counts)
    intel: Mapped[int] = mapped_column(Integer)  # alerts (after dedup) with a threat-intel hit
    suppressed: Mapped[int] = mapped_column(Integer)  # alerts (after dedup) held back as noise


class FunnelStat(Base):
    """The funnel counters of one tenant and day within one batch."""

    __tablename__ = "funnel_stats"
    __table_args__ = (Index("ix_funnel_stats_tenant_day", "tenant_id", "day"),)

    batch: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    records: Mapped[int] = mapped_column(Integer)
    alerts_raw: Mapped[int] = mapped_column(Integer)
    alerts: Mapped[int] = mapped_column(Integer)
    suppressed: Mapped[int] = mapped_column(Integer)
    incidents: Mapped[int] = mapped_column(Integer)
    dead: Mapped[int] = mapped_column(Integer)


class NoiseDrift(Base):
    """The noise model's drift counts of one tenant and day within one batch (`pipeline.classify.drift`)."""

    __tablename__ = "noise_drift"
    __table_args__ = (Index("ix_noise_drift_tenant_day", "tenant_id", "day"),)

    batch: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64))
    alerts: Mapped[int] = mapped_column(Integer)
    out_of_scope: Mapped[int] = mapped_column(Integer)
    novel_rules: Mapped[int] = mapped_column(Integer)
    score_hist: Mapped[list[int]] = mapped_column(JsonType)
