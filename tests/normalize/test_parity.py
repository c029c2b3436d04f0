"""Normalize + dedup output is pinned byte for byte: a faster parser must give the same alerts, dead letters,
skip counts and dedup representatives as the code it replaces.

Each input's output is digested (sha256 of the encoded alerts, dead letters, skip counts, then dedup's kinds,
fingerprints and representatives) and compared with `parity_digests.json`, written from the code before the
throughput work of issue 16. Inputs:
- every record file under tests/fixtures, read as `mdr replay` reads it (per-file format detection);
- ../shared/samples/lab-1 and ../shared/labeled, the same way (skipped when ../shared is absent);
- for every format, seeded mutations of its fixture records (truncations, deletions, grammar tokens and JSON
  values of other types written in): the hostile and broken inputs take the same paths as before.

A change that alters output on purpose rewrites the file: `.venv/bin/python -m tests.normalize.test_parity`
(then review the diff of the digests' inputs, not just the digests).
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

from pipeline.core.dedup import NEW, Dedup, fingerprint
from pipeline.normalize.registry import formats
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.schema import Alert, encode

from .conftest import FIXTURES, RECEIVED, SHARED, TENANT, record, run_file

GOLDEN = Path(__file__).with_name("parity_digests.json")
_NOT_RECORDS = {"README.md", "labels.jsonl", "HttpParamsDataset-LICENSE"}
MUTATIONS = 600  # per format
# A format's fixture records (the mutation seeds): the files `mdr replay` detects as that format.
SEEDS = {
    "aide": ["host/aide_check.json", "host/aide_check_removed.json"],
    "alibaba_cloudfw": ["cloud/alibaba_cloudfw/records.jsonl"],
    "alibaba_ddos": ["cloud/alibaba_ddos/records.jsonl"],
    "alibaba_sas": ["cloud/alibaba_sas/records.jsonl"],
    "alibaba_waf": ["cloud/alibaba_waf/records.jsonl"],
    "apache_access": ["waf/apache_access_samples.log", "waf/apache_access.log"],
    "auditd": ["host/audit.log"],
    "aws_nfw": ["cloud/aws_nfw/records.jsonl"],
    "aws_waf": ["cloud/aws_waf/records.jsonl"],
    "clamav": ["host/clamscan_webroot.log", "host/clamd.log", "host/clamdscan.log", "host/clamscan_allmatch.log"],
    "fail2ban": ["host/fail2ban.log"],
    "fail2ban_json": ["host/fail2ban_bans.jsonl"],
    "modsec_error": ["waf/apache_error_samples.log", "waf/apache_error.log"],
    "modsecurity": ["waf/modsec_audit_samples.jsonl", "waf/modsec_audit.jsonl"],
    "sshd": ["host/sshd_auth_variants.log", "host/sshd_auth.log"],
    "suricata": ["ids/eve_samples.jsonl", "ids/eve_attack.jsonl"],
    "wazuh": ["cloud/wazuh/records.jsonl"],
}
# What mutations write into a record: every product's delimiters, and JSON values of every type.
TOKENS = ['"', "\\", "[", "]", "{", "}", ":", ",", " ", "=", "'", "(", ")", "/", "-", "\x00", "\t", "é", "\u202e",
          " [id \"1\"]", ' [data "x"]', ' [tag "attack-sqli"]', " port ", " from ", "127.0.0.1", "::1", "65536",
          "type=SYSCALL ", "msg=audit(1.2:3): ", "Ban ", "FOUND", "ModSecurity: ", "[client 1.2.3.4:5]",
          "Nov 24 06:38:43 ", "24/Nov/2026:06:38:34 +0000", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"]
JSON_VALUES = [None, True, 0, -1, 2**63, 1.5, 1e300, "", "-", "x", "127.0.0.1", "not an ip", [], {}, ["a"], {"a": 1}]


def inputs() -> list[str]:
    """Golden keys of the real files: `fixtures/<rel>` and `shared/<rel>`."""
    out = [f"fixtures/{p.relative_to(FIXTURES)}" for p in sorted(FIXTURES.rglob("*"))
           if p.is_file() and p.name not in _NOT_RECORDS]
    out += [f"shared/{rel}" for rel in ("samples/lab-1", "labeled")]
    return out


def _path(key: str) -> Path:
    root, _, rel = key.partition("/")
    if root == "shared":
        p = SHARED / rel
        if not p.exists():
            pytest.skip(f"shared data not available: {p}")
        return p
    return FIXTURES / rel


def _files(p: Path) -> list[Path]:
    if p.is_file():
        return [p]
    return [f for f in sorted(p.rglob("*")) if f.is_file() and f.name not in _NOT_RECORDS
            and f.suffix not in (".md",)]


class Digest:
    """sha256 over the outputs, in order, plus counts for the failure message."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.counts = {"alerts": 0, "dead": 0, "kept": 0}

    def add(self, *parts: object) -> None:
        for p in parts:
            self.h.update(p if isinstance(p, bytes) else repr(p).encode("utf-8", "surrogatepass"))
            self.h.update(b"\x1e")

    def result(self, res: NormalizeResult, detail: bool = True) -> None:
        """Alerts whole; dead letters whole (`detail=False`: the JSON decoder's wording of bad JSON aside)."""
        for a in res.alerts:
            self.add(b"A", encode(a))
        for d in res.dead:
            self.add(b"D", d.reason, d.field, d.source, d.file, d.line, d.raw, d.raw_encoding,
                     d.detail if detail or d.reason != "bad_json" else "")
        self.add(b"S", sorted(res.skipped.items()))
        self.counts["alerts"] += len(res.alerts)
        self.counts["dead"] += len(res.dead)

    def dedup(self, alerts: Iterable[Alert]) -> None:
        """Dedup's decision per alert, then every representative it ends with."""
        dd = Dedup()
        closed: list[Alert] = []  # representatives a later alert of their fingerprint replaced (window closed)
        for a in alerts:
            held = dd.state.get(fingerprint(a))
            rep, kind = dd.merge(a)
            if kind == NEW and held is not None and held is not rep:
                closed.append(held)
            self.add(b"K", kind, rep.alert_id, rep.fingerprint, rep.count)
        reps = [*closed, *dd.upgraded, *dd.drain()]
        for rep in reps:
            self.add(b"R", encode(rep))
        self.counts["kept"] += len(reps)

    def value(self) -> dict[str, object]:
        return {"sha256": self.h.hexdigest(), **self.counts}


def real_digest(key: str) -> dict[str, object]:
    dg = Digest()
    for f in _files(_path(key)):
        res = run_file(f)
        dg.add(b"F", f.name)
        dg.result(res)
        dg.dedup(res.alerts)
    return dg.value()


def _mutate(text: str, rnd: random.Random) -> str:
    """One seeded mutation: a JSON value of another type (JSON records), or a cut, deletion or token."""
    if text.startswith("{") and rnd.random() < 0.5:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            node: dict | list = doc
            while keys := list(node) if isinstance(node, dict) else list(range(len(node))):
                key = rnd.choice(keys)
                if isinstance(node[key], dict | list) and node[key] and rnd.random() < 0.7:
                    node = node[key]
                    continue
                if rnd.random() < 0.2 and isinstance(node, dict):
                    del node[key]
                else:
                    node[key] = orjson.loads(orjson.dumps(rnd.choice(JSON_VALUES)))
                return orjson.dumps(doc).decode()
    n = len(text)
    i = rnd.randrange(n + 1)
    kind = rnd.randrange(4)
    if kind == 0:
        return text[:i]
    if kind == 1:
        return text[:i] + text[i + rnd.randrange(1, 40):]
    tok = rnd.choice(TOKENS)
    if kind == 2:
        return text[:i] + tok + text[i:]
    return text[:i] + tok + text[i + rnd.randrange(1, 20):]


def mutated(fmt: str) -> list[str]:
    texts: list[str] = []
    for rel in SEEDS[fmt]:
        body = (FIXTURES / rel).read_text(encoding="utf-8")
        texts += [body] if fmt == "aide" else [ln for ln in body.splitlines() if ln.strip()]
    rnd = random.Random(f"parity:{fmt}")
    out = []
    for _ in range(MUTATIONS):
        text = rnd.choice(texts)
        for _ in range(rnd.randrange(1, 3)):
            text = _mutate(text, rnd)
        out.append(text)
    return out


def mutation_digest(fmt: str) -> dict[str, object]:
    dg = Digest()
    stage, res = NormalizeStage(fmt), NormalizeResult()
    for text in mutated(fmt):
        stage.process(record(text, TENANT, "web-01", RECEIVED), fmt, res)
    stage.flush(res)
    dg.result(res, detail=False)
    dg.dedup(res.alerts)
    return dg.value()


def _golden() -> dict[str, dict[str, object]]:
    return orjson.loads(GOLDEN.read_bytes())


def test_every_format_has_mutation_seeds():
    assert sorted(SEEDS) == formats()


@pytest.mark.parametrize("key", inputs())
def test_real_records_normalize_and_dedup_as_before(key):
    want = _golden().get(key)
    assert want is not None, f"no golden digest for {key}: rewrite {GOLDEN.name} (see the module docstring)"
    assert real_digest(key) == want


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_mutated_records_normalize_and_dedup_as_before(fmt):
    assert mutation_digest(fmt) == _golden()[f"mutated/{fmt}"]


def write() -> None:
    if not SHARED.exists():
        raise SystemExit(f"{SHARED} is absent: the golden digests must cover it (set MDR_SHARED)")
    out = {key: real_digest(key) for key in inputs()}
    out |= {f"mutated/{fmt}": mutation_digest(fmt) for fmt in sorted(SEEDS)}
    GOLDEN.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"wrote {GOLDEN} ({len(out)} digests)", file=sys.stderr)


if __name__ == "__main__":
    write()
