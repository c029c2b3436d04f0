"""One host, one name (issue 14, §8; docs/assets.md): the collection point names its host records, WAF and IDS
records aimed at its addresses use the same name, and network C2 is about the host that asked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.core.incidents import IncidentBuilder, alert_outcome, merge_outcome
from pipeline.naming import HostNames, at_collection_point, reported_name
from pipeline.normalize.base import RawRecord
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.rules.usecase import load_usecases
from pipeline.schema import AssetRef, Rule
from tests.context.conftest import alert
from tests.lab import LabReplay

ROOT = Path(__file__).resolve().parents[2]
LAB1 = ROOT / "samples" / "lab-1"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def normalize(text: str, host: str | None, fmt: str) -> list:
    res = NormalizeResult()
    stage = NormalizeStage()
    stage.process(RawRecord(text, "shop", NOW, host), fmt, res)
    stage.flush(res)
    assert res.alerts, (res.dead, res.skipped)
    return res.alerts


def first_line(path: Path, needle: str) -> str:
    return next(ln for ln in path.read_text().splitlines() if needle in ln)


def test_collection_point_is_the_identity_of_host_records() -> None:
    line = first_line(LAB1 / "host" / "sshd_auth.log", "Failed password")
    [a] = normalize(line, "web-01", "sshd")
    assert a.host.name == "web-01" and a.extra["reported_host"] == "vm"  # the syslog name is kept, not used
    [b] = normalize(line, None, "sshd")
    assert b.host.name == "vm" and "reported_host" not in b.extra
    aide = normalize((LAB1 / "host" / "aide_check.json").read_text(), "web-01", "aide")
    assert {x.host.name for x in aide} == {"web-01"}


def test_products_that_report_many_hosts_keep_their_names() -> None:
    a = alert("suricata", host={"name": "sensor-7"})  # a network sensor is no on-host product
    at_collection_point([a], "web-01")
    assert a.host.name == "sensor-7"


def test_replay_without_host_uses_the_one_name_its_host_records_carry() -> None:
    named = [alert("auditd", host={"name": "vm"}), alert("clamav"), alert("auditd", host={"name": "vm"})]
    assert reported_name(named) == "vm"
    at_collection_point(named, reported_name(named))
    assert {a.host.name for a in named} == {"vm"}  # ClamAV carried no name: no "unknown" host
    assert reported_name([alert("auditd", host={"name": "a"}), alert("auditd", host={"name": "b"})]) is None


def test_waf_and_ids_records_aimed_at_the_hosts_addresses_use_its_name() -> None:
    names = HostNames()
    waf = alert("modsecurity", host={"name": "web-01", "ip": "10.0.0.5"}, dst={"ip": "10.0.0.5"},
                http={"host": "shop.example"})
    ids_in = alert("suricata", src={"ip": "203.0.113.9"}, dst={"ip": "10.0.0.5"}, http={"host": "10.0.0.5"})
    ids_out = alert("suricata", src={"ip": "10.0.0.5"}, dst={"ip": "198.51.100.1"})
    other_tenant = alert("suricata", tenant="bank", dst={"ip": "10.0.0.5"})
    names.learn([ids_in, waf, ids_out, other_tenant])  # a batch teaches before it is named, in any order
    for a in (waf, ids_in, ids_out, other_tenant):
        names.name(a)
    assert waf.dst.hostname == "web-01" and waf.http.host == "shop.example"  # the site stays in the URL
    assert ids_in.dst.hostname == "web-01"
    assert ids_out.src.hostname == "web-01" and ids_out.dst.hostname is None
    assert other_tenant.dst.hostname is None  # never across tenants
    assert names.addresses == {"shop\x1f10.0.0.5": "web-01"}  # plain state: the worker persists it


@pytest.mark.parametrize(("parts", "expected"), [
    (["failed", "failed", "blocked"], "blocked"),  # every try failed, then the source was banned
    (["failed", "failed"], "failed"),  # nothing stopped them (yet)
    (["failed", "blocked", "attempted"], "attempted"),  # something got through to the target
    (["blocked", "succeeded"], "succeeded"),
    (["blocked", "blocked"], "blocked"),
])
def test_outcome_of_tries_and_blocks(parts: list[str], expected: str) -> None:
    out = "unknown"
    for p in parts:
        out = merge_outcome(out, p)
    assert out == expected
    order = "unknown"
    for p in reversed(parts):  # a ban may arrive before the failures it answers
        order = merge_outcome(order, p)
    assert order == expected


def test_failed_login_is_failed_and_a_ban_blocked() -> None:
    assert alert_outcome(alert("auditd", action="failed")) == "failed"
    assert alert_outcome(alert("auditd", action="blocked")) == "blocked"


def test_network_c2_is_about_the_host_that_asked() -> None:
    ucs = load_usecases(str(ROOT / "usecases" / "network" / "c2-traffic.yml"))
    uc = ucs.usecases[0]
    lookup = alert("suricata", src={"ip": "203.0.113.9"}, dst={"ip": "10.0.0.53", "hostname": "dns-01"},
                   rule=Rule("2", "LAB TROJAN DNS query", "A Network Trojan was detected"))
    lookup.asset = AssetRef("dns-01", "critical")  # the inventory matched the server it asked
    inc, _ = IncidentBuilder().add(uc, "shop", {"src.ip": "203.0.113.9"}, [lookup])
    assert inc.entities.hosts == ["203.0.113.9"] and inc.asset is None


def test_lab_day_names_one_host_in_the_core_and_the_worker_state(lab1_replay: LabReplay) -> None:
    core, res = lab1_replay.core, lab1_replay.result
    assert core.state.hosts == {"shop\x1f127.0.0.1": "web-01"}
    assert {h for i in res.open_incidents if i.category != "c2" for h in i.entities.hosts} == {"web-01"}


def test_repeats_are_named_before_they_are_correlated(lab1_replay: LabReplay) -> None:
    """A repeat merged by dedup is counted in correlations at its own time, grouped by its own entities: named
    like its representative, so lab-1's attack requests on web-01 make one campaign, not a second part against
    the site in their Host header (the unnamed repeats' asset)."""
    titles = [i.title for i in lab1_replay.incidents.values() if i.title.startswith("Web attack campaign")]
    assert titles == ["Web attack campaign from 127.0.0.66 against web-01"]
