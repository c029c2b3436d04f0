"""Terminal tables that read at 80 columns: short columns keep their full width and never wrap, the one wide
column (a title) takes the rest and ends in an ellipsis when it does not fit.

Incidents (the replay summary, the demo's live table, `mdr incidents tail`) are one row or line each: priority,
short id, title, and under it why it has that priority; an incident fused into another names its survivor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.text import Text

from pipeline.clitext import Table, lit
from pipeline.schema import Incident

Cell = str | Text

WIDE_MIN = 16  # the wide column never gets narrower than this
PER_COLUMN = 3  # padding on both sides and the separator


def _lines(c: Cell) -> list[str]:
    return (c.plain if isinstance(c, Text) else c).splitlines()


def fitted(headers: Sequence[str], rows: Sequence[Sequence[Cell]], width: int, wide: str | None = None, *,
           wrap: Sequence[str] = (), title: str | None = None, styles: Sequence[str | None] | None = None
           ) -> Table:
    """A table of `rows` (strings, shown literally: pipeline/clitext.py; or rich Texts) under `headers` for a
    terminal `width` columns wide. Every column keeps the width of its longest cell, except `wide`, which gets
    what is left and is cut with an ellipsis (the whole text stays in the --json / show output), and the `wrap`
    columns (lists), which wrap inside their cells."""
    widths = [max([cell_len(h), *(cell_len(line) for r in rows for line in _lines(r[i]))])
              for i, h in enumerate(headers)]
    fixed = sum(w for h, w in zip(headers, widths, strict=True) if h != wide and h not in wrap)
    tab = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=title)
    for h, w in zip(headers, widths, strict=True):
        if h == wide:
            room = max(WIDE_MIN, width - fixed - PER_COLUMN * len(headers))
            tab.add_column(h, no_wrap=True, overflow="ellipsis", max_width=room)
        elif h in wrap:
            tab.add_column(h, overflow="fold")
        else:
            tab.add_column(h, no_wrap=True, min_width=w)
    for n, r in enumerate(rows):
        tab.add_row(*r, style=styles[n] if styles else None)
    return tab


SHORT_ID = 8


def short(incident_id: str | None) -> str:
    return (incident_id or "")[:SHORT_ID]


def key_reason(inc: Incident) -> str:
    """Why the incident has its priority, in one reason line: the last raise or lowering, else the first
    context step that changed nothing (a blocked outcome, a C2 asker), else the base (never the SLA line)."""
    moves = [r for r in inc.priority_reasons if r.startswith(("raised to", "lowered to"))]
    if moves:
        return moves[-1]
    kept = [r for r in inc.priority_reasons if r.startswith(("unchanged", "not raised", "not lowered"))]
    if kept:
        return kept[0]
    return inc.priority_reasons[0] if inc.priority_reasons else f"base {inc.priority}"


def state(inc: Incident) -> str:
    return f"→ {short(inc.merged_into)}" if inc.status == "merged" and inc.merged_into else inc.status


def ordered(incidents: Iterable[Incident]) -> list[Incident]:
    """Open ones first, most urgent first; the ones fused into another last."""
    return sorted(incidents, key=lambda i: (i.status == "merged", i.priority, i.first_seen, i.incident_id))


def incident_table(incidents: Iterable[Incident], width: int, title: str) -> Any:
    """Incidents for the terminal: priority; the title (wrapped on words) with the short id and why it has that
    priority under it; alerts; outcome; and, when some are not open, the status (a fused one names its
    survivor's id)."""
    shown = ordered(incidents)
    with_status = any(i.status != "open" for i in shown)
    rows: list[list[Cell]] = []
    styles: list[str | None] = []
    for i in shown:
        why = f"fused into {short(i.merged_into)}" if i.status == "merged" else key_reason(i)
        rows.append([i.priority, _lines_of(lit(i.title), lit((f"{short(i.incident_id)} · {why}", "dim"))),
                     str(i.alert_count), i.outcome, *([state(i)] if with_status else [])])
        styles.append("dim" if i.status == "merged" else ("bold red" if i.priority in ("P1", "P2") else None))
    headers = ("prio", "incident · why this priority", "alerts", "outcome", *(("status",) if with_status else ()))
    return fitted(headers, rows, width, wrap=("incident · why this priority",), title=title, styles=styles)


def incident_line(inc: Incident) -> Text:
    """One update as a line (and its priority's reason on a second, indented line)."""
    head = lit((f"{inc.priority} ", "bold red" if inc.priority in ("P1", "P2") else "bold"),
               f"{short(inc.incident_id)} {state(inc):<11} {inc.tenant_id}: {inc.title} ",
               (f"({inc.alert_count} alerts, {inc.outcome})", "dim"))
    return head if inc.status == "merged" else _lines_of(head, lit(("    " + key_reason(inc), "dim")))


def _lines_of(*lines: Text) -> Text:
    """Literal texts (record text never holds a line break: lit shows it as an escape) as lines of one Text."""
    return Text("\n").join(lines)


def stacked(values: Iterable[object]) -> Text:
    """Values one per line in a cell, each shown literally."""
    return _lines_of(*(lit(v) for v in values))
