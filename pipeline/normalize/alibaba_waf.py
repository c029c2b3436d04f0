"""Alibaba Cloud WAF logs (Simple Log Service JSON export, topic `waf_access_log`) -> one alert per request
that a protection module matched.

Every module that matched names its rule in `<module>_rule_id` (+ `_rule_type`, `_action`, `_test`);
`final_action` / `final_plugin` / `final_rule_id` / `final_rule_type` give the action WAF finally took.
A record with neither a final action nor any module rule (plain access log, whitelist bypass) is skipped
("allowed").

Mappings:
- action (`final_action`): block, captcha, captcha_strict, js, sigchl, mask -> blocked (the request is held
  at WAF until a challenge is passed; mask hides the leaked data); pass, continue and the `*_pass` actions
  (client passed the challenge) -> allowed; monitor, or no final action while a module matched (observation
  mode, `<module>_test`) -> detected.
- category: for the web-attack modules (`WEB_MODULES`: waf, deeplearning, sema, normalized,
  major_protection) the attack type, `final_rule_type` else `<module>_rule_type` (e.g. sqli, xss, code_exec,
  webshell, lfi, rfi); for the other modules the module name (`final_plugin`: acl, cc, antiscan, dlp, scene,
  intelligence, ...), their rule sub-type (blacklist, custom, scantools, ...) staying in the rule name.
- severity: web-attack modules (waf, deeplearning, sema, normalized, major_protection) -> high for the
  injection / execution / inclusion types in `HIGH_TYPES`, else medium; flood control (cc, scc_gdrl) ->
  medium; access control, scan protection, bot and threat-intelligence modules (`LOW_MODULES`) -> low; others
  (dlp, account, compliance) -> medium; an allowed request -> info. Never critical: a WAF match alone is no
  confirmed compromise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline.normalize._jsonrec import Rec, host_only, load
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_epoch, parse_iso
from pipeline.schema import Alert, Endpoint, HostInfo, Http, Rule

MODULES = ("waf", "deeplearning", "sema", "normalized", "major_protection", "compliance", "acl", "cc",
           "scc_gdrl", "antiscan", "dlp", "scene", "intelligence", "algorithm", "wxbb", "account",
           "antifraud")
ACTIONS = {
    "block": "blocked", "captcha": "blocked", "captcha_strict": "blocked", "js": "blocked",
    "sigchl": "blocked", "mask": "blocked", "pass": "allowed", "continue": "allowed",
    "captcha_pass": "allowed", "captcha_strict_pass": "allowed", "js_pass": "allowed",
    "sigchl_pass": "allowed", "monitor": "detected",
}
WEB_MODULES = frozenset({"waf", "deeplearning", "sema", "normalized", "major_protection"})
HIGH_TYPES = frozenset({"sqli", "xss", "code_exec", "webshell", "lfi", "rfi", "ssrf", "xxe", "rce",
                        "java_deserialization", "deserialization"})
LOW_MODULES = frozenset({"acl", "antiscan", "intelligence", "scene", "algorithm", "wxbb", "antifraud"})


def severity_label(module: str, rule_type: str | None) -> str:
    if module in WEB_MODULES:
        return "high" if rule_type in HIGH_TYPES else "medium"
    return "low" if module in LOW_MODULES else "medium"


def _rule(module: str, rule_id: str, rule_type: str | None, tags: list[str]) -> Rule:
    category = (rule_type or module) if module in WEB_MODULES else module
    label = severity_label(module, rule_type)
    return Rule(rule_id, f"{module}:{rule_type or rule_id}", category, tags, label)


def _module_rules(d: Rec) -> list[Rule]:
    """A rule for every module that matched (`<module>_rule_id`)."""
    out = []
    for m in MODULES:
        rid = d.text(f"{m}_rule_id")
        if rid is None:
            continue
        tags = [m]
        if act := d.text(f"{m}_action"):
            tags.append(act)
        if d.text(f"{m}_test") in ("true", "1"):
            tags.append("test")
        out.append(_rule(m, rid, d.text(f"{m}_rule_type"), tags))
    return out


def _time(d: Rec) -> datetime:
    t = d.text("time")
    return parse_iso(t, "time") if t is not None else parse_epoch(d.integer("__time__", required=True),
                                                                  "__time__")


@register
class AlibabaWaf(Normalizer):
    name = "alibaba_waf"
    product = "Alibaba Cloud WAF"
    vendor = "Alibaba Cloud"
    family = "waf"
    priority = 70

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and ('"final_plugin"' in text or '"waf_access_log"' in text or (
            '"real_client_ip"' in text and '"request_path"' in text))

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = load(rec.text)
        final = d.text("final_action")
        if final is not None and final not in ACTIONS:
            raise BadRecord("bad_field", f"final_action: unknown value {final!r}"[:200], "final_action")
        rules = _module_rules(d)
        module = d.text("final_plugin")
        if final is not None:
            if module is None:
                raise BadRecord("missing_field", "final_plugin is required with final_action", "final_plugin")
            rid = d.text("final_rule_id", required=True)
            rtype = d.text("final_rule_type") or d.text(f"{module}_rule_type")
            primary = _rule(module, rid, rtype, [module, final])
            rules = [primary] + [r for r in rules if (r.id, r.tags[0]) != (rid, module)]
            action = ACTIONS[final]
        elif rules:
            primary, action = rules[0], "detected"
        else:
            raise Skipped("allowed")
        label = "info" if action == "allowed" else primary.severity or "medium"

        host = host_only(d.text("host"))
        path, query = d.text("request_path") or "", d.text("querystring")
        url = f"{path}?{query}" if query else path
        method = d.text("request_method")
        src_ip = d.ip("real_client_ip") or d.ip("src_ip") or d.ip("remote_addr")
        extra: dict[str, Any] = d.texts("final_plugin", "final_action", "request_traceid", "matched_host",
                                        "region", "bypass_matched_ids")
        if (upstream := d.integer("upstream_status")) is not None:
            extra["upstream_status"] = upstream
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source, time=_time(d),
            received_at=rec.received_at, severity=severity(label), rule=primary, rules=rules, action=action,
            message=f"Alibaba Cloud WAF {final or 'matched'} {method} {host or ''}{url} ({primary.name})",
            src=Endpoint(src_ip, d.port("remote_port") or d.port("src_port")),
            dst=Endpoint(hostname=host, port=d.port("server_port") or d.port("dst_port")),
            http=Http(method, url or None, host, d.integer("status"),
                      d.text("http_user_agent") or d.text("user_agent")),
            host=HostInfo(host) if host else (HostInfo(rec.host) if rec.host else None),
            extra=extra, raw=rec.text,
        )]
