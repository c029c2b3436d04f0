"""Acceptance on real data: lab-1 replayed through the production core gives what an analyst would open.

The same assertions run on a variant of the day with other actors, addresses, host names, web root and date
(tests/e2e/variant.py), so the result does not hinge on the lab's particular values.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline.replay import ReplayResult, replay
from pipeline.schema import Incident
from tests.e2e.variant import LAB_DAY as LAB
from tests.e2e.variant import Variant, write_variant
from tests.lab import LAB1, LabReplay, lab_core

COMPROMISE = {"webshell", "malware", "defacement", "c2", "account_compromise"}

OTHER = Variant(attacker="203.0.113.77", benign="198.51.100.14", scanner="192.0.2.250", host="app-7",
                site="store.example.net", webroot="/var/www/store", day_shift_days=-37, users=True)


def run(path: Path, tenant: str = "shop", host: str | None = "web-01") -> ReplayResult:
    """A replay of its own, through the core `mdr replay` builds (as the shared `lab1_replay` ran)."""
    core = lab_core()
    assert not core.usecases.errors, core.usecases.errors
    return replay([str(path)], core, tenant, host)


@pytest.fixture
def lab1(lab1_replay: LabReplay) -> ReplayResult:
    return lab1_replay.result


@pytest.fixture(scope="module")
def other_day(tmp_path_factory) -> ReplayResult:
    out = tmp_path_factory.mktemp("other-day")
    write_variant(LAB1, out, LAB, OTHER)
    return run(out, tenant="acme", host="app-server")


def _only_actor(i: Incident, ip: str) -> bool:
    return bool(i.entities.src_ips) and set(i.entities.src_ips) == {ip}


def check_one_name(res: ReplayResult, v: Variant, name: str) -> None:
    """One host, one name: every incident about the server names it `name` (its collection point), never its
    syslog name, site, address or "unknown"; network C2 names the host that asked, not the server."""
    incidents = res.open_incidents
    for i in incidents:
        suspects = set(i.entities.src_ips) if i.category == "c2" and "ids" in i.sources.get("families", []) \
            else {name}
        assert set(i.entities.hosts) <= suspects, (i.title, i.entities.hosts)
        for other in {v.host, v.site, "unknown"} - {name}:
            assert other not in i.title, i.title
        assert not any(f" {ip}" in i.title and f"from {ip}" not in i.title for ip in (v.scanner,)), i.title
    assert sum(name in i.title for i in incidents) >= len(incidents) - 1  # all but the C2 lookup name it


def check_day(res: ReplayResult, v: Variant) -> None:
    incidents = res.open_incidents
    cats = Counter(i.category for i in incidents)
    summary = [(i.priority, i.category, i.title) for i in incidents]
    # Nothing is lost; every product of the day yields alerts.
    assert not res.dead, Counter(d.reason for d in res.dead)
    formats = {a.source.format for a in res.alerts}
    assert {"modsecurity", "suricata", "auditd", "aide", "clamav", "fail2ban", "sshd"} <= formats
    # A handful of incidents from well over a thousand alerts.
    assert 5 <= len(incidents) <= 8, summary
    assert res.alerts_raw >= 100 * len(incidents), (res.alerts_raw, len(incidents))
    # The webshell compromise: critical, with the host evidence of auditd, AIDE and ClamAV.
    comp = [i for i in incidents if i.category in COMPROMISE and {"auditd", "AIDE", "ClamAV"}
            <= set(i.sources.get("products", []))]
    assert comp, summary
    assert comp[0].priority in ("P1", "P2"), comp[0].priority_reasons
    assert comp[0].outcome == "succeeded"
    assert any(f.endswith(".php") for f in comp[0].entities.files)
    # The Log4Shell attempt that the WAF did not block: an exploit incident of the attacker, not blocked.
    exploit = [i for i in incidents if i.category == "exploit" and v.attacker in i.entities.src_ips]
    assert exploit, summary
    assert exploit[0].outcome != "blocked"
    assert "T1190" in exploit[0].attack
    # The SSH brute force of the attacker: every try failed and fail2ban banned the source, so it was blocked.
    brute = [i for i in incidents if i.category == "brute_force" and v.attacker in i.entities.src_ips]
    assert brute and brute[0].outcome == "blocked", summary
    # The C2 domain lookup the attacker sent to the server's resolver: the attacker is the suspect.
    c2 = [i for i in incidents if i.category == "c2" and "malware-lab.test" in i.title]
    assert c2 and c2[0].entities.hosts == [v.attacker], summary
    # The scanning.
    assert cats["scan"] >= 1, summary
    assert any(i.category == "scan" and v.scanner in i.entities.src_ips for i in incidents), summary
    # Nothing whose only actor is the benign client.
    assert not [i for i in incidents if _only_actor(i, v.benign)], summary
    # Priorities are ordered as an analyst would: the compromise first, scanning last.
    scan_prio = min(i.priority for i in incidents if i.category == "scan")
    assert comp[0].priority < scan_prio


def test_lab1_incidents(lab1: ReplayResult) -> None:
    check_day(lab1, LAB)
    check_one_name(lab1, LAB, "web-01")


def test_other_day_other_actors(other_day: ReplayResult) -> None:
    check_day(other_day, OTHER)
    check_one_name(other_day, OTHER, "app-server")


@pytest.mark.parametrize("day", ["lab1", "other"])
def test_without_host_one_collection_point_keeps_one_name(day: str, tmp_path: Path) -> None:
    """Without --host the replay is still one collection point: named by the one host name its host records
    carry (the syslog name), with no separate "unknown" host for the records that carry none (AIDE, ClamAV)."""
    v, path = (LAB, LAB1) if day == "lab1" else (OTHER, tmp_path)
    if day == "other":
        write_variant(LAB1, tmp_path, LAB, OTHER)
    res = run(path, host=None)
    check_day(res, v)
    check_one_name(res, v, v.host)


def test_replay_is_deterministic(lab1: ReplayResult) -> None:
    again = run(LAB1)
    assert sorted(again.incidents) == sorted(lab1.incidents)
    for iid, inc in lab1.incidents.items():
        other = again.incidents[iid]
        assert (other.priority, sorted(other.alert_ids), other.status) == \
            (inc.priority, sorted(inc.alert_ids), inc.status)
    assert [a.alert_id for a in again.alerts] == [a.alert_id for a in lab1.alerts]


def test_tenants_never_mix(tmp_path: Path) -> None:
    core = lab_core()
    a = replay([str(LAB1)], core, "tenant-a", "web-01")
    b = replay([str(LAB1)], core, "tenant-b", "web-01")  # same core, same state: tenants must stay apart
    ids_a = {i for i in a.incidents}
    ids_b = {i for i in b.incidents}
    assert ids_a and ids_b and not ids_a & ids_b
    alerts_a = {x.alert_id for x in a.alerts}
    for inc in b.incidents.values():
        assert inc.tenant_id == "tenant-b"
        assert not alerts_a & set(inc.alert_ids)
    assert len(a.open_incidents) == len(b.open_incidents)
