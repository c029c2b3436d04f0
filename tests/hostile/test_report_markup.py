"""Issue 13 §5: a report of hostile incidents (the asset is a WAF Host header holding `<b>evil</b>.example`,
`"><img src=x onerror=...>`, Markdown links and images, a table pipe) shows that text literally: the
Markdown, rendered by a real Markdown renderer (markdown-it, raw HTML allowed), has no live tag, link or
image and no broken table; the HTML report neither."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from pipeline.textsafe import visible
from tests.hostile.checks import parse
from tests.hostile.corpus import HOST, LAB1, ROOT, write_waf

pytestmark = pytest.mark.skipif(not LAB1.is_dir(), reason="samples/lab-1 not present")
PIPE_HOST = HOST + " | x | y"  # a pipe must not add cells to a Markdown table row


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pipeline.core.engine import Core
    from pipeline.replay import replay
    from pipeline.report.data import collect
    from pipeline.report.period import resolve
    from pipeline.report.stats import record_stats
    from pipeline.rules.usecase import load_usecases
    from pipeline.soar.tickets import TicketStore

    d = write_waf(tmp_path_factory.mktemp("hostile-report"), PIPE_HOST)
    # the hostile name reaches the titles as the collection point's name (docs/assets.md)
    res = replay([str(d)], Core(load_usecases(str(ROOT / "usecases"))), "shop", PIPE_HOST)
    assert any(PIPE_HOST in i.title for i in res.open_incidents)
    store = TicketStore(f"sqlite:///{d}/soar.db")
    try:
        for k, inc in enumerate(res.open_incidents):
            store.upsert_incident(inc, now=inc.first_seen + timedelta(minutes=2 + k))
        record_stats(store, "shop", res)
        return collect(store, "shop", resolve("week", date(2026, 11, 24)), datetime(2026, 11, 30, tzinfo=UTC))
    finally:
        store.close()


def test_markdown_report_has_no_live_markup(report: Any, tmp_path: Path) -> None:
    from pipeline.report.render import render_markdown

    md = render_markdown(report, tmp_path / "charts", "charts/")
    parser = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    tokens = [t for tok in parser.parse(md) for t in (tok, *(tok.children or []))]
    assert [t.type for t in tokens if t.type in ("html_inline", "html_block", "link_open")] == []
    images = [t.attrs["src"] for t in tokens if t.type == "image"]
    assert images and all(str(src).startswith("charts/") for src in images)  # the report's own charts only
    html = parse(parser.render(md))
    assert not [t for t, a in html.tags if t in ("a", "b", "i") or (t == "img" and "onerror" in a)]
    shown = "".join(html.text)
    assert visible(PIPE_HOST) in shown  # the whole value, literally, in one table cell (the pipes did not split it)
    widths = {}
    for tok in parser.parse(md):  # every row of a table has as many cells as its header
        if tok.type == "table_open":
            cells: list[int] = []
        elif tok.type == "tr_open":
            cells.append(0)
        elif tok.type in ("th_open", "td_open"):
            cells[-1] += 1
        elif tok.type == "table_close":
            widths[len(widths)] = set(cells)
    assert widths and all(len(w) == 1 for w in widths.values()), widths


def test_html_report_has_no_live_markup(report: Any) -> None:
    from pipeline.report.render import render_html

    html = parse(render_html(report))
    assert not [t for t, a in html.tags if t in ("a", "i", "img") or any(k.startswith("on") for k in a)]
    assert not [a for _, a in html.tags if "evil.example" in f"{a.get('href')}{a.get('src')}"]
    assert visible(PIPE_HOST) in "".join(html.text)


def test_chart_labels_are_text_not_mathtext(report: Any, tmp_path: Path) -> None:
    """An asset named `$\\frac{$` (a Host header) made matplotlib parse the label as a formula: the report
    failed with a ValueError; `$x^2$` rendered as math. Labels are literal text in both reports' charts."""
    from dataclasses import replace

    from pipeline.report.render import render_html, render_markdown

    hostile = "$\\frac{$ $x^2$.example"
    d = replace(report, top_assets=[(hostile, 9, 1), *report.top_assets])
    html = render_html(d)
    assert "$\\frac{$ $x^2$.example" in html  # as SVG text, escaped for HTML where needed
    render_markdown(d, tmp_path / "charts", "charts/")
    assert (tmp_path / "charts" / "assets.png").stat().st_size > 0
