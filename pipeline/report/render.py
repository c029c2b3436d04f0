"""Render a ReportData as one self-contained HTML file (charts inline as SVG), Markdown (charts as PNG files
beside it) or PDF (the HTML laid out by WeasyPrint).

Titles, names and addresses in a report come from attacker-written records. The HTML templates autoescape
them (control and bidi characters shown as escapes); in the Markdown every `{{ ... }}` value is escaped for
Markdown (pipeline/textsafe.markdown: no raw HTML, no link, no image, no table cell or block broken out of),
while the template's own text keeps its formatting (macros return already-safe Markup)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from pipeline.report import FORMATS, charts
from pipeline.report.data import FUNNEL, ReportData
from pipeline.report.summary import duration
from pipeline.textsafe import markdown, visible

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Key figures: key -> label (the same labels head the summary of every format).
KEY_LABELS = {
    "incidents_total": "Incidents",
    "incidents_P1": "P1 incidents",
    "incidents_P2": "P2 incidents",
    "incidents_P3": "P3 incidents",
    "incidents_P4": "P4 incidents",
    "incidents_P5": "P5 incidents",
    "incidents_prev": "Incidents, previous period",
    "funnel_records": "Raw records",
    "funnel_alerts_raw": "Alerts",
    "funnel_alerts": "Alerts after dedup",
    "funnel_suppressed": "Suppressed as noise",
    "funnel_incidents": "Incidents (funnel)",
    "sla_met": "Response SLA met",
    "sla_breached": "Response SLA breached",
    "closed_tickets": "Closed",
    "closure_pct": "Closure rate %",
    "open_tickets": "Open tickets",
    "overdue_tickets": "Overdue tickets",
    "mttd_min": "MTTD (median, min)",
    "mtta_min": "MTTA (median, min)",
    "mttr_min": "MTTR (median, min)",
    "intel_alerts": "Alerts with threat-intel hits",
    "escort_incidents": "Incidents in escort periods",
}


def _dt(v: datetime | None) -> str:
    return v.strftime("%Y-%m-%d %H:%M") if v else "–"


def _num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def _md(v: Any) -> Markup:
    """A value as Markdown text (Markup: the template's autoescape leaves it alone)."""
    return v if isinstance(v, Markup) else Markup(markdown(str(v)))


def _shown(v: Any) -> Any:
    """A value for HTML (autoescaped after this): control and bidi characters made visible."""
    return v if isinstance(v, Markup) or not isinstance(v, str) else visible(v)


def environment(fmt: str = "html") -> Environment:
    """The Jinja environment of a format: HTML autoescaped, Markdown values escaped by `_md`."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, finalize=_md if fmt == "md" else _shown)
    env.filters.update(duration=duration, dt=_dt, num=_num, signed=_signed, md=_md)
    return env


def context(d: ReportData, chart_refs: dict[str, str]) -> dict[str, Any]:
    figs = d.key_figures()
    return {
        "d": d,
        "figures": [(k, KEY_LABELS[k], figs[k]) for k in KEY_LABELS],
        "funnel": [(k, label, d.funnel.get(k, 0), d.funnel_prev.get(k, 0)) for k, label in FUNNEL],
        "charts": chart_refs,
    }


def render_html(d: ReportData) -> str:
    svgs = {name: _inline_svg(charts.to_svg(fig)) for name, fig in charts.all_charts(d).items()}
    return environment("html").get_template("report.html.j2").render(context(d, svgs), fmt="html")


def _inline_svg(svg: str) -> str:
    """The <svg> element alone (no XML prolog or doctype), to sit inside the HTML."""
    return svg[svg.index("<svg"):]


def render_markdown(d: ReportData, charts_dir: Path | None = None, link_base: str = "") -> str:
    """Markdown; with `charts_dir` the charts are written there as PNG and linked (relative to `link_base`)."""
    refs: dict[str, str] = {}
    if charts_dir is not None:
        charts_dir.mkdir(parents=True, exist_ok=True)
        for name, fig in charts.all_charts(d).items():
            (charts_dir / f"{name}.png").write_bytes(charts.to_png(fig))
            refs[name] = Markup(quote(f"{link_base}{name}.png"))  # a link destination, percent-encoded
    return environment("md").get_template("report.md.j2").render(context(d, refs), fmt="md")


def render_pdf(d: ReportData) -> bytes:
    from weasyprint import HTML

    return HTML(string=render_html(d), base_url=str(TEMPLATES)).write_pdf()


def write(d: ReportData, fmt: str, out: Path) -> Path:
    """Render `d` as `fmt` into the file `out` (Markdown charts go to `<stem>_charts/` beside it)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "html":
        out.write_text(render_html(d), encoding="utf-8")
    elif fmt == "md":
        cdir = out.parent / f"{out.stem}_charts"
        out.write_text(render_markdown(d, cdir, f"{cdir.name}/"), encoding="utf-8")
    else:
        out.write_bytes(render_pdf(d))
    return out
