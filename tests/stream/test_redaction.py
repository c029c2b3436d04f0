"""Issue 13 §6 on the real broker: no configured secret reaches an output topic of the worker.

The worker is configured with secrets the ways operators do (a Slack webhook URL with a password and a token
in its path, a response-API token read with its file's newline, the values of the secrets file). Records that
carry them are streamed in: a WAF request with a Basic and a Bearer Authorization header, a token in its query
string and the webhook URL as its Referer; benign requests with the same credentials (the noise classifier
suppresses them); failed SSH logins whose user name is a secret (an incident, a ticket
and its playbook notifying the Slack channel, whose local server refuses the call and echoes the
Authorization header back); a line that is no record (a dead letter). Every output topic (incidents, alerts,
suppressed, dead letters, tickets) is then read back and scanned for every form of every secret.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.stream.app import ensure_topics
from pipeline.stream.config import Topics
from pipeline.stream.producer import produce
from tests.hostile.leaks import Leaks
from tests.soar.conftest import http_server
from tests.soar.helpers import write_yaml
from tests.soar.servers import RecordingServer, Reply, Seen
from tests.stream.fixtures_worker import LAB1, read_topic, start_worker, wait_until

__all__ = ["http_server"]
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
USER = "admin"
NOISE = Path(__file__).resolve().parents[1] / "fixtures" / "labeled" / "waf-pl4-sample" / "modsec_audit.jsonl.gz"
MODEL = Path(__file__).resolve().parents[2] / "models" / "noise-default"
SECRETS = {
    "slack_password": "S3cret-Slack-Pw-7",  # userinfo of the Slack webhook URL (Basic auth on the wire)
    "slack_path": "xoxSlackPath0123456",  # the token in the webhook's path
    "firewall_token": "fw-api-token-4242\n",  # read from a file with its newline
    "file_token": "partner-api-key-0099",  # a value of the secrets file
}


def echo(s: Seen) -> Reply:
    return Reply(401, f"denied: auth={s.headers.get('authorization')} path={s.path}")


def write_inputs(d: Path, slack_url: str) -> dict[str, Path]:
    s = SECRETS
    waf = d / "waf"
    waf.mkdir(parents=True)
    rec = next(json.loads(x) for x in (LAB1 / "waf" / "modsec_audit.jsonl").read_text().splitlines()
               if '"remote_address":"127.0.0.66"' in x and "ModSecurity: " in x)
    basic = base64.b64encode(f"{USER}:{s['firewall_token'].strip()}".encode()).decode()
    rec["request"]["headers"].update({"Authorization": f"Basic {basic}", "X-Api": f"Bearer {s['file_token']}",
                                      "Referer": slack_url})
    rec["request"]["request_line"] = f"GET /api?token={s['file_token']}&x=1 HTTP/1.1"
    (waf / "modsec_audit.jsonl").write_text(json.dumps(rec) + "\n")
    noise = [json.loads(x) for x in gzip.decompress(NOISE.read_bytes()).decode().splitlines()[:40]]
    for r in noise:  # benign requests the noise classifier suppresses, with the same credentials
        r["request"]["headers"].update({"Authorization": f"Basic {basic}", "Cookie": f"sid={s['file_token']}"})
    (waf / "noise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in noise))
    junk = d / "junk"
    junk.mkdir()
    (junk / "note.log").write_text(f"not a record: {slack_url} {s['slack_password']}\n")
    host = d / "host"
    host.mkdir()
    (host / "auth.log").write_text("".join(
        f"Nov 24 06:39:{10 + i} vm sshd[701]: Failed password for invalid user {s['file_token']} from 198.51.100.1 "
        f"port {40001 + i} ssh2\n" for i in range(6)))
    return {"waf": waf, "host": host, "junk": junk}


def test_no_secret_reaches_an_output_topic(kafka_broker, tmp_path: Path,
                                           http_server: Callable[..., RecordingServer]) -> None:
    b, topics = kafka_broker.bootstrap, Topics(prefix="mdr.redact.")
    ensure_topics(b, topics, 4)
    slack = http_server(echo)
    s = SECRETS
    slack_url = f"http://bot:{s['slack_password']}@{slack.url[7:]}/services/T0/B0/{s['slack_path']}"
    env = {"MDR_SLACK_URL": slack_url, "MDR_FIREWALL_URL": "http://127.0.0.1:9/fw",
           "MDR_FIREWALL_TOKEN": s["firewall_token"],
           "MDR_SECRETS_FILE": str(write_yaml(tmp_path / "secrets.yaml", {"partner": s["file_token"]}))}
    w = start_worker(b, tmp_path, "--prefix", topics.prefix, "--db", f"sqlite:///{tmp_path}/soar.db",
                     "--model", str(MODEL), app_id="redact", env=env)
    try:
        inputs = write_inputs(tmp_path / "in", slack_url)
        for kind, d in (("waf", inputs["waf"]), ("host", inputs["host"]), ("waf", inputs["junk"])):
            produce(b, [str(d)], topics.ingest_topic(kind), "shop", None, "web-01")
        outputs = [topics.incidents, topics.alerts, topics.suppressed, topics.dlq, topics.tickets]

        def values() -> dict[str, list[str]]:
            return {t: [r.value.decode() for r in read_topic(b, t, timeout=3) if r.value] for t in outputs}

        assert wait_until(lambda: all(values()[t] for t in (topics.incidents, topics.dlq, topics.tickets,
                                                            topics.suppressed))
                          and len(values()[topics.alerts]) >= 2 and slack.requests, 120), w.tail()
        got = values()
    finally:
        code = w.stop()
    assert code == 0, w.tail()

    # the secrets were there to leak: in the records, on the wire to Slack, echoed back by it
    assert any(base64.b64encode(f"bot:{s['slack_password']}".encode()).decode()
               in str(q.headers.get("authorization")) for q in slack.requests)
    assert any(s["slack_path"] in q.path for q in slack.requests)
    alerts = [json.loads(v) for v in got[topics.alerts]]
    assert {a["source"]["format"] for a in alerts} >= {"modsecurity", "sshd"}
    assert any("Authorization" in a["raw"] and "***" in a["raw"] for a in alerts)
    assert any(d["reason"] == "unknown_format" for d in map(json.loads, got[topics.dlq]))
    leaks = Leaks(s, users=(USER, "bot"))
    found = {t: [hit for v in vals for hit in leaks(v)] for t, vals in got.items()}
    assert {t: hits for t, hits in found.items() if hits} == {}
    print({t: len(v) for t, v in got.items()})
