"""Terminal tables that read at 80 columns: short columns keep their full width and never wrap, the one wide
column (a title) takes the rest and ends in an ellipsis when it does not fit."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.cells import cell_len
from rich.text import Text

from pipeline.clitext import Table

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
