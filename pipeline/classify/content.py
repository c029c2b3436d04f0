"""Content features: what the request carried, in terms that do not depend on which rule fired.

A rule id seen in training tells a model little about a rule it has never seen; the payload does. For each alert
the *content* is the query string plus every value the product reported as matched (ModSecurity `matched_data`
`VAR:name=value` entries, and a payload excerpt in `extra.payload` where a product reports one), cut at
`CONTENT_MAX` bytes, percent-decoded once (`+` is a space), with the escapes a product or an evasion leaves decoded
too (ModSecurity's `\\xHH` in matched data, IIS `%uHHHH` with full-width and slash look-alikes folded to ASCII),
and lower-cased.
From it, per alert (`CONTENT_FEATURES` order):

- `tok:<class>`: counts of token classes of injection languages (`TOKENS`: SQL keywords, tautologies and
  comments, values ended by a comment after a quote or number, HTML tags, event handlers and script schemes,
  JavaScript sinks, shell chains, Unix / Windows system paths, traversal, remote-inclusion schemes, XML entities,
  template markers, NUL bytes, LDAP filters, control characters), capped at `TOKEN_CAP`;
- `sql_quote_kw` / `html_tag_attr`: a quote or parenthesis followed by a SQL keyword / a tag with an attribute:
  the shapes of SQL and HTML injection that ordinary prose rarely has;
- `ng:<k>`: hashed character 3-grams (`NGRAM_BUCKETS` buckets, blake2b-free multiplicative hash of the 3 bytes),
  as shares of the content's 3-grams;
- `content_len` (log1p bytes) and `content_values` (how many values were reported).

No SQL / XSS parser package is used: the maintained Python bindings of libinjection are GPL-licensed (the project
is Apache-2.0) and the others are unmaintained, so the token classes above stand in for them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.schema import Alert

CONTENT_MAX = 2048
NGRAM_BUCKETS = 64
TOKEN_CAP = 20.0
TOKENS: dict[str, str] = {
    "sql_kw": r"\b(?:select|union|insert|update|delete|drop|truncate|having|exec|execute|declare|xp_cmdshell|"
              r"information_schema|sysobjects|pg_sleep|sleep|benchmark|waitfor|load_file|outfile|dumpfile|"
              r"concat|group_concat|char|chr|cast|convert|substr|substring|ascii|hex|unhex|version|database|"
              r"extractvalue|updatexml|null)\b",
    "sql_logic": r"(?:['\"`)]\s*(?:or|and|xor|\|\||&&)\b|\b(?:or|and)\s+['\"]?\w+['\"]?\s*(?:=|<|>|like)|"
                 r"\b(?:or|and)\s+\d+\s*[=<>])",
    "sql_comment": r"(?:--|/\*|\*/|#|;\s*$)",
    "sql_tail": r"(?m)(?:[\d'\"`)]\s*(?:--|#)|['\"`)]\s*;)\s*$",  # a value ended by a comment / statement end
    "html_tag": r"<\s*/?\s*(?:script|img|svg|iframe|frame|body|object|embed|style|link|meta|video|audio|source|"
                r"input|form|marquee|details|math|base|applet|xml|isindex|table|div|a)\b",
    "html_event": r"\bon[a-z]{3,20}\s*=",
    "script_scheme": r"(?:javascript|vbscript|livescript)\s*:|data\s*:\s*text/html",
    "js_sink": r"\b(?:alert|prompt|confirm|eval|settimeout|setinterval|fromcharcode|atob|document\.(?:cookie|"
               r"write|location|domain)|window\.location|innerhtml)\b",
    "shell": r"(?:[;|`&]|\$\()\s*(?:cat|ls|id|whoami|uname|wget|curl|nc|ncat|bash|sh|ping|echo|rm|chmod|python|"
             r"perl|ifconfig|net|dir|type|cmd)\b",
    "unix_path": r"/(?:etc/(?:passwd|shadow|hosts|group|issue)|bin/(?:sh|bash)|proc/self|dev/(?:tcp|null)|"
                 r"usr/(?:local/)?bin/(?:id|whoami|env|wget|curl|nc|perl|python\d?|php|ruby))",
    "win_path": r"(?:c:[\\/](?:windows|winnt)|boot\.ini|win\.ini|system32|cmd\.exe|%systemroot%|\\\\windows|"
                r"inetpub[\\/]wwwroot|global\.asa)",
    "traversal": r"(?:\.\.[\\/]|%2e%2e|\.\.%2f|\.\.%5c|%c0%ae|(?:\xc0[\xae.]){2}|(?:0x2e){2}|\.\.0x(?:2f|5c))",
    "remote_scheme": r"\b(?:https?|ftp|php|file|data|expect|gopher|dict|jar|zip|phar)://",
    "xml_entity": r"<!(?:entity|doctype)|<\?xml|\bsystem\s+['\"]",
    "template": r"\{\{|\$\{|<%|%>|#\{",
    "nul": r"\x00",
    "ldap": r"\(\s*[|&!]\s*\(\s*[\w.-]+\s*[~<>]?=|\*\s*\)\s*\(\s*[|&]",  # an LDAP filter injected into a value
    "ctrl": r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]",  # control characters no form value has
}
_PATTERNS = [re.compile(p.encode()) for p in TOKENS.values()]
_SQL_QUOTE_KW = re.compile(rb"['\"`)(]\s*(?:union|select|or|and|order|group|having|insert|update|delete|drop|"
                           rb"exec|sleep|benchmark|waitfor)\b")
_HTML_TAG_ATTR = re.compile(rb"<\s*[a-z]+[^>]*\s[a-z-]+\s*=")
CONTENT_FEATURES: tuple[str, ...] = (
    *(f"tok:{k}" for k in TOKENS), "sql_quote_kw", "html_tag_attr", "content_len", "content_values",
    *(f"ng:{k}" for k in range(NGRAM_BUCKETS)),
)
_N_TOK = len(TOKENS)
_O_NG = len(CONTENT_FEATURES) - NGRAM_BUCKETS


def _values(extra: dict[str, Any]) -> list[str]:
    out: list[str] = []
    data = extra.get("matched_data")
    if isinstance(data, list):
        for d in data:
            if isinstance(d, str):
                name, eq, val = d.partition("=")
                out.append(val if eq and (":" in name or name.isupper()) else d)
    payload = extra.get("payload")
    if isinstance(payload, str):
        out.append(payload)
    return out


def content_of(a: Alert) -> tuple[bytes, int]:
    """The raw (still encoded) content of an alert and how many values it joins."""
    query = a.http.url.partition("?")[2] if a.http is not None and a.http.url else ""
    vals = _values(a.extra) if a.extra else []
    parts = ([query] if query else []) + vals
    return "\n".join(parts).encode("utf-8", "surrogateescape")[:CONTENT_MAX], len(parts)


_HEXV = {c: i for i, c in enumerate(b"0123456789abcdef")} | {c: 10 + i for i, c in enumerate(b"ABCDEF")}


_ESC_X = re.compile(rb"\\x([0-9a-fA-F]{2})")
_ESC_U = re.compile(rb"%u([0-9a-fA-F]{4})")
_FOLD = {0x2215: "/", 0x2216: "\\", 0x2044: "/", 0x29F5: "\\"}  # slash look-alikes


def _unicode(m: re.Match[bytes]) -> bytes:
    c = int(m.group(1), 16)
    if 0xFF01 <= c <= 0xFF5E:  # full-width ASCII
        return bytes((c - 0xFEE0,))
    return _FOLD.get(c, chr(c)).encode("utf-8", "surrogatepass")


def decode(raw: bytes) -> bytes:
    """`\\xHH` and `%uHHHH` escapes, then one level of percent-decoding (`+` -> space); lower-cased."""
    if b"\\x" in raw:
        raw = _ESC_X.sub(lambda m: bytes((int(m.group(1), 16),)), raw)
    if b"%u" in raw or b"%U" in raw:
        raw = _ESC_U.sub(_unicode, raw)
    if b"%" not in raw and b"+" not in raw:
        return raw.lower()
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 37 and i + 2 < n and raw[i + 1] in _HEXV and raw[i + 2] in _HEXV:
            out.append(_HEXV[raw[i + 1]] * 16 + _HEXV[raw[i + 2]])
            i += 3
            continue
        out.append(32 if c == 43 else c)
        i += 1
    return bytes(out).lower()


def _ngrams(texts: Sequence[bytes]) -> np.ndarray:
    """Shares of hashed character 3-grams per text (vectorized over the batch)."""
    n = len(texts)
    out = np.zeros((n, NGRAM_BUCKETS), dtype=np.float64)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    if not n or lens.max(initial=0) < 3:
        return out
    buf = np.frombuffer(b"".join(texts), dtype=np.uint8).astype(np.uint32)
    seg = np.repeat(np.arange(n, dtype=np.int64), lens)
    ok = seg[:-2] == seg[2:]
    code = (buf[:-2] << 16) | (buf[1:-1] << 8) | buf[2:]
    h = ((code[ok] * np.uint32(2654435761)) & np.uint32(0xFFFFFFFF)) >> np.uint32(26)  # top 6 bits: 64 buckets
    counts = np.bincount(seg[:-2][ok] * NGRAM_BUCKETS + h.astype(np.int64), minlength=n * NGRAM_BUCKETS)
    counts = counts.reshape(n, NGRAM_BUCKETS).astype(np.float64)
    tot = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, tot, out=out, where=tot > 0)


def content_matrix(items: Sequence[tuple[bytes, int]]) -> np.ndarray:
    """`CONTENT_FEATURES` for a batch of (raw content, value count) pairs."""
    n = len(items)
    out = np.zeros((n, len(CONTENT_FEATURES)), dtype=np.float64)
    texts = [decode(raw) for raw, _ in items]
    for i, t in enumerate(texts):
        if not t:
            continue
        row = out[i]
        for k, pat in enumerate(_PATTERNS):
            row[k] = min(float(len(pat.findall(t))), TOKEN_CAP)
        row[_N_TOK] = min(float(len(_SQL_QUOTE_KW.findall(t))), TOKEN_CAP)
        row[_N_TOK + 1] = min(float(len(_HTML_TAG_ATTR.findall(t))), TOKEN_CAP)
        row[_N_TOK + 2] = math.log1p(len(t))
        row[_N_TOK + 3] = float(items[i][1])
    out[:, _O_NG:] = _ngrams(texts)
    return out
