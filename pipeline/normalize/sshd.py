"""OpenSSH sshd in a syslog-style auth log: `Nov 24 06:38:43 vm sshd[4983]: Failed password for ...`.

Authentication failures (failed password / publickey / keyboard-interactive, invalid user, PAM
authentication failure, too many attempts, user not allowed) are alerts (action failed, ATT&CK T1110);
accepted logins are low alerts (succeeded, T1078) that use cases may raise. Connection, disconnect, banner and
key-exchange lines are Skipped. The syslog time has no year nor zone: UTC, year taken from `received_at`.
Lines of other programs in the same auth log are Skipped("other_program").
"""

from __future__ import annotations

import re
from datetime import datetime

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_iso, parse_syslog
from pipeline.schema import Alert, Endpoint, HostInfo, Process, Rule

_SSHD = ("sshd", "sshd-session", "sshd-auth")
_FAILED = re.compile(r"Failed (\S+) for (invalid user )?(.*?) from (\S+) port (\d+)")
_ACCEPTED = re.compile(r"Accepted (\S+) for (.*?) from (\S+) port (\d+)")
_INVALID = re.compile(r"Invalid user (.*?) from (\S+)(?: port (\d+))?")
_MAX_TRIES = re.compile(
    r"maximum authentication attempts exceeded for (invalid user )?(.*?) from (\S+) port (\d+)")
_NOT_ALLOWED = re.compile(r"User (\S+) from (\S+) not allowed because (.*)")
_PAM = re.compile(r"(?:(\d+) more )?authentication failures?;.*?\brhost=(\S*)(?:\s+user=(\S+))?")
_SKIPS = (
    ("Connection closed", "connection"), ("Disconnected from", "connection"), ("Disconnecting", "connection"),
    ("Received disconnect", "connection"), ("Connection reset", "connection"),
    ("Server listening", "listening"), ("Received signal", "daemon"),
    ("kex_exchange_identification", "kex"), ("Unable to negotiate", "kex"), ("banner exchange", "kex"),
    ("Did not receive identification", "kex"), ("pam_unix(sshd:session)", "session"),
)


def split_syslog(text: str, reference: datetime) -> tuple[datetime, str, str, int | None, str]:
    """(time, host, program, pid, message) of `Nov 24 06:38:43 host prog[pid]: msg` (or an ISO 8601 time)."""
    if text[:4].isdigit() and text[4:5] == "-":  # RFC 3339 time from rsyslog / journald exports
        stamp, _, rest = text.partition(" ")
        time = parse_iso(stamp)
    else:
        time = parse_syslog(text[:15], reference)
        rest = text[16:].lstrip(" ")
    host, _, rest = rest.partition(" ")
    tag, sep, msg = rest.partition(": ")
    if not sep or not host:
        raise BadRecord("bad_record", "no `host program[pid]: ` syslog header", "program")
    prog, _, pid = tag.partition("[")
    pid = pid.rstrip("]")
    return time, host, prog, int(pid) if pid.isdecimal() else None, msg


def _key(tail: str) -> dict[str, str]:
    """Key type and fingerprint after `ssh2: ` (`ED25519 SHA256:...`) of a publickey line."""
    kind, _, fp = tail.removeprefix(" ssh2").removeprefix(": ").partition(" ")
    return {"key_type": kind, "key_fingerprint": fp} if fp.startswith(("SHA256:", "MD5:")) else {}


def _port(s: str | None) -> int | None:
    return int(s) if s and s.isdecimal() and len(s) < 6 else None


@register
class SshdNormalizer(Normalizer):
    name = "sshd"
    product = "OpenSSH"
    vendor = "OpenBSD"
    family = "auth"

    def sniff(self, text: str) -> bool:
        head = text[:80]
        dated = head[3:4] == " " or head[4:5] == "-"
        return dated and "]: " in head and any(f" {p}[" in head for p in _SSHD)

    def normalize(self, rec: RawRecord) -> list[Alert]:
        if not rec.text.strip():
            raise Skipped("blank")
        time, host, prog, pid, msg = split_syslog(rec.text, rec.received_at)
        if prog not in _SSHD:
            raise Skipped("other_program")
        msg = msg.removeprefix("error: ").removesuffix(" [preauth]")
        hit = self._match(msg)
        if hit is None:
            reason = next((r for p, r in _SKIPS if p in msg), "info")
            raise Skipped(reason)
        rule_id, what, user, ip, port, extra = hit
        ok = rule_id == "sshd:accepted"
        sev = "medium" if rule_id == "sshd:max_auth_attempts" else "low"
        rule = Rule(id=rule_id, name=f"sshd: {what}", category="authentication")
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=time,
            received_at=rec.received_at, severity=severity(sev), rule=rule, rules=[rule],
            action="succeeded" if ok else "failed",
            message=f"sshd: {what} for {user or '?'} from {ip or '?'}",
            src=Endpoint(ip=ip, port=port), host=HostInfo(name=host or rec.host), user=user or None,
            process=Process(name=prog, pid=pid), attack=["T1078"] if ok else ["T1110"],
            extra={k: v for k, v in extra.items() if v is not None}, raw=rec.text)]

    @staticmethod
    def _match(msg: str) -> tuple[str, str, str | None, str | None, int | None, dict] | None:
        """(rule id, description, user, ip, port, extra) of an authentication line, None for context lines."""
        if msg.startswith("Failed ") and (m := _FAILED.match(msg)):
            method = m[1]
            rid = {"password": "failed_password", "publickey": "failed_publickey"}.get(
                method, "failed_keyboard_interactive" if method.startswith("keyboard") else "failed_auth")
            return (f"sshd:{rid}", f"failed {method}", m[3], m[4], _port(m[5]),
                    {"method": method, "invalid_user": bool(m[2]), **_key(msg[m.end():])})
        if msg.startswith("Accepted ") and (m := _ACCEPTED.match(msg)):
            return ("sshd:accepted", f"accepted {m[1]}", m[2], m[3], _port(m[4]),
                    {"method": m[1], **_key(msg[m.end():])})
        if msg.startswith("Invalid user ") and (m := _INVALID.match(msg)):
            return "sshd:invalid_user", "invalid user", m[1], m[2], _port(m[3]), {"invalid_user": True}
        if "maximum authentication attempts" in msg and (m := _MAX_TRIES.search(msg)):
            return ("sshd:max_auth_attempts", "maximum authentication attempts exceeded", m[2], m[3],
                    _port(m[4]), {"invalid_user": bool(m[1])})
        if msg.startswith("User ") and (m := _NOT_ALLOWED.match(msg)):
            return "sshd:user_not_allowed", "user not allowed", m[1], m[2], None, {"reason": m[3]}
        if "authentication failure" in msg and (m := _PAM.search(msg)):
            return ("sshd:pam_auth_failure", "PAM authentication failure", m[3], m[2] or None, None,
                    {"more_failures": int(m[1]) if m[1] else None})
        return None
