"""Escaping of untrusted text (URLs, user agents, user names, paths, Host headers...) for each place it goes.

Attackers write much of what the pipeline prints and sends. Every sink gets the text in its own syntax, so
the text shows literally and never acts as markup, a link, an image, a mention or a terminal command:

- `visible`: control, format and bidi characters (ANSI escapes, CR, BEL, RLO, zero-width...) become visible
  escapes (`\\x1b`, `\\u202e`), so they cannot drive a terminal or reorder what is displayed;
- `slack`: Slack mrkdwn / text objects: `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;` (Slack's documented rule:
  no `<!channel>` ping, no `<url|text>` disguised link);
- `markdown`: CommonMark / GFM (DingTalk, WeCom, TheHive, the Markdown report): markdown punctuation
  backslash-escaped, `<`, `>`, `&` as entities (no raw HTML, no `[text](url)` link, no `![](url)` image,
  no heading, list or quote started by the value);
- `jira`: Jira wiki markup: its special characters backslash-escaped (no `[text|url]`, `!image!`, `{macro}`,
  `[~mention]`);
- `text`: plain text for people (e-mail): `visible` only;
- `raw`: machine consumers (JSON webhooks, response APIs, log files): unchanged, JSON does the encoding
  (`json_line` writes JSON that a terminal shows safely).

The escapers take one value (a title, a name, a URL) and return it on one line; `escape(markup, text,
multiline=True)` converts a whole plain text line by line. `clip` shortens escaped text without cutting an
escape in two.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

# Unicode categories Cc, Cf, Zl, Zp and Cs (lone surrogates: they cannot even be encoded for output).
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _show(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else (f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")


def visible(text: str) -> str:
    """`text` with control / format / bidi characters (newlines too) shown as escapes."""
    return _INVISIBLE.sub(_show, text)


def _json_escape(m: re.Match[str]) -> str:
    n = ord(m.group())
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def json_line(obj: Any) -> str:
    """`obj` as one line of JSON that keeps readable non-ASCII text but writes control, format and bidi
    characters as `\\u` escapes (a log file shown on a terminal cannot be driven by it)."""
    return _INVISIBLE.sub(_json_escape, json.dumps(obj, ensure_ascii=False, default=str))


def raw(text: str) -> str:
    return text


def slack(text: str) -> str:
    """Slack: `&`, `<`, `>` are the control characters of its formatting and must be entity-escaped."""
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# `(` only after `]`: `\](` would still read as a link to a renderer that ignores backslash escapes
_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>&|~#]|(?<=\])\(")
# what opens a block at the start of a line: a list item, a setext underline / thematic break, an ordered item
_MD_LINE_START = re.compile(r"^(\s*)(?:([-+])(?=\s|$)|([-=])(?=[-=\s]*$)|(\d{1,9})([.)])(?=\s|$))")


def _md_char(m: re.Match[str]) -> str:
    c = m.group()
    return _MD_ENTITY.get(c) or "\\" + c


def markdown(text: str) -> str:
    """CommonMark / GFM: the value renders as the same literal text, whatever it holds."""
    s = _MD_SPECIAL.sub(_md_char, visible(text))
    # a value placed at the start of a line must not open a list, a setext heading or a thematic break
    return _MD_LINE_START.sub(_md_line_start, s, count=1)


def _md_line_start(m: re.Match[str]) -> str:
    lead, bullet, rule, num, punct = m.groups()
    return lead + (f"\\{bullet or rule}" if bullet or rule else f"{num}\\{punct}")


_JIRA_SPECIAL = re.compile(r"[\\\[\]{}|!*_^~#]")
_JIRA_LINE_START = re.compile(r"^(\s*)(h[1-6]|bq)\.")


def jira(text: str) -> str:
    """Jira wiki markup: special characters backslash-escaped (`\\` itself as an entity: `\\\\` is a line
    break there), so no link, image, macro, mention or heading comes from the value."""
    s = _JIRA_SPECIAL.sub(lambda m: "&#92;" if m.group() == "\\" else "\\" + m.group(), visible(text))
    return _JIRA_LINE_START.sub(r"\1\2\\.", s, count=1)


def text(value: str) -> str:
    """Plain text read by people (e-mail): controls and bidi overrides visible, nothing else changed."""
    return visible(value)


ESCAPERS: dict[str, Callable[[str], str]] = {
    "raw": raw,
    "text": text,
    "slack": slack,
    "markdown": markdown,
    "jira": jira,
}


def escaper(markup: str) -> Callable[[str], str]:
    try:
        return ESCAPERS[markup]
    except KeyError:
        raise ValueError(f"unknown markup {markup!r} (known: {', '.join(ESCAPERS)})") from None


def escape(markup: str, value: str, *, multiline: bool = False) -> str:
    """`value` escaped for `markup`; with `multiline`, line by line (a whole plain text, its lines kept)."""
    fn = escaper(markup)
    if not multiline or markup == "raw":
        return fn(value)
    return "\n".join(fn(line) for line in re.split(r"\r?\n", value))


_TOKEN = re.compile(r"&#?[A-Za-z0-9]{1,8};|\\U[0-9a-f]{8}|\\u[0-9a-f]{4}|\\x[0-9a-f]{2}|\\.|.", re.S)


def clip(escaped: str, limit: int, *, utf8: bool = False) -> str:
    """At most `limit` characters (UTF-8 bytes with `utf8`) of escaped text, never cutting an entity or a
    backslash escape in two."""
    if len(escaped) <= limit and (not utf8 or len(escaped.encode()) <= limit):
        return escaped
    size = 0
    for m in _TOKEN.finditer(escaped):
        size += len(m.group().encode()) if utf8 else len(m.group())
        if size > limit:
            return escaped[: m.start()]
    return escaped
