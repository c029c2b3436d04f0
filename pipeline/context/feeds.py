"""Threat-intel feed files -> `IntelSet`: STIX 2.1 bundles, MISP event JSON, CSV IOC lists.

- STIX 2.1: `indicator` objects with `pattern_type: stix`; simple patterns (comparisons with `=` joined by OR:
  `[ipv4-addr:value = '…']`, `[ipv6-addr:value = …]`, `[domain-name:value = …]`, `[url:value = …]`,
  `[file:hashes.'SHA-256' = …]` (MD5, SHA-1, SHA-512 too), `[network-traffic:dst_ref.value = …]`) become
  indicators; valid_from / valid_until, labels + indicator_types (tags), confidence, created_by_ref (resolved
  to the identity's name when the bundle has it; without a creator the source is the feed's file name) are
  kept. Other patterns (AND, FOLLOWEDBY, other objects) are valid STIX we cannot match on one field: skipped
  and counted. Revoked indicators are skipped.
- MISP: `{"Event": …}`, a list of those, or `{"response": [...]}`; `Event.Attribute[]` and
  `Event.Object[].Attribute[]` of types ip-src, ip-dst (and `|port`), domain, hostname, domain|ip, url, md5,
  sha1, sha256, sha512 (and `filename|<hash>`) with `to_ids` set. Tags: event + attribute tags; source:
  `misp:<Orgc.name>`; confidence from the `estimative-language:likelihood-probability` tag when present.
  MISP has no validity window.
- CSV: header `value,type,source,confidence,tags,valid_from,valid_until` (only `value` required; blank type is
  guessed; tags separated by `;`; times ISO 8601 or epoch seconds).

Any malformed entry rejects the whole file with `file:line: field: message` (`ContextFileError`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from stix2patterns.validator import run_validator

from pipeline.context.intel import Indicator, IntelSet, guess_kind, normalize
from pipeline.context.loader import Collector, csv_rows, parse_time, read_text, split_list

CSV_TYPES = {
    "ip": "ip", "ipv4": "ip", "ipv6": "ip", "ip-src": "ip", "ip-dst": "ip", "ipv4-addr": "ip",
    "ipv6-addr": "ip", "cidr": "ip", "domain": "domain", "hostname": "domain", "domain-name": "domain",
    "fqdn": "domain",
    "url": "url", "uri": "url", "md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512",
    "hash": "hash", "file-hash": "hash",
}
MISP_TYPES = {
    "ip-src": "ip", "ip-dst": "ip", "ip-src|port": "ip", "ip-dst|port": "ip", "domain": "domain",
    "hostname": "domain", "hostname|port": "domain", "url": "url", "md5": "md5", "sha1": "sha1",
    "sha256": "sha256", "sha512": "sha512", "filename|md5": "md5", "filename|sha1": "sha1",
    "filename|sha256": "sha256", "filename|sha512": "sha512",
}
MISP_CONFIDENCE_TAG = "estimative-language:likelihood-probability="
MISP_LIKELIHOOD = {"almost-certain": 95, "very-likely": 85, "likely": 70, "roughly-even-chance": 50,
                   "unlikely": 30, "very-unlikely": 15, "almost-no-chance": 5}
STIX_HASHES = {"md5": "md5", "sha-1": "sha1", "sha1": "sha1", "sha-256": "sha256", "sha256": "sha256",
               "sha-512": "sha512", "sha512": "sha512"}
_COMPARISON = re.compile(r"([a-z0-9-]+):([A-Za-z0-9_.'-]+)\s*=\s*'((?:[^'\\]|\\.)*)'")
_SIMPLE_REST = re.compile(r"^[\s\[\]]*(?:OR[\s\[\]]*)*$")


@dataclass(slots=True)
class FeedStats:
    format: str = ""
    loaded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def load_feed(path: str | Path, name: str | None = None) -> tuple[IntelSet, FeedStats]:
    """Parse and validate one feed file; raises ContextFileError (file:line: field: message)."""
    errors = Collector(path)
    stats = FeedStats()
    out = IntelSet(name or Path(path).stem, str(path))
    if str(path).lower().endswith(".csv"):
        stats.format = "csv"
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                out.extend(_csv(fh, Path(path).stem, errors, stats))
        except (OSError, UnicodeDecodeError) as e:
            errors.add(0, "", f"cannot read: {e}")
    else:
        text = read_text(path, errors)
        doc = _json(text, errors) if text is not None else None
        if doc is not None:
            parse = _detect(doc)
            if parse is None:
                errors.add(1, "", "neither a STIX 2.1 bundle, a MISP event nor a CSV file (.csv)")
            else:
                stats.format = parse.__name__.strip("_")
                out.extend(parse(doc, _Locator(text or ""), errors, stats, Path(path).stem))
    errors.check()
    stats.loaded = out.count
    return out, stats


def _json(text: str, errors: Collector) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            errors.add(e.lineno, "", f"not valid JSON: {e.msg}")
        return None


def _detect(doc: Any) -> Callable[..., Iterator[Indicator]] | None:
    if isinstance(doc, dict) and doc.get("type") in ("bundle", "indicator"):
        return _stix
    if isinstance(doc, dict) and ("Event" in doc or "response" in doc):
        return _misp
    if isinstance(doc, list) and doc and all(isinstance(x, dict) and "Event" in x for x in doc):
        return _misp
    return None


class _Locator:
    """Line of a JSON element, found by a string it contains (its id / uuid / value)."""

    def __init__(self, text: str):
        self.text = text

    def line(self, *needles: Any) -> int:
        for n in needles:
            if isinstance(n, str) and n:
                pos = self.text.find(json.dumps(n))
                if pos >= 0:
                    return self.text.count("\n", 0, pos) + 1
        return 0


def _epoch(v: Any, fld: str, line: int, errors: Collector, end: bool = False) -> int | None:
    if v in (None, ""):
        return None
    try:
        return int(parse_time(v, end=end).timestamp())
    except (ValueError, TypeError, OverflowError):
        errors.add(line, fld, f"not a timestamp: {v!r}")
        return None


def _confidence(v: Any, fld: str, line: int, errors: Collector) -> int | None:
    if v in (None, ""):
        return None
    try:
        c = int(v)
    except (ValueError, TypeError):
        c = -1
    if not 0 <= c <= 100 or isinstance(v, float | bool):
        errors.add(line, fld, f"not an integer 0-100: {v!r}")
        return None
    return c


def _make(kind: str, value: Any, meta: dict[str, Any], fld: str, line: int, errors: Collector
          ) -> Indicator | None:
    try:
        k, key = normalize(kind, str(value))
    except ValueError as e:
        errors.add(line, fld, str(e))
        return None
    return Indicator(key, k, **meta)


# ---- CSV ---------------------------------------------------------------------------------------------------
def _csv(fh: Any, default_source: str, errors: Collector, stats: FeedStats) -> Iterator[Indicator]:
    for line, row in csv_rows(fh, errors, ("value",)):
        value = row.get("value", "")
        if not value:
            errors.add(line, "value", "empty indicator value")
            continue
        typ = (row.get("type") or "").lower()
        kind = CSV_TYPES.get(typ) if typ else guess_kind(value)
        if kind is None:
            errors.add(line, "type", f"unknown type {typ!r} (known: {', '.join(sorted(CSV_TYPES))})")
            continue
        vf = _epoch(row.get("valid_from"), "valid_from", line, errors)
        vu = _epoch(row.get("valid_until"), "valid_until", line, errors, end=True)
        meta = {"source": row.get("source") or default_source,
                "confidence": _confidence(row.get("confidence"), "confidence", line, errors),
                "tags": tuple(split_list(row.get("tags"))), "valid_from": vf, "valid_until": vu}
        if vf is not None and vu is not None and vu < vf:
            errors.add(line, "valid_until", "before valid_from")
        ind = _make(kind, value, meta, "value", line, errors)
        if ind is not None:
            yield ind


# ---- STIX 2.1 ----------------------------------------------------------------------------------------------
def _stix(doc: dict[str, Any], loc: _Locator, errors: Collector, stats: FeedStats, default_source: str
          ) -> Iterator[Indicator]:
    objects = doc.get("objects") if doc.get("type") == "bundle" else [doc]
    if not isinstance(objects, list):
        errors.add(loc.line("objects"), "objects", "a bundle needs a list of objects")
        return
    names = {o.get("id"): o.get("name") for o in objects
             if isinstance(o, dict) and o.get("type") == "identity" and o.get("name")}
    for i, o in enumerate(objects):
        if not isinstance(o, dict) or o.get("type") != "indicator":
            continue
        at, fld = loc.line(o.get("id"), o.get("pattern")), f"objects[{i}]"
        if o.get("revoked") is True:
            stats.skipped["revoked"] += 1
            continue
        if o.get("pattern_type", "stix") != "stix":
            stats.skipped[f"pattern_type {o.get('pattern_type')}"] += 1
            continue
        for req in ("id", "pattern", "valid_from"):
            if not o.get(req):
                errors.add(at, f"{fld}.{req}", "missing (required for STIX 2.1 indicators)")
        pattern = o.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            continue
        creator = o.get("created_by_ref")
        meta = {"source": names.get(creator) or creator or default_source,
                "confidence": _confidence(o.get("confidence"), f"{fld}.confidence", at, errors),
                "tags": tuple(dict.fromkeys([*o.get("labels", []), *o.get("indicator_types", [])])),
                "valid_from": (since := _epoch(o.get("valid_from"), f"{fld}.valid_from", at, errors)),
                "valid_until": (until := _epoch(o.get("valid_until"), f"{fld}.valid_until", at, errors))}
        if since is not None and until is not None and until <= since:
            errors.add(at, f"{fld}.valid_until", "must be later than valid_from")
        comps = _simple_pattern(pattern)
        if comps is None:
            problems = run_validator(pattern, "2.1")
            if problems:
                errors.add(at, f"{fld}.pattern", f"invalid STIX pattern: {problems[0]}")
            else:
                stats.skipped["complex pattern"] += 1
            continue
        found = False
        for obj, path, value in comps:
            kind = _stix_kind(obj, path)
            if kind is None:
                stats.skipped[f"{obj}:{path}"] += 1
                continue
            ind = _make(kind, value, meta, f"{fld}.pattern", at, errors)
            if ind is not None:
                found = True
                yield ind
        if not found:
            stats.skipped["no supported comparison"] += 1


def _simple_pattern(p: str) -> list[tuple[str, str, str]] | None:
    """Comparisons of a pattern made only of `obj:path = 'value'` joined by OR, else None."""
    comps = [(m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))) for m in _COMPARISON.finditer(p)]
    rest = _COMPARISON.sub("", p)
    if not comps or not _SIMPLE_REST.match(rest) or p.count("[") != p.count("]"):
        return None
    return comps


def _stix_kind(obj: str, path: str) -> str | None:
    if obj in ("ipv4-addr", "ipv6-addr") and path == "value":
        return "ip"
    if obj == "network-traffic" and path in ("dst_ref.value", "src_ref.value"):
        return "ip"
    if obj == "domain-name" and path == "value":
        return "domain"
    if obj == "url" and path == "value":
        return "url"
    if obj == "file" and path.startswith("hashes."):
        return STIX_HASHES.get(path[7:].strip("'").lower())
    return None


# ---- MISP --------------------------------------------------------------------------------------------------
def _misp(doc: Any, loc: _Locator, errors: Collector, stats: FeedStats, default_source: str
          ) -> Iterator[Indicator]:
    events = doc if isinstance(doc, list) else doc.get("response", [doc])
    for n, wrapper in enumerate(events):
        ev = wrapper.get("Event") if isinstance(wrapper, dict) else None
        if not isinstance(ev, dict):
            errors.add(0, f"response[{n}]", "expected an object with an Event")
            continue
        org = (ev.get("Orgc") or {}).get("name") if isinstance(ev.get("Orgc"), dict) else None
        source = f"misp:{org}" if org else default_source
        ev_tags = _misp_tags(ev)
        where = "Event" if len(events) == 1 else f"[{n}].Event"
        attrs = [(f"{where}.Attribute[{i}]", a) for i, a in enumerate(ev.get("Attribute") or [])]
        for j, obj in enumerate(ev.get("Object") or []):
            if isinstance(obj, dict):
                attrs += [(f"{where}.Object[{j}].Attribute[{i}]", a)
                          for i, a in enumerate(obj.get("Attribute") or [])]
        for fld, a in attrs:
            yield from _misp_attribute(a, fld, source, ev_tags, loc, errors, stats)


def _misp_tags(o: dict[str, Any]) -> list[str]:
    return [t["name"] for t in o.get("Tag") or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]


def _misp_attribute(a: Any, fld: str, source: str, ev_tags: list[str], loc: _Locator, errors: Collector,
                    stats: FeedStats) -> Iterator[Indicator]:
    if not isinstance(a, dict):
        errors.add(0, fld, "expected an attribute object")
        return
    at = loc.line(a.get("uuid"), a.get("value"))
    typ, value = a.get("type"), a.get("value")
    if not isinstance(typ, str) or not isinstance(value, str) or not value:
        errors.add(at, fld, "an attribute needs a type and a value")
        return
    if a.get("deleted") in (True, "1"):
        stats.skipped["deleted"] += 1
        return
    if a.get("to_ids") not in (True, 1, "1", "true", "True"):
        stats.skipped["to_ids false"] += 1
        return
    tags = tuple(dict.fromkeys([*ev_tags, *_misp_tags(a)]))
    conf = next((MISP_LIKELIHOOD[v] for t in tags if t.startswith(MISP_CONFIDENCE_TAG)
                 if (v := t.split("=", 1)[1].strip('"')) in MISP_LIKELIHOOD), None)
    meta = {"source": source, "confidence": conf, "tags": tags, "valid_from": None, "valid_until": None}
    if typ == "domain|ip":
        dom, _, ip = value.partition("|")
        parts = [("domain", dom), ("ip", ip)]
    elif typ in MISP_TYPES:
        v = value.split("|", 1)[1] if typ.startswith("filename|") else value.split("|", 1)[0]
        parts = [(MISP_TYPES[typ], v)]
    else:
        stats.skipped[f"type {typ}"] += 1
        return
    for kind, v in parts:
        ind = _make(kind, v, meta, f"{fld}.value", at, errors)
        if ind is not None:
            yield ind

