"""Alibaba Cloud Security Center (SAS, formerly Aegis) security alerts: one `SuspEvents` item of the
DescribeSuspEvents API per line (English or Chinese display language) -> one alert.

Mappings:
- severity (`Level`): serious -> high, suspicious -> medium, remind -> low (never critical: an alert on one
  host is no confirmed compromise until triaged).
- category: from the alert type (`AlarmEventType`, else its display text, else the full `Name`) by the
  ordered keyword table `TYPES` (English or Chinese): persistence, abnormal_login, webshell, malware,
  suspicious_process, abnormal_network, file_tampering, malicious_script, exploit, threat_intel,
  abnormal_account, precision_defense, web_attack, else other. The alert name refines it
  (`NAMES`): reverse_shell, mining.
- family: auth for abnormal_login alerts (Unusual Logon / 异常登录), host for the rest.
- action: blocked when Security Center stopped it (`EventStatus` 512/513 automatic blocking, `AutoBreaking`,
  or a successful blocking operation `OperateErrorCode` such as kill_and_quara.Success, see `BLOCK_OPS`);
  else succeeded for abnormal_login (the unusual logon happened); else detected.
- time: `OccurrenceTimeStamp` (ms), else `OccurrenceTime` ("YYYY-MM-DD HH:mm:ss", China Standard Time,
  UTC+8, as the console shows it), else the `LastTime*` pair.
- entities from `Details` (name/value list, looked up by `Name` or `InfoType`, case-insensitive): source IP
  (loginSourceIp, ...), user, file path (trojan_path, ...), process path / command line / pid, MD5. The
  affected server is the host (`InstanceName`, `IntranetIp` else `InternetIp`) and the dst.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.normalize._jsonrec import Rec, load
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, as_ip, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_epoch, to_utc
from pipeline.schema import Alert, Endpoint, File, HostInfo, Process, Rule, Source

LEVELS = {"serious": "high", "suspicious": "medium", "remind": "low"}
TYPES = (  # (keywords, category), first match wins; matched on the lower-cased type text
    (("持久化", "persistence"), "persistence"),
    (("登录", "logon", "login"), "abnormal_login"),
    (("网站后门", "webshell", "web shell"), "webshell"),
    (("恶意进程", "malicious process", "malware", "trojan", "木马", "病毒"), "malware"),
    (("进程异常", "suspicious process", "abnormal process", "process behavior"), "suspicious_process"),
    (("网络连接", "network connection"), "abnormal_network"),
    (("文件篡改", "file tampering", "tamper"), "file_tampering"),
    (("恶意脚本", "malicious script"), "malicious_script"),
    (("漏洞利用", "exploit"), "exploit"),
    (("威胁情报", "intelligence"), "threat_intel"),
    (("异常账号", "account"), "abnormal_account"),
    (("精准防御", "precision defense", "precise defense"), "precision_defense"),
    (("web",), "web_attack"),
)
NAMES = ((("反弹shell", "reverse shell"), "reverse_shell"), (("挖矿", "mining", "miner"), "mining"))
AUTO_BLOCKED = frozenset({512, 513})
BLOCK_OPS = frozenset({"kill_and_quara", "quara", "kill", "block_ip"})  # `<op>.Success` operation codes
DETAIL_KEYS = {
    "src_ip": ("loginsourceip", "login_source_ip", "sourceip", "source_ip", "srcip", "src_ip", "登录源ip"),
    "user": ("loginuser", "login_user", "username", "user_name", "user", "account", "登录用户", "登录账号"),
    "path": ("trojan_path", "file_path", "filepath", "path", "木马文件路径", "文件路径"),
    "exe": ("proc_path", "process_path", "procpath", "进程路径"),
    "cmdline": ("cmdline", "cmd_line", "command_line", "进程命令行", "命令行"),
    "pid": ("pid", "proc_id", "进程id"),
    "md5": ("md5", "file_md5", "filemd5", "文件md5"),
}
EXTRA = {"Uuid": "uuid", "InstanceId": "instance_id", "AlarmUniqueInfo": "alarm_unique_info",
         "EventSubType": "event_sub_type", "DataSource": "data_source", "Desc": "description",
         "LastTime": "last_time", "Stages": "stages", "AlarmEventType": "alarm_event_type"}
CST = timezone(timedelta(hours=8))


def _classify(table: tuple[tuple[tuple[str, ...], str], ...], text: str) -> str | None:
    low = text.lower()
    return next((cat for words, cat in table if any(w in low for w in words)), None)


def _details(d: Rec) -> dict[str, str]:
    """Detail values by lower-cased Name and InfoType."""
    out: dict[str, str] = {}
    for item in d.items("Details"):
        value = item.text("Value") or item.text("ValueDisplay")
        if value is None:
            continue
        for key in (item.text("Name"), item.text("InfoType")):
            if key:
                out.setdefault(key.lower(), value)
    return out


def _pick(details: dict[str, str], what: str) -> str | None:
    return next((details[k] for k in DETAIL_KEYS[what] if k in details), None)


def _process(det: dict[str, str]) -> Process | None:
    exe, cmdline, pid = _pick(det, "exe"), _pick(det, "cmdline"), _pick(det, "pid")
    if not exe and not cmdline:
        return None
    return Process(exe.rpartition("/")[2] if exe else None, cmdline, None,
                   int(pid) if pid and pid.isascii() and pid.isdigit() and len(pid) < 10 else None, exe)


def _time(d: Rec) -> datetime:
    for ms, text in (("OccurrenceTimeStamp", "OccurrenceTime"), ("LastTimeStamp", "LastTime")):
        if (t := d.integer(ms)) is not None:
            return parse_epoch(t, ms)
        if (s := d.text(text)) is not None:
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                raise BadRecord("bad_timestamp", f"{text}: not a time: {s!r}"[:200], text) from None
            return to_utc(dt.replace(tzinfo=CST) if dt.tzinfo is None else dt, text)
    raise BadRecord("missing_field", "OccurrenceTime (or LastTime) is required", "OccurrenceTime")


@register
class AlibabaSas(Normalizer):
    name = "alibaba_sas"
    product = "Alibaba Cloud Security Center"
    vendor = "Alibaba Cloud"
    family = "host"
    priority = 70

    def __init__(self) -> None:
        super().__init__()
        self._auth_source = Source(self.product, self.vendor, "auth", self.name)

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and '"Level"' in text and '"Uuid"' in text and (
            '"AlarmEventName"' in text or '"EventSubType"' in text)

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = load(rec.text)
        level = d.text("Level", required=True)
        if level not in LEVELS:
            raise BadRecord("bad_field", f"Level: unknown value {level!r}"[:200], "Level")
        name = d.first("AlarmEventNameDisplay", "AlarmEventName", "EventSubType", "Name")
        if name is None:
            raise BadRecord("missing_field", "AlarmEventName (or Name) is required", "AlarmEventName")
        kind = d.first("AlarmEventType", "AlarmEventTypeDisplay", "Name") or ""
        names = " ".join(d.texts("AlarmEventName", "AlarmEventNameDisplay", "EventSubType", "Name").values())
        login = _classify(TYPES, kind) == "abnormal_login"
        category = "abnormal_login" if login else _classify(NAMES, names) or _classify(TYPES, kind) or "other"
        op, _, outcome = (d.text("OperateErrorCode") or "").partition(".")
        blocked = (d.integer("EventStatus") in AUTO_BLOCKED or d.flag("AutoBreaking")
                   or (op in BLOCK_OPS and outcome == "Success"))
        action = "blocked" if blocked else "succeeded" if login else "detected"
        label = LEVELS[level]

        det = _details(d)
        path, md5 = _pick(det, "path"), _pick(det, "md5")
        inst = d.text("InstanceName")
        public, private = d.ip("InternetIp"), d.ip("IntranetIp")
        tags = [t for t in (d.first("AlarmEventTypeDisplay", "AlarmEventType"),) if t]
        tags += [t for item in d.items("TacticItems") if (t := item.text("TacticId"))]
        rule = Rule(d.first("AlarmEventName", "EventSubType", "Name") or name, name, category, tags, level)
        extra: dict[str, Any] = {EXTRA[k]: v for k, v in d.texts(*EXTRA).items()}
        for key, field in (("event_id", "Id"), ("event_status", "EventStatus")):
            if (n := d.integer(field)) is not None:
                extra[key] = n
        src_ip = as_ip(_pick(det, "src_ip"))
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id,
            source=self._auth_source if login else self.source, time=_time(d), received_at=rec.received_at,
            severity=severity(label), rule=rule, rules=[rule], action=action,
            message=f"Security Center {level}: {name} on {inst or private or public}"
                    + (f" from {src_ip}" if src_ip else ""),
            src=Endpoint(src_ip), dst=Endpoint(public or private, hostname=inst),
            host=HostInfo(inst or rec.host, private or public), user=_pick(det, "user"),
            process=_process(det), file=File(path, md5) if path else None, extra=extra, raw=rec.text,
        )]
