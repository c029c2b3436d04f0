#!/usr/bin/env python3
"""Join lab audit records to request labels by X-Lab-Seq, remove that header, append records + labels.

usage: join_lab.py AUDIT.json LABELS_RAW.jsonl OUT_DIR PARANOIA_LEVEL
Requests whose X-Lab-Seq is `tool-<name>` come from an attack tool (sqlmap): label attack, attack_type <name>.
"""
import json
import os
import sys

audit, labels, out, pl = sys.argv[1:5]
lab = {}
for line in open(labels, encoding="utf-8"):
    d = json.loads(line)
    lab[d["seq"]] = d
os.makedirs(out, exist_ok=True)
n = {"attack": 0, "benign": 0}
with open(f"{out}/modsec_audit.jsonl", "a", encoding="utf-8") as fa, \
        open(f"{out}/labels.jsonl", "a", encoding="utf-8") as fl:
    for line in open(audit, encoding="utf-8", errors="replace"):
        d = json.loads(line)
        h = d.get("request", {}).get("headers", {})
        seq = h.pop("X-Lab-Seq", None)
        if seq is None:
            continue
        if seq.startswith("tool-"):
            r = {"label": "attack", "attack_type": seq[5:], "src": d["transaction"]["remote_address"]}
        elif seq in lab:
            r = lab[seq]
        else:
            continue
        n[r["label"]] += 1
        fa.write(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n")
        fl.write(json.dumps({"transaction_id": d["transaction"]["transaction_id"], "label": r["label"],
                             "attack_type": r["attack_type"], "src": r["src"], "paranoia_level": int(pl)}) + "\n")
print(f"PL{pl}", n)
