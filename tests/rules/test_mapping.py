"""Field mapping (Sigma / ECS / vendor names -> normalized paths), computed views and log-source routing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.normalize.source import read_alerts
from pipeline.rules import (
    FIELD_MAP,
    UnsupportedRule,
    alert_from_fields,
    field_getter,
    getter,
    logsource_applies,
    resolve_field,
    route_for,
)
from pipeline.rules.alert_builder import probe_alert
from pipeline.rules.fieldmap import SCHEMA_PATHS, is_normalized_path
from pipeline.rules.logsources import known_paths, source_key
from pipeline.rules.views import VIEWS
from pipeline.schema import Alert, Dns, Endpoint, File, Http, Process, Rule, Source

T0 = datetime(2026, 11, 24, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def A(source: Source = Source("ModSecurity", "OWASP", "waf", "modsecurity"), **kw) -> Alert:
    return Alert(alert_id="a", tenant_id="t", source=source, time=T0, received_at=T0, **kw)


def test_every_mapping_target_is_a_normalized_path_with_a_getter() -> None:
    for name, paths in FIELD_MAP.items():
        assert paths, name
        for p in paths:
            assert is_normalized_path(p), (name, p)
            getter(p)(A())  # never raises on a sparse alert


@pytest.mark.parametrize(
    "name, product, expected",
    [
        ("CommandLine", None, ["process.cmdline"]),
        ("commandline", None, ["process.cmdline"]),  # case-insensitive fallback
        ("c-ip", None, ["src.ip"]),
        ("source.ip", None, ["src.ip"]),  # ECS name, not our `source` (the product)
        ("src.ip", None, ["src.ip"]),  # normalized paths are accepted as they are
        ("rule.category", None, ["rule.category"]),
        ("source.family", None, ["source.family"]),
        ("extra.anomaly_score", None, ["extra.anomaly_score"]),
        ("cs-uri-query", None, ["http.query", "http.url"]),
        ("SYSCALL", None, ["extra.syscall"]),
        ("a3", None, ["extra.a3"]),
        ("host", "zeek", ["http.host"]),
        ("host", None, []),
        ("ParentImage", None, []),
        ("extra.", None, []),
    ],
)
def test_resolve_field(name: str, product: str | None, expected: list[str]) -> None:
    assert resolve_field(name, product) == expected


def test_getters_for_stored_paths() -> None:
    a = A(
        rule=Rule(id="942100", tags=["attack.t1190"]),
        rules=[Rule(id="1"), Rule(id="2")],
        src=Endpoint(ip="192.0.2.1", port=4444),
        http=Http(url="/a", status=403),
        extra={"key": "www_exec", "req": {"m": "GET"}},
        attack=["T1190"],
    )
    assert getter("rule.id")(a) == "942100"
    assert getter("rule.tags")(a) == ["attack.t1190"]
    assert getter("rules.id")(a) == ["1", "2"]
    assert getter("src.port")(a) == 4444
    assert getter("http.status")(a) == 403
    assert getter("process.cmdline")(a) is None  # absent sub-struct
    assert getter("extra.key")(a) == "www_exec"
    assert getter("extra.req.m")(a) == "GET"
    assert getter("extra.missing")(a) is None
    assert getter("attack")(a) == ["T1190"]
    assert getter("c-ip")(a) == "192.0.2.1"  # a Sigma name works too (for group-by)
    with pytest.raises(KeyError):
        getter("ParentImage")


@pytest.mark.parametrize(
    "url, path, query, ext",
    [
        ("/shop/login.php?user=a&x=1", "/shop/login.php", "user=a&x=1", "php"),
        ("/index.html", "/index.html", None, "html"),
        ("https://shop.example/a/b.aspx?q", "/a/b.aspx", "q", "aspx"),
        ("/dir/", "/dir/", None, None),
        ("/a?", "/a", "", None),
        ("?x=1", None, "x=1", None),
    ],
)
def test_url_views(url: str, path: str | None, query: str | None, ext: str | None) -> None:
    a = A(http=Http(url=url))
    assert (getter("http.path")(a), getter("http.query")(a), getter("http.extension")(a)) == (
        path,
        query,
        ext,
    )
    assert field_getter("cs-uri-stem")(a) == ([path] if path else [])
    assert field_getter("cs-uri-query")(a) == [v for v in (query, url) if v is not None]
    assert field_getter("c-uri")(a) == [url]
    assert getter("http.path")(A()) is None


def test_action_and_connection_views() -> None:
    assert [getter("blocked")(A(action=x)) for x in ("blocked", "allowed", "detected")] == [
        "true",
        "false",
        None,
    ]
    init = getter("network.initiated")
    assert [init(A(extra={"syscall": s})) for s in ("connect", "42", "accept", "open")] == [
        "true",
        "true",
        "false",
        None,
    ]
    assert field_getter("action")(A(action="blocked", extra={"action": "drop"})) == ["blocked", "drop"]


def test_alert_from_fields_round_trips_every_stored_field() -> None:
    for name, paths in FIELD_MAP.items():
        if paths[0] in VIEWS:
            continue
        value = 8080 if paths[0].endswith(("port", "status", "pid")) else f"v-{name}"
        a = alert_from_fields({name: value})
        assert value in field_getter(name)(a), name


def test_alert_from_fields_composes_views() -> None:
    a = alert_from_fields(
        {"cs-uri-stem": "/a.php", "cs-uri-query": "id=1", "cs-method": "GET", "sc-status": 200}
    )
    assert (a.http.url, a.http.method, a.http.status) == ("/a.php?id=1", "GET", 200)
    assert alert_from_fields({"cs-uri-query": "cmd=id"}).http.url == "?cmd=id"
    assert alert_from_fields({"c-uri": "/x", "c-uri-query": "a=1"}).http.url == "/x?a=1"
    assert getter("http.extension")(alert_from_fields({"c-uri-extension": "exe"})) == "exe"
    assert alert_from_fields({"blocked": "true"}).action == "blocked"
    assert alert_from_fields({"blocked": "maybe"}).action == "detected"
    assert alert_from_fields({"action": "forward"}).extra == {"action": "forward"}
    assert alert_from_fields({"Initiated": "true"}).extra == {"syscall": "connect"}
    with pytest.raises(UnsupportedRule):
        alert_from_fields({"ParentImage": "/bin/sh"})


# --- log sources ------------------------------------------------------------------------------------------

WEB = A(http=Http(url="/"))
IDS_DNS = A(Source("Suricata", "OISF", "ids", "suricata"), dns=Dns(query="c2.example"))
FW = A(Source("AWS Network Firewall", "AWS", "firewall", "aws_nfw"), dst=Endpoint(ip="10.0.0.1", port=80))
AUDIT_EXEC = A(
    Source("auditd", "Linux Audit", "host", "auditd"), process=Process(cmdline="id", exe="/usr/bin/id")
)
AUDIT_FILE = A(Source("auditd", "Linux Audit", "host", "auditd"), file=File(path="/srv/www/x.php"))
AUDIT_NET = A(
    Source("auditd", "Linux Audit", "host", "auditd"),
    process=Process(exe="/bin/bash"),
    dst=Endpoint(ip="192.0.2.7"),
)
SSHD = A(Source("OpenSSH", "OpenBSD", "auth", "sshd"), user="root")
F2B = A(Source("fail2ban", "fail2ban", "host", "fail2ban"))
AV = A(Source("ClamAV", "Cisco Talos", "av", "clamav"), file=File(path="/x"))
FIM = A(Source("AIDE", "AIDE", "fim", "aide"), file=File(path="/x"))
ALL = {
    "web": WEB,
    "dns": IDS_DNS,
    "fw": FW,
    "exec": AUDIT_EXEC,
    "file": AUDIT_FILE,
    "net": AUDIT_NET,
    "sshd": SSHD,
    "f2b": F2B,
    "av": AV,
    "fim": FIM,
}


@pytest.mark.parametrize(
    "logsource, admitted",
    [
        ({"category": "webserver"}, {"web"}),
        ({"category": "proxy"}, {"web"}),
        ({"product": "linux", "service": "auditd"}, {"exec", "file", "net"}),
        ({"product": "linux", "category": "process_creation"}, {"exec"}),
        ({"product": "linux", "category": "file_event"}, {"file", "av", "fim"}),
        ({"product": "linux", "category": "network_connection"}, {"net"}),
        ({"product": "linux", "service": "sshd"}, {"sshd"}),
        ({"product": "linux", "service": "auth"}, {"sshd"}),
        ({"product": "linux", "service": "syslog"}, {"sshd", "f2b"}),
        ({"product": "linux", "service": "clamav"}, {"av"}),
        ({"product": "linux"}, {"exec", "file", "net", "sshd", "f2b", "av", "fim"}),
        ({"category": "dns"}, {"dns"}),
        ({"product": "zeek", "service": "dns"}, {"dns"}),
        ({"product": "zeek", "service": "http"}, {"web"}),
        ({"category": "firewall"}, {"fw", "dns"}),
        ({"product": "auditd"}, {"exec", "file", "net"}),
        ({"product": "modsecurity"}, {"web"}),
        ({"category": "fim"}, {"fim"}),
        ({"category": "auth"}, {"sshd"}),
        ({"product": "mdr"}, set(ALL)),
        ({"product": "mdr", "category": "host"}, {"exec", "file", "net", "f2b"}),
    ],
)
def test_logsource_routing(logsource: dict[str, str], admitted: set[str]) -> None:
    applies = logsource_applies(logsource)
    assert {k for k, a in ALL.items() if applies(a)} == admitted


@pytest.mark.parametrize(
    "logsource",
    [
        {"product": "windows", "category": "process_creation"},
        {"product": "linux", "service": "vsftpd"},
        {"product": "cisco", "service": "aaa"},
        {"category": "registry_event"},
        {"service": "nginx"},
        {"product": "nosuchformat"},
    ],
)
def test_unknown_logsource_is_unsupported(logsource: dict[str, str]) -> None:
    with pytest.raises(UnsupportedRule) as e:
        route_for(logsource)
    assert e.value.reason == "unsupported logsource"
    assert all(v in e.value.detail for v in logsource.values())


def test_known_paths_and_probe_follow_the_routing_key() -> None:
    key = source_key(SSHD)
    known = known_paths(key)
    assert known("source.format") and known("http.url") and known("http.path") and known("process.exe")
    assert not known("user") and not known("src.ip") and not known("extra.key")
    probe = probe_alert(key)
    assert source_key(probe) == key
    key = source_key(AUDIT_EXEC)
    assert not known_paths(key)("process.cmdline") and known_paths(key)("file.path")


def test_real_alerts_route_where_sigma_expects_them() -> None:
    names = ("host/audit.log", "host/sshd_auth.log", "waf/modsec_audit_samples.jsonl", "ids/eve_samples.jsonl")
    paths = [str(FIXTURES / n) for n in names if (FIXTURES / n).exists()]
    alerts = read_alerts(paths, "shop", "web-01", received_at=T0).alerts
    by_format = {a.source.format for a in alerts}
    if not {"auditd", "sshd", "modsecurity"} <= by_format:
        pytest.skip("normalizers or fixtures missing")
    auditd = logsource_applies({"product": "linux", "service": "auditd"})
    proc = logsource_applies({"product": "linux", "category": "process_creation"})
    web = logsource_applies({"category": "webserver"})
    sshd = logsource_applies({"product": "linux", "service": "sshd"})
    for a in alerts:
        fmt = a.source.format
        assert auditd(a) == (fmt == "auditd")
        assert sshd(a) == (fmt == "sshd")
        assert web(a) == (a.http is not None)
        if proc(a):
            assert fmt == "auditd" and a.process.cmdline
    assert any(proc(a) for a in alerts) and any(web(a) for a in alerts)


def test_schema_paths_cover_the_alert() -> None:
    assert {"src.ip", "http.url", "rules.id", "intel.indicator", "asset.name", "raw"} <= set(SCHEMA_PATHS)
    assert SCHEMA_PATHS["rules.id"] and not SCHEMA_PATHS["http.url"]
