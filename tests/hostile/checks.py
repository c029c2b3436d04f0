"""What "live" means in each sink, a store's rows as text, and the answers of the local Jira and TheHive servers:
shared by the hostile-input tests and the adversarial suite."""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser

from markdown_it import MarkdownIt
from sqlalchemy import MetaData, create_engine, select

from tests.hostile.corpus import CONTROL
from tests.soar.servers import Reply, Seen

_MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def live_markup(md: str) -> list[str]:
    """Links, images and HTML a Markdown renderer (CommonMark + tables, raw HTML allowed) would make live."""
    tokens = _MD.parse(md)
    found = [t.type for tok in tokens for t in (tok, *(tok.children or []))
             if t.type in ("link_open", "image", "html_inline", "html_block")]
    html = _MD.renderer.render(tokens, _MD.options, {})
    return found + [tag for tag in ("<a ", "<img", "<b>", "<i>") if tag in html]


def jira_live(text: str) -> list[str]:
    """Jira wiki markup characters left unescaped (the templates themselves use none of them)."""
    bare = re.sub(r"\\.", "", text.replace("&#92;", ""))
    return [c for c in "[]{}|!" if c in bare]


def no_control(text: str) -> bool:
    return not any(c in text for c in CONTROL) and "\r" not in text


class Tags(HTMLParser):
    """The start tags (with attributes) and the text of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    p = Tags()
    p.feed(html)
    return p


_ACTIVE = ("script", "iframe", "img", "svg", "object", "embed", "textarea", "font", "style")


def html_live(html: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    """Tags record text could have made (active or formatting elements, event handlers, links to the
    attackers' host) in an HTML page; `allowed`: tags the page itself uses for its own content."""
    out = []
    for tag, attrs in parse(html).tags:
        if (tag in _ACTIVE or tag in ("a", "b", "i")) and tag not in allowed:
            out.append(tag)
        out += [f"{tag} {k}" for k in attrs if k.startswith("on")]
        out += [f"{tag} {k}={v}" for k, v in attrs.items() if v and "evil.example" in v and k in ("href", "src")]
    return out


def verbatim(html: str, values: Iterable[str]) -> list[str]:
    """The values holding `<` or `>` that stand in a page as they are: not escaped."""
    return [v for v in values if ('<' in v or '>' in v) and v in html]


_SGR = re.compile(r"\x1b\[[0-9;]*m")  # the terminal's colours, written by Rich itself
_TERMINAL_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
                               "\ufeff]")


def terminal_live(shown: str) -> list[str]:
    """Control characters (escapes other than Rich's own colours: OSC 8 links, cursor moves, bidi overrides)
    that reached a terminal."""
    return sorted({repr(c) for c in _TERMINAL_CONTROL.findall(_SGR.sub("", shown))})


def db_rows(url: str) -> str:
    """Every row of every table of a store, as text (to scan for secrets)."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return "\n".join(repr(tuple(row)) for t in meta.sorted_tables for row in conn.execute(select(t)))
    finally:
        engine.dispose()


def hive(s: Seen) -> Reply:
    """TheHive 5: an alert id for a new alert, a comment id for a comment."""
    if s.path == "/api/v1/alert":
        return Reply(201, {"_id": "~" + s.json["sourceRef"][:8]})
    return Reply(201, {"_id": "~comment"})


def jira(s: Seen) -> Reply:
    """Jira: no existing issue, an issue key for a new issue, an id for a comment."""
    if s.path == "/rest/api/2/search":
        return Reply(200, {"issues": [], "total": 0})
    if s.path == "/rest/api/2/issue":
        return Reply(201, {"id": "1", "key": f"SEC-{len(s.json['fields']['summary'])}"})
    return Reply(201, {"id": "5"})
