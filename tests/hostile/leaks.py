"""What counts as a leaked secret, independently of pipeline/redact.py: the plain, escaped and percent-encoded
forms of each secret, and the secret inside any base64 text (HTTP Basic `user:secret`, SMTP AUTH PLAIN), at any
of the three alignments base64 can give it, in the standard and the URL-safe alphabet."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

MIN_FORM = 6  # shorter forms would match ordinary text


def base64_inside(secret: bytes) -> set[str]:
    """The base64 characters that encode `secret` alone, wherever it sits in a longer base64 text: the
    characters whose 6 bits all come from the secret, for each alignment (0, 1 or 2 bytes before it)."""
    out = set()
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + secret).decode()
        core = enc[-(-pad * 8 // 6):(pad + len(secret)) * 8 // 6]
        out |= {core, core.replace("+", "-").replace("/", "_")}
    return out


def plain_forms(s: str, users: Iterable[str] = ()) -> set[str]:
    """The forms of secret `s` a sink could show: raw, stripped, escaped, percent-encoded, base64 (alone, inside
    a longer base64 text, and as HTTP Basic with each of `users`)."""
    t = s.strip()
    forms = {t, s, repr(s)[1:-1], repr(s.encode())[2:-1], json.dumps(s)[1:-1], quote(t, safe=""), quote(s, safe=""),
             quote_plus(t), quote_plus(s), quote(t, safe="").lower(), quote(t)}
    forms |= {base64.b64encode(x.encode()).decode().rstrip("=")
              for x in (s, t, *(f"{u}:{v}" for u in users for v in (s, t)))}
    forms |= base64_inside(t.encode())
    return {f for f in forms if len(f) >= MIN_FORM}


class Leaks:
    """Finds the secrets of `secrets` (name -> value) in a text."""

    def __init__(self, secrets: Mapping[str, str], users: Iterable[str] = ()):
        users = tuple(users)
        self.name = {f: name for name, s in secrets.items() for f in plain_forms(s, users)}
        self._rx = re.compile("|".join(map(re.escape, sorted(self.name, key=len, reverse=True))))

    def __call__(self, text: str) -> list[tuple[str, str]]:
        """(secret name, the form found) for every form of a secret in `text`."""
        return [(self.name[m.group()], m.group()) for m in self._rx.finditer(text)]
