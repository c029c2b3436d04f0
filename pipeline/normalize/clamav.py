"""ClamAV: clamscan / clamdscan output, clamd's own log (`LogTime`) and clamd syslog lines.

`/path: Signature FOUND` -> alert (file.path, rule = signature, category malware, high, action detected).
`/path: OK` -> Skipped("clean"); empty / excluded / symlink -> Skipped("not_scanned"); `... ERROR` ->
Skipped("scan_error"); LibClamAV warnings -> Skipped("message"); the scan summary -> Skipped("summary").

clamscan's detection lines carry no time: they are held until the summary's `Start Date:` line (local time
without a zone, taken as UTC), which gives them their time and the engine version, and are emitted then;
`flush()` emits any still held with `received_at`. clamd log and syslog lines carry their own time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, severity
from pipeline.normalize.registry import register
from pipeline.normalize.sshd import split_syslog
from pipeline.normalize.timeparse import parse_ctime, parse_iso
from pipeline.schema import Alert, File, HostInfo, Rule

_SUMMARY_KEYS = frozenset((
    "Known viruses", "Engine version", "Scanned directories", "Scanned files", "Infected files",
    "Total errors", "Data scanned", "Data read", "Time", "Start Date", "End Date"))
_NOT_SCANNED = (": Empty file", ": Excluded", ": Symbolic link", ": Excluded (max size)")
_MESSAGES = ("LibClamAV ", "WARNING: ", "ERROR: ")
_WEEKDAYS = frozenset(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
_DAEMONS = frozenset(("clamd", "clamav-daemon", "clamonacc", "clamdscan"))


@register
class ClamavNormalizer(Normalizer):
    name = "clamav"
    product = "ClamAV"
    vendor = "Cisco Talos"
    family = "av"
    on_host = True

    def __init__(self) -> None:
        super().__init__()
        self._held: list[tuple[RawRecord, str, str]] = []
        self._engine: str | None = None

    def sniff(self, text: str) -> bool:
        if text.startswith("/"):
            return text.endswith((" FOUND", ": OK", " ERROR", *_NOT_SCANNED))
        if text.startswith(("----------- SCAN SUMMARY", *_MESSAGES)):
            return True
        if text[24:28] == " -> " and text[:3] in _WEEKDAYS:  # clamd / freshclam log with LogTime
            return True
        return text.endswith(" FOUND") and " clamd[" in text[:60]

    def normalize(self, rec: RawRecord) -> list[Alert]:
        text = rec.text
        if not text.strip():
            raise Skipped("blank")
        time: datetime | None = None
        host, head = rec.host, text[:60]
        stamp, arrow, msg = text.partition(" -> ")
        if arrow and len(stamp) <= 32 and stamp[:3].isalpha():  # clamd log: `Tue Nov 24 06:38:43 2026 -> ...`
            time = parse_ctime(stamp)
        elif text[:1] != "/" and (" clamd[" in head or " clamonacc[" in head):
            time, host, prog, _, msg = split_syslog(text, rec.received_at)
            if prog not in _DAEMONS:
                raise Skipped("other_program")
        else:
            msg = text
        if msg.endswith(" FOUND"):
            path, sep, sig = msg[:-6].rpartition(": ")
            if not sep or not path or not sig or " " in sig:
                raise BadRecord("bad_record", "no `path: signature FOUND`", "signature")
            if time is not None:
                return [self._alert(rec, time, host, path, sig)]
            self._held.append((rec, path, sig))
            raise Skipped("held")
        if time is not None:
            raise Skipped("message")  # clamd's own status lines
        return self._context(msg)

    def _context(self, msg: str) -> list[Alert]:
        """Non-detection lines; the summary's start date releases held detections."""
        if msg.endswith(": OK"):
            raise Skipped("clean")
        if msg.endswith(_NOT_SCANNED):
            raise Skipped("not_scanned")
        if msg.endswith(" ERROR"):
            raise Skipped("scan_error")
        if msg.startswith(_MESSAGES):
            raise Skipped("message")
        if msg.startswith("-----") and msg.endswith("-----"):
            raise Skipped("summary")
        key, sep, value = msg.partition(": ")
        if not sep or key not in _SUMMARY_KEYS:
            raise BadRecord("bad_record", "not a clamscan / clamd line", "line")
        value = value.strip()
        if key == "Engine version":
            self._engine = value
        elif key == "Start Date" and self._held:
            time = parse_iso(value.replace(":", "-", 2), "start_date")
            return self._release(time)
        raise Skipped("summary")

    def _release(self, time: datetime | None) -> list[Alert]:
        held, self._held = self._held, []
        alerts = [self._alert(rec, time or rec.received_at, rec.host, path, sig) for rec, path, sig in held]
        self._engine = None
        return alerts

    def buffered(self) -> Iterable[RawRecord]:
        return (rec for rec, _, _ in self._held)

    def discard(self, where: Callable[[RawRecord], bool]) -> None:
        self._held = [h for h in self._held if not where(h[0])]

    def flush(self) -> list[Alert]:
        return self._release(None)

    def _alert(self, rec: RawRecord, time: datetime, host: str | None, path: str, sig: str) -> Alert:
        rule = Rule(id=sig, name=sig, category="malware")
        extra = {"signature": sig, "unofficial": sig.endswith(".UNOFFICIAL")}
        if self._engine:
            extra["engine_version"] = self._engine
        return Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=time,
            received_at=rec.received_at, severity=severity("high"), rule=rule, rules=[rule],
            action="detected", message=f"ClamAV: {sig} in {path}", host=HostInfo(name=host) if host else None,
            file=File(path=path), extra=extra, raw=rec.text)
