#!/usr/bin/env python3
"""Keep a fixed share of the attack-tool records (sqlmap sends thousands of near-identical requests).

usage: trim_lab.py DIR [PER_MILLE] [TOOLS]   (rewrites DIR/modsec_audit.jsonl(.gz) and DIR/labels.jsonl in place)
A tool record is kept when blake2b(transaction_id) % 1000 < PER_MILLE (default 60); every other record is kept.
TOOLS: comma-separated attack tools (the `tool-NAME` of join_lab.py), default sqlmap.
"""
import gzip
import hashlib
import json
import sys
from pathlib import Path

d = Path(sys.argv[1])
keep = int(sys.argv[2]) if len(sys.argv) > 2 else 60
labels = [json.loads(x) for x in (d / "labels.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
tools = set((sys.argv[3] if len(sys.argv) > 3 else "sqlmap").split(","))
drop = {r["transaction_id"] for r in labels if r["attack_type"] in tools and int.from_bytes(
    hashlib.blake2b(r["transaction_id"].encode(), digest_size=8).digest(), "big") % 1000 >= keep}
gz = (d / "modsec_audit.jsonl.gz").exists()
src = d / ("modsec_audit.jsonl.gz" if gz else "modsec_audit.jsonl")
lines = (gzip.open(src, "rt", encoding="utf-8") if gz else open(src, encoding="utf-8")).read().splitlines()
kept = [x for x in lines if json.loads(x)["transaction"]["transaction_id"] not in drop]
with (gzip.open(src, "wt", encoding="utf-8", compresslevel=9) if gz else open(src, "w", encoding="utf-8")) as fh:
    fh.write("".join(x + "\n" for x in kept))
(d / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels if r["transaction_id"] not in drop),
                                encoding="utf-8")
print(f"{len(lines) - len(kept)} tool records dropped, {len(kept)} kept")
