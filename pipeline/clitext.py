"""Text from records on the terminal, printed literally.

Titles, names, paths, URLs and timelines come from what attackers write. Rich would read `[...]` in them as
markup (`[/]` is an error that ends the command, `[link=...]` makes a spoofed link) and would pass control
characters to the terminal (ANSI escapes, bidi overrides). `lit` makes a Rich `Text` of any values: never
markup, control and bidi characters shown as escapes (pipeline/textsafe.visible), configured secrets
redacted. `Table` is a Rich table whose string cells go through `lit`, so a table never reads markup.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table as RichTable
from rich.text import Text

from pipeline.redact import redact
from pipeline.textsafe import visible


def clean(value: Any) -> str:
    """`value` as text that is safe to show on a terminal (no control characters, no secrets)."""
    return visible(redact(str(value)))


def lit(*parts: Any) -> Text:
    """The parts as one literal Text; a `(value, style)` pair is styled: `lit(("error:", "red"), " ", msg)`."""
    out = Text()
    for p in parts:
        if isinstance(p, Text):
            out.append_text(p)
        elif isinstance(p, tuple):
            out.append(clean(p[0]), style=p[1])
        else:
            out.append(clean(p))
    return out


class Table(RichTable):
    """A Rich table that shows string cells literally."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(lit(r) if isinstance(r, str) else r for r in renderables), **kwargs)
