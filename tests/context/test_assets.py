"""Asset inventory: loading (YAML, CSV), validation errors, lookups, which side of an alert is the asset."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.context.assets import load_assets
from pipeline.context.loader import ContextFileError
from pipeline.context.store import Context

from .conftest import FIXTURES_WAF, alert, data


@pytest.fixture(scope="module")
def inv():
    return load_assets(data("assets.yaml"))


@pytest.mark.parametrize(("ip", "name"), [
    ("10.20.5.10", "db-01"),          # /32 beats /24 and /16
    ("10.20.5.11", "finance-subnet"),  # /24 beats /16
    ("10.20.9.1", "office-lan"),
    ("10.21.0.1", None),
    ("127.0.0.1", "web-01"),
    ("2001:db8::10", "db-01"),
    ("2001:db8::11", None),
    ("not-an-ip", None),
])
def test_longest_prefix(inv, ip, name):
    ref = inv.by_ip(ip)
    assert (ref.name if ref else None) == name


@pytest.mark.parametrize(("value", "name"), [
    ("shop.lab.local", "web-01"), ("SHOP.Lab.Local", "web-01"), ("shop.lab.local:8080", "web-01"),
    ("shop.lab.local.", "web-01"), ("VM", "web-01"), ("db-01.corp.example", "db-01"),
    ("127.0.0.1:8080", "web-01"), ("[2001:db8::10]:443", "db-01"), ("other.lab.local", None),
])
def test_names_and_host_headers(inv, value, name):
    ref = inv.by_name(value)
    assert (ref.name if ref else None) == name


def test_asset_ref_carries_attributes(inv):
    ref = inv.by_name("shop.lab.local")
    assert (ref.criticality, ref.exposure, ref.owner, ref.tags) == ("high", "internet", "shop-team",
                                                                   ["pci", "payments"])
    assert inv.by_ip("10.20.9.9").criticality == "low"


def test_network_alert_asset_is_the_destination(inv):
    # the Host header names the site even when the address is a load balancer's
    a = alert("modsecurity", src={"ip": "10.20.5.10"}, dst={"ip": "192.0.2.1", "port": 8080},
              http={"host": "Shop.Lab.Local:8080", "url": "/"})
    assert inv.match(a).name == "web-01"
    # an attacker inside an inventory network is not the asset an alert hits
    assert inv.match(alert("suricata", src={"ip": "10.20.5.10"}, dst={"ip": "198.18.0.1"})) is None
    assert inv.match(alert("suricata", src={"ip": "198.18.0.1"}, dst={"ip": "10.20.5.77"})).name == \
        "finance-subnet"


def test_host_alert_asset_is_the_host(inv):
    a = alert("auditd", host={"name": "vm"}, dst={"ip": "10.20.5.10"})
    assert inv.match(a).name == "web-01"
    assert inv.match(alert("clamav", host={"ip": "10.20.5.10"})).name == "db-01"
    assert inv.match(alert("auditd", src={"ip": "127.0.0.1"})) is None  # only the attacker's side is known


def test_csv_inventory():
    inv = load_assets(data("assets.csv"))
    assert [a.name for a in inv.assets] == ["mail-01", "lab-net"]
    assert inv.by_name("mx1.example.org").name == "mail-01"
    assert inv.by_ip("192.0.2.26").tags == ["smtp", "dmz"]
    assert inv.by_ip("198.51.100.7").criticality == "low"


def test_bad_yaml_names_file_line_field():
    with pytest.raises(ContextFileError) as e:
        load_assets(data("assets_bad.yaml"))
    assert str(e.value).splitlines() == [
        "assets_bad.yaml:8: ips[1]: not an IP or CIDR: '10.0.0.300'",
        "assets_bad.yaml:10: criticality: 'severe' is not one of low, medium, high, critical",
        "assets_bad.yaml:11: name: duplicate asset 'web-01' (line 2)",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("- name: a\n  ips: [10.0.0.1]\n- name: b\n  ips: [10.0.0.1/32]\n",
     "x.yaml:4: ips[0]: '10.0.0.1/32' already belongs to asset 'a' (line 2)"),
    ("- name: a\n  criticallity: high\n", "x.yaml:2: criticallity: unknown field"),
    ("- name: a\n  hostnames: ['bad host']\n", "x.yaml:2: hostnames[0]: not a host name: 'bad host'"),
    ("- name: a\n  exposure: dmz\n", "x.yaml:2: exposure: 'dmz' is not one of internet, internal"),
    ("- name: a\n  ips: [10.0.0.1\n", "x.yaml:3: not valid YAML"),
    ("- ips: [10.0.0.1]\n", "x.yaml:1: name: missing asset name"),
])
def test_bad_yaml_variants(tmp_path: Path, text, message):
    f = tmp_path / "x.yaml"
    f.write_text(text)
    with pytest.raises(ContextFileError) as e:
        load_assets(f)
    assert str(e.value).startswith(message)


def test_bad_csv_names_line(tmp_path: Path):
    f = tmp_path / "inv.csv"
    f.write_text("name,ips,criticality\nok,10.0.0.1,high\nbad,10.0.0.2;10.0.0.999,high\n")
    with pytest.raises(ContextFileError) as e:
        load_assets(f)
    assert str(e.value) == "inv.csv:3: ips[1]: not an IP or CIDR: '10.0.0.999'"


def test_bad_file_keeps_last_good_set():
    ctx = Context()
    assert ctx.load_assets("shop", data("assets.yaml"))
    assert not ctx.load_assets("shop", data("assets_bad.yaml"))
    assert ctx.errors[0] == "assets_bad.yaml:8: ips[1]: not an IP or CIDR: '10.0.0.300'"
    assert ctx.inventory("shop").by_name("shop.lab.local").name == "web-01"
    assert len(ctx.inventory("shop")) == 4


def test_tenant_isolation():
    ctx = Context()
    ctx.load_assets("shop", data("assets.yaml"))
    ctx.load_assets("mail", data("assets.csv"))
    web = alert("modsecurity", dst={"ip": "127.0.0.1"}, http={"host": "shop.lab.local", "url": "/"})
    ctx.enrich(web)
    assert web.asset.name == "web-01"
    other = alert("modsecurity", tenant="mail", dst={"ip": "127.0.0.1"}, http={"host": "shop.lab.local"})
    ctx.enrich(other)
    assert other.asset is None  # never another tenant's asset
    unknown = alert("suricata", tenant="nobody", dst={"ip": "192.0.2.25"})
    ctx.enrich(unknown)
    assert unknown.asset is None and len(ctx.inventory("nobody")) == 0


def test_real_waf_alerts_hit_web_01():
    """Real ModSecurity records (lab-1 fixture) through the normalizer, then enrichment."""
    from pipeline.normalize.source import read_alerts

    res = read_alerts([str(FIXTURES_WAF / "modsec_audit_samples.jsonl")], "shop")
    assert res.alerts
    ctx = Context()
    ctx.load_assets("shop", data("assets.yaml"))
    for a in res.alerts:
        ctx.enrich(a)
    assert {a.asset.name for a in res.alerts if a.asset} == {"web-01"}
    assert all(a.asset is not None for a in res.alerts if a.dst.ip == "127.0.0.1")
