"""Response safety through the real runner and real local servers: block / isolate targets are the parsed
actors, never the tenant's own inventory, loopback, link-local, protected or platform addresses; a refused
target waits for an analyst with its reason on the ticket; automated actions are rate-limited per tenant; every
action records the parsed fields that justified it."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.context.assets import Asset, AssetInventory
from pipeline.schema import Alert, Endpoint, Rule, Source
from pipeline.soar.actions import Soar, dry_run
from pipeline.soar.connectors import Channels
from pipeline.soar.playbooks import load_playbooks
from pipeline.soar.safety import (
    Policy,
    PolicyError,
    Safety,
    justify,
    load_policy,
    parse_policy,
    refusal,
)
from tests.soar.helpers import T0, events, incident, playbook, write_yaml
from tests.soar.servers import RecordingServer

ROOT = Path(__file__).resolve().parents[2]
Server = Callable[..., RecordingServer]
INVENTORY = AssetInventory([Asset("db-01", ips=["10.20.5.10"], hostnames=["db-01"], criticality="critical"),
                            Asset("web-01", ips=["10.20.5.20"], hostnames=["web-01", "shop.example"])])
LAB = {"refuse": ["link_local", "multicast", "unspecified", "reserved"]}  # lab-1 ran on loopback
BLOCK = [{"id": "block", "block_ip": {"channel": "fw", "ips": "{{ incident.entities.src_ips }}", "duration": "1h"}},
         {"id": "after", "notify": {"channel": "hook", "text": "after the block"}}]


def safety(doc: dict[str, Any] | None = None, inventory: AssetInventory = INVENTORY) -> Safety:
    return Safety(parse_policy(doc or {}, "test-policy"), lambda tenant: inventory if tenant == "shop" else
                  AssetInventory())


def blocked(fw: RecordingServer) -> list[str]:
    return [q.json["ip"] for q in fw.requests]


def channels(fw: RecordingServer, hook: RecordingServer, **fw_settings: Any) -> dict[str, Any]:
    return {"fw": {"type": "response_api", "url": fw.url, **fw_settings}, "hook": {"type": "webhook", "url": hook.url}}


# ---- the reproduction, end to end ------------------------------------------------------------------
INJECTED = ("Nov 24 06:39:1{i} vm sshd[500{i}]: Failed password for invalid user x from 10.20.5.10 port 22 "
            "from 127.0.0.66 port 5000{i} ssh2")
PLAYBOOK_CHANNELS = ("customer", "customer-wecom", "customer-email", "soc", "oncall", "casebook", "jira", "edr")


def _replay(tmp_path: Path, lines: list[str]) -> Any:
    from pipeline.core.engine import Core
    from pipeline.replay import replay
    from pipeline.rules.usecase import load_usecases

    f = tmp_path / "auth.log"
    f.write_text("\n".join(lines) + "\n")
    return replay([str(f)], Core(load_usecases(str(ROOT / "usecases"))), "shop", "web-01")


def _shipped(tmp_path: Path, fw: RecordingServer, soc: RecordingServer, policy: dict[str, Any]) -> Path:
    chans = {n: {"type": "webhook", "url": f"env:MDR_TEST_UNSET_{i}"} for i, n in enumerate(PLAYBOOK_CHANNELS)}
    chans.update(firewall={"type": "response_api", "url": fw.url, "token": "fw"},
                 soc={"type": "slack", "url": soc.url + "/services/T/B/x"})
    write_yaml(tmp_path / "response-safety.yaml", policy)
    return write_yaml(tmp_path / "channels.yaml", {"channels": chans})


def test_injected_sshd_lines_block_the_real_client_never_the_inventory_server(
        tmp_path: Path, http_server: Server, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 §2: eight `... from 10.20.5.10 port 22 from 127.0.0.66 port N ssh2` lines, the shipped
    brute-force playbook, a firewall on a local server: 127.0.0.66 (the real client) is blocked, 10.20.5.10
    (a critical DB server of the tenant's inventory) never is, and the block names the fields behind it."""
    from pipeline.soar.actions import handle_replay

    res = _replay(tmp_path, [INJECTED.format(i=i) for i in range(8)])
    [inc] = res.open_incidents
    assert inc.entities.src_ips == ["127.0.0.66"]
    fw, soc = http_server(), http_server()
    chans = _shipped(tmp_path, fw, soc, LAB)
    monkeypatch.setenv("MDR_RESPONSE_SAFETY", str(tmp_path / "response-safety.yaml"))
    out = handle_replay(res, tmp_path / "out", db_url, channels=chans, playbooks=ROOT / "playbooks",
                        inventories=lambda t: INVENTORY)
    assert out.settled
    assert blocked(fw) == ["127.0.0.66"]
    s = Soar.open(db_url, channels=chans, playbooks=ROOT / "playbooks")
    try:
        t = s.store.require(inc.incident_id)
        [resp] = [e for e in s.store.timeline(t.id) if e.kind == "response"]
        assert resp.status == "automated" and resp.data["target"] == "127.0.0.66"
        why = resp.data["justification"]
        assert why.startswith("target 127.0.0.66 from src.ip of alerts [")
        assert why.endswith("] (sshd: failed password, 8 alerts)")
        assert all(a in why for a in inc.alert_ids[:5])
        [run] = s.store.runs(t.id)
        assert run.context["block"]["justification"] == {"127.0.0.66": why}
    finally:
        s.close()


def test_an_inventory_address_as_actor_is_held_not_blocked(
        tmp_path: Path, http_server: Server, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same day, with the DB server itself as the parsed client: nothing is blocked; the ticket waits for an
    analyst with the reason."""
    from pipeline.soar.actions import handle_replay

    lines = [f"Nov 24 06:39:1{i} vm sshd[500{i}]: Failed password for root from 10.20.5.10 port 5000{i} ssh2"
             for i in range(8)]
    res = _replay(tmp_path, lines)
    fw, soc = http_server(), http_server()
    chans = _shipped(tmp_path, fw, soc, LAB)
    monkeypatch.setenv("MDR_RESPONSE_SAFETY", str(tmp_path / "response-safety.yaml"))
    handle_replay(res, tmp_path / "out", db_url, channels=chans, playbooks=ROOT / "playbooks",
                  inventories=lambda t: INVENTORY)
    assert fw.requests == []
    s = Soar.open(db_url, channels=chans, playbooks=ROOT / "playbooks")
    try:
        [inc] = res.open_incidents
        t = s.store.require(inc.incident_id)
        [(_, status, text)] = events(s, t.id, "approval")
        assert status == "waiting" and "10.20.5.10 (in the tenant's own inventory (asset db-01, critical))" in text
        assert [r.status for r in s.store.runs(t.id)] == ["waiting"]
    finally:
        s.close()


# ---- the runner: hold, approve, deny ------------------------------------------------------------------------
def test_held_inventory_target_is_blocked_once_an_analyst_approves(make_soar: Callable[..., Soar],
                                                                  http_server: Server) -> None:
    fw, hook = http_server(), http_server()
    soar = make_soar([playbook("web", BLOCK)], channels(fw, hook), safety=safety())
    r = soar.handle([incident(1, src=["198.51.100.7", "10.20.5.10"])])[0]
    assert soar.runner.drain(10)
    assert blocked(fw) == ["198.51.100.7"] and hook.requests == []  # the run waits at the block step
    [(_, status, text)] = events(soar, r.ticket_id, "approval")
    assert status == "waiting" and "block_ip held for approval: 10.20.5.10 (in the tenant's own inventory" in text
    assert "done: 198.51.100.7" in text
    soar.runner.decide(r.ticket_id, True, "ana", "confirmed: the DB server is compromised")
    assert soar.runner.drain(10)
    assert blocked(fw) == ["198.51.100.7", "10.20.5.10"] and len(hook.requests) == 1
    resp = [(s, e.data["target"]) for e in soar.store.timeline(r.ticket_id) if e.kind == "response"
            for s in [e.status]]
    assert resp == [("automated", "198.51.100.7"), ("approved", "10.20.5.10")]
    step = [t for _, s, t in events(soar, r.ticket_id, "step") if t.startswith("web/block")]
    assert step == ["web/block (block_ip): block_ip: 10.20.5.10 via fw (approved by ana)"]


def test_loopback_and_link_local_are_refused_by_default_and_a_denial_lets_the_run_go_on(
        make_soar: Callable[..., Soar], http_server: Server) -> None:
    fw, hook = http_server(), http_server()
    soar = make_soar([playbook("web", BLOCK)], channels(fw, hook), safety=Safety(Policy(), None))
    r = soar.handle([incident(1, src=["127.0.0.66", "169.254.169.254", "fe80::1", "::ffff:127.0.0.1",
                                  "203.0.113.9"])])[0]
    assert soar.runner.drain(10)
    assert blocked(fw) == ["203.0.113.9"]
    [(_, _, text)] = events(soar, r.ticket_id, "approval")
    for held in ("127.0.0.66 (loopback address)", "169.254.169.254 (link-local address)",
                 "fe80::1 (link-local address)", "::ffff:127.0.0.1 (loopback address)"):
        assert held in text
    soar.runner.decide(r.ticket_id, False, "ana")
    assert soar.runner.drain(10)
    assert blocked(fw) == ["203.0.113.9"] and len(hook.requests) == 1  # denied, and the playbook went on
    kinds = [(s, t.split(":")[0]) for _, s, t in events(soar, r.ticket_id, "step")]
    assert kinds == [("denied", "web/block (block_ip)"), ("ok", "web/after (notify)")]
    assert [x.status for x in soar.store.runs(r.ticket_id)] == ["done"]


def test_unanswered_hold_is_denied_at_its_deadline(make_soar: Callable[..., Soar], http_server: Server) -> None:
    from datetime import timedelta

    from pipeline.soar.models import utcnow

    fw, hook = http_server(), http_server()
    soar = make_soar([playbook("web", BLOCK)], channels(fw, hook), safety=safety({"approval_timeout": "1h"}))
    r = soar.handle([incident(1, src=["10.20.5.10"])])[0]
    assert soar.runner.drain(10) and fw.requests == []
    soar.tick(utcnow() + timedelta(hours=2))
    assert soar.runner.drain(10)
    assert fw.requests == [] and any("system:timeout" in t for _, _, t in events(soar, r.ticket_id, "approval"))


def test_automated_blocks_are_rate_limited_per_tenant(make_soar: Callable[..., Soar], http_server: Server) -> None:
    fw, hook = http_server(), http_server()
    soar = make_soar([playbook("web", BLOCK)], channels(fw, hook),
                     safety=safety({"rate_limit": {"actions": 3, "window": "1h"}}))
    first = soar.handle([incident(1, src=["203.0.113.1", "203.0.113.2"])])[0]
    assert soar.runner.drain(10)
    second = soar.handle([incident(2, src=["203.0.113.3", "203.0.113.4"])])[0]
    assert soar.runner.drain(10)
    other = soar.handle([incident(3, tenant="acme", src=["203.0.113.5", "203.0.113.6"])])[0]
    assert soar.runner.drain(10)
    assert sorted(blocked(fw)) == ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.5", "203.0.113.6"]
    assert events(soar, first.ticket_id, "approval") == [] and events(soar, other.ticket_id, "approval") == []
    [(_, status, text)] = events(soar, second.ticket_id, "approval")
    assert status == "waiting" and "203.0.113.4 (rate limit: 2 automated actions for tenant shop" in text
    assert "(limit 3)" in text
    soar.runner.decide(second.ticket_id, True, "ana")  # beyond the budget, an analyst may still block
    assert soar.runner.drain(10)
    assert blocked(fw)[-1] == "203.0.113.4"


def test_a_retried_step_does_not_spend_the_budget_twice(make_soar: Callable[..., Soar],
                                                      http_server: Server) -> None:
    from tests.soar.servers import Reply

    calls: list[int] = []

    def flaky(s: Any) -> Reply:
        calls.append(1)
        return Reply(503 if len(calls) == 1 else 200, {})

    fw, hook = http_server(flaky), http_server()
    steps = [{**BLOCK[0], "retry": {"attempts": 3, "backoff": "50ms"}}, BLOCK[1]]
    soar = make_soar([playbook("web", steps)], channels(fw, hook),
                     safety=safety({"rate_limit": {"actions": 1, "window": "1h"}}))
    r = soar.handle([incident(1, src=["203.0.113.1"])])[0]
    assert soar.runner.drain(10)
    assert blocked(fw) == ["203.0.113.1", "203.0.113.1"] and events(soar, r.ticket_id, "approval") == []
    assert len([e for e in soar.store.timeline(r.ticket_id) if e.kind == "response"]) == 1


def test_protect_lists_hold_targets(make_soar: Callable[..., Soar], http_server: Server) -> None:
    fw, hook = http_server(), http_server()
    soar = make_soar([playbook("web", BLOCK)], channels(fw, hook, protect=["198.51.100.0/24"]),
                     safety=safety({"protect": ["203.0.113.0/28"],
                                    "tenants": {"shop": {"protect": ["192.0.2.1"]}}}))
    r = soar.handle([incident(1, src=["203.0.113.5", "198.51.100.9", "192.0.2.1", "192.0.2.2"])])[0]
    assert soar.runner.drain(10)
    assert blocked(fw) == ["192.0.2.2"]
    [(_, _, text)] = events(soar, r.ticket_id, "approval")
    assert "203.0.113.5 (on the protect list (test-policy))" in text
    assert "198.51.100.9 (on the channel's protect list)" in text and "192.0.2.1 (on the protect list" in text


def test_isolating_an_inventory_host_needs_an_analyst(make_soar: Callable[..., Soar], http_server: Server) -> None:
    edr = http_server()
    steps = [{"id": "isolate", "isolate_host": {"channel": "edr", "hosts": "{{ incident.entities.hosts }}"}}]
    soar = make_soar([playbook("host", steps)], {"edr": {"type": "response_api", "url": edr.url}},
                     safety=safety())
    r = soar.handle([incident(1, hosts=["web-01", "attacker-box", "localhost"])])[0]
    assert soar.runner.drain(10)
    assert [q.json["host"] for q in edr.requests] == ["attacker-box"]
    [(_, _, text)] = events(soar, r.ticket_id, "approval")
    assert "web-01 (in the tenant's own inventory (asset web-01, medium))" in text
    assert "localhost (the platform's own host)" in text


def test_dry_run_shows_what_would_be_held(http_server: Server, tmp_path: Path) -> None:
    fw, hook = http_server(), http_server()
    write_yaml(tmp_path / "pb" / "web.yaml", playbook("web", BLOCK))
    pbs = load_playbooks(tmp_path / "pb", channels={"fw", "hook"})
    chans = Channels({"channels": channels(fw, hook)}, dry_run=True)
    [(_, results)] = dry_run(incident(1, src=["10.20.5.10", "203.0.113.9"]), pbs, chans, safety=safety())
    [res] = [x for s, x in results if s.id == "block"]
    assert res.status == "dry-run" and "would block_ip 203.0.113.9 and hold for approval 10.20.5.10" in res.detail
    assert fw.requests == []


# ---- the rules themselves ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "kind", "reason"), [
    ("127.0.0.66", "ip", "loopback address"), ("::1", "ip", "loopback address"),
    ("169.254.169.254", "ip", "link-local address"), ("fe80::1%eth0", "ip", "link-local address"),
    ("224.0.0.1", "ip", "multicast address"), ("0.0.0.0", "ip", "unspecified address"),
    ("255.255.255.255", "ip", "reserved address"), ("::ffff:10.20.5.10", "ip", "in the tenant's own inventory"),
    ("10.20.5.10", "ip", "in the tenant's own inventory (asset db-01, critical)"),
    ("8.8.8.8", "ip", "on the protect list"), ("db-01", "host", "in the tenant's own inventory"),
    ("SHOP.example.", "host", "in the tenant's own inventory (asset web-01"), ("localhost", "host", "platform's own"),
    ("web-01; rm -rf /", "ip", "not an IP address"), ("203.0.113.9", "ip", None), ("attacker-box", "host", None),
])
def test_refusal_reasons(target: str, kind: str, reason: str | None) -> None:
    policy = load_policy(ROOT / "playbooks" / "response-safety.yaml")
    got = refusal(policy, INVENTORY, target, kind)
    assert (got is None) if reason is None else (got is not None and reason in got), got


def test_the_platforms_own_addresses_are_refused() -> None:
    me = socket.gethostname()
    assert refusal(Policy(), None, me, "host") == "the platform's own host"
    assert refusal(parse_policy({"platform": ["192.0.2.0/24", "collector-1"]}, "p"), None, "192.0.2.7", "ip") == \
        "the platform's own address"
    assert refusal(parse_policy({"platform": ["collector-1"]}, "p"), None, "Collector-1", "host") == \
        "the platform's own host"
    assert refusal(parse_policy({"platform_auto": False}, "p"), None, me, "host") is None


def test_private_addresses_can_be_refused_per_tenant() -> None:
    p = parse_policy({"tenants": {"bank": {"refuse": ["loopback", "private"], "inventory": False}}}, "p")
    assert refusal(p.for_tenant("bank"), INVENTORY, "10.1.2.3", "ip") == "private address"
    assert refusal(p.for_tenant("bank"), INVENTORY, "10.20.5.10", "ip") == "private address"
    assert refusal(p.for_tenant("shop"), None, "10.1.2.3", "ip") is None
    assert ipaddress.ip_address("10.1.2.3").is_private


@pytest.mark.parametrize(("doc", "message"), [
    ({"refuse": ["loopback", "everything"]}, "refuse: a list of"),
    ({"protect": "8.8.8.8"}, "protect: a list"),
    ({"protect": ["not a host!"]}, "not a CIDR nor a host name"),
    ({"rate_limit": {"actions": -1}}, "rate_limit.actions"),
    ({"rate_limit": {"window": "soon"}}, "rate_limit.window: not a duration"),
    ({"tenants": {"shop": {"platform": []}}}, "tenants.shop.: unknown key(s) ['platform']"),
    ({"blocklist": []}, "unknown key(s) ['blocklist']"),
])
def test_bad_policy_files_are_rejected_with_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(doc, "safety.yaml")
    assert message in str(e.value) and str(e.value).startswith("safety.yaml")


def test_policy_file_is_found_in_mdr_home_before_the_shipped_one(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MDR_RESPONSE_SAFETY", raising=False)
    monkeypatch.setenv("MDR_HOME", str(tmp_path))
    assert load_policy().origin.endswith("playbooks/response-safety.yaml")
    write_yaml(tmp_path / "response-safety.yaml", {"rate_limit": {"actions": 5, "window": "10m"}})
    p = load_policy()
    assert p.origin == str(tmp_path / "response-safety.yaml")
    assert (p.rate_limit.actions, p.rate_limit.window) == (5, 600)


def test_justification_without_and_with_the_alerts() -> None:
    inc = incident(7, src=["203.0.113.7"])
    assert justify(inc, "203.0.113.7", "ip", None) == (
        "target 203.0.113.7 from src.ip (incident.entities.src_ips) of incident inc0007 alerts [a7-1, a7-2, a7-3] "
        "(web_attack rule, 3 alerts)")
    alerts = {aid: Alert(alert_id=aid, tenant_id="shop", source=Source("p", "v", "waf"), time=T0, received_at=T0,
                         src=Endpoint("198.51.100.1" if aid == "a7-2" else "203.0.113.7"),
                         rule=Rule(id="942100", name="SQL injection"))
              for aid in inc.alert_ids}
    assert justify(inc, "203.0.113.7", "ip", alerts.get) == (
        "target 203.0.113.7 from src.ip of alerts [a7-1, a7-3] (SQL injection, 2 alerts)")
    assert "no parsed field" in justify(inc, "192.0.2.1", "ip", alerts.get)


def test_playbooks_validate_checks_the_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.delenv("MDR_RESPONSE_SAFETY", raising=False)
    monkeypatch.setenv("MDR_HOME", str(tmp_path / "home"))
    write_yaml(tmp_path / "pb" / "web.yaml", playbook("web", [{"notify": {"channel": "soc", "text": "y"}}]))
    r = CliRunner().invoke(app, ["playbooks", "validate", str(tmp_path / "pb")])
    assert r.exit_code == 0 and "response safety: <defaults>" in r.output
    write_yaml(tmp_path / "pb" / "response-safety.yaml", {"refuse": ["everything"]})
    r = CliRunner().invoke(app, ["playbooks", "validate", str(tmp_path / "pb")])
    assert r.exit_code == 1 and "response-safety.yaml: refuse: a list of" in r.output.replace("\n", "")


def test_saved_inventories_follow_the_files_under_mdr_home(tmp_path: Path) -> None:
    """What `mdr assets import` saved is what the runner checks against, re-read when the file changes."""
    import os

    from pipeline.context.store import save_assets
    from pipeline.soar.safety import SavedInventories

    inventories = SavedInventories(tmp_path)
    assert len(inventories("shop")) == 0 and len(inventories("../etc")) == 0
    path = save_assets("shop", INVENTORY, tmp_path)
    assert inventories("shop").by_ip("10.20.5.10").name == "db-01"
    save_assets("shop", AssetInventory([Asset("db-02", ips=["10.20.5.11"])]), tmp_path)
    os.utime(path, (1, 1))  # a new modification time even on a coarse clock
    assert inventories("shop").by_ip("10.20.5.10") is None and inventories("shop").by_ip("10.20.5.11")
    assert len(inventories("acme")) == 0  # never another tenant's


def test_a_yaml_bomb_policy_is_rejected(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    lines += [f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},'
              f'*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]' for i in range(8)]
    bomb = tmp_path / "response-safety.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(PolicyError, match=r"response-safety\.yaml"):
        load_policy(bomb)
