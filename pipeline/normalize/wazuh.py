"""Wazuh manager alerts (`/var/ossec/logs/alerts/alerts.json`, one JSON alert per line) -> one alert each.

Mappings:
- severity (`rule.level`, 0-16): 0-3 -> info, 4-7 -> low, 8-11 -> medium, 12-14 -> high, 15-16 -> critical.
- category: the most specific rule group (the last of `rule.groups`, e.g. authentication_failed,
  syscheck_file, attack); all groups are the rule's tags.
- action: a group in `FAILED` (authentication_failed, authentication_failures, invalid_login, ...) -> failed;
  authentication_success -> succeeded; active_response (a host blocked by an active response) -> blocked;
  else detected.
- ATT&CK: `rule.mitre.id`; tactics go to extra.mitre_tactic.
- file (syscheck / FIM): `syscheck.path`, hash sha256_after (else sha1_after, md5_after), change from
  `syscheck.event`: added -> added, modified -> changed, deleted -> removed; who-data process and user from
  `syscheck.audit`. VirusTotal integration alerts: `data.virustotal.source.file` and its sha1 (else md5).
- src/dst: `data.srcip`/`data.srcport`, `data.dstip`/`data.dstport` (a non-IP srcip, which some decoders
  write, becomes the hostname); user: `data.dstuser`, else `data.srcuser`, else the who-data login user.
- http (web access-log decoders): `data.url`, method `data.protocol`, status `data.id`.
- host: the agent (`agent.name`, `agent.ip` unless it is not an address, e.g. "any").
"""

from __future__ import annotations

from typing import Any

from pipeline.normalize._jsonrec import Rec, load
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, as_ip, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_iso
from pipeline.schema import Alert, Endpoint, File, HostInfo, Http, Process, Rule

FAILED = frozenset({"authentication_failed", "authentication_failures", "invalid_login",
                    "win_authentication_failed", "login_denied"})
CHANGES = {"added": "added", "modified": "changed", "deleted": "removed"}
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"})


def severity_label(level: int) -> str:
    return "info" if level <= 3 else "low" if level <= 7 else "medium" if level <= 11 else \
        "high" if level <= 14 else "critical"


def _action(groups: list[str]) -> str:
    g = set(groups)
    if g & FAILED:
        return "failed"
    if "authentication_success" in g:
        return "succeeded"
    return "blocked" if "active_response" in g else "detected"


def _endpoint(data: Rec, ip_key: str, port_key: str) -> Endpoint:
    v = data.text(ip_key)
    ip = as_ip(v)
    return Endpoint(ip, data.port(port_key), None if ip else v)


def _file(sc: Rec, data: Rec) -> File | None:
    """The FIM file (`syscheck`), else the file a VirusTotal integration alert names."""
    path = sc.text("path")
    if path is not None:
        change = CHANGES.get(sc.text("event") or "")
        return File(path, sc.first("sha256_after", "sha1_after", "md5_after"), change)
    vt = data.sub("virustotal").sub("source")
    return File(vt.text("file"), vt.first("sha1", "md5")) if vt.has("file") else None


def _process(sc: Rec, data: Rec) -> Process | None:
    who = sc.sub("audit").sub("process")
    if who:
        exe = who.text("name")
        return Process(exe.rpartition("/")[2] if exe else None, None,
                       sc.sub("audit").sub("user").text("name"), who.integer("id"), exe)
    au = data.sub("audit")
    if au.has("exe") or au.has("command"):
        return Process(au.text("command"), None, au.text("uid"), au.integer("pid"), au.text("exe"))
    return None


def _http(data: Rec) -> Http | None:
    url = data.text("url")
    if url is None:
        return None
    method = data.text("protocol")
    status = data.text("id")
    return Http(method if method in HTTP_METHODS else None, url, None,
                int(status) if status and status.isdigit() and len(status) == 3 else None)


@register
class Wazuh(Normalizer):
    name = "wazuh"
    product = "Wazuh"
    vendor = "Wazuh"
    family = "host"
    priority = 80  # Wazuh alerts embed other products' events (Suricata EVE, ...) in `data`

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and '"rule"' in text and '"agent"' in text and '"manager"' in text

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = load(rec.text)
        r = d.sub("rule", required=True)
        level = r.integer("level", required=True)
        if not 0 <= level <= 16:
            raise BadRecord("bad_field", f"rule.level: expected 0..16, got {level}", "rule.level")
        rid = r.text("id", required=True)
        desc = r.text("description") or f"Wazuh rule {rid}"
        groups = r.strings("groups")
        mitre = r.sub("mitre")
        label = severity_label(level)
        rule = Rule(rid, desc, groups[-1] if groups else None, groups, str(level))

        agent, data, sc = d.sub("agent"), d.sub("data"), d.sub("syscheck")
        who = sc.sub("audit")
        user = data.first("dstuser", "srcuser") or who.sub("login_user").text("name")
        name = agent.text("name") or rec.host
        extra: dict[str, Any] = {"rule_level": level, "firedtimes": r.integer("firedtimes"),
                                 "decoder": d.sub("decoder").text("name"), "location": d.text("location"),
                                 "agent_id": agent.text("id"), "manager": d.sub("manager").text("name"),
                                 "wazuh_id": d.text("id"), "mitre_tactic": mitre.strings("tactic") or None,
                                 "fim_mode": sc.text("mode")}
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source,
            time=parse_iso(d.text("timestamp", required=True), "timestamp"), received_at=rec.received_at,
            severity=severity(label), rule=rule, rules=[rule], action=_action(groups),
            message=f"Wazuh {rid} (level {level}) on {name or '?'}: {desc}",
            src=_endpoint(data, "srcip", "srcport"), dst=_endpoint(data, "dstip", "dstport"),
            http=_http(data), host=HostInfo(name, as_ip(agent.text("ip"))) if name else None, user=user,
            process=_process(sc, data), file=_file(sc, data), attack=mitre.strings("id"),
            extra={k: v for k, v in extra.items() if v is not None}, raw=rec.text,
        )]
