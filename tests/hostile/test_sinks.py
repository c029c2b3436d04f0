"""Issue 13 §4: every notification sink escapes record text for its own format. Hostile records (a WAF Host
header, an sshd host, an AIDE path carrying Slack, Markdown, HTML, Jira and Rich markup, terminal control
sequences and a header-injection attempt) go through the real core, tickets and the shipped templates to
every connector, and what the local servers receive is checked: Slack (no ping, no disguised link),
DingTalk / WeCom / TheHive markdown rendered with markdown-it (no link, image or HTML), Jira wiki markup
(no link, image, macro or mention), e-mail (no injected header), webhook and log file (exact data, JSON)."""

from __future__ import annotations

import email.policy
import json
import shutil
from collections.abc import Callable
from email import message_from_string
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from tests.hostile.checks import hive, jira, jira_live, live_markup, no_control
from tests.hostile.corpus import HOST, LAB1, ROOT, SSH_HOST, write_aide, write_sshd, write_waf
from tests.soar.helpers import incident, playbook, write_yaml
from tests.soar.servers import RecordingServer, Reply, SmtpServer

pytestmark = pytest.mark.skipif(not LAB1.is_dir(), reason="samples/lab-1 not present")
Server = Callable[..., RecordingServer]
TEXT = "Hosts: {{ incident.entities.hosts | join(', ') }}; title: {{ incident.title }}"


@pytest.fixture
def sinks(http_server: Server, tmp_path: Path) -> dict[str, Any]:
    srv: dict[str, Any] = {
        "slack": http_server(lambda s: Reply(200, "ok")), "ding": http_server(lambda s: Reply(200, {"errcode": 0})),
        "wecom": http_server(lambda s: Reply(200, {"errcode": 0})), "hive": http_server(hive),
        "jira": http_server(jira), "hook": http_server(),
    }
    smtp = SmtpServer(tmp_path)
    srv["smtp"] = smtp
    srv["log"] = tmp_path / "notices.jsonl"
    channels = {
        "slack": {"type": "slack", "url": srv["slack"].url + "/services/T0/B0/hostile"},
        "ding": {"type": "dingtalk", "url": srv["ding"].url + "/robot/send?access_token=t"},
        "wecom": {"type": "wecom", "url": srv["wecom"].url + "/cgi-bin/webhook/send?key=k"},
        "hive": {"type": "thehive", "url": srv["hive"].url, "api_key": "hive-key"},
        "jira": {"type": "jira", "url": srv["jira"].url, "project": "SEC", "token": "jira-token"},
        "hook": {"type": "webhook", "url": srv["hook"].url + "/in", "secret": "hook-secret"},
        "mail": {"type": "email", "host": "127.0.0.1", "port": smtp.port, "from": "mdr@soc.example",
                 "to": "ops@shop.example", "ca_file": str(smtp.cert)},
        "log": {"type": "log", "path": str(srv["log"])},
    }
    srv["channels"] = write_yaml(tmp_path / "channels.yaml", {"channels": channels,
                                                              "escalation": {"tiers": [["slack", "ding"]]}})
    pbs = tmp_path / "playbooks"
    shutil.copytree(ROOT / "playbooks" / "templates", pbs / "templates")
    steps = [{"notify": {"channel": c, "template": "incident"}} for c in ("slack", "ding", "wecom", "mail", "hook",
                                                                          "log")]
    steps += [{"notify": {"channel": c, "text": TEXT}} for c in ("slack", "ding", "wecom", "mail")]
    steps += [{"ticket": {"action": "open", "channel": c, "template": "ticket"}} for c in ("hive", "jira")]
    steps += [{"ticket": {"action": "update", "channel": c, "text": TEXT}} for c in ("hive", "jira")]
    write_yaml(pbs / "all-sinks.yaml", playbook("all-sinks", steps))
    srv["playbooks"] = pbs
    yield srv
    smtp.close()


def hostile_replay(tmp_path: Path) -> Any:
    from pipeline.core.engine import Core
    from pipeline.replay import replay
    from pipeline.rules.usecase import load_usecases

    d = tmp_path / "in"
    write_waf(d)
    write_aide(d)
    write_sshd(d / "ssh", host=SSH_HOST)
    # One host, one name (docs/assets.md): the records are named after their collection point, so the hostile
    # host name reaches every title as the collection point's name (what a producer's envelope may carry);
    # the syslog name sshd wrote stays on its alerts as `reported_host`
    return replay([str(d)], Core(load_usecases(str(ROOT / "usecases"))), "shop", HOST)


def test_hostile_incidents_reach_every_sink_escaped(sinks: dict[str, Any], tmp_path: Path) -> None:
    from pipeline.soar.actions import handle_replay

    res = hostile_replay(tmp_path)
    assert all(HOST in i.title for i in res.open_incidents)
    assert any(a.extra.get("reported_host") == SSH_HOST for a in res.alerts)
    done = handle_replay(res, tmp_path / "out", f"sqlite:///{tmp_path}/soar.db", channels=sinks["channels"],
                         playbooks=sinks["playbooks"])
    assert done.errors == [] and done.settled
    tickets = [json.loads(x) for x in done.path.read_text().splitlines()]
    failed = [e["text"] for t in tickets for e in t["timeline"] if e["status"] == "failed"]
    assert not failed, failed
    n = len(tickets)

    # Slack: &, <, > as entities in every text; the section is verbatim
    slack = sinks["slack"].requests
    assert len(slack) == 2 * n
    for r in slack:
        b = r.json
        texts = [b["text"], b["blocks"][0]["text"]["text"], b["blocks"][1]["text"]["text"]]
        assert b["blocks"][1]["text"]["verbatim"] is True
        for t in texts:
            assert "<" not in t and ">" not in t and no_control(t), t
    assert any("&lt;!channel&gt;" in r.json["blocks"][1]["text"]["text"] for r in slack)
    assert any("&lt;https://evil.example/|click here&gt;" in r.json["text"] for r in slack)

    # DingTalk, WeCom: markdown without live links, images or HTML; the hostile text is shown
    ding = [r.json["markdown"] for r in sinks["ding"].requests]
    wecom = [r.json["markdown"]["content"] for r in sinks["wecom"].requests]
    assert len(ding) == len(wecom) == 2 * n
    for md in [d["text"] for d in ding] + wecom:
        assert live_markup(md) == [] and no_control(md), md
    assert all(no_control(d["title"]) for d in ding)
    rendered = MarkdownIt("commonmark").render("\n\n".join(d["text"] for d in ding))
    assert "[md](http://evil.example/)" in rendered and "&lt;b&gt;evil&lt;/b&gt;.example" in rendered

    # TheHive: descriptions and comments are markdown rendered with HTML: none live; titles plain
    alerts = [r.json for r in sinks["hive"].requests if r.path == "/api/v1/alert"]
    comments = [r.json["message"] for r in sinks["hive"].requests if r.path.endswith("/comment")]
    assert len(alerts) == len(comments) == n
    for md in [a["description"] for a in alerts] + comments:
        assert live_markup(md) == [] and no_control(md), md
    assert all(no_control(a["title"]) for a in alerts)
    assert any(HOST in v["data"] for a in alerts for v in a["observables"])  # observables: exact values

    # Jira: wiki markup escaped in descriptions and comments, plain summary
    created = [r.json["fields"] for r in sinks["jira"].requests if r.path == "/rest/api/2/issue"]
    jcomments = [r.json["body"] for r in sinks["jira"].requests if r.path.endswith("/comment")]
    assert len(created) == len(jcomments) == n
    for text in [f["description"] for f in created] + jcomments:
        assert jira_live(text) == [] and no_control(text), text
    assert all(no_control(f["summary"]) for f in created)

    # e-mail: the CR LF in the title cannot add a header; controls visible in subject and body
    mails = [message_from_string(m["data"], policy=email.policy.default) for m in sinks["smtp"].messages]
    assert len(mails) == 2 * n
    for m in mails:
        assert m["Bcc"] is None and no_control(str(m["Subject"]))
        assert no_control(m.get_content().replace("\r\n", "\n"))
    assert any("\\r\\nBcc: victim@evil.example" in str(m["Subject"]) for m in mails)

    # webhook and log file: machine readers get the exact values, JSON-encoded; the log file is terminal-safe
    hooks = [r.json for r in sinks["hook"].requests]
    assert len(hooks) == n and any(HOST in h["title"] and HOST in h["text"] for h in hooks)
    log_text = sinks["log"].read_text(encoding="utf-8")
    assert no_control(log_text.replace("\r\n", "")) and "\x1b" not in log_text
    assert any(HOST in json.loads(line)["title"] for line in log_text.splitlines())


def test_escalation_notices_are_escaped(sinks: dict[str, Any], tmp_path: Path) -> None:
    from pipeline.soar.connectors import load_channels
    from pipeline.soar.sla import Escalator
    from pipeline.soar.templates import Templates
    from pipeline.soar.tickets import TicketStore

    store = TicketStore(f"sqlite:///{tmp_path}/esc.db")
    try:
        t = store.upsert_incident(incident(1, title=f"Web attack against {HOST}", hosts=[HOST])).ticket
        esc = Escalator(store, load_channels(sinks["channels"]), Templates(sinks["playbooks"] / "templates"))
        done = esc.escalate_now(t, reason=f"asked by {HOST}")
        assert done is not None and [n["status"] for n in done.notices] == ["ok", "ok"]
    finally:
        store.close()
    [s] = [r.json for r in sinks["slack"].requests]
    assert all("<" not in x["text"]["text"] for x in s["blocks"])
    assert "&lt;!channel&gt;" in s["blocks"][1]["text"]["text"]
    [d] = [r.json["markdown"]["text"] for r in sinks["ding"].requests]
    assert live_markup(d) == [] and no_control(d)


def test_plain_text_message_is_escaped_whole(http_server: Server) -> None:
    """A message whose text is plain (not rendered for the channel) is escaped as a whole by the connector."""
    from pipeline.soar.connectors import Message
    from pipeline.soar.connectors.slack import Slack
    from pipeline.soar.connectors.wecom import WeCom

    srv = http_server(lambda s: Reply(200, {"errcode": 0}))
    msg = Message(title=HOST, text=f"line one {HOST}\nline two <!here>")
    Slack("s", {"url": srv.url + "/s"}).notify(msg)
    WeCom("w", {"url": srv.url + "/w?key=k"}).notify(msg)
    slack, wecom = srv.requests[0].json, srv.requests[1].json["markdown"]["content"]
    assert "<" not in json.dumps(slack) and "&lt;!here&gt;" in slack["blocks"][1]["text"]["text"]
    assert live_markup(wecom) == [] and wecom.endswith("\nline two &lt;!here&gt;")  # its lines kept


def test_response_api_gets_exact_values(http_server: Server) -> None:
    """A machine API receives the exact values as JSON (escaping is the JSON encoder's job)."""
    from pipeline.soar.connectors.response_api import ResponseApi

    srv = http_server()
    ResponseApi("fw", {"url": srv.url}).block_ip("203.0.113.7", duration=60, reason=HOST, ref="inc1")
    assert srv.requests[0].json["reason"] == HOST
