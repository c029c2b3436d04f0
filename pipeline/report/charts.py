"""Report charts with matplotlib's Agg backend: each function returns a Figure; `to_svg` / `to_png` encode it.

Charts: daily incident volume by priority (stacked bars), the alert -> incident funnel, top-N bars (attackers,
targeted assets, use cases) and the time to resolve by priority (box plot, with the SLA response time).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.report.data import FUNNEL
from pipeline.schema import PRIORITIES

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

    from pipeline.report.data import ReportData

COLORS = {"P1": "#b71c1c", "P2": "#e65100", "P3": "#f9a825", "P4": "#1565c0", "P5": "#78909c"}
ACCENT = "#37474f"
# Style applied while building and saving (not globally); SVG text stays text: searchable and selectable.
# Labels are record text (asset names are Host headers): `$...$` in them is text, never mathtext (which would
# render attacker markup, and fail the whole report on a formula it cannot parse).
STYLE: dict[RcKeyType, Any] = {"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                               "svg.fonttype": "none", "text.parse_math": False}
matplotlib.use("Agg")  # no display; figures are built with the OO API


def _integer_ticks(axis: Axis) -> None:
    """Ticks on whole numbers only (counts), on an axis of the default (MaxNLocator) ticks."""
    loc = axis.get_major_locator()
    if isinstance(loc, MaxNLocator):
        loc.set_params(integer=True)


def _fig(w: float = 6.4, h: float = 2.6) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(w, h), layout="constrained")
    return fig, fig.add_subplot()


def _empty(ax: Axes, text: str = "no data in this period") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def daily_volume(d: ReportData) -> Figure:
    fig, ax = _fig()
    days = d.daily
    labels = [k[5:] for k in days]
    bottom = [0] * len(days)
    for p in PRIORITIES:
        vals = [c[p] for c in days.values()]
        if any(vals):
            ax.bar(labels, vals, bottom=bottom, color=COLORS[p], label=p, width=0.7)
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    if not any(bottom):
        _empty(ax)
    else:
        ax.legend(ncols=5, loc="upper left", frameon=False, fontsize=8)
        ax.set_ylim(0, max(bottom) * 1.3)
        _integer_ticks(ax.yaxis)
    ax.set_title("Incidents per day by priority", loc="left")
    if len(labels) > 14:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    return fig


def funnel(d: ReportData) -> Figure:
    fig, ax = _fig(h=2.3)
    names = [label for _, label in FUNNEL]
    vals = [d.funnel.get(k, 0) for k, _ in FUNNEL]
    bars = ax.barh(names[::-1], [max(v, 0.8) for v in vals[::-1]], color=["#455a64", "#546e7a", "#78909c",
                                                                            "#b0bec5", "#e65100"][::-1])
    ax.set_xscale("log")
    for b, v in zip(bars, vals[::-1], strict=True):
        ax.text(b.get_width() * 1.08, b.get_y() + b.get_height() / 2, f"{v:,}", va="center", fontsize=8)
    ax.set_xlim(0.7, max(max(vals), 1) * 8)
    ax.set_title("Alerts → incidents funnel (log scale)", loc="left")
    return fig


def top_bars(items: list[tuple[str, int]], title: str, xlabel: str) -> Figure:
    fig, ax = _fig(h=0.35 * max(len(items), 3) + 0.8)
    if not items:
        _empty(ax)
    else:
        labels = [k if len(k) <= 48 else k[:45] + "…" for k, _ in items][::-1]
        ax.barh(labels, [v for _, v in items][::-1], color=ACCENT)
        _integer_ticks(ax.xaxis)
        ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left")
    return fig


def mttr_box(d: ReportData) -> Figure:
    fig, ax = _fig(h=2.6)
    rows = [t for t in d.timing if t.resolve_times]
    if not rows:
        _empty(ax, "no incident resolved in this period")
    else:
        data = [[v / 60 for v in t.resolve_times] for t in rows]
        box = ax.boxplot(data, tick_labels=[t.priority for t in rows], patch_artist=True, widths=0.5)
        for patch, t in zip(box["boxes"], rows, strict=True):
            patch.set_facecolor(COLORS[t.priority])
            patch.set_alpha(0.6)
        for x, t in enumerate(rows, start=1):
            ax.hlines(t.sla_min / 60, x - 0.35, x + 0.35, colors="#000", linestyles="dashed", linewidth=1)
        ax.set_ylabel("hours")
        ax.set_yscale("symlog", linthresh=1)
    ax.set_title("Time to resolve by priority (dashed: SLA response time)", loc="left")
    return fig


def all_charts(d: ReportData) -> dict[str, Figure]:
    with matplotlib.rc_context(STYLE):
        return _build(d)


def _build(d: ReportData) -> dict[str, Figure]:
    return {
        "daily": daily_volume(d),
        "funnel": funnel(d),
        "attackers": top_bars([(k, a) for k, a, _ in d.top_attackers], "Top attackers", "alerts"),
        "assets": top_bars([(k, a) for k, a, _ in d.top_assets], "Most targeted assets", "alerts"),
        "usecases": top_bars([(t, n) for _, t, n in d.top_use_cases], "Top use cases", "incidents"),
        "mttr": mttr_box(d),
    }


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def to_png(fig: Figure, dpi: int = 130) -> bytes:
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
