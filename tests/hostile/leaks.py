"""What counts as a leaked secret, independently of pipeline/redact.py: the plain, escaped and percent-encoded
forms of each secret, and any base64 run that decodes to a text holding one (HTTP Basic `user:secret`, SMTP
AUTH PLAIN, at any alignment)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

_B64 = re.compile(r"[A-Za-z0-9+/_-]{12,}={0,2}")
MIN_FORM = 6  # shorter forms would match ordinary text


def plain_forms(s: str, users: Iterable[str] = ()) -> set[str]:
    """The forms of secret `s` a sink could show: raw, stripped, escaped, percent-encoded, base64 (with each of
    `users` as Basic-auth user)."""
    t = s.strip()
    forms = {t, s, repr(s)[1:-1], repr(s.encode())[2:-1], json.dumps(s)[1:-1], quote(t, safe=""), quote(s, safe=""),
             quote_plus(t), quote_plus(s), quote(t, safe="").lower(), quote(t)}
    forms |= {base64.b64encode(x.encode()).decode().rstrip("=")
              for x in (s, t, *(f"{u}:{v}" for u in users for v in (s, t)))}
    return {f for f in forms if len(f) >= MIN_FORM}


class Leaks:
    """Finds the secrets of `secrets` (name -> value) in a text."""

    def __init__(self, secrets: Mapping[str, str], users: Iterable[str] = ()):
        users = tuple(users)
        self.secrets = dict(secrets)
        self.forms = {name: plain_forms(s, users) for name, s in self.secrets.items()}

    def __call__(self, text: str) -> list[tuple[str, str]]:
        """(secret name, how) for every form of a secret in `text`."""
        found = [(name, f) for name, forms in self.forms.items() for f in forms if f in text]
        for m in _B64.finditer(text):
            for token in (m.group(), m.group().replace("-", "+").replace("_", "/")):
                try:
                    raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
                except ValueError:
                    continue
                found += [(name, f"base64 {token}") for name, s in self.secrets.items() if s.strip().encode() in raw]
        return found
