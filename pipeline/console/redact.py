"""A last line of defence before data reaches a page: values under secret-looking keys, URL passwords and
query strings, Authorization / Bearer credentials, and the configured secret values (`register`) are replaced
by `***` in anything the console shows from the store (timelines, playbook results, approvals). The writers
redact first (the connectors); this makes sure a page never carries what they missed."""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"
_KEY = re.compile(r"(pass(word|wd)?|secret|token|api[_-]?key|authori[sz]ation|cookie|signature|credential|"
                  r"private[_-]?key)$", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^/\s@]*)@", re.I)
_URL_QUERY = re.compile(r"(?P<url>[a-z][a-z0-9+.-]*://[^\s?#\"'<>]+)\?[^\s#\"'<>]*", re.I)
_AUTH = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.I)
_secrets: set[str] = set()
_lock = threading.Lock()


def register(values: Any) -> None:
    """Secret values (channel tokens, passwords) that must never be shown, in any field."""
    with _lock:
        _secrets.update(v for v in values if isinstance(v, str) and len(v) >= 6)


def text(s: str) -> str:
    s = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", s)
    s = _URL_QUERY.sub(lambda m: f"{m['url']}?{MASK}", s)
    s = _AUTH.sub(lambda m: f"{m.group(1)} {MASK}", s)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for v in known:
        if v in s:
            s = s.replace(v, MASK)
    return s


def redact(obj: Any) -> Any:
    """A copy of `obj` (JSON-like) with secrets masked."""
    if isinstance(obj, dict):
        return {k: MASK if isinstance(k, str) and _KEY.search(k) and v not in (None, "") else redact(v)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return text(obj)
    return obj
