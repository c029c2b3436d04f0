"""Every connector against a real local server that checks the request (payload, auth, signature), plus
failures: timeouts and 5xx retried with backoff, 4xx not, secrets never in error texts."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time
from collections.abc import Callable
from email import message_from_string
from pathlib import Path

import pytest

from pipeline.soar.connectors import Channels, ChannelUnavailable, ConnectorError, Message, TicketInfo
from pipeline.soar.connectors.base import RetryPolicy, Secrets
from pipeline.soar.connectors.dingtalk import DingTalk
from pipeline.soar.connectors.jira import Jira
from pipeline.soar.connectors.response_api import ResponseApi
from pipeline.soar.connectors.slack import Slack
from pipeline.soar.connectors.smtp import Email
from pipeline.soar.connectors.thehive import TheHive
from pipeline.soar.connectors.webhook import Webhook
from pipeline.soar.connectors.wecom import WeCom
from pipeline.textsafe import markdown
from tests.soar.servers import RecordingServer, Reply, Seen, SmtpServer

Server = Callable[..., RecordingServer]
MSG = Message(title="[P2] Webshell on web-01", text="**cmd.php** written\n- source 203.0.113.7", priority="P2",
              tenant="shop", incident_id="inc0001", ticket_id=7, markup="markdown")
INFO = TicketInfo(ticket_id=7, incident_id="inc0001", tenant="shop", title="Webshell on web-01", text="details",
                  priority="P1", category="webshell", created_ms=1764000000000, tags=["mdr"],
                  observables=[("ip", "203.0.113.7"), ("hostname", "web-01")])
FAST = RetryPolicy(attempts=3, backoff=0.05, factor=2.0)


def test_dingtalk_signature_as_documented(http_server: Server) -> None:
    secret = "SEC0123456789abcdef"

    def check(s: Seen) -> Reply:
        ts, sign = s.query["timestamp"][0], s.query["sign"][0]  # parse_qs url-decodes the sign
        want = base64.b64encode(hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest())
        ok = s.query["access_token"] == ["tok42"] and sign == want.decode() and abs(int(ts) / 1000 - time.time()) < 60
        return Reply(200, {"errcode": 0, "errmsg": "ok"} if ok else {"errcode": 310000, "errmsg": "sign not match"})

    srv = http_server(check)
    ding = DingTalk("customer", {"url": srv.url + "/robot/send?access_token=tok42", "secret": secret,
                                 "at_mobiles": ["13800000000"]})
    assert ding.notify(MSG) == {"http_status": 200}
    body = srv.requests[0].json
    assert body["msgtype"] == "markdown" and body["markdown"]["title"] == MSG.title
    assert "cmd.php" in body["markdown"]["text"] and body["at"]["atMobiles"] == ["13800000000"]
    bad = DingTalk("customer", {"url": srv.url + "/robot/send?access_token=tok42", "secret": "SECwrong"})
    with pytest.raises(ConnectorError, match="errcode 310000") as e:
        bad.notify(MSG, retry=FAST)
    assert not e.value.retryable and "tok42" not in str(e.value) and "SECwrong" not in str(e.value)


def test_dingtalk_rate_limit_is_retried(http_server: Server) -> None:
    answers = iter([{"errcode": 130101, "errmsg": "send too fast"}, {"errcode": 0, "errmsg": "ok"}])
    srv = http_server(lambda s: Reply(200, next(answers)))
    DingTalk("c", {"url": srv.url + "/robot/send?access_token=t"}).notify(MSG, retry=FAST)
    assert len(srv.requests) == 2


def test_wecom_markdown(http_server: Server) -> None:
    srv = http_server(lambda s: Reply(200, {"errcode": 0, "errmsg": "ok"} if s.query.get("key") == ["k1"]
                                      else {"errcode": 93000, "errmsg": "invalid webhook url"}))
    WeCom("w", {"url": srv.url + "/cgi-bin/webhook/send?key=k1"}).notify(MSG)
    body = srv.requests[0].json
    assert body == {"msgtype": "markdown", "markdown": {"content": f"**{markdown(MSG.title)}**\n{MSG.text}"}}
    with pytest.raises(ConnectorError, match="93000"):
        WeCom("w", {"url": srv.url + "/cgi-bin/webhook/send?key=nope"}).notify(MSG)


def test_slack_blocks(http_server: Server) -> None:
    srv = http_server(lambda s: Reply(200, "ok"))
    Slack("soc", {"url": srv.url + "/services/T000/B000/XXXX"}).notify(MSG)
    body = srv.requests[0].json
    assert body["text"] == "[P2] [P2] Webshell on web-01"
    assert body["blocks"][0]["type"] == "header" and body["blocks"][1]["text"]["type"] == "mrkdwn"


def test_webhook_hmac_over_timestamp_and_body(http_server: Server) -> None:
    srv = http_server()
    Webhook("hook", {"url": srv.url + "/in", "secret": "s3cr3t-value"}).notify(MSG)
    s = srv.requests[0]
    ts = s.headers["x-mdr-timestamp"]
    assert s.headers["x-mdr-signature"] == "sha256=" + hmac.new(b"s3cr3t-value", ts.encode() + b"." + s.body,
                                                                hashlib.sha256).hexdigest()
    assert s.json["incident_id"] == "inc0001" and s.json["event"] == "incident"


def test_thehive_alert_promotion_comment_and_duplicate(http_server: Server) -> None:
    def hive(s: Seen) -> Reply:
        if s.headers.get("authorization") != "Bearer hive-key":
            return Reply(401, {"type": "AuthenticationError"})
        if s.path == "/api/v1/alert":
            if s.json["sourceRef"] == "dup":
                return Reply(400, {"type": "CreateError", "message": "Alert already exists"})
            return Reply(201, {"_id": "~4096", "_type": "Alert"})
        if s.path == "/api/v1/query":
            return Reply(200, [{"_id": "~777"}])
        if s.path == "/api/v1/alert/~4096/case":
            return Reply(201, {"_id": "~8192", "_type": "Case", "number": 3})
        if s.path.endswith("/comment"):
            return Reply(201, {"_id": "~c1"})
        return Reply(404, {})

    srv = http_server(hive)
    th = TheHive("casebook", {"url": srv.url, "api_key": "hive-key", "organisation": "soc", "promote": True})
    ref = th.open_ticket(INFO)
    assert ref == {"alert_id": "~4096", "case_id": "~8192"}
    alert = srv.requests[0].json
    assert srv.requests[0].headers["x-organisation"] == "soc"
    assert alert["sourceRef"] == "inc0001" and alert["source"] == "mdr-pipeline" and alert["severity"] == 4
    assert {"dataType": "ip", "data": "203.0.113.7"} in alert["observables"] and alert["date"] == INFO.created_ms
    th.update_ticket(ref, "customer informed")
    assert srv.requests[-1].path == "/api/v1/case/~8192/comment"
    assert srv.requests[-1].json == {"message": "customer informed"}
    plain = TheHive("casebook", {"url": srv.url, "api_key": "hive-key"})
    assert plain.open_ticket(dataclasses.replace(INFO, incident_id="dup")) == {"alert_id": "~777"}
    query = srv.requests[-1].json["query"]
    assert query[0] == {"_name": "listAlert"} and {"_eq": {"_field": "sourceRef", "_value": "dup"}} in query[1]["_and"]
    plain.update_ticket({"alert_id": "~777"}, "note")
    assert srv.requests[-1].path == "/api/v1/alert/~777/comment"
    with pytest.raises(ConnectorError, match="HTTP 401") as e:
        TheHive("casebook", {"url": srv.url, "api_key": "wrong-key"}).open_ticket(INFO)
    assert not e.value.retryable and "wrong-key" not in str(e.value)


def test_jira_search_create_comment(http_server: Server) -> None:
    issues: dict[str, dict] = {}

    def jira(s: Seen) -> Reply:
        want = "Basic " + base64.b64encode(b"ana@example.com:api-token").decode()
        if s.headers.get("authorization") != want:
            return Reply(401, {"errorMessages": ["unauthorized"]})
        if s.path == "/rest/api/2/search":
            label = s.query["jql"][0].split('"')[1]
            found = [{"key": k, "id": "1"} for k, f in issues.items() if label in f["labels"]]
            return Reply(200, {"issues": found, "total": len(found)})
        if s.path == "/rest/api/2/issue":
            key = f"SEC-{len(issues) + 1}"
            issues[key] = s.json["fields"]
            return Reply(201, {"id": "10001", "key": key, "self": f"{srv.url}/rest/api/2/issue/10001"})
        if s.path.endswith("/comment"):
            return Reply(201, {"id": "5"})
        return Reply(404, {})

    srv = http_server(jira)
    j = Jira("jira", {"url": srv.url, "project": "SEC", "token": "api-token", "username": "ana@example.com"})
    ref = j.open_ticket(INFO)
    assert ref == {"key": "SEC-1", "id": "10001"}
    fields = issues["SEC-1"]
    assert fields["project"] == {"key": "SEC"} and fields["issuetype"] == {"name": "Task"}
    assert fields["priority"] == {"name": "Highest"} and "mdr-inc0001" in fields["labels"]
    assert j.open_ticket(INFO)["key"] == "SEC-1"  # found by its label: no second issue
    assert len(issues) == 1
    assert j.update_ticket(ref, "blocked at the firewall") == {"comment_id": "5"}
    assert srv.requests[-1].path == "/rest/api/2/issue/SEC-1/comment"
    assert srv.requests[-1].json == {"body": "blocked at the firewall"}


def test_response_api_block_isolate_protect(http_server: Server) -> None:
    srv = http_server(lambda s: Reply(200 if s.headers.get("authorization") == "Bearer fw-token" else 403, {}))
    fw = ResponseApi("firewall", {"url": srv.url + "/api", "token": "fw-token", "protect": ["10.0.0.0/8"]})
    assert fw.block_ip("203.0.113.7", duration=3600, reason="r", ref="inc0001") == {"ip": "203.0.113.7",
                                                                                    "http_status": 200}
    assert srv.requests[0].path == "/api/block"
    assert srv.requests[0].json == {"action": "block_ip", "ip": "203.0.113.7", "duration": 3600, "reason": "r",
                                    "ref": "inc0001"}
    assert fw.block_ip("10.1.2.3", duration=60, reason="r", ref="x")["skipped"] == "protected address"
    assert len(srv.requests) == 1
    with pytest.raises(ConnectorError, match="not an IP"):
        fw.block_ip("web-01; rm -rf /", duration=60, reason="r", ref="x")
    fw.isolate_host("web-01", reason="webshell", ref="inc0001")
    assert srv.requests[-1].path == "/api/isolate" and srv.requests[-1].json["host"] == "web-01"


def test_timeouts_and_5xx_are_retried_4xx_not(http_server: Server) -> None:
    calls = {"n": 0}

    def flaky(s: Seen) -> Reply:
        calls["n"] += 1
        return Reply(502, {}) if calls["n"] < 3 else Reply(200, {})

    srv = http_server(flaky)
    t0 = time.perf_counter()
    Webhook("h", {"url": srv.url}).notify(MSG, retry=FAST)
    assert len(srv.requests) == 3 and time.perf_counter() - t0 >= 0.05 + 0.1  # backoff 0.05, then 0.1
    slow = http_server(lambda s: Reply(200, {}, delay=1.0))
    with pytest.raises(ConnectorError, match=r"timed out after 0\.2s") as e:
        Webhook("h", {"url": slow.url}).notify(MSG, timeout=0.2, retry=FAST)
    assert e.value.retryable and len(slow.wait(3)) == 3
    bad = http_server(lambda s: Reply(400, {"error": "bad payload"}))
    with pytest.raises(ConnectorError, match="HTTP 400") as e:
        Webhook("h", {"url": bad.url}).notify(MSG, retry=FAST)
    assert not e.value.retryable and len(bad.requests) == 1
    busy = http_server(lambda s: Reply(429, {}))
    with pytest.raises(ConnectorError, match="HTTP 429"):
        Webhook("h", {"url": busy.url}).notify(MSG, retry=FAST)
    assert len(busy.requests) == 3
    with pytest.raises(ConnectorError, match="ConnectError") as e:
        Webhook("h", {"url": "http://127.0.0.1:9/closed"}).notify(MSG, retry=RetryPolicy(attempts=2, backoff=0.01))
    assert e.value.retryable


def test_secrets_from_env_and_file_never_in_errors(http_server: Server, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    srv = http_server(lambda s: Reply(500, {"echo": s.query.get("access_token", [""])[0]}))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("ding_url: " + srv.url + "/robot/send?access_token=filetoken123\n")
    monkeypatch.setenv("MDR_TEST_SIGN", "SECfromenv999")
    chans = Channels({"channels": {"d": {"type": "dingtalk", "url": "secret:ding_url", "secret": "env:MDR_TEST_SIGN",
                                         "retry": {"attempts": 1}},
                                   "off": {"type": "slack", "url": "env:MDR_TEST_UNSET"}}},
                     secrets=Secrets(secrets))
    with pytest.raises(ConnectorError) as e:
        chans.get("d").notify(MSG)
    text = str(e.value)
    assert "HTTP 500" in text and "filetoken123" not in text and "SECfromenv999" not in text
    assert text.startswith(f"POST {srv.url}/***")
    with pytest.raises(ChannelUnavailable, match="MDR_TEST_UNSET is not set"):
        chans.get("off")
    assert not chans.available("off") and chans.available("d")
    with pytest.raises(ChannelUnavailable, match="no channel named"):
        chans.get("nope")


def test_per_tenant_channel_override(http_server: Server) -> None:
    a, b = http_server(), http_server()
    chans = Channels({"channels": {"soc": {"type": "webhook", "url": a.url}},
                      "tenants": {"acme": {"soc": {"type": "webhook", "url": b.url}}}})
    chans.get("soc", "shop").notify(MSG)
    chans.get("soc", "acme").notify(MSG)
    assert len(a.requests) == 1 and len(b.requests) == 1


def test_email_starttls_and_auth(tmp_path: Path) -> None:
    smtp = SmtpServer(tmp_path, username="mdr", password="mail-pass")
    try:
        mail = Email("customer-email", {"host": "127.0.0.1", "port": smtp.port, "from": "mdr@soc.example",
                                        "to": "ops@shop.example, cto@shop.example", "username": "mdr",
                                        "password": "mail-pass", "ca_file": str(smtp.cert)})
        res = mail.notify(MSG)
        assert res["recipients"] == 2
        [m] = smtp.messages
        assert m["tls"] and m["to"] == ["ops@shop.example", "cto@shop.example"]
        parsed = message_from_string(m["data"])
        assert parsed["Subject"] == f"[P2] {MSG.title}" and parsed["X-MDR-Incident"] == "inc0001"
        assert "cmd.php" in parsed.get_payload(decode=True).decode()
        wrong = Email("e", {"host": "127.0.0.1", "port": smtp.port, "from": "mdr@soc.example", "to": "x@y.z",
                            "username": "mdr", "password": "bad-pass", "ca_file": str(smtp.cert)})
        with pytest.raises(ConnectorError, match="535") as e:
            wrong.notify(MSG, retry=FAST)
        assert not e.value.retryable and "bad-pass" not in str(e.value)
        untrusted = Email("e", {"host": "127.0.0.1", "port": smtp.port, "from": "a@b.c", "to": "x@y.z"})
        with pytest.raises(ConnectorError, match="CERTIFICATE_VERIFY_FAILED"):  # never falls back to clear text
            untrusted.notify(MSG, retry=RetryPolicy(attempts=1))
        assert len(smtp.messages) == 1
    finally:
        smtp.close()


def test_email_temporary_rejection_is_retried(tmp_path: Path) -> None:
    smtp = SmtpServer(tmp_path, reject=451)
    try:
        mail = Email("e", {"host": "127.0.0.1", "port": smtp.port, "from": "a@b.c", "to": "x@y.z",
                           "ca_file": str(smtp.cert)})
        with pytest.raises(ConnectorError, match="451") as e:
            mail.notify(MSG, retry=FAST)
        assert e.value.retryable
    finally:
        smtp.close()


def test_dry_run_sends_nothing(http_server: Server) -> None:
    from pipeline.soar.connectors import DryRun

    srv = http_server()
    with pytest.raises(DryRun) as d:
        DingTalk("c", {"url": srv.url + "/robot/send?access_token=tok"}, dry_run=True).notify(MSG)
    assert d.value.request["method"] == "POST" and d.value.request["body"]["msgtype"] == "markdown"
    assert srv.requests == []
