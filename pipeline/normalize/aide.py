"""AIDE file-integrity report in JSON (`report_format=json`, AIDE 0.17+): the whole document is one record.

One alert per added / removed / changed path (sections `added`, `removed`, `changed`, or `entries`; values are
the summary string such as `f > ... mc..H`, the change type, or a plain path list) with file.change, the
entry's `details` (old / new of each changed attribute) flattened into extra, and the new SHA-256 as hex in
file.hash. Severity: directories added / removed, and entries whose only changes are times, link count or
block count (plus size for directories) -> low; anything else (new or removed files, content, permissions,
owners) -> medium. time = start_time (else end_time). A report without differences -> Skipped("no_changes").
A file of one-line reports (JSON lines) gives the alerts of every report.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from pipeline.normalize._jsonrec import loads
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_iso
from pipeline.schema import Alert, File, HostInfo, Rule

_CHANGES = ("added", "removed", "changed")
_TYPES = {"f": "file", "d": "directory", "l": "symlink", "c": "char_device", "b": "block_device", "p": "fifo",
          "s": "socket", "D": "door", "P": "port"}
_FLAGS = {"l": "link_name", "b": "bcount", "p": "perm", "u": "uid", "g": "gid", "a": "access_time",
          "m": "modify_time", "c": "change_time", "i": "inode", "n": "link_count", "H": "hashes", "A": "acl",
          "X": "xattrs", "S": "selinux", "E": "e2fsattrs", "C": "capabilities"}
_METADATA = frozenset(("access_time", "modify_time", "change_time", "link_count", "bcount"))
_DIR_METADATA = _METADATA | {"size"}


def _load(text: str) -> list[Any]:
    """The report, or each report of a JSON-lines file."""
    try:
        return [loads(text)]
    except orjson.JSONDecodeError as e:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) < 2 or not all(ln.lstrip().startswith("{") for ln in lines):
            raise BadRecord("bad_json", str(e)[:200]) from None
    try:
        return [loads(ln) for ln in lines]
    except orjson.JSONDecodeError as e:
        raise BadRecord("bad_json", str(e)[:200]) from None


def _summary_attrs(summary: str) -> list[str]:
    """Changed attributes a summary string names (`f > ... mc..H`: size, modify_time, change_time, hashes)."""
    body = summary[1:]
    attrs = ["size"] if any(c in body for c in "<>") else []
    attrs += [_FLAGS.get(c, c) for c in body if c.isalpha()]
    return attrs


def _hex(b64: Any) -> str | None:
    if not isinstance(b64, str):
        return None
    try:
        return base64.b64decode(b64, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _snake(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).lower()


def _entries(doc: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(change, path, summary string or None) of every reported path."""
    out: list[tuple[str, str, str | None]] = []
    for section in (*_CHANGES, "entries"):
        block = doc.get(section)
        if block is None:
            continue
        if isinstance(block, list):
            items = [(p, None) for p in block]
        elif isinstance(block, dict):
            items = list(block.items())
        else:
            raise BadRecord("bad_record", f"{section} is {type(block).__name__}", section)
        for path, value in items:
            if not isinstance(path, str) or not (value is None or isinstance(value, str)):
                raise BadRecord("bad_record", f"bad {section} entry {path!r}"[:200], section)
            summary = value if value and value not in _CHANGES else None
            change = section
            if section == "entries":
                flag = summary[1:2] if summary else ""
                change = value if value is not None and value in _CHANGES else (
                    {"+": "added", "-": "removed"}.get(flag, "changed"))
            out.append((change, path, summary))
    return out


@register
class AideNormalizer(Normalizer):
    name = "aide"
    product = "AIDE"
    vendor = "AIDE"
    family = "fim"
    on_host = True
    priority = 70
    whole_file = True

    def sniff(self, text: str) -> bool:
        head = text[:4096].lstrip()
        return head.startswith("{") and '"aide_version"' in head and '"start_time"' in head

    def normalize(self, rec: RawRecord) -> list[Alert]:
        alerts: list[Alert] = []
        for doc in _load(rec.text):
            alerts.extend(self._report(rec, doc))
        if not alerts:
            raise Skipped("no_changes")
        return alerts

    def _report(self, rec: RawRecord, doc: Any) -> list[Alert]:
        if not isinstance(doc, dict) or "aide_version" not in doc:
            raise BadRecord("bad_record", "not an AIDE JSON report", "aide_version")
        entries = _entries(doc)
        if not entries:
            return []
        stamp = doc.get("start_time") or doc.get("end_time")
        if not isinstance(stamp, str):
            raise BadRecord("bad_timestamp", f"start_time is {stamp!r}"[:200], "start_time")
        time = parse_iso(stamp, "start_time")
        details = doc.get("details")
        details = details if isinstance(details, dict) else {}
        version = str(doc.get("aide_version"))
        host = HostInfo(name=rec.host) if rec.host else None
        alerts = []
        for change, path, summary in entries:
            det = details.get(path)
            det = det if isinstance(det, dict) else {}
            ftype = _TYPES.get(summary[0]) if summary else None
            attrs = list(det) or (_summary_attrs(summary) if summary and change == "changed" else [])
            extra: dict[str, Any] = {
                "aide_version": version, "summary": summary.rstrip() if summary else None, "file_type": ftype,
                "changed_attrs": attrs or None}
            for attr, val in det.items():
                if isinstance(val, dict):
                    key = _snake(attr)
                    extra[f"{key}_old"], extra[f"{key}_new"] = val.get("old"), val.get("new")
            sha = det.get("sha256")
            digest = _hex(sha.get("new")) if isinstance(sha, dict) else None
            rule = Rule(id=f"aide:{change}", name=f"AIDE: {ftype or 'entry'} {change}",
                        category="file_integrity")
            shown = f" ({', '.join(attrs)})" if attrs and change == "changed" else ""
            alerts.append(Alert(
                alert_id=self.alert_id(rec, f"{change}:{path}"), tenant_id=rec.tenant_id, source=self.source,
                time=time, received_at=rec.received_at, severity=severity(self._level(change, ftype, attrs)),
                rule=rule, rules=[rule], action="detected", message=f"AIDE: {path} {change}{shown}",
                host=host, file=File(path=path, hash=digest, change=change),
                extra={k: v for k, v in extra.items() if v is not None}, raw=rec.text))
        return alerts

    @staticmethod
    def _level(change: str, ftype: str | None, attrs: list[str]) -> str:
        is_dir = ftype == "directory"
        if change != "changed":
            return "low" if is_dir else "medium"
        quiet = _DIR_METADATA if is_dir else _METADATA
        return "low" if attrs and set(attrs) <= quiet else "medium"
