"""auditd raw log (`log_format = ENRICHED`, or RAW): records assembled into events; rule hits become alerts.

A kernel event is several records sharing `msg=audit(TIME:SERIAL)` (SYSCALL, EXECVE, SOCKADDR, CWD,
PATH..., PROCTITLE, sometimes EOE); user-space messages (`msg='...'`: USER_LOGIN, CRED_ACQ, ...) and auditd's
own DAEMON_* records stand alone. Records are buffered per (node, TIME:SERIAL); an event is emitted when its
EOE arrives, when a record of another event arrives after it has had both SYSCALL and PROCTITLE (the kernel's
last record before EOE), when it is MAX_AGE seconds of log time older than the current record, or on
`flush()`. The ENRICHED part after the GS byte (0x1d) names things: `SYSCALL=execve UID="www-data"`.

Alerts: events whose SYSCALL carries a rule key (audit rule hits; execvp()'s failed $PATH probes excepted),
failed USER_LOGIN / USER_AUTH / ..., ANOM_* (but a device leaving promiscuous mode), AVC / AppArmor denials,
and removal of audit rules. Everything else is Skipped. One record can complete an earlier event, so a record
that yields no alert is Skipped with the reason of the last event it completed, or "buffered";
`event_skips` counts skipped events by reason.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, as_ip, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_epoch
from pipeline.schema import Alert, Endpoint, File, HostInfo, Process, Rule

MAX_AGE = 5.0  # seconds of log time after which an incomplete event is emitted anyway
MAX_PENDING = 256  # buffered events beyond this are emitted oldest first
MAX_ARGS = 64  # EXECVE arguments copied into extra as a0..aN

_KV = re.compile(r"([\w\-]+(?:\[\d+\])?)=(\"[^\"]*\"|'[^']*'|\{[^}]*\}|\S*)")
# Inside a user-space `msg='...'`: libaudit quotes a value only when it has no space, quote or control byte
# (else it writes hex), so a quoted value never spans whitespace; `'` is NOT encoded and may appear anywhere.
_USER_KV = re.compile(r'(?:^|(?<=\s))([\w\-]+)=("[^"\s]*"|\S*)')
# Fields the kernel / libaudit write as "quoted" text or, when they hold odd bytes, as bare hex.
_ENCODED = frozenset((
    "comm", "exe", "cwd", "name", "proctitle", "acct", "key", "cmd", "path", "data", "ocomm"))
_NULLS = frozenset(("(null)", "?", "(none)"))
_UNSET_AUID = frozenset(("4294967295", "-1"))
_AUTH_TYPES = frozenset(("USER_LOGIN", "USER_AUTH", "USER_ACCT", "USER_ERR", "USER_CHAUTHTOK", "GRP_AUTH"))
_MAC_TYPES = frozenset(("AVC", "USER_AVC", "SELINUX_ERR", "USER_SELINUX_ERR", "APPARMOR_DENIED"))
_AUX_TYPES = frozenset(("SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE", "SOCKADDR", "EOE"))
_ID_FIELDS = frozenset(("msg", "ses", "auid", "uid", "gid", "pid"))
_FAMILIES = {1: "local", 2: "inet", 10: "inet6", 16: "netlink", 17: "packet"}
_OUTBOUND = frozenset(("connect", "sendto", "sendmsg", "sendmmsg"))
_NAMETYPE_RANK = {"CREATE": 0, "DELETE": 1, "NORMAL": 2}
_OPEN_FLAGS_ARG = {"open": "a1", "openat": "a2"}
_WRITE_FLAGS = 0o1 | 0o2 | 0o1000 | 0o2000  # O_WRONLY | O_RDWR | O_TRUNC | O_APPEND
_WRITES = frozenset(("creat", "truncate", "ftruncate"))
_ATTR_CHANGES = frozenset((
    "chmod", "fchmod", "fchmodat", "chown", "fchown", "lchown", "fchownat", "setxattr", "lsetxattr",
    "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "utime", "utimes", "utimensat", "futimesat"))
_LOOKUP_ERRORS = frozenset(("-2", "-13", "-20"))  # ENOENT, EACCES, ENOTDIR
_CHMOD_ARG = {"chmod": "a1", "fchmod": "a1", "fchmodat": "a2"}
# x86_64 syscall numbers for logs written without ENRICHED names (arch=c000003e).
_X86_64 = {
    "2": "open", "42": "connect", "43": "accept", "44": "sendto", "49": "bind", "59": "execve",
    "76": "truncate", "77": "ftruncate", "82": "rename", "83": "mkdir", "84": "rmdir", "85": "creat",
    "86": "link", "87": "unlink", "88": "symlink", "90": "chmod", "91": "fchmod", "92": "chown",
    "93": "fchown", "94": "lchown", "101": "ptrace", "257": "openat", "258": "mkdirat", "260": "fchownat",
    "263": "unlinkat", "264": "renameat", "268": "fchmodat", "316": "renameat2", "322": "execveat",
}


class _Rec:
    """One parsed record: header, decoded fields, enriched names."""

    __slots__ = ("args", "e", "f", "node", "sock", "stamp", "t", "text", "time", "type")

    def __init__(self, text: str, node: str | None, rtype: str, stamp: str, time: datetime,
                 f: dict[str, str | None], e: Mapping[str, str]):
        self.text, self.node, self.type, self.stamp = text, node, rtype, stamp
        self.time, self.f, self.e = time, f, e
        self.t = time.timestamp()
        self.args: dict[tuple[int, int], bytes] | None = None
        self.sock: tuple[str, str | None, int | None, str | None] | None = None


def _untrusted(v: str | None, field: str) -> str | None:
    """A libaudit untrusted string: "quoted" text, or bare hex of the bytes; (null) / ? are None."""
    if v is None or v in _NULLS:
        return None
    if v[:1] in "\"'":
        return v[1:-1]
    return _hex_bytes(v, field).decode("utf-8", "replace")


def _hex_bytes(v: str, field: str) -> bytes:
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise BadRecord("bad_hex", f"{field}={v[:80]}", field) from None


def _arg_bytes(v: str, field: str) -> bytes:
    if v[:1] == '"':
        return v[1:-1].encode("utf-8", "surrogatepass")
    return _hex_bytes(v, field)


def _execve_args(f: dict[str, str | None]) -> dict[tuple[int, int], bytes]:
    """EXECVE `aN` arguments (and `aN[i]` chunks of long ones) as bytes keyed by (N, chunk or -1)."""
    out: dict[tuple[int, int], bytes] = {}
    for k, v in f.items():
        if k[0] != "a" or v is None:
            continue
        idx, _, part = k[1:].partition("[")
        if idx.isdecimal():
            out[(int(idx), int(part[:-1]) if part else -1)] = _arg_bytes(v, k)
    return out


def _sockaddr(v: str | None) -> tuple[str, str | None, int | None, str | None]:
    """(family, ip, port, unix path) of a SOCKADDR `saddr` hex struct."""
    b = _hex_bytes(v or "", "saddr")
    if len(b) < 2:
        raise BadRecord("bad_saddr", f"saddr too short: {v!r}"[:120], "saddr")
    fam = b[0] | b[1] << 8
    name = _FAMILIES.get(fam, str(fam))
    if fam == 2:
        if len(b) < 8:
            raise BadRecord("bad_saddr", f"inet saddr too short: {v}"[:120], "saddr")
        return name, ".".join(str(x) for x in b[4:8]), int.from_bytes(b[2:4], "big"), None
    if fam == 10:
        if len(b) < 24:
            raise BadRecord("bad_saddr", f"inet6 saddr too short: {v}"[:120], "saddr")
        return name, ipaddress.IPv6Address(b[8:24]).compressed, int.from_bytes(b[2:4], "big"), None
    if fam == 1 and len(b) > 2:
        raw = b[3:] if b[2] == 0 else b[2:]  # abstract socket names start with a NUL byte
        path = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return name, None, None, ("@" + path) if b[2] == 0 else path
    return name, None, None, None


def parse_record(text: str) -> _Rec:
    """One audit record line; BadRecord when it lacks `type=` / `msg=audit(TIME:SERIAL):` or has bad hex."""
    body, _, enr = text.partition("\x1d")
    node: str | None = None
    rest = body
    if rest.startswith("node="):
        node, _, rest = rest[5:].partition(" ")
    if not rest.startswith("type="):
        raise BadRecord("bad_record", "no type= after node=", "type")
    rtype, _, rest = rest[5:].partition(" ")
    if not rtype or not rest.startswith("msg=audit("):
        raise BadRecord("bad_record", "no msg=audit(TIME:SERIAL)", "msg")
    stamp, sep, rest = rest[10:].partition("):")
    ts, colon, serial = stamp.partition(":")
    if not sep or not colon or not serial.isdecimal():
        raise BadRecord("bad_record", f"bad audit stamp {stamp[:40]!r}", "msg")
    time = parse_epoch(ts, "msg")
    head, quote, inner = rest.partition(" msg='")
    f: dict[str, str | None] = dict(_KV.findall(head))
    if quote:  # user-space message: the kernel wraps its text in msg='...', closed by the record's last quote
        end = inner.rfind("'")
        if end < 0:
            raise BadRecord("bad_record", "msg=' without its closing quote", "msg")
        f.update(_USER_KV.findall(inner[:end]))
    for k in _ENCODED.intersection(f):
        f[k] = _untrusted(f[k], k)
    e = _enriched(enr) if enr else _NO_NAMES
    r = _Rec(text, node, rtype, stamp, time, f, e)
    if rtype == "EXECVE":
        r.args = _execve_args(f)
    elif rtype == "SOCKADDR":
        r.sock = _sockaddr(f.get("saddr"))
    return r


@lru_cache(maxsize=4096)  # a host logs the same few (syscall, account) names over and over
def _enriched(enr: str) -> Mapping[str, str]:
    """The names ENRICHED appends after the GS byte (`SYSCALL=execve UID="www-data"`), read-only: shared."""
    return MappingProxyType(dict(_KV.findall(enr)))


_NO_NAMES: Mapping[str, str] = MappingProxyType({})


def _standalone(r: _Rec) -> bool:
    """User-space messages and auditd's own records are whole events by themselves."""
    return " msg='" in r.text or r.type.startswith("DAEMON_")


class _Event:
    __slots__ = ("proctitle", "raw", "recs", "syscall", "t")

    def __init__(self, raw: RawRecord, r: _Rec):
        self.raw, self.recs, self.t = raw, [r], r.t
        self.syscall = r.type == "SYSCALL"
        self.proctitle = r.type == "PROCTITLE"

    def add(self, r: _Rec) -> None:
        self.recs.append(r)
        self.syscall = self.syscall or r.type == "SYSCALL"
        self.proctitle = self.proctitle or r.type == "PROCTITLE"

    @property
    def complete(self) -> bool:
        return self.syscall and self.proctitle


def _int(v: str | None, base: int = 10) -> int | None:
    try:
        return int(v, base) if v is not None else None
    except ValueError:
        return None


def _unquote(v: str | None) -> str | None:
    if v is None or v in _NULLS:
        return None
    return v[1:-1] if v[:1] in "\"'" and len(v) > 1 else v


def _who(r: _Rec, name: str) -> str | None:
    """Enriched account name (UID="www-data"), else the numeric id."""
    return _unquote(r.e.get(name.upper())) or _unquote(r.f.get(name))


def _user(r: _Rec) -> str | None:
    auid = r.f.get("auid")
    if auid and auid not in _UNSET_AUID:
        return _who(r, "auid")
    return _who(r, "uid")


def _process(r: _Rec, cmdline: str | None) -> Process:
    exe = r.f.get("exe")
    return Process(name=r.f.get("comm") or (posixpath.basename(exe) if exe else None), cmdline=cmdline,
                   uid=_who(r, "uid"), pid=_int(r.f.get("pid")), exe=exe)


def _argv(recs: list[_Rec]) -> list[str]:
    parts: dict[tuple[int, int], bytes] = {}
    for r in recs:
        if r.args:
            parts.update(r.args)
    joined: dict[int, list[bytes]] = {}
    for (n, _), b in sorted(parts.items()):
        joined.setdefault(n, []).append(b)
    return [b"".join(v).decode("utf-8", "replace") for _, v in sorted(joined.items())]


def _proctitle(recs: list[_Rec]) -> str | None:
    """The PROCTITLE command line (NUL-separated arguments joined by spaces)."""
    pt = next((r.f.get("proctitle") for r in recs if r.type == "PROCTITLE"), None)
    return pt.replace("\x00", " ").strip() if pt else None


def _syscall_name(sc: _Rec) -> str | None:
    name = sc.e.get("SYSCALL")
    if name:
        return name
    num = sc.f.get("syscall")
    return _X86_64.get(num or "", num) if sc.f.get("arch") == "c000003e" else num


def _change(sysname: str | None, nametype: str | None, sc: _Rec) -> str | None:
    if nametype == "CREATE":
        return "added"
    if nametype == "DELETE":
        return "removed"
    if sysname in _OPEN_FLAGS_ARG:
        flags = _int(sc.f.get(_OPEN_FLAGS_ARG[sysname]), 16)
        return "written" if flags is not None and flags & _WRITE_FLAGS else None
    if sysname in _WRITES:
        return "written"
    return "changed" if sysname in _ATTR_CHANGES else None


def _target(recs: list[_Rec], cwd: str | None) -> tuple[_Rec | None, str | None]:
    """The PATH record naming the object (CREATE > DELETE > NORMAL, never PARENT) and its full path."""
    best, rank, first = None, 9, None
    for r in recs:
        if r.type != "PATH":
            continue
        first = first or r
        rk = _NAMETYPE_RANK.get(r.f.get("nametype") or "", 9)
        if rk < rank:
            best, rank = r, rk
    name = best.f.get("name") if best else None
    if name and name[0] != "/" and cwd:
        name = posixpath.join(cwd, name)
    return best or first, posixpath.normpath(name) if name else None


def _path_search_miss(sc: _Rec, recs: list[_Rec]) -> bool:
    """A failed execve whose path did not resolve: execvp() trying each $PATH directory, not a real exec."""
    if sc.f.get("success") != "no" or sc.f.get("exit") not in _LOOKUP_ERRORS:
        return False
    if _syscall_name(sc) not in ("execve", "execveat"):
        return False
    return all(r.f.get("nametype") == "UNKNOWN" for r in recs if r.type == "PATH")


def _fields(r: _Rec) -> dict[str, str]:
    """A record's own fields for extra (snake_case keys, unquoted values; ids are reported elsewhere)."""
    out: dict[str, str] = {}
    for k, v in r.f.items():
        if k not in _ID_FIELDS and len(out) < 32:
            u = _unquote(v)
            if u is not None:
                out[k.replace("-", "_").lower()] = u
    return out


@register
class AuditdNormalizer(Normalizer):
    name = "auditd"
    product = "auditd"
    vendor = "Linux Audit"
    family = "host"
    on_host = True
    priority = 60

    def __init__(self) -> None:
        super().__init__()
        self._buf: dict[tuple[str | None, str], _Event] = {}
        self._last: tuple[str | None, str] | None = None
        self.event_skips: Counter[str] = Counter()

    def sniff(self, text: str) -> bool:
        head = text[:200]
        return (head.startswith("node=") or head.startswith("type=")) and " msg=audit(" in head

    def normalize(self, rec: RawRecord) -> list[Alert]:
        r = parse_record(rec.text)
        key = (r.node, r.stamp)
        done: list[_Event] = []
        if key != self._last:
            self._release(key, r.t, done)
            self._last = key
        reason = "buffered"
        if r.type == "EOE":
            ev = self._buf.pop(key, None)
            if ev is not None:
                done.append(ev)
            reason = "eoe"
        elif key not in self._buf and _standalone(r):
            done.append(_Event(rec, r))
        elif (ev := self._buf.get(key)) is not None:
            ev.add(r)
        else:
            self._buf[key] = _Event(rec, r)
            if len(self._buf) > MAX_PENDING:
                done.append(self._buf.pop(next(iter(self._buf))))
        alerts: list[Alert] = []
        for ev in done:
            out = self._build(ev)
            if isinstance(out, str):
                self.event_skips[out] += 1
                reason = out
            else:
                alerts.append(out)
        if not alerts:
            raise Skipped(reason)
        return alerts

    def buffered(self) -> Iterable[RawRecord]:
        return (ev.raw for ev in self._buf.values())

    def discard(self, where: Callable[[RawRecord], bool]) -> None:
        for key in [k for k, ev in self._buf.items() if where(ev.raw)]:
            del self._buf[key]
            if self._last == key:
                self._last = None

    def flush(self) -> list[Alert]:
        events = list(self._buf.values())
        self._buf.clear()
        self._last = None
        alerts: list[Alert] = []
        for ev in events:
            out = self._build(ev)
            if isinstance(out, str):
                self.event_skips[out] += 1
            else:
                alerts.append(out)
        return alerts

    def _release(self, key: tuple[str | None, str], t: float, done: list[_Event]) -> None:
        """Move complete (or stale) events other than `key` to `done`, oldest first."""
        for k in [k for k, ev in self._buf.items() if k != key and (ev.complete or ev.t < t - MAX_AGE)]:
            done.append(self._buf.pop(k))

    # -- event -> alert --

    def _build(self, ev: _Event) -> Alert | str:
        """The event's alert, or the reason it is not one."""
        recs = ev.recs
        sc = next((r for r in recs if r.type == "SYSCALL"), None)
        # several keys come hex-encoded, separated by 0x01
        keys = [k for k in (sc.f.get("key") or "").split("\x01") if k] if sc else []
        if sc is not None and keys:
            return "exec_path_search" if _path_search_miss(sc, recs) else self._keyed(ev, sc, keys)
        main = next((r for r in recs if r.type not in _AUX_TYPES), sc or recs[0])
        typ, f = main.type, main.f
        if typ in _AUTH_TYPES:
            return self._auth(ev, main) if f.get("res") in ("failed", "fail", "no", "0") else "auth_success"
        if typ.startswith("ANOM_"):
            if typ == "ANOM_PROMISCUOUS" and f.get("prom") == "0":
                return "promiscuous_off"
            return self._typed(ev, main, sc, "anomaly", "medium", "detected")
        if typ in _MAC_TYPES:
            denied = "denied" in main.text or "DENIED" in main.text
            action = "blocked" if denied and f.get("permissive") != "1" else "detected"
            return self._typed(ev, main, sc, "mac", "medium", action)
        if typ == "CONFIG_CHANGE":
            if f.get("op") == "remove_rule" or f.get("audit_enabled") == "0":
                return self._typed(ev, main, sc, "audit_config", "low", "detected")
            return "config_change"
        if typ.startswith("DAEMON_"):
            return "daemon"
        if typ == "SYSCALL":
            return "unkeyed_syscall"
        if typ.startswith(("USER_", "CRED_", "LOGIN")):
            return "session"
        return "other"

    def _alert(self, ev: _Event, main: _Rec, rule: Rule, sev: str, action: str, message: str,
               extra: dict, **kw: object) -> Alert:
        raw = "\n".join(r.text for r in ev.recs)
        base = ev.raw
        rec = RawRecord(raw, base.tenant_id, base.received_at, base.host)
        extra["types"] = list(dict.fromkeys(r.type for r in ev.recs))
        return Alert(
            alert_id=self.alert_id(rec), tenant_id=base.tenant_id, source=self.source, time=main.time,
            received_at=base.received_at, severity=severity(sev), rule=rule, rules=[rule], action=action,
            message=message, host=HostInfo(name=host) if (host := main.node or base.host) else None,
            extra={k: v for k, v in extra.items() if v is not None}, raw=raw, **kw)  # type: ignore[arg-type]  # kw: Alert's optional fields

    def _keyed(self, ev: _Event, sc: _Rec, keys: list[str]) -> Alert:
        recs, f = ev.recs, sc.f
        key, sysname, success = keys[0], _syscall_name(sc), f.get("success")
        argv = _argv(recs)
        cmdline = " ".join(argv) if argv else _proctitle(recs)
        cwd = next((r.f.get("cwd") for r in recs if r.type == "CWD"), None)
        target, path = _target(recs, cwd)
        uid = _who(sc, "uid")
        extra: dict = {
            "key": key, "keys": keys if len(keys) > 1 else None, "syscall": sysname, "success": success,
            "exit": _int(f.get("exit")), "type": "EXECVE" if argv else "SYSCALL", "auid": _who(sc, "auid"),
            "euid": _who(sc, "euid"), "exe": f.get("exe"), "comm": f.get("comm"), "ppid": _int(f.get("ppid")),
            "cwd": cwd, "tty": _unquote(f.get("tty")),
        }
        if argv:
            extra["argc"] = len(argv)
            extra.update((f"a{i}", a) for i, a in enumerate(argv[:MAX_ARGS]))
        else:
            extra.update((a, f.get(a)) for a in ("a0", "a1", "a2", "a3"))
        if sysname in _CHMOD_ARG and (mode := _int(f.get(_CHMOD_ARG[sysname]), 16)) is not None:
            extra["new_mode"] = f"{mode & 0o7777:04o}"
        file = None
        if target is not None:
            extra["name"], extra["nametype"] = target.f.get("name"), target.f.get("nametype")
            if path and target.f.get("nametype") != "UNKNOWN":
                change = _change(sysname, target.f.get("nametype"), sc) if success == "yes" else None
                file = File(path=path, change=change)
        dst = Endpoint()
        sock = next((r.sock for r in recs if r.sock), None)
        if sock:
            fam, ip, port, spath = sock
            extra.update(saddr_fam=fam, sock_path=spath)
            if ip and sysname in _OUTBOUND:
                dst = Endpoint(ip=ip, port=port)
            else:
                extra.update(saddr_ip=ip, saddr_port=port)
        if argv or sysname in ("execve", "execveat"):
            detail = cmdline
        elif dst.ip:
            detail = f"{dst.ip}:{dst.port}"
        else:
            detail = (file.path if file else None) or extra.get("sock_path") or extra.get("name") or cmdline
        result = {"yes": "succeeded", "no": "failed"}.get(success or "", "detected")
        who = uid or "?"
        rule = Rule(id=key, name=f"auditd rule {key}: {sysname} by {who}", category=key)
        message = f"auditd {key}: {who} {sysname} {(detail or '')[:160]}".rstrip()
        if result == "failed":
            message += f" (failed, exit {f.get('exit')})"
        return self._alert(ev, sc, rule, "medium", result, message, extra, user=_user(sc),
                           process=_process(sc, cmdline), file=file, dst=dst)

    def _auth(self, ev: _Event, main: _Rec) -> Alert:
        f, typ = main.f, main.type
        acct, op, addr = f.get("acct"), _unquote(f.get("op")), _unquote(f.get("addr"))
        host = _unquote(f.get("hostname"))
        exe = f.get("exe")
        rule = Rule(id=typ, name=f"auditd {typ}: {op} failed", category="authentication")
        extra = {"type": typ, "op": op, "acct": acct, "res": f.get("res"),
                 "terminal": _unquote(f.get("terminal")), "exe": exe, "auid": _who(main, "auid")}
        ip = as_ip(addr)  # PAM's rhost: an address, or a name; only an address is an actor address
        name = host if host and host != addr else (addr if addr and not ip else None)
        message = f"auditd {typ}: {op} failed for {acct or '?'} from {ip or name or '?'} ({exe or '?'})"
        return self._alert(ev, main, rule, "low", "failed", message, extra,
                           user=acct if acct and acct[0] != "(" else None,
                           src=Endpoint(ip=ip, hostname=name),
                           process=_process(main, None))

    def _typed(self, ev: _Event, main: _Rec, sc: _Rec | None, category: str, sev: str, action: str) -> Alert:
        """ANOM_*, AVC and audit-config alerts: the record's own fields go to extra."""
        typ = main.type
        fields = _fields(main)
        if "key" in fields:  # the key of the audit rule a CONFIG_CHANGE touched, not a rule hit
            fields["rule_key"] = fields.pop("key")
        extra = {**fields, "type": typ, "auid": _who(main, "auid")}
        who = sc or main
        proc = _process(who, _proctitle(ev.recs))
        if sc is not None:
            extra["syscall"] = _syscall_name(sc)
        rule = Rule(id=typ, name=f"auditd {typ}", category=category)
        shown = " ".join(f"{k}={v}" for k, v in list(fields.items())[:6])
        message = f"auditd {typ}: {shown} ({proc.name or proc.exe or '?'})"
        return self._alert(ev, main, rule, sev, action, message, extra, user=_user(who), process=proc)
