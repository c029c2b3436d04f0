"""Redaction of configured secrets, in every form in which they can show up.

Every secret the process is configured with (connector tokens, passwords and keys, webhook URLs, the
database URL's password, the values of the secrets file) is registered here when its configuration is
loaded. `redact(text)` then replaces each occurrence in any of these forms:

- raw, and without surrounding whitespace (a token read from a file with its newline);
- escaped as Python, bytes (`b'...'`, as httpx / h11 quote a bad header), JSON and HTML show it;
- percent-encoded (upper- and lower-case hex, `+` for spaces), as URLs and query strings carry it;
- base64 (standard and URL-safe), also inside a longer base64 text at any alignment: HTTP Basic
  `base64(user:token)`, SMTP `AUTH PLAIN` / `LOGIN`;
- for a URL: the password of its userinfo and `user:password`, its query values and long path segments;
  the whole URL shows as `scheme://host/***`.

The ticket store redacts what it writes (timelines, playbook runs, external references, titles), every log
record is redacted (`install_logging`), and the file outputs, dead letters and connector errors go through
`redact` too. One registry per process: every component redacts what any of them configured.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

from pipeline.textsafe import escape, visible

MASK = "***"
MIN_LEN = 4  # shorter values are not treated as secrets (they would mask ordinary text)
MIN_B64_CORE = 6  # base64 of a secret inside a longer base64 text is matched for secrets this long
_PCT = re.compile(r"%[0-9A-F]{2}")


def _b64_cores(secret: bytes) -> list[str]:
    """The base64 characters that depend on `secret` alone, for each of the 3 alignments it can have
    inside a longer base64 text (e.g. `user:token`)."""
    out = []
    for off in range(3):
        enc = base64.b64encode(b"\0" * off + secret).decode()
        first = -(-off * 8 // 6)  # ceil: first character made only of secret bits
        last = (off + len(secret)) * 8 // 6  # exclusive: characters wholly inside the secret bits
        core = enc[first:last]
        out += [core, core.replace("+", "-").replace("/", "_")]
    return out


def forms(secret: str) -> set[str]:
    """Every form of `secret` that `redact` masks."""
    found = {secret}
    core = secret.strip()
    if core != secret and len(core) >= MIN_LEN:
        found.add(core)
    for s in list(found):
        b = s.encode("utf-8", "surrogatepass")
        found |= {
            repr(s)[1:-1], repr(b)[2:-1], json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1],
            s.encode("unicode_escape").decode(), html.escape(s), html.escape(s, quote=False),
            base64.b64encode(b).decode(), base64.urlsafe_b64encode(b).decode(),
        }
        for pct in (quote(s, safe=""), quote(s), quote_plus(s)):
            found |= {pct, _PCT.sub(lambda m: m.group().lower(), pct)}
        if len(b) >= MIN_B64_CORE:
            found |= set(_b64_cores(b))
    return {f for f in found if len(f) >= MIN_LEN}


def url_parts(value: str) -> tuple[str, list[str], list[str]] | None:
    """For a URL with a host: (what it shows as when it is a secret: scheme://host/***, its userinfo
    secrets, its other token-like parts: query values and long path segments); None for anything else."""
    try:
        u = urlsplit(value)
        port = u.port
    except ValueError:
        return None
    if not u.scheme or not u.hostname or "://" not in value:
        return None
    userinfo = []
    if u.password:
        user = u.username or ""
        userinfo = [u.password, unquote(u.password), f"{user}:{u.password}", f"{unquote(user)}:{unquote(u.password)}"]
    query = [v for _, _, v in (p.partition("=") for p in re.split(r"[&;]", u.query)) if v]
    tokens = query + [unquote_plus(v) for v in query] + [p for p in u.path.split("/") if len(p) >= 9]
    shown = f"{u.scheme}://{u.hostname}{f':{port}' if port else ''}/{MASK}"
    return shown, _long(userinfo), _long(tokens)


def _long(values: list[str]) -> list[str]:
    return [v for v in dict.fromkeys(values) if len(v) >= MIN_LEN]


class Redactor:
    """The registry of secrets and the redaction itself (thread-safe; cheap when nothing is registered)."""

    def __init__(self) -> None:
        self._shown: dict[str, str] = {}  # form -> what replaces it
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._shown)

    def add(self, secret: Any) -> None:
        """Register a secret value; a secret URL shows as scheme://host/*** and its parts are secrets too."""
        if not isinstance(secret, str) or len(secret.strip()) < MIN_LEN:
            return
        entries = dict.fromkeys(forms(secret), MASK)
        url = url_parts(secret.strip())
        if url is not None:
            shown, userinfo, tokens = url
            entries.update(dict.fromkeys({secret, secret.strip(), json.dumps(secret.strip())[1:-1]}, shown))
            for p in userinfo + tokens:
                entries.update({f: MASK for f in forms(p) if f not in entries})
        self._merge(entries)

    def add_url(self, value: Any) -> None:
        """Register the password of a URL that is not itself a secret (a database URL, a plain setting)."""
        url = url_parts(value) if isinstance(value, str) else None
        if url is not None:
            for p in url[1]:
                self.add(p)

    def _merge(self, entries: dict[str, str]) -> None:
        with self._lock:
            new = {f: s for f, s in entries.items() if f not in self._shown}
            if not new:
                return
            self._shown.update(new)
            self._pattern = None
        install_logging()

    def _compiled(self) -> re.Pattern[str]:
        pat = self._pattern
        if pat is None:
            with self._lock:
                pat = self._pattern = re.compile(_trie_pattern(self._shown))
        return pat

    def redact(self, text: str) -> str:
        if not self._shown or not text:
            return text
        shown = self._shown
        return self._compiled().sub(lambda m: shown[m.group()], text)

    def redact_data(self, value: Any) -> Any:
        """`redact` on every string inside JSON-like data (dicts, lists); other values unchanged."""
        if not self._shown:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_data(k): self.redact_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_data(v) for v in value]
        return value

    def redact_bytes(self, data: bytes) -> bytes:
        """`redact` on UTF-8 text held as bytes (a JSON line); bytes that are not UTF-8 pass unchanged."""
        if not self._shown:
            return data
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return data
        out = self.redact(text)
        return data if out == text else out.encode()

    def clear(self) -> None:
        """Forget every secret (tests)."""
        with self._lock:
            self._shown.clear()
            self._pattern = None


def _trie_pattern(words: Any) -> str:
    """A regex matching any of `words`, longest first, as a trie: one character test per position instead of
    one attempt per word."""
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for c in w:
            node = node.setdefault(c, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        branches = [re.escape(c) + build(sub) for c, sub in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if end else body

    return build(trie)


REDACTOR = Redactor()
redact = REDACTOR.redact
redact_data = REDACTOR.redact_data
redact_bytes = REDACTOR.redact_bytes


# ---- logging -------------------------------------------------------------------------------------------------
_installed = False
_install_lock = threading.Lock()


def install_logging() -> None:
    """From now on, every log record has the configured secrets redacted and its control characters shown as
    escapes (record text cannot forge a log line or drive a terminal). A record factory, so every handler
    and formatter gets clean records; installed once, by `mdr` at start and when a secret is registered."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        make = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            _clean_record(record)
            return record

        logging.setLogRecordFactory(factory)


def _clean_record(record: logging.LogRecord) -> None:
    try:
        msg = record.getMessage()
    except Exception:  # a bad format string: logging reports it when the record is emitted
        return
    clean = visible(redact(msg))
    if clean != msg or record.args:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = escape("text", redact(record.exc_text), multiline=True)
    if record.stack_info:
        record.stack_info = escape("text", redact(record.stack_info), multiline=True)
