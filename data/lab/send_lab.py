#!/usr/bin/env python3
"""Send labeled requests to the lab WAF: benign values made by Faker (MIT), attacks from wfuzz's word lists.

usage: send_lab.py PORT LABELS_OUT.jsonl SEED PARANOIA_LEVEL

Benign clients (200 loopback addresses) send sessions of 2-30 requests whose parameters are Faker values of many
locales (names with apostrophes, addresses, e-mails, passwords with special characters, free text, rich-text HTML
fragments, URLs, file paths, search queries); attackers (12 addresses) send sessions of 20-150 requests, 90 % of
them carrying one value of wfuzz's injection and traversal word lists (`/usr/share/wfuzz/wordlist`, GPL-2) among
benign parameters. Requests are GET queries, form POSTs or JSON POSTs to five paths of a blog / shop. Every request
carries X-Lab-Seq (its sequence number), joined to the audit record and removed by join_lab.py.
"""
import json
import queue
import random
import socket
import sys
import threading
import urllib.parse
from pathlib import Path

from faker import Faker

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
       "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
       "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0 Mobile Safari/537.36",
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


def build(seq: int, path: str, params: dict[str, str], rnd: random.Random) -> bytes:
    head = ["Host: blog.lab.local", f"User-Agent: {rnd.choice(UAS)}", "Accept: */*",
            "Accept-Language: en-US,en;q=0.8", "Connection: close", f"X-Lab-Seq: {seq}"]
    r = rnd.random()
    if r < 0.3:
        body = json.dumps(params).encode()
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return (f"POST {path} HTTP/1.1\r\n" + "\r\n".join(head) + "\r\n\r\n").encode() + body
    enc = urllib.parse.urlencode(params)
    if r < 0.6:
        body = enc.encode()
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        return (f"POST {path} HTTP/1.1\r\n" + "\r\n".join(head) + "\r\n\r\n").encode() + body
    return (f"GET {path}?{enc} HTTP/1.1\r\n" + "\r\n".join(head) + "\r\n\r\n").encode()


def send(port: int, src: str, raw: bytes) -> int:
    s = socket.socket()
    s.settimeout(10)
    try:
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(raw)
        r = s.recv(32)
        return int(r.split(b" ")[1]) if r.startswith(b"HTTP/") else -1
    except OSError:
        return -1
    finally:
        s.close()


def main(port: str, out: str, seed: str, pl: str) -> None:
    rnd = random.Random(int(seed) * 10 + int(pl))
    fakers = [Faker(loc) for loc in LOCALES]
    for i, f in enumerate(fakers):
        f.seed_instance(int(seed) * 100 + int(pl) * 10 + i)
    atk = attacks(rnd)
    rnd.shuffle(atk)
    addrs = [f"127.{rnd.randint(20, 250)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}" for _ in range(212)]
    benign_ips, attack_ips = addrs[:200], addrs[200:]

    def request(attack: tuple[str, str] | None) -> tuple[str, dict[str, str], str, str]:
        f = rnd.choice(fakers)
        path = rnd.choice(list(PATHS))
        fields = PATHS[path]
        params = {k: benign_value(f, k, rnd) for k in rnd.sample(fields, rnd.randint(1, len(fields)))}
        if attack is not None:
            params[rnd.choice(list(params))] = attack[0]
        return path.format(n=rnd.randint(1, 999)), params, "attack" if attack else "benign", \
            attack[1] if attack else "norm"

    sessions = []
    while atk:
        s = []
        for _ in range(rnd.randint(20, 150)):
            s.append(request(None) if rnd.random() < 0.1 or not atk else request(atk.pop()))
        sessions.append((rnd.choice(attack_ips), s))
    for _ in range(BENIGN_REQUESTS // 16):
        sessions.append((rnd.choice(benign_ips), [request(None) for _ in range(rnd.randint(2, 30))]))
    rnd.shuffle(sessions)
    order, act = [], []
    while sessions or act:
        while sessions and len(act) < 12:
            act.append(sessions.pop())
        i = rnd.randrange(len(act))
        ip, s = act[i]
        order.append((ip, s.pop(0)))
        if not s:
            act.pop(i)
    q: queue.Queue = queue.Queue()
    lock = threading.Lock()
    fh = open(out, "a", encoding="utf-8")
    for seq, (ip, req) in enumerate(order, 1):
        q.put((f"pl{pl}-{seq}", ip, req))

    def worker() -> None:
        wr = random.Random(rnd.random())
        while True:
            try:
                seq, ip, (path, params, label, kind) = q.get_nowait()
            except queue.Empty:
                return
            status = send(int(port), ip, build(seq, path, params, wr))
            with lock:
                fh.write(json.dumps({"seq": seq, "src": ip, "label": label, "attack_type": kind,
                                     "status": status}) + "\n")

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    fh.close()
    print(len(order), "requests sent")


BENIGN_REQUESTS = 3200

if __name__ == "__main__":
    main(*sys.argv[1:5])
