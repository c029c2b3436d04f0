"""Values of the second lab set (data/waf-lab-pl12): benign values made by Faker (MIT), attacks from wfuzz's
word lists (`/usr/share/wfuzz/wordlist`, GPL-2), sent to five paths of a blog / shop.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from faker import Faker

HOST = "blog.lab.local"
ENCODINGS = (("json", 0.3), ("form", 0.6))  # the rest: GET query
BENIGN_REQUESTS = 3200
WORDLISTS = Path("/usr/share/wfuzz/wordlist")
ATTACK_LISTS = {"Injections/SQL.txt": "sqli", "vulns/sql_inj.txt": "sqli", "Injections/XSS.txt": "xss",
                "Injections/Traversal.txt": "path-traversal", "Injections/XML.txt": "xml",
                "Injections/All_attack.txt": "mixed", "vulns/dirTraversal-nix.txt": "path-traversal",
                "vulns/dirTraversal-win.txt": "path-traversal"}
TRAVERSAL_SAMPLE = 150  # values taken from each long directory-traversal list
LOCALES = ["en_US", "en_GB", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL", "pl_PL"]
PATHS = {"/blog/post/{n}/comment": ("author", "email", "comment", "website"),
         "/api/v1/orders": ("customer", "address", "phone", "note", "qty"),
         "/account/profile": ("name", "username", "password", "bio", "city"),
         "/search": ("q", "category", "sort", "page"),
         "/shop/item": ("id", "cat", "ref", "coupon")}
UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
       "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15"
       " (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
       "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36"
       " (KHTML, like Gecko) Chrome/125.0 Mobile Safari/537.36",
       "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0 Safari/537.36"]


def benign_value(f: Faker, field: str, rnd: random.Random) -> str:
    kind = rnd.choice(["name", "address", "email", "text", "text", "html", "password", "url", "path", "query",
                       "number", "company", "phone", "date", "json"])
    if field in ("id", "qty", "page"):
        kind = rnd.choice(["number", "number", "text"])
    return {
        "name": lambda: f.name(), "address": lambda: f.address().replace("\n", ", "),
        "email": lambda: f.email(), "text": lambda: f.sentence(nb_words=rnd.randint(3, 25)),
        "html": lambda: f"<p>{f.sentence()}</p><b>{f.word()}</b> <a href=\"{f.url()}\">{f.word()}</a>",
        "password": lambda: f.password(length=rnd.randint(8, 20), special_chars=True),
        "url": lambda: f.url() + rnd.choice(["", f"?ref={f.word()}&utm_source={f.word()}"]),
        "path": lambda: rnd.choice([f.file_path(depth=rnd.randint(1, 4)),
                                    "C:\\Users\\" + f.user_name() + "\\" + f.file_name()]),
        "query": lambda: rnd.choice([f.catch_phrase(), f"{f.word()} & {f.word()}", f"{rnd.randint(5, 90)}% off",
                                     f"\"{f.word()} {f.word()}\" -{f.word()}", "c++ vs c#", f"{f.word()}'s"]),
        "number": lambda: str(rnd.randint(0, 100000)), "company": lambda: f.company(),
        "phone": lambda: f.phone_number(), "date": lambda: f.date(),
        "json": lambda: json.dumps({"k": f.word(), "v": f.sentence(nb_words=4)}),
    }[kind]()


def attacks(rnd: random.Random) -> list[tuple[str, str]]:
    out = []
    for name, kind in ATTACK_LISTS.items():
        vals = [v.rstrip("\n") for v in (WORDLISTS / name).read_text(encoding="latin-1").splitlines() if v.strip()]
        if name.startswith("vulns/dirTraversal"):
            vals = rnd.sample(vals, TRAVERSAL_SAMPLE)
        out += [(v, kind) for v in vals]
    return out


def benign(seed: str, pl: str) -> Callable[[random.Random], Callable[[str], str]]:
    """Per request: one Faker of the ten locales, and a function field -> benign value."""
    fakers = [Faker(loc) for loc in LOCALES]
    for i, f in enumerate(fakers):
        f.seed_instance(int(seed) * 100 + int(pl) * 10 + i)

    def per_request(rnd: random.Random) -> Callable[[str], str]:
        f = rnd.choice(fakers)
        return lambda field: benign_value(f, field, rnd)

    return per_request
