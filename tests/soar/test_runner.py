"""Playbook runs end to end against local servers: every step in the timeline, retries with backoff,
a slow connector that does not stall other incidents, approvals (pause in the store, resume from another
process), approval timeouts, runs left by a crashed worker, idempotent starts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from pipeline.schema import Alert, Source
from pipeline.soar.actions import Soar
from pipeline.soar.models import utcnow
from pipeline.soar.runs import Runs
from tests.soar.helpers import T0, events, incident, playbook
from tests.soar.servers import RecordingServer, Reply

Server = Callable[..., RecordingServer]
FAST_RETRY = {"attempts": 3, "backoff": "50ms", "factor": 2}


def test_steps_run_in_order_and_land_in_the_timeline(make_soar: Callable[..., Soar], http_server: Server) -> None:
    hook, hive, fw = http_server(), http_server(lambda s: Reply(201, {"_id": "~1"})), http_server()
    steps = [
        {"id": "enrich", "enrich": ["asset", "intel", "related"]},
        {"id": "evidence", "collect": {"limit": 2}},
        {"id": "tell", "notify": {"channel": "hook", "template": "incident"}},
        {"id": "hive", "ticket": {"action": "open", "channel": "hive", "template": "ticket"}},
        {"id": "block", "when": "incident.outcome != 'blocked'",
         "block_ip": {"channel": "fw", "ips": "{{ incident.entities.src_ips }}", "duration": "1h"}},
        {"id": "never", "when": "incident.outcome == 'blocked'", "isolate_host": {"channel": "fw", "hosts": "x"}},
    ]
    raw = {"a1-1": Alert(alert_id="a1-1", tenant_id="shop", source=Source("p", "v", "waf"), time=T0,
                         received_at=T0, raw='{"transaction": "evil"}')}
    soar = make_soar([playbook("web", steps, categories=["web_attack"])],
                     {"hook": {"type": "webhook", "url": hook.url + "/h"},
                      "hive": {"type": "thehive", "url": hive.url, "api_key": "k"},
                      "fw": {"type": "response_api", "url": fw.url}}, evidence=raw.get)
    r = soar.handle([incident(1, src=["198.51.100.1", "198.51.100.2"])])[0]
    assert r.created and r.playbooks == ["web"]
    assert soar.runner.drain(10)
    steps_seen = events(soar, r.ticket_id, "step")
    assert [(s, t.split(" ")[0]) for _, s, t in steps_seen] == [
        ("ok", "web/enrich"), ("ok", "web/evidence"), ("ok", "web/tell"), ("ok", "web/hive"),
        ("ok", "web/block"), ("skipped", "web/never")]
    assert [k for k, _, _ in events(soar, r.ticket_id)] == [
        "created", "playbook", *["step"] * 4, "response", "response", "step", "step", "playbook"]
    assert "finished: 5 ok, 0 failed, 1 skipped" in events(soar, r.ticket_id)[-1][2]
    evidence = next(e for e in soar.store.timeline(r.ticket_id) if e.text.startswith("web/evidence"))
    assert evidence.data["alert_ids"] == ["a1-1", "a1-2"] and evidence.data["raw"] == {"a1-1": raw["a1-1"].raw}
    assert "**web_attack #1" in hook.requests[0].json["text"]
    assert hive.requests[0].json["sourceRef"] == "inc0001"
    assert [q.json["ip"] for q in fw.requests] == ["198.51.100.1", "198.51.100.2"]
    t = soar.store.require(r.ticket_id)
    assert t.external == {"hive": {"alert_id": "~1"}}
    assert [(x.playbook, x.status) for x in soar.store.runs(t.id)] == [("web", "done")]


def test_failed_step_is_retried_with_backoff_then_recorded(make_soar: Callable[..., Soar],
                                                          http_server: Server) -> None:
    down, ok = http_server(lambda s: Reply(503, {})), http_server()
    steps = [{"id": "page", "notify": {"channel": "down", "text": "x"}, "retry": FAST_RETRY},
             {"id": "after", "notify": {"channel": "ok", "text": "y"}}]
    soar = make_soar([playbook("p", steps)], {"down": {"type": "webhook", "url": down.url},
                                              "ok": {"type": "webhook", "url": ok.url}})
    r = soar.handle([incident(1)])[0]
    assert soar.runner.drain(10)
    ev = events(soar, r.ticket_id, "step")
    assert [s for _, s, _ in ev] == ["retry", "retry", "failed", "ok"]
    assert "attempt 1/3 failed: POST" in ev[0][2] and "retry in 0.05s" in ev[0][2]
    assert "retry in 0.1s" in ev[1][2] and "(after 3 attempts)" in ev[2][2]
    times = [q.at for q in down.requests]
    assert len(times) == 3 and times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.1
    assert len(ok.requests) == 1


def test_timeout_and_4xx_land_in_the_timeline(make_soar: Callable[..., Soar], http_server: Server) -> None:
    slow, bad = http_server(lambda s: Reply(200, {}, delay=1.0)), http_server(lambda s: Reply(404, {}))
    steps = [{"id": "slow", "notify": {"channel": "slow", "text": "x"}, "timeout": "200ms",
              "retry": {"attempts": 2, "backoff": "50ms"}},
             {"id": "bad", "notify": {"channel": "bad", "text": "y"}, "retry": FAST_RETRY}]
    soar = make_soar([playbook("p", steps)], {"slow": {"type": "webhook", "url": slow.url},
                                              "bad": {"type": "webhook", "url": bad.url}})
    r = soar.handle([incident(1)])[0]
    assert soar.runner.drain(10)
    ev = events(soar, r.ticket_id, "step")
    assert [s for _, s, _ in ev] == ["retry", "failed", "failed"]
    assert "timed out after 0.2s" in ev[1][2] and "(after 2 attempts)" in ev[1][2]
    assert "HTTP 404" in ev[2][2] and "attempts" not in ev[2][2]  # a 4xx is not retried
    assert len(bad.requests) == 1 and len(slow.wait(2)) == 2
    assert [x.status for x in soar.store.runs(r.ticket_id)] == ["failed"]


def test_unconfigured_channel_is_skipped_not_failed(make_soar: Callable[..., Soar]) -> None:
    soar = make_soar([playbook("p", [{"notify": {"channel": "chat", "text": "x"}}])],
                     {"chat": {"type": "dingtalk", "url": "env:MDR_TEST_NEVER_SET"}})
    r = soar.handle([incident(1)])[0]
    assert soar.runner.drain(10)
    [(_, status, text)] = events(soar, r.ticket_id, "step")
    assert status == "skipped" and "MDR_TEST_NEVER_SET is not set" in text


def test_slow_connector_does_not_stall_other_incidents(make_soar: Callable[..., Soar],
                                                       http_server: Server) -> None:
    slow, fast = http_server(lambda s: Reply(200, {}, delay=1.0)), http_server()
    soar = make_soar(
        [playbook("slow-pb", [{"notify": {"channel": "slow", "text": "x"}, "timeout": "5s"}],
                  categories=["web_attack"]),
         playbook("fast-pb", [{"notify": {"channel": "fast", "text": "y"}}], categories=["scan"])],
        {"slow": {"type": "webhook", "url": slow.url, "max_concurrency": 2},
         "fast": {"type": "webhook", "url": fast.url}}, workers=4)
    t0 = time.time()
    for n in range(6):
        soar.handle([incident(100 + n, category="web_attack")])
    for n in range(8):
        soar.handle([incident(200 + n, category="scan")])
    got = fast.wait(8, timeout=5)
    assert len(got) == 8 and max(q.at for q in got) - t0 < 0.8  # while the slow channel is still busy
    assert len(slow.requests) <= 3  # the bulkhead let at most 2 (+1 finishing) through so far
    assert soar.runner.drain(30)
    assert len(slow.requests) == 6


def test_approval_pauses_the_run_until_an_analyst_decides(make_soar: Callable[..., Soar], http_server: Server,
                                                          db_url: str) -> None:
    fw = http_server()
    chans = {"fw": {"type": "response_api", "url": fw.url}}
    pbs = [playbook("contain", [
        {"id": "ask", "wait_approval": {"prompt": "Block {{ incident.entities.src_ips | join(', ') }}?"}},
        {"id": "block", "when": "steps.ask.approved",
         "block_ip": {"channel": "fw", "ips": "{{ incident.entities.src_ips }}"}},
    ])]
    soar = make_soar(pbs, chans)
    yes = soar.handle([incident(1, src=["198.51.100.7"])])[0]
    no = soar.handle([incident(2, src=["198.51.100.8"])])[0]
    assert soar.runner.drain(10)
    assert fw.requests == []
    waiting = events(soar, yes.ticket_id, "approval")
    assert waiting[0][1] == "waiting" and "Block 198.51.100.7?" in waiting[0][2]
    assert [r.status for r in soar.store.runs(yes.ticket_id)] == ["waiting"]
    other = make_soar(pbs, chans)  # another process (the CLI) takes the decision
    assert other.runner.decide(yes.ticket_id, True, "ana", "go") != []
    assert other.runner.decide(no.incident_id, False, "ana") != []
    assert other.runner.drain(10)
    assert [q.json["ip"] for q in fw.requests] == ["198.51.100.7"]
    kinds = [(k, s) for k, s, _ in events(other, yes.ticket_id) if k in ("approval", "step")]
    assert kinds == [("approval", "waiting"), ("approval", "ok"), ("step", "ok"), ("step", "ok")]
    assert [r.status for r in other.store.runs(yes.ticket_id)] == ["done"]
    assert [r.status for r in other.store.runs(no.ticket_id)] == ["denied"]
    assert any(s == "denied" and "denied by ana" in t for _, s, t in events(other, no.ticket_id, "step"))
    with pytest.raises(Exception, match="no playbook run is waiting"):
        other.runner.decide(yes.ticket_id, True, "ana")


def test_approval_times_out(make_soar: Callable[..., Soar]) -> None:
    soar = make_soar([playbook("p", [{"id": "ask", "wait_approval": {"prompt": "?", "timeout": "100ms"}},
                                     {"collect": {}}])], {})
    r = soar.handle([incident(1)])[0]
    assert soar.runner.drain(10)
    time.sleep(0.15)
    soar.tick()  # the clock times the approval out
    assert soar.runner.drain(10)
    assert [x.status for x in soar.store.runs(r.ticket_id)] == ["denied"]
    assert any("system:timeout" in t for _, _, t in events(soar, r.ticket_id, "approval"))


def test_run_of_a_crashed_worker_is_resumed(make_soar: Callable[..., Soar], http_server: Server) -> None:
    hook = http_server()
    pbs = [playbook("p", [{"notify": {"channel": "hook", "text": "x"}}])]
    soar = make_soar(pbs, {"hook": {"type": "webhook", "url": hook.url}}, workers=1)
    up = soar.store.upsert_incident(incident(1), playbooks=["p"])  # started, but never scheduled here
    [(run_id, _)] = up.runs
    assert Runs(soar.store).claim(run_id, "dead-worker", lease=0.2) is not None  # claimed, then it died
    assert soar.tick().resumed == 0  # still leased
    time.sleep(0.3)
    assert soar.tick(utcnow()).resumed == 1  # the clock resumes it
    assert soar.runner.drain(10)
    assert len(hook.requests) == 1 and [r.status for r in soar.store.runs(up.ticket.id)] == ["done"]


def test_handle_is_idempotent_and_starts_new_matching_playbooks(make_soar: Callable[..., Soar]) -> None:
    soar = make_soar([playbook("web", [{"collect": {}}], categories=["web_attack"]),
                      playbook("urgent-web", [{"collect": {}}], categories=["web_attack"], priorities=["P1"])], {})
    inc = incident(1, priority="P3")
    assert soar.handle([inc])[0].playbooks == ["web"]
    assert soar.handle([inc])[0].playbooks == []  # the same update again (replay, restart)
    inc.version, inc.priority = 2, "P1"
    r = soar.handle([inc])[0]
    assert r.changes == ["priority P3 -> P1"] and r.playbooks == ["urgent-web"]
    assert soar.runner.drain(10)
    assert sorted(x.playbook for x in soar.store.runs(r.ticket_id)) == ["urgent-web", "web"]
    assert soar.store.count() == 1


def test_merged_update_goes_to_the_survivor(make_soar: Callable[..., Soar]) -> None:
    soar = make_soar([playbook("p", [{"collect": {}}])], {})
    survivor = incident(1, category="webshell")
    part = incident(2, category="malware", status="merged", merged_into=survivor.incident_id)
    res = soar.handle([part, survivor])  # results in input order; the survivor is written first
    assert res[1].incident_id == survivor.incident_id and res[0].merged_into == survivor.incident_id
    assert res[0].ticket_id == res[1].ticket_id and soar.store.count() == 1
    assert len(events(soar, res[1].ticket_id, "merged")) == 1


def test_escalate_step_and_sla_tick(make_soar: Callable[..., Soar], http_server: Server) -> None:
    pager = http_server()
    soar = make_soar([playbook("p", [{"ticket": {"action": "escalate", "reason": "host compromise"}}])],
                     {"pager": {"type": "webhook", "url": pager.url}})
    soar.channels.tiers = [["pager"]]
    r = soar.handle([incident(1, priority="P2")])[0]
    assert soar.runner.drain(10)
    assert len(pager.wait(1)) == 1 and pager.requests[0].json["kind"] == "escalation"
    t = soar.store.require(r.ticket_id)
    assert t.escalation_level == 1 and not t.sla_breached
    late = soar.tick(T0 + timedelta(minutes=31))  # tier 1 at P2 is done: nothing new yet
    assert late.escalations == []
    assert [e.tier for e in soar.tick(T0 + timedelta(minutes=61)).escalations] == [2]


def test_handle_writes_a_batch_and_the_newest_update_wins(make_soar: Callable[..., Soar]) -> None:
    from msgspec.structs import replace

    soar = make_soar([playbook("p", [{"collect": {}}])], {})
    old = incident(1, priority="P4")
    new = replace(old, version=2, priority="P2", alert_count=7)
    out = soar.store.apply_batch([new, old], lambda i: ["p"])  # the older update arrives late
    assert out[0].created and not out[1].created and out[1].changes == []
    t = soar.store.require(old.incident_id)
    assert (t.priority, t.incident_version, t.incident["alert_count"]) == ("P2", 2, 7)
    assert len(soar.store.runs(t.id)) == 1
    batch = [incident(n) for n in range(2, 40)] + [replace(new, version=3, priority="P1")]
    assert [r.created for r in soar.handle(batch)] == [True] * 38 + [False]
    again = soar.handle(batch)  # the same batch again (a redelivery): the same tickets, nothing new
    assert [r.ticket_id for r in again] == [soar.store.require(i.incident_id).id for i in batch]
    assert not any(r.created or r.changes or r.playbooks for r in again)
    assert soar.drain(20)
    assert soar.store.count() == 39 and soar.store.require(old.incident_id).priority == "P1"
    assert all(r.status == "done" for n in range(2, 40) for r in soar.store.runs(soar.store.require(f"inc{n:04d}").id))
