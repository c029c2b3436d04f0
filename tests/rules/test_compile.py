"""Compiled Sigma rules: every modifier and condition form, positive and negative; metadata; the index."""

from __future__ import annotations

import base64
import random
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sigma.exceptions import SigmaRegularExpressionError
from sigma.policy import SigmaPolicy
from sigma.policy.profiles import TrustedPolicy
from sigma.rule import SigmaRule

from pipeline.normalize.source import read_alerts
from pipeline.rules import RuleIndex, UnsupportedRule, compile_rule
from pipeline.rules.compile import CompiledRule
from pipeline.schema import Alert, Endpoint, File, Http, Process, Rule, Source

T0 = datetime(2026, 11, 24, 3, 15, tzinfo=UTC)
WAF = Source("ModSecurity", "OWASP", "waf", "modsecurity")
IDS = Source("Suricata", "OISF", "ids", "suricata")
AUDITD = Source("auditd", "Linux Audit", "host", "auditd")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def A(source: Source = WAF, **kw) -> Alert:
    return Alert(alert_id="a1", tenant_id="t", source=source, time=T0, received_at=T0, **kw)


def rule(
    detection: str, logsource: str = "product: mdr", extra: str = "", policy: SigmaPolicy | None = None
) -> CompiledRule:
    body = textwrap.indent(textwrap.dedent(detection).strip(), "  ")
    return compile_rule(
        SigmaRule.from_yaml(
            f"title: test rule\nlogsource: {{{logsource}}}\n{extra}detection:\n{body}\n", policy=policy
        )
    )


def check(detection: str, cases: list[tuple[Alert, bool]]) -> None:
    r = rule(detection)
    for alert, expected in cases:
        assert r.matches(alert) is expected, (detection, alert)


# --- strings ----------------------------------------------------------------------------------------------


def test_equality_is_case_insensitive() -> None:
    check(
        "sel: {http.method: GET}\ncondition: sel",
        [
            (A(http=Http(method="get")), True),
            (A(http=Http(method="GET")), True),
            (A(http=Http(method="POST")), False),
            (A(), False),
        ],
    )


def test_cased_modifier() -> None:
    check(
        "sel: {http.method|cased: GET}\ncondition: sel",
        [(A(http=Http(method="GET")), True), (A(http=Http(method="get")), False)],
    )
    check(
        "sel: {http.url|contains|cased: Admin}\ncondition: sel",
        [(A(http=Http(url="/x/Admin/")), True), (A(http=Http(url="/x/admin/")), False)],
    )


def test_wildcards_and_escapes() -> None:
    check(
        "sel: {http.url: '/admin/*.php'}\ncondition: sel",
        [(A(http=Http(url="/admin/x/y.PHP")), True), (A(http=Http(url="/admin.php")), False)],
    )
    check(
        "sel: {user: 'ro?t'}\ncondition: sel",
        [(A(user="root"), True), (A(user="rOOt"), True), (A(user="rooot"), False), (A(user="rot"), False)],
    )
    check(
        r"sel: {http.url: '/a\*b'}" + "\ncondition: sel",
        [(A(http=Http(url="/a*b")), True), (A(http=Http(url="/axb")), False)],
    )
    check(
        "sel: {http.url: '*'}\ncondition: sel",
        [(A(http=Http(url="")), True), (A(http=Http(url="/x")), True), (A(), False)],
    )


def test_contains_startswith_endswith() -> None:
    check(
        "sel: {http.url|contains: UNION}\ncondition: sel",
        [(A(http=Http(url="/?q=1 union select")), True), (A(http=Http(url="/?q=uni on")), False)],
    )
    check(
        "sel: {http.url|startswith: /wp-}\ncondition: sel",
        [(A(http=Http(url="/WP-login.php")), True), (A(http=Http(url="/x/wp-login.php")), False)],
    )
    check(
        "sel: {file.path|endswith: [.php, .jsp]}\ncondition: sel",
        [(A(file=File(path="/www/a.JSP")), True), (A(file=File(path="/www/a.php.txt")), False)],
    )


def test_long_contains_list_uses_one_set() -> None:
    words = [f"w{i}rd" for i in range(40)]
    check(
        f"sel: {{http.user_agent|contains: {words}}}\ncondition: sel",
        [(A(http=Http(user_agent="xx W17RD yy")), True), (A(http=Http(user_agent="w17 rd")), False)],
    )


def test_lists_or_maps_and_all() -> None:
    check(
        "sel: {http.method: [GET, HEAD]}\ncondition: sel",
        [(A(http=Http(method="HEAD")), True), (A(http=Http(method="PUT")), False)],
    )
    check(
        "sel: {http.method: POST, http.url|contains: login}\ncondition: sel",
        [
            (A(http=Http(method="POST", url="/login")), True),
            (A(http=Http(method="GET", url="/login")), False),
        ],
    )
    check(
        "sel: {process.cmdline|contains|all: [curl, '| sh']}\ncondition: sel",
        [(A(process=Process(cmdline="curl x | sh")), True), (A(process=Process(cmdline="curl x")), False)],
    )
    check(
        "sel:\n  - http.method: PUT\n  - http.url|endswith: .jsp\ncondition: sel",
        [
            (A(http=Http(method="put")), True),
            (A(http=Http(url="/a.jsp")), True),
            (A(http=Http(url="/a")), False),
        ],
    )


# --- regular expressions ----------------------------------------------------------------------------------


def test_regex_is_case_sensitive_and_unanchored() -> None:
    check(
        r"sel: {http.url|re: '\.php\?cmd='}" + "\ncondition: sel",
        [(A(http=Http(url="/u/x.php?cmd=id")), True), (A(http=Http(url="/u/x.PHP?cmd=id")), False)],
    )


def test_regex_flags() -> None:
    check("sel: {http.url|re|i: 'ADMIN'}\ncondition: sel", [(A(http=Http(url="/admin")), True)])
    check(
        "sel: {message|re|m: '^b$'}\ncondition: sel",
        [(A(message="a\nb\nc"), True), (A(message="a b c"), False)],
    )
    check("sel: {message|re: '^b$'}\ncondition: sel", [(A(message="a\nb\nc"), False)])
    check("sel: {message|re|s: 'a.b'}\ncondition: sel", [(A(message="a\nb"), True)])
    check("sel: {message|re: 'a.b'}\ncondition: sel", [(A(message="a\nb"), False), (A(message="axb"), True)])


def test_regex_outside_re2_falls_back_when_safe() -> None:
    # pySigma's default SafePolicy already refuses such a regex at load; TrustedPolicy lets it through to us.
    with pytest.raises(SigmaRegularExpressionError):
        rule("sel: {http.url|re: 'foo(?=bar)'}\ncondition: sel")
    r = rule("sel: {http.url|re: 'foo(?=bar)'}\ncondition: sel", policy=TrustedPolicy)
    assert r.matches(A(http=Http(url="/foobar"))) and not r.matches(A(http=Http(url="/foobaz")))


@pytest.mark.parametrize("pattern", [r"(?=x)(a+)+$", r"(\w+)\1(a|aa)*$", r"(?<=y)(a|a)*b"])
def test_catastrophic_regex_outside_re2_is_refused(pattern: str) -> None:
    with pytest.raises(UnsupportedRule) as e:
        rule(f"sel: {{http.url|re: '{pattern}'}}\ncondition: sel", policy=TrustedPolicy)
    assert e.value.reason == "regex not RE2-compatible and potentially catastrophic"


# --- other value types ------------------------------------------------------------------------------------


def test_cidr() -> None:
    check(
        "sel: {src.ip|cidr: [10.0.0.0/8, '2001:db8::/32']}\ncondition: sel",
        [
            (A(src=Endpoint(ip="10.1.2.3")), True),
            (A(src=Endpoint(ip="11.0.0.1")), False),
            (A(src=Endpoint(ip="2001:db8::5")), True),
            (A(src=Endpoint(ip="2001:db9::5")), False),
            (A(src=Endpoint(ip="10.1.2.x")), False),
            (A(), False),
        ],
    )


def test_exists() -> None:
    check(
        "sel: {http.user_agent|exists: true}\ncondition: sel",
        [(A(http=Http(user_agent="x")), True), (A(http=Http()), False), (A(), False)],
    )
    check(
        "sel: {http.user_agent|exists: false}\ncondition: sel",
        [(A(http=Http(user_agent="x")), False), (A(), True)],
    )


def test_null_and_empty() -> None:
    check(
        "sel: {http.user_agent: null}\ncondition: sel",
        [
            (A(http=Http(user_agent="x")), False),
            (A(http=Http()), True),
            (A(), True),
            (A(http=Http(user_agent="")), False),
        ],
    )
    check(
        "sel: {http.user_agent: ''}\ncondition: sel",
        [(A(http=Http(user_agent="")), True), (A(http=Http()), False), (A(http=Http(user_agent="x")), False)],
    )


def test_numbers_and_comparisons() -> None:
    check(
        "sel: {http.status: 404}\ncondition: sel",
        [(A(http=Http(status=404)), True), (A(http=Http(status=403)), False), (A(), False)],
    )
    check(
        "sel: {extra.score: 15}\ncondition: sel",
        [(A(extra={"score": "15"}), True), (A(extra={"score": 16}), False)],
    )
    for mod, yes, no in (("gt", 6, 5), ("gte", 5, 4), ("lt", 4, 5), ("lte", 5, 6)):
        check(
            f"sel: {{extra.anomaly_score|{mod}: 5}}\ncondition: sel",
            [
                (A(extra={"anomaly_score": yes}), True),
                (A(extra={"anomaly_score": str(yes)}), True),
                (A(extra={"anomaly_score": no}), False),
                (A(extra={"anomaly_score": "n/a"}), False),
                (A(), False),
            ],
        )


def test_booleans() -> None:
    check(
        "sel: {extra.tls: true}\ncondition: sel",
        [
            (A(extra={"tls": True}), True),
            (A(extra={"tls": "TRUE"}), True),
            (A(extra={"tls": 1}), True),
            (A(extra={"tls": False}), False),
            (A(), False),
        ],
    )


def test_base64_and_base64offset() -> None:
    enc = base64.b64encode(b"whoami").decode()
    check(
        "sel: {process.cmdline|base64|contains: whoami}\ncondition: sel",
        [
            (A(process=Process(cmdline=f"echo {enc} | base64 -d")), True),
            (A(process=Process(cmdline="whoami")), False),
        ],
    )
    r = rule("sel: {process.cmdline|base64offset|contains: 'http://'}\ncondition: sel")
    for prefix in (b"", b"x", b"xy"):
        text = base64.b64encode(prefix + b"http://evil/").decode()
        assert r.matches(A(process=Process(cmdline=f"powershell -e {text}")))
    assert not r.matches(A(process=Process(cmdline="powershell -e aGVsbG8=")))


@pytest.mark.parametrize("mod", ["wide", "utf16", "utf16be"])
def test_utf16_modifiers_are_unsupported(mod: str) -> None:
    with pytest.raises(UnsupportedRule) as e:
        rule(f"sel: {{process.cmdline|{mod}|base64offset|contains: ping}}\ncondition: sel")
    assert e.value.reason == "unsupported modifier"


def test_windash() -> None:
    check(
        "sel: {process.cmdline|windash|contains: ' -f '}\ncondition: sel",
        [
            (A(process=Process(cmdline="rm /f x")), True),
            (A(process=Process(cmdline="rm -f x")), True),
            (A(process=Process(cmdline="rm \u2013f x")), True),
            (A(process=Process(cmdline="rm f x")), False),
        ],
    )


def test_fieldref() -> None:
    check(
        "sel: {src.ip|fieldref: dst.ip}\ncondition: sel",
        [
            (A(src=Endpoint(ip="1.2.3.4"), dst=Endpoint(ip="1.2.3.4")), True),
            (A(src=Endpoint(ip="1.2.3.4"), dst=Endpoint(ip="1.2.3.5")), False),
        ],
    )
    check(
        "sel: {http.url|fieldref|startswith: extra.base}\ncondition: sel",
        [
            (A(http=Http(url="/app/x"), extra={"base": "/APP"}), True),
            (A(http=Http(url="/x/app"), extra={"base": "/app"}), False),
        ],
    )


def test_expand_placeholder_is_unsupported() -> None:
    with pytest.raises(UnsupportedRule) as e:
        rule("sel: {http.url|expand: '%admin_paths%'}\ncondition: sel")
    assert "placeholder" in e.value.reason


def test_neq_negates_the_item() -> None:
    check(
        "sel: {http.method|neq: GET, http.url: /x}\ncondition: sel",
        [(A(http=Http(method="POST", url="/x")), True), (A(http=Http(method="GET", url="/x")), False)],
    )


def test_timestamp_part() -> None:
    check("sel: {time|hour: 3}\ncondition: sel", [(A(), True)])
    check("sel: {time|hour: 4}\ncondition: sel", [(A(), False)])


def test_keywords_search_message_and_raw() -> None:
    check(
        "keywords: [evil, 'bad*stuff']\ncondition: keywords",
        [(A(message="an EVIL thing"), True), (A(raw="bad and stuff"), True), (A(message="good"), False)],
    )
    check(
        "keywords:\n  '|all': [alpha, beta]\ncondition: keywords",
        [(A(message="alpha", raw="x beta"), True), (A(message="alpha"), False)],
    )
    check("keywords: [404]\ncondition: keywords", [(A(raw="GET / 404"), True), (A(raw="GET / 403"), False)])


def test_multi_valued_fields_match_any_element() -> None:
    check(
        "sel: {rule.tags: attack.t1190}\ncondition: sel",
        [(A(rule=Rule(tags=["x", "attack.T1190"])), True), (A(rule=Rule(tags=["x"])), False)],
    )
    check(
        "sel: {rules.id: '942100'}\ncondition: sel",
        [(A(rules=[Rule(id="920350"), Rule(id="942100")]), True), (A(rules=[Rule(id="920350")]), False)],
    )
    check(
        "sel: {extra.rule_ids|startswith: ['932', '944']}\ncondition: sel",
        [(A(extra={"rule_ids": ["920350", "944110"]}), True), (A(extra={"rule_ids": ["920350"]}), False)],
    )
    check(
        "sel: {attack|all: [T1190, T1059]}\ncondition: sel",
        [(A(attack=["T1059", "T1190"]), True), (A(attack=["T1190"]), False)],
    )


def test_nested_extra_and_sigma_names() -> None:
    check("sel: {extra.req.method: PUT}\ncondition: sel", [(A(extra={"req": {"method": "put"}}), True)])
    check(
        "sel: {cs-method: PUT, c-ip|cidr: 192.0.2.0/24}\ncondition: sel",
        [
            (A(http=Http(method="PUT"), src=Endpoint(ip="192.0.2.9")), True),
            (A(http=Http(method="PUT"), src=Endpoint(ip="198.51.100.9")), False),
        ],
    )


# --- conditions -------------------------------------------------------------------------------------------

DETS = """
sel_a: {http.url|contains: a}
sel_b: {http.url|contains: b}
filter: {http.url|contains: f}
"""


@pytest.mark.parametrize(
    "condition, cases",
    [
        ("sel_a and not filter", {"a": True, "af": False, "b": False}),
        ("sel_a or sel_b", {"a": True, "b": True, "c": False}),
        ("(sel_a or sel_b) and not filter", {"a": True, "bf": False, "c": False}),
        ("sel_a and (sel_b or filter)", {"ab": True, "af": True, "a": False}),
        ("not (sel_a or sel_b)", {"c": True, "a": False}),
        ("1 of sel_*", {"a": True, "b": True, "f": False}),
        ("all of sel_*", {"ab": True, "a": False}),
        ("1 of them", {"f": True, "c": False}),
        ("all of them", {"abf": True, "ab": False}),
        ("1 of sel_* and not 1 of filter*", {"a": True, "af": False}),
    ],
)
def test_condition_forms(condition: str, cases: dict[str, bool]) -> None:
    r = rule(DETS + f"condition: {condition}")
    for url, expected in cases.items():
        assert r.matches(A(http=Http(url=url))) is expected, (condition, url)


def test_several_conditions_are_or_ed() -> None:
    r = rule(DETS + "condition: [sel_a and sel_b, filter]")
    assert r.matches(A(http=Http(url="ab"))) and r.matches(A(http=Http(url="f")))
    assert not r.matches(A(http=Http(url="a")))


def test_explain_tells_each_detection() -> None:
    r = rule(DETS + "condition: sel_a and not filter")
    assert r.explain(A(http=Http(url="af"))) == {"sel_a": True, "sel_b": False, "filter": True}


# --- metadata, log sources, unsupported rules -------------------------------------------------------------


def test_metadata() -> None:
    r = rule(
        "sel: {http.url: /x, src.ip: 1.2.3.4}\nkw: [boom]\ncondition: sel or kw",
        extra="id: 4f5c1a9e-2b2d-4d8e-9a55-3f1c8e7b6a10\nname: my_rule\nlevel: high\nstatus: test\n"
        "tags: [attack.initial-access, attack.t1190]\n",
    )
    assert (r.id, r.name, r.title, r.level, r.status) == (
        "4f5c1a9e-2b2d-4d8e-9a55-3f1c8e7b6a10",
        "my_rule",
        "test rule",
        "high",
        "test",
    )
    assert r.tags == ["attack.initial-access", "attack.t1190"]
    assert r.fields == ["http.url", "message", "raw", "src.ip"]
    assert r.logsource.product == "mdr" and isinstance(r.rule, SigmaRule)


def test_id_from_title_is_stable() -> None:
    a, b = rule("sel: {user: x}\ncondition: sel"), rule("sel: {user: y}\ncondition: sel")
    assert a.id == b.id and len(a.id) == 36
    assert rule("sel: {user: x}\ncondition: sel", extra="").id == a.id


def test_logsource_routes_rules() -> None:
    r = rule("sel: {http.method: GET}\ncondition: sel", logsource="product: modsecurity")
    assert r.matches(A(WAF, http=Http(method="GET")))
    assert not r.matches(A(IDS, http=Http(method="GET")))
    assert r.detects(A(IDS, http=Http(method="GET")))
    web = rule("sel: {cs-method: GET}\ncondition: sel", logsource="category: webserver")
    assert web.matches(A(IDS, http=Http(method="GET"))) and not web.matches(A(IDS))


@pytest.mark.parametrize(
    "detection, logsource, reason",
    [
        (
            "sel: {ParentImage: /bin/sh}\ncondition: sel",
            "product: linux, category: process_creation",
            "unmapped field",
        ),
        (
            "sel: {user: x}\ncondition: sel",
            "product: windows, category: process_creation",
            "unsupported logsource",
        ),
        ("sel: {user: x}\ncondition: sel", "product: linux, service: vsftpd", "unsupported logsource"),
        ("sel: {user: x}\ncondition: sel", "category: registry_event", "unsupported logsource"),
    ],
)
def test_unsupported_rules_say_why(detection: str, logsource: str, reason: str) -> None:
    with pytest.raises(UnsupportedRule) as e:
        rule(detection, logsource=logsource)
    assert e.value.reason == reason


# --- the index --------------------------------------------------------------------------------------------


def test_index_returns_matching_rules_in_order_and_hot_swaps() -> None:
    r1 = rule(
        "sel: {http.url|contains: union}\ncondition: sel", extra="id: 00000000-0000-4000-8000-000000000001\n"
    )
    r2 = rule("sel: {rule.id: '942100'}\ncondition: sel", extra="id: 00000000-0000-4000-8000-000000000002\n")
    r3 = rule(
        "sel: {http.status|gte: 500}\ncondition: sel",
        logsource="product: suricata",
        extra="id: 00000000-0000-4000-8000-000000000003\n",
    )
    idx = RuleIndex([r1, r2, r3])
    hit = A(http=Http(url="/?q=UNION", status=500), rule=Rule(id="942100"))
    assert idx.match(hit) == [r1, r2]
    assert idx.match(A(IDS, http=Http(url="/", status=503))) == [r3]
    assert idx.match(A(http=Http(url="/"))) == []
    idx.remove(r1.id)
    assert idx.match(hit) == [r2]
    r2b = rule("sel: {rule.id: '1'}\ncondition: sel", extra=f"id: {r2.id}\n")
    idx.add(r2b)
    assert idx.match(hit) == [] and len(idx) == 2
    fresh = RuleIndex([r1, r3])
    fresh.warm(idx.routing_keys())  # a hot reload builds the buckets before the stream resumes
    assert fresh.routing_keys() == idx.routing_keys() and fresh.match(hit) == [r1]


def _fixture_alerts() -> list[Alert]:
    files = [
        "waf/modsec_audit_samples.jsonl",
        "waf/apache_error_samples.log",
        "ids/eve_samples.jsonl",
        "ids/eve_attack.jsonl",
        "host/audit.log",
        "host/sshd_auth.log",
        "host/fail2ban.log",
        "host/clamscan_webroot.log",
        "host/aide_check.json",
    ]
    paths = [str(FIXTURES / n) for n in files if (FIXTURES / n).exists()]
    return read_alerts(paths, "shop", "web-01", received_at=T0).alerts


_OPS = ["", "|contains", "|startswith", "|endswith", "|contains|cased", "|re"]
_FIELDS = [
    "http.url",
    "http.user_agent",
    "rule.name",
    "rule.id",
    "process.cmdline",
    "file.path",
    "message",
    "extra.key",
    "rule.tags",
    "src.ip",
    "user",
]
_SOURCES = [
    "product: mdr",
    "category: webserver",
    "product: linux, service: auditd",
    "category: ids",
    "product: modsecurity",
    "category: file_event",
    "product: linux, category: process_creation",
]


def _random_rules(alerts: list[Alert], n: int, rng: random.Random) -> list[CompiledRule]:
    """Rules built from values the alerts really carry, in every shape the prefilter must see through."""
    from pipeline.rules import field_getter

    pools = {f: sorted({str(v) for a in alerts for v in field_getter(f)(a) if v}) for f in _FIELDS}
    pools = {f: p for f, p in pools.items() if p}
    out = []
    for i in range(n):
        sels = []
        for _ in range(rng.randint(1, 3)):
            field = rng.choice(list(pools))
            op = rng.choice(_OPS)
            value = rng.choice(pools[field])
            if op.startswith("|contains") or op == "|re":
                value = value[rng.randrange(len(value)) :][: rng.randint(1, 12)] or value
            elif op == "|startswith":
                value = value[: rng.randint(1, len(value))]
            elif op == "|endswith":
                value = value[-rng.randint(1, len(value)) :]
            if op == "|re":
                value = "".join("\\" + c if not c.isalnum() else c for c in value)
            sels.append(
                {f"{field}{op}": [value, rng.choice(pools[field])[:5]] if rng.random() < 0.3 else value}
            )
        dets = {f"sel{j}": s for j, s in enumerate(sels)}
        cond = rng.choice(
            ["all of sel*", "1 of sel*", "sel0 and not 1 of sel1*" if len(sels) > 1 else "sel0", "not sel0"]
        )
        doc = {
            "title": f"r{i}",
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "logsource": dict(kv.split(": ") for kv in rng.choice(_SOURCES).split(", ")),
            "detection": {**dets, "condition": cond},
        }
        out.append(compile_rule(SigmaRule.from_dict(doc)))
    return out


def test_index_agrees_with_evaluating_every_rule() -> None:
    alerts = _fixture_alerts()
    if len(alerts) < 200:
        pytest.skip("normalizers or fixtures missing")
    rng = random.Random(7)
    rules = _random_rules(alerts, 400, rng)
    idx = RuleIndex(rules)
    fired = 0
    for a in alerts:
        expected = [r for r in rules if r.matches(a)]
        assert idx.match(a) == expected
        fired += len(expected)
    assert fired > len(alerts)  # the rules do fire; the comparison is not vacuous
    assert sum(len(idx.candidates(a)) for a in alerts) < 0.25 * len(rules) * len(alerts)  # and prefilters
