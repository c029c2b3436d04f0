"""What the console shows from the store passes one more mask before it reaches a page: the configured
secrets in every form (`pipeline.redact`, registered when channels and stores are loaded), plus what a secret
looks like even when nobody registered it: values under secret-looking keys, URL passwords and query strings,
Authorization / Bearer credentials. Used on timelines, playbook results, approvals and audit details (not on
alert evidence: an attack URL's query string is the evidence)."""

from __future__ import annotations

import re
from typing import Any

from pipeline.redact import MASK, redact_data
from pipeline.redact import redact as redact_secrets

_KEY = re.compile(r"(pass(word|wd)?|secret|token|api[_-]?key|authori[sz]ation|cookie|signature|credential|"
                  r"private[_-]?key)$", re.I)
# a scheme starts where no scheme character precedes it: a long run of letters is scanned once, not once per
# letter (record text holds 100 KB tokens; without the look-behind a page took minutes)
_SCHEME = r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://"
_URL_USERINFO = re.compile(rf"(?P<scheme>{_SCHEME})(?P<user>[^/\s:@]*):(?P<pw>[^/\s@]*)@", re.I)
_URL_QUERY = re.compile(rf"(?P<url>{_SCHEME}[^\s?#\"'<>]+)\?[^\s#\"'<>]*", re.I)
_AUTH = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.I)


def text(s: str) -> str:
    s = redact_secrets(s)
    s = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", s)
    s = _URL_QUERY.sub(lambda m: f"{m['url']}?{MASK}", s)
    return _AUTH.sub(lambda m: f"{m.group(1)} {MASK}", s)


def redact(obj: Any) -> Any:
    """A copy of `obj` (JSON-like) with secrets masked."""
    if isinstance(obj, dict):
        return {k: MASK if isinstance(k, str) and _KEY.search(k) and v not in (None, "") else redact(v)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return text(obj)
    return redact_data(obj)
