"""OpenSSH sshd in a syslog-style auth log: `Nov 24 06:38:43 vm sshd[4983]: Failed password for ...`.

Authentication failures (failed password / publickey / keyboard-interactive, invalid user, PAM
authentication failure, too many attempts, user not allowed) are alerts (action failed, ATT&CK T1110);
accepted logins are low alerts (succeeded, T1078) that use cases may raise. Connection, disconnect, banner and
key-exchange lines are Skipped. The syslog time has no year nor zone: UTC, year taken from `received_at`.
Lines of other programs in the same auth log are Skipped("other_program").

Parsed by OpenSSH's own format strings (auth.c `auth_log`, `auth_maxtries_exceeded`, `getpwnamallow`):

    {Accepted|Failed} METHOD[/SUB] for [invalid user ]USER from ADDR port N ssh2[: KEYTYPE FP[ ID ... CA ...][, INFO]]
    Invalid user USER from ADDR port N
    maximum authentication attempts exceeded for [invalid user ]USER from ADDR port N ssh2

USER is the name the client sent (`%.100s`; spaces, quotes and words such as `from` and `port` are all
possible), ADDR is always a numeric address. The client is therefore the LAST ` from ADDR port N` of the line,
the one followed only by the fixed tail; the user name is everything before it. Only publickey and hostbased
lines carry text after `ssh2: ` (key type, fingerprint, certificate id, hostbased client user and host); when
that text lets a line be read two ways the line is a dead letter (`ambiguous_record`), never a guess. PAM's
`authentication failure; logname= uid= euid= tty= ruser= rhost=ADDR  user=NAME` is read key by key, anchored
at its start. An auth line that does not fit its grammar is a dead letter, not skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, as_ip, ip_field, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_iso, parse_syslog
from pipeline.schema import Alert, Endpoint, HostInfo, Process, Rule

_SSHD = ("sshd", "sshd-session", "sshd-auth")
_ADDR = r"[0-9A-Fa-f:.]+(?:%[\w.-]+)?"  # ssh_remote_ipaddr(): numeric, IPv6 maybe with a scope
_VERB = re.compile(r"(Accepted|Failed) ([^\s/]+)(?:/(\S+))? for (invalid user )?")
_AUTH_TAIL = re.compile(rf" from ({_ADDR}) port (\d+) ssh2(?:: (.+))?")
_INVALID_TAIL = re.compile(rf" from ({_ADDR})(?: port (\d+))?")  # older releases log no port
_MAX_TRIES_HEAD = re.compile(r"maximum authentication attempts exceeded for (invalid user )?")
_MAX_TRIES_TAIL = re.compile(rf" from ({_ADDR}) port (\d+) ssh2")
_KEY = r"([A-Za-z0-9@._-]+) ((?:SHA256|MD5):\S+|\(null\))"
_METHOD_INFO = r'client user ".*", client host ".*"|signature count = \d+'
# format_method_key(): `TYPE FP`, or `TYPE FP ID KEYID (serial N) CA TYPE FP` for a certificate, then `, INFO`
_EXTRA = re.compile(rf"{_KEY}(?: ID .* \(serial \d+\) CA {_KEY})?(?:, (?:{_METHOD_INFO}))?|(?:{_METHOD_INFO})")
_KEY_METHODS = frozenset(("publickey", "hostbased"))
_NOT_ALLOWED = re.compile(r"User (\S+)(?: from (\S+))? not allowed because (.+)")
# pam_unix: "authentication failure; logname=%s uid=%d euid=%d tty=%s ruser=%s rhost=%s %s%s" (" user=" NAME)
_PAM = re.compile(
    r"(?:pam_[\w-]+\(sshd:auth\): |PAM (\d+) more )authentication failures?; logname=\S* uid=\d* euid=\d* "
    r"tty=\S* ruser=\S* rhost=(\S*) ?(?: user=(.*))?")
_SKIPS = (
    ("Connection closed", "connection"), ("Disconnected from", "connection"), ("Disconnecting", "connection"),
    ("Received disconnect", "connection"), ("Connection reset", "connection"),
    ("Server listening", "listening"), ("Received signal", "daemon"),
    ("kex_exchange_identification", "kex"), ("Unable to negotiate", "kex"), ("banner exchange", "kex"),
    ("Did not receive identification", "kex"), ("pam_unix(sshd:session)", "session"),
)
_Hit = tuple[str, str, str | None, str | None, int | None, dict]


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


def _key(extra: str | None) -> dict[str, str]:
    """Key type and fingerprint at the start of the text after `ssh2: ` (`ED25519 SHA256:...`)."""
    m = re.match(_KEY, extra or "")
    return {"key_type": m[1], "key_fingerprint": m[2]} if m and m[2] != "(null)" else {}


def _client(msg: str, start: int, tail: re.Pattern[str],
            extra_ok: Callable[[str], object] | None = None) -> tuple[str, re.Match[str]]:
    """(user, tail match) of a line whose user name starts at `start` and which ends with `tail`.

    Every ` from ` after `start` is tried; the reading where the rest of the line is exactly the product's
    tail wins. None -> `bad_record`, several -> `ambiguous_record` (both dead letters)."""
    found: list[tuple[str, re.Match[str]]] = []
    i = msg.find(" from ", start)
    while i >= 0:
        m = tail.fullmatch(msg, i)
        extra = m[3] if m is not None and tail.groups >= 3 else None
        if m is not None and (extra is None or (extra_ok is not None and extra_ok(extra))):
            found.append((msg[start:i], m))
        i = msg.find(" from ", i + 1)
    if not found:
        raise BadRecord("bad_record", "no ` from ADDR port N` ending the sshd line", "src_ip")
    if len(found) > 1:
        raise BadRecord("ambiguous_record", f"{len(found)} readings of the user name and client address",
                        "user")
    return found[0]


def _port(s: str | None) -> int | None:
    if s is None:
        return None
    p = int(s)
    if p > 65535:
        raise BadRecord("bad_port", f"port {s} out of range", "src_port")
    return p


def _host_or_ip(v: str | None) -> tuple[str | None, str | None]:
    """(ip, hostname) of a value that is an address or, with UseDNS, a name."""
    ip = as_ip(v)
    return (ip, None) if ip or not v else (None, v)


@register
class SshdNormalizer(Normalizer):
    name = "sshd"
    product = "OpenSSH"
    vendor = "OpenBSD"
    family = "auth"
    on_host = True

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
            reason = next((r for p, r in _SKIPS if msg.startswith(p)), "info")
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
    def _match(msg: str) -> _Hit | None:
        """(rule id, description, user, ip, port, extra) of an authentication line, None for context lines."""
        if m := _VERB.match(msg):
            verb, method = m[1], m[2]
            key_method = method in _KEY_METHODS
            user, t = _client(msg, m.end(), _AUTH_TAIL, _EXTRA.fullmatch if key_method else None)
            ip, port, extra = ip_field(t[1], "src_ip"), _port(t[2]), t[3]
            if verb == "Accepted":
                return "sshd:accepted", f"accepted {method}", user, ip, port, {"method": method, **_key(extra)}
            rid = {"password": "failed_password", "publickey": "failed_publickey"}.get(
                method, "failed_keyboard_interactive" if method.startswith("keyboard") else "failed_auth")
            return (f"sshd:{rid}", f"failed {method}", user, ip, port,
                    {"method": method, "invalid_user": bool(m[4]), **_key(extra)})
        if msg.startswith("Invalid user "):
            user, t = _client(msg, 13, _INVALID_TAIL)
            return "sshd:invalid_user", "invalid user", user, ip_field(t[1], "src_ip"), _port(t[2]), {
                "invalid_user": True}
        if m := _MAX_TRIES_HEAD.match(msg):
            user, t = _client(msg, m.end(), _MAX_TRIES_TAIL)
            return ("sshd:max_auth_attempts", "maximum authentication attempts exceeded", user,
                    ip_field(t[1], "src_ip"), _port(t[2]), {"invalid_user": bool(m[1])})
        if msg.startswith("User ") and (m := _NOT_ALLOWED.fullmatch(msg)):
            addr, name = _host_or_ip(m[2])
            return "sshd:user_not_allowed", "user not allowed", m[1], addr, None, {
                "reason": m[3], "src_hostname": name}
        if msg.startswith(("pam_", "PAM ")) and "authentication failure" in msg:
            if not (m := _PAM.fullmatch(msg.rstrip())):
                raise BadRecord("bad_record", "PAM authentication failure line out of its grammar", "rhost")
            addr, name = _host_or_ip(m[2])
            return ("sshd:pam_auth_failure", "PAM authentication failure", m[3] or None, addr, None,
                    {"more_failures": int(m[1]) if m[1] else None, "src_hostname": name})
        return None
