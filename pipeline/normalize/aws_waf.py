"""AWS WAF (v2) web ACL logs (CloudWatch Logs / S3 / Firehose JSON lines) -> one alert per matched request.

Rules: the terminating rule (for a managed or custom rule group, the group's `terminatingRule`), then every
`nonTerminatingMatchingRules` entry (top level and per group, i.e. Count-mode matches) and every rate-based
rule that acted. An ALLOW record whose terminating rule is `Default_Action` and that has no other match nor
label is skipped ("allowed": plain traffic).

Mappings (AWS WAF states no severity nor category; both are derived and documented here):
- action: BLOCK, CAPTCHA, CHALLENGE -> blocked (the request is not forwarded until a token is shown);
  ALLOW by a non-default rule (an allow-list rule) -> allowed; ALLOW by the default action with Count-mode
  matches or labels -> detected.
- category of the primary rule, first that applies: `terminatingRuleMatchDetails[].conditionType`
  (SQL_INJECTION -> sqli, XSS -> xss); the managed rule name prefix (`RULE_PREFIXES` below: SQLi_ -> sqli,
  CrossSiteScripting_ -> xss, GenericLFI_ -> lfi, GenericRFI_ -> rfi, EC2MetaDataSSRF_ -> ssrf, Log4JRCE and
  the shell-command rules -> rce); the AWS managed rule group (`GROUPS` below); rule type RATE_BASED ->
  rate-based; the default action -> default-action; else custom.
- severity from that category: sqli, xss, rce, lfi, rfi, ssrf, known-bad-inputs -> high; ip-reputation,
  bot, default-action -> low; others -> medium; an allow-list match -> info (never critical: a WAF match
  alone is no confirmed compromise).
"""

from __future__ import annotations

from typing import Any

from pipeline.normalize._jsonrec import Rec, host_only, load
from pipeline.normalize.base import BadRecord, Normalizer, RawRecord, Skipped, severity
from pipeline.normalize.registry import register
from pipeline.normalize.timeparse import parse_epoch
from pipeline.schema import Alert, Endpoint, HostInfo, Http, Rule

DEFAULT = "Default_Action"
ACTIONS = {"BLOCK": "blocked", "CAPTCHA": "blocked", "CHALLENGE": "blocked", "ALLOW": "allowed"}
CONDITIONS = {"SQL_INJECTION": "sqli", "XSS": "xss"}
RULE_PREFIXES = (
    ("SQLi_", "sqli"), ("CrossSiteScripting_", "xss"), ("GenericLFI_", "lfi"), ("GenericRFI_", "rfi"),
    ("EC2MetaDataSSRF_", "ssrf"), ("Log4JRCE", "rce"), ("JavaDeserializationRCE", "rce"),
    ("UNIXShellCommandsVariables", "rce"), ("WindowsShellCommands", "rce"), ("PowerShellCommands", "rce"),
    ("PHPHighRiskMethodsVariables", "rce"),
)
GROUPS = {
    "AWSManagedRulesSQLiRuleSet": "sqli", "AWSManagedRulesKnownBadInputsRuleSet": "known-bad-inputs",
    "AWSManagedRulesLinuxRuleSet": "lfi", "AWSManagedRulesUnixRuleSet": "rce",
    "AWSManagedRulesWindowsRuleSet": "rce", "AWSManagedRulesPHPRuleSet": "rce",
    "AWSManagedRulesWordPressRuleSet": "wordpress", "AWSManagedRulesAdminProtectionRuleSet": "admin-access",
    "AWSManagedRulesCommonRuleSet": "generic", "AWSManagedRulesAmazonIpReputationList": "ip-reputation",
    "AWSManagedRulesAnonymousIpList": "ip-reputation", "AWSManagedRulesBotControlRuleSet": "bot",
    "AWSManagedRulesATPRuleSet": "account-takeover", "AWSManagedRulesACFPRuleSet": "account-creation-fraud",
}
HIGH = frozenset({"sqli", "xss", "rce", "lfi", "rfi", "ssrf", "known-bad-inputs"})
LOW = frozenset({"ip-reputation", "bot", "default-action"})


def group_name(group_id: str | None) -> str:
    """`AWS#AWSManagedRulesSQLiRuleSet` -> `AWSManagedRulesSQLiRuleSet` (custom group ARNs stay whole)."""
    return (group_id or "").rpartition("#")[2]


def category(rule_id: str, group: str, conditions: list[str], rule_type: str | None) -> str:
    for c in conditions:
        if c in CONDITIONS:
            return CONDITIONS[c]
    for prefix, cat in RULE_PREFIXES:
        if rule_id.startswith(prefix):
            return cat
    if group in GROUPS:
        return GROUPS[group]
    if rule_type == "RATE_BASED":
        return "rate-based"
    return "default-action" if rule_id == DEFAULT else "custom"


def severity_label(cat: str) -> str:
    return "high" if cat in HIGH else "low" if cat in LOW else "medium"


def _rule(rule_id: str, group_id: str | None, conditions: list[str], rule_type: str | None,
          tags: list[str]) -> Rule:
    g = group_name(group_id)
    cat = category(rule_id, g, conditions, rule_type)
    return Rule(rule_id, f"{g}:{rule_id}" if g else rule_id, cat, [t for t in tags if t], severity_label(cat))


def _conditions(r: Rec, key: str) -> list[str]:
    return [c for m in r.items(key) if (c := m.text("conditionType"))]


def _matched(m: Rec, group_id: str | None) -> Rule:
    """A Count-mode match (`nonTerminatingMatchingRules` entry)."""
    return _rule(m.text("ruleId", required=True), group_id, _conditions(m, "ruleMatchDetails"), None,
                 [group_id or "", "COUNT"])


def _rules(d: Rec) -> tuple[Rule | None, list[Rule]]:
    """The terminating rule (None for the default action) and the other matched rules."""
    term_id = d.text("terminatingRuleId", required=True)
    term_type = d.text("terminatingRuleType")
    conds = _conditions(d, "terminatingRuleMatchDetails")
    term: Rule | None = None
    others: list[Rule] = []
    for g in d.items("ruleGroupList"):
        gid = g.text("ruleGroupId")
        t = g.sub("terminatingRule")
        if t:
            term = _rule(t.text("ruleId", required=True), gid, _conditions(t, "ruleMatchDetails") + conds,
                         term_type, [gid or term_id])
        others += [_matched(m, gid) for m in g.items("nonTerminatingMatchingRules")]
    if term is None and term_id != DEFAULT:
        term = _rule(term_id, None, conds, term_type, [term_type or ""])
    others += [_matched(m, None) for m in d.items("nonTerminatingMatchingRules")]
    others += [_rule(name, None, [], "RATE_BASED", ["RATE_BASED"]) for r in d.items("rateBasedRuleList")
               if (name := r.text("rateBasedRuleName") or r.text("rateBasedRuleId")) and name != term_id]
    return term, others


def _headers(req: Rec) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in req.items("headers"):
        name, value = h.text("name"), h.text("value")
        if name and value is not None:
            out.setdefault(name.lower(), value)
    return out


@register
class AwsWaf(Normalizer):
    name = "aws_waf"
    product = "AWS WAF"
    vendor = "Amazon Web Services"
    family = "waf"
    priority = 70

    def sniff(self, text: str) -> bool:
        return text.startswith("{") and '"webaclId"' in text and '"httpRequest"' in text

    def normalize(self, rec: RawRecord) -> list[Alert]:
        d = load(rec.text)
        raw_action = d.text("action", required=True)
        if raw_action not in ACTIONS:
            raise BadRecord("bad_field", f"action: unknown value {raw_action!r}"[:200], "action")
        labels = [n for lb in d.items("labels") if (n := lb.text("name"))]
        term, others = _rules(d)
        if term is None:
            if raw_action != "ALLOW":
                term = _rule(DEFAULT, None, [], None, [])  # the web ACL's default action blocked it
            elif not others and not labels:
                raise Skipped("allowed")
        action = ACTIONS[raw_action] if term is not None else "detected"
        primary = term or (others[0] if others else self._label_rule(labels))
        label = "info" if action == "allowed" else primary.severity or "medium"
        if primary.id != DEFAULT:
            primary.tags = primary.tags + labels

        req = d.sub("httpRequest", required=True)
        hdr = _headers(req)
        uri, args = req.text("uri") or "", req.text("args")
        url = f"{uri}?{args.lstrip('?')}" if args else uri
        host = host_only(hdr.get("host"))
        method = req.text("httpMethod")
        extra: dict[str, Any] = {
            "webacl_id": d.text("webaclId"), "terminating_rule_type": d.text("terminatingRuleType"),
            "http_source": d.text("httpSourceName"), "http_source_id": d.text("httpSourceId"),
            "country": req.text("country"), "request_id": req.text("requestId"), "labels": labels or None,
            "waf_action": raw_action, "ja3_fingerprint": d.text("ja3Fingerprint"),
            "captcha_failure": d.sub("captchaResponse").text("failureReason"),
        }
        return [Alert(
            alert_id=self.alert_id(rec), tenant_id=rec.tenant_id, source=self.source,
            time=parse_epoch(d.integer("timestamp", required=True), "timestamp"), received_at=rec.received_at,
            severity=severity(label), rule=primary, rules=([term] if term else []) + others or [primary],
            action=action,
            message=f"AWS WAF {raw_action} {method} {host or ''}{url} ({primary.name})",
            src=Endpoint(req.ip("clientIp", required=True)), dst=Endpoint(hostname=host),
            http=Http(method, url or None, host, d.integer("responseCodeSent"), hdr.get("user-agent")),
            host=HostInfo(host) if host else (HostInfo(rec.host) if rec.host else None),
            extra={k: v for k, v in extra.items() if v is not None}, raw=rec.text,
        )]

    @staticmethod
    def _label_rule(labels: list[str]) -> Rule:
        """A rule standing for label-only matches (rules that labelled the request without a Count match)."""
        name = labels[0]
        cat = category(name.rpartition(":")[2], "", [], None)
        cat = "custom" if cat == "default-action" else cat
        return Rule("label", name, cat, [], severity_label(cat))
