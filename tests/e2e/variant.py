"""Make "another day" from lab-1: the same kind of attack with other actors, addresses, names, paths and date.

Values are rewritten consistently in every product's own format (including timestamps in each product's
time format), so the records stay real product output in shape while none of the lab's literals survive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_USERS = {"admin": "administrator", "oracle": "postgres", "test": "guest", "ubuntu": "ec2-user"}


@dataclass(frozen=True)
class Variant:
    attacker: str
    benign: str
    scanner: str
    host: str
    site: str
    webroot: str = "/srv/lab/waf/www"
    day_shift_days: int = 0
    users: bool = False


# The values of samples/lab-1 (the day every variant is written from).
LAB_DAY = Variant(attacker="127.0.0.66", benign="127.0.0.10", scanner="127.0.0.1", host="vm", site="shop.lab.local")


def _ip(text: str, old: str, new: str) -> str:
    return re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d])", new, text)


def _shift(text: str, days: int) -> str:
    if not days:
        return text
    d = timedelta(days=days)

    def iso(m: re.Match[str]) -> str:
        t = datetime(int(m[1]), int(m[3]), int(m[4])) + d
        return f"{t:%Y}{m[2]}{t:%m}{m[2]}{t:%d}"

    def clf(m: re.Match[str]) -> str:
        t = datetime(int(m[3]), _MONTHS.index(m[2]) + 1, int(m[1])) + d
        return f"{t:%d}/{_MONTHS[t.month - 1]}/{t:%Y}"

    def ctime(m: re.Match[str]) -> str:
        t = datetime(int(m[5]), _MONTHS.index(m[2]) + 1, int(m[3])) + d
        return f"{_DAYS[t.weekday()]} {_MONTHS[t.month - 1]} {t.day:02d} {m[4]} {t:%Y}"

    def syslog(m: re.Match[str]) -> str:
        t = datetime(2026, _MONTHS.index(m[1]) + 1, int(m[2])) + d
        return f"{_MONTHS[t.month - 1]} {t.day:2d} {m[3]}"

    def epoch(m: re.Match[str]) -> str:
        return f"audit({int(m[1]) + days * 86400}{m[2]}"

    text = re.sub(r"(?<![/\d])(20\d\d)([-:])(\d\d)\2(\d\d)(?!\d)", iso, text)
    text = re.sub(r"\b(\d\d)/(" + "|".join(_MONTHS) + r")/(20\d\d)\b", clf, text)
    text = re.sub(r"\b(" + "|".join(_DAYS) + r") (" + "|".join(_MONTHS) + r") (\d\d) (\d\d:\d\d:\d\d\.\d+) (20\d\d)\b",
                  ctime, text)
    text = re.sub(r"^(" + "|".join(_MONTHS) + r") +(\d+) (\d\d:\d\d:\d\d)", syslog, text, flags=re.M)
    return re.sub(r"audit\((\d{10})(\.\d+:\d+\))", epoch, text)


def rewrite(text: str, old: Variant, new: Variant) -> str:
    for a, b in ((old.attacker, "\x00A"), (old.benign, "\x00B"), (old.scanner, "\x00S")):
        text = _ip(text, a, b)
    text = text.replace("\x00A", new.attacker).replace("\x00B", new.benign).replace("\x00S", new.scanner)
    text = text.replace(old.site, new.site).replace(old.webroot, new.webroot)
    text = re.sub(rf"\bnode={re.escape(old.host)} ", f"node={new.host} ", text)
    text = re.sub(rf"(:\d\d) {re.escape(old.host)} (\w+)\[", rf"\1 {new.host} \2[", text)
    if new.users:
        for a, b in _USERS.items():
            text = re.sub(rf"\b(user|for) {a}\b", rf"\1 {b}", text)
    return _shift(text, new.day_shift_days - old.day_shift_days)


def write_variant(src: Path, dst: Path, old: Variant, new: Variant) -> list[Path]:
    out = []
    for f in sorted(src.rglob("*")):
        if f.is_file() and f.suffix != ".md":
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rewrite(f.read_text(encoding="utf-8"), old, new), encoding="utf-8")
            out.append(target)
    return out


def earlier_day(k: int) -> Variant:
    """The lab day `k` days earlier (in the past, as replayed history is), with its own actors, host and site
    (k < 62,500)."""
    n = f"{k // 250}.{k % 250 + 1}"
    return Variant(attacker=f"198.18.{n}", benign=f"198.19.{n}", scanner=f"100.64.{n}", host=f"app-{k}",
                   site=f"shop-{k}.example.net", day_shift_days=-k)


def write_days(src: Path, dst: Path, n: int) -> list[Path]:
    """`n` days of the lab day `src` (`earlier_day(0)` ... `earlier_day(n - 1)`), one directory each under
    `dst`."""
    out = []
    for k in range(n):
        d = dst / f"day-{k:03d}"
        write_variant(src, d, LAB_DAY, earlier_day(k))
        out.append(d)
    return out
