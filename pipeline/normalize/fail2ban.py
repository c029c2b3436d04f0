"""fail2ban: its own log (`fail2ban`) and JSON lines written by a ban action (`fail2ban_json`).

Log lines: `2026-11-24 06:38:34,643 fail2ban.actions        [4990]: NOTICE  [sshd] Ban 127.0.0.66`
(local time without a zone, taken as UTC; a comma before the milliseconds).
- `Ban IP` -> alert, action blocked, medium, rule `fail2ban:<jail>:ban`.
- `Found IP - <time>` -> alert, action detected, low, rule `fail2ban:<jail>:found`: one failure matched by the
  jail's filter. It repeats what the watched product logged, but it is the only trace when that log is not
  collected, and brute-force use cases count it.
- `Unban`, `already banned`, `Restore Ban`, `Ignore`, start-up / shutdown / configuration lines -> Skipped;
  traceback continuation lines -> Skipped("continuation").
JSON lines (`{"time", "event": "ban"|"unban", "jail", "ip", "failures", "bantime"}`): ban -> alert as above,
unban -> Skipped("unban"). fail2ban bans addresses only: an `ip` that is not one is a dead letter (`bad_ip`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, ip_field, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_iso
from pipeline.schema import Alert, Endpoint, HostInfo, Rule

_SKIP_VERBS = {"Unban": "unban", "Restore": "restore_ban", "Ignore": "ignore"}


class _Fail2banBase(Normalizer):
    product = "fail2ban"
    vendor = "fail2ban"
    family = "host"
    on_host = True

    def _alert(self, rec: RawRecord, time: datetime, jail: str, verb: str, ip: str,
               extra: dict[str, Any]) -> Alert:
        ban = verb == "ban"
        extra = {"jail": jail, "fail2ban_action": verb, **{k: v for k, v in extra.items() if v is not None}}
        rule = Rule(id=f"fail2ban:{jail}:{verb}", name=f"fail2ban {jail}: {verb}", category="brute_force")
        return Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=time,
            received_at=rec.received_at, severity=severity("medium" if ban else "low"), rule=rule,
            rules=[rule], action="blocked" if ban else "detected",
            message=f"fail2ban [{jail}] {'banned' if ban else 'failure from'} {ip}",
            src=Endpoint(ip=ip), host=HostInfo(name=rec.host) if rec.host else None,
            extra=extra, raw=rec.text)


@register
class Fail2banNormalizer(_Fail2banBase):
    name = "fail2ban"

    def sniff(self, text: str) -> bool:
        return text[4:5] == "-" and text[19:20] == "," and " fail2ban." in text[:40]

    def normalize(self, rec: RawRecord) -> list[Alert]:
        text = rec.text
        if not text.strip():
            raise Skipped("blank")
        if text[:1].isspace() or text.startswith("Traceback"):
            raise Skipped("continuation")
        if text[19:20] != ",":
            raise BadRecord("bad_record", "no `YYYY-MM-DD HH:MM:SS,mmm` time", "time")
        time = parse_iso(text[:19] + "." + text[20:23], "time")
        _, sep, body = text[24:].partition("]: ")
        if not sep:
            raise BadRecord("bad_record", "no `logger [pid]: ` header", "logger")
        level, _, msg = body.partition(" ")
        msg = msg.lstrip()
        if not msg.startswith("["):
            raise Skipped("info")
        jail, sep, event = msg[1:].partition("] ")
        if not sep:
            raise Skipped("info")
        verb, _, arg = event.partition(" ")
        if verb == "Ban" or verb == "Found":
            ip, _, when = arg.partition(" - ")
            return [self._alert(rec, time, jail, verb.lower(), ip_field(ip, "ip"),
                                {"level": level, "failure_time": when or None})]
        if verb in _SKIP_VERBS:
            raise Skipped(_SKIP_VERBS[verb])
        raise Skipped("already_banned" if event.endswith("already banned") else "info")


@register
class Fail2banJsonNormalizer(_Fail2banBase):
    name = "fail2ban_json"

    def sniff(self, text: str) -> bool:
        return text[:1] == "{" and '"jail"' in text and '"event"' in text and '"ip"' in text

    def normalize(self, rec: RawRecord) -> list[Alert]:
        try:
            d = orjson.loads(rec.text)
        except orjson.JSONDecodeError as e:
            raise BadRecord("bad_json", str(e)[:200]) from None
        if not isinstance(d, dict):
            raise BadRecord("bad_record", "not a JSON object")
        event, jail, ip = d.get("event"), d.get("jail"), d.get("ip")
        if event == "unban":
            raise Skipped("unban")
        if event != "ban":
            raise BadRecord("bad_record", f"unknown event {event!r}"[:200], "event")
        if not isinstance(jail, str) or not jail:
            raise BadRecord("bad_record", "no jail", "jail")
        ip = ip_field(ip, "ip")
        t = d.get("time")
        if not isinstance(t, str):
            raise BadRecord("bad_timestamp", f"time is {t!r}"[:200], "time")
        extra = {k: d.get(k) for k in ("failures", "bantime") if type(d.get(k)) in (int, float)}
        return [self._alert(rec, parse_iso(t), jail, "ban", ip, extra)]
