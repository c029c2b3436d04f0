"""Operating the worker: use-case hot reload from the use-case topic, /metrics, /healthz, JSON logs, SIGTERM.

A canary use case that matches nothing in the shipped set is published to `<prefix>usecases` while the worker
runs: within 5 s it runs (a record it matches becomes an incident); a broken version of it is rejected into the
dead letters and the last good set keeps running.
"""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from kafka import KafkaProducer

from pipeline.stream.app import ensure_topics
from pipeline.stream.broker import free_port
from pipeline.stream.config import Topics
from pipeline.stream.envelope import envelope
from tests.stream.fixtures_worker import healthz, latest_incidents, read_topic, start_worker, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

CANARY = """\
title: Canary {n} user agent
id: 5f0c2b9e-0000-4000-8000-00000000000{n}
status: test
description: Test use case published through the use-case topic.
logsource: {{product: mdr}}
detection:
  ua:
    http.user_agent|contains: mdr-canary-{n}
  condition: ua
level: high
mdr:
  priority: P3
  category: exploit
  title: "Canary {n} from {{src.ip}}"
"""
BROKEN = "title: Broken canary\ndetection:\n  ua:\n    http.user_agent|nosuchmodifier: x\n  condition: ua\n"


def eve(agent: str, src: str, second: int, dest: str = "10.0.0.5") -> str:
    """One Suricata alert carrying a user agent."""
    return orjson.dumps({
        "timestamp": f"2026-11-24T07:00:{second:02d}.000000+0000", "event_type": "alert", "src_ip": src,
        "src_port": 40000 + second, "dest_ip": dest, "dest_port": 80, "proto": "TCP",
        "alert": {"action": "allowed", "gid": 1, "signature_id": 9000001, "rev": 1, "severity": 2,
                  "signature": "LAB test request", "category": "Misc activity"},
        "http": {"hostname": "shop.example", "url": "/", "http_user_agent": agent, "http_method": "GET"},
    }).decode()


def metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metric(body: str, name: str, labels: str = "") -> float:
    pat = rf"^{re.escape(name)}{{{re.escape(labels)}}} ([\d.e+-]+)$" if labels else rf"^{re.escape(name)} ([\d.e+-]+)$"
    m = re.search(pat, body, re.M)
    return float(m.group(1)) if m else 0.0


def canary_incidents(bootstrap: str, prefix: str, n: int) -> list:
    return [i for i in latest_incidents(bootstrap, f"{prefix}incidents").values() if f"Canary {n}" in i.title]


def test_hot_reload_metrics_and_logs(kafka_broker, tmp_path: Path) -> None:
    b, prefix = kafka_broker.bootstrap, "mdr.ops."
    topics = Topics(prefix=prefix)
    ensure_topics(b, topics, 4)
    port = free_port()
    verdicts = tmp_path / "verdicts.jsonl"
    w = start_worker(b, tmp_path, "--prefix", prefix, "--metrics-port", str(port), "--verdicts-file", str(verdicts),
                     app_id="ops")
    p = KafkaProducer(bootstrap_servers=b)
    fw = topics.ingest_topic("firewall")

    def send_records(agent: str, src: str) -> None:
        for s in range(3):
            p.send(fw, envelope([eve(agent, src, s)], "shop", "suricata", "sensor-1"), key=b"sensor-1")
        p.flush()

    try:
        assert wait_until(lambda: healthz(port)[0] == 200, 90, every=0.5), w.tail()
        # before the canary exists its records are alerts but no incident
        send_records("mdr-canary-1", "198.51.100.7")
        assert wait_until(lambda: metric(metrics(port), "mdr_alerts_total", 'tenant="shop"') >= 3, 60), w.tail()
        time.sleep(2)
        assert not canary_incidents(b, prefix, 1)

        # publish the canary: reloaded within 5 s, and a new record it matches becomes an incident
        t0 = time.monotonic()
        p.send(topics.usecases, CANARY.format(n=1).encode(), key=b"canary.yml")
        p.flush()
        assert wait_until(lambda: metric(metrics(port), "mdr_usecase_reloads_total", 'result="ok"') >= 1, 5,
                          every=0.1), w.tail()
        reload_s = time.monotonic() - t0
        send_records("mdr-canary-1", "198.51.100.8")
        assert wait_until(lambda: bool(canary_incidents(b, prefix, 1)), 30), w.tail()
        got = canary_incidents(b, prefix, 1)
        assert all(i.priority == "P3" and i.tenant_id == "shop" for i in got)
        assert all("198.51.100.7" not in i.title for i in got)  # the rule judges what arrives after it
        print(f"use case reloaded {reload_s:.2f}s after it was published")

        # a broken version of the same file: rejected into the dead letters, the canary keeps running
        p.send(topics.usecases, BROKEN.encode(), key=b"canary.yml")
        p.flush()
        assert wait_until(lambda: metric(metrics(port), "mdr_usecase_reloads_total", 'result="rejected"') >= 1, 10,
                          every=0.2), w.tail()
        dead = [orjson.loads(r.value) for r in read_topic(b, topics.dlq)]
        rejected = [d for d in dead if d["reason"] == "usecase_rejected"]
        assert rejected and "canary.yml" in rejected[0]["detail"] and rejected[0]["topic"] == topics.usecases
        send_records("mdr-canary-1", "198.51.100.9")
        assert wait_until(lambda: any("198.51.100.9" in i.title for i in canary_incidents(b, prefix, 1)), 30), \
            w.tail()

        # an analyst's verdict on the canary incident reaches the verdicts file (training data, reports)
        verdict = {"incident_id": got[0].incident_id, "tenant_id": "shop", "verdict": "true_positive"}
        p.send(topics.verdicts, orjson.dumps(verdict), key=got[0].incident_id.encode())
        p.send(topics.verdicts, b"not json")  # ignored, logged
        p.flush()
        assert wait_until(lambda: verdicts.exists() and verdicts.read_text().strip() != "", 30, every=0.2), w.tail()
        assert [orjson.loads(x) for x in verdicts.read_text().splitlines()] == [verdict]

        body = metrics(port)
        assert metric(body, "mdr_verdicts_total") == 2
        assert metric(body, "mdr_records_total", f'topic="{fw}"') == 9
        assert metric(body, "mdr_incident_updates_total", 'priority="P3"') >= 2
        assert metric(body, "mdr_dead_letters_total", 'reason="usecase_rejected"') == 1
        assert metric(body, "mdr_end_to_end_seconds_count") >= 9
        assert metric(body, "mdr_stage_seconds_count", 'stage="core"') >= 1
        lags = re.findall(rf'^mdr_consumer_lag{{partition="\d+",topic="{re.escape(fw)}"}} ([\d.]+)$', body, re.M)
        assert len(lags) == 4 and all(float(x) == 0 for x in lags), body  # everything read
    finally:
        p.close()
        code = w.stop()
    assert code == 0, w.tail()  # SIGTERM: a clean exit
    lines = [ln for ln in w.log.read_text().splitlines() if ln.startswith("{")]
    logs = [orjson.loads(ln) for ln in lines]
    assert any(r["logger"] == "mdr.worker" and "use cases reloaded" in r["msg"] for r in logs)
    assert any(r["level"] == "warning" and "rejected" in r["msg"] for r in logs)
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in logs)


def test_context_reload(kafka_broker, tmp_path: Path) -> None:
    """`mdr assets import` while the worker runs: the worker picks the inventory up within seconds and the
    next alerts carry their asset (no restart)."""
    import os
    import subprocess
    import sys

    from pipeline.schema import decode_alert

    b, prefix = kafka_broker.bootstrap, "mdr.ctx."
    topics = Topics(prefix=prefix)
    ensure_topics(b, topics, 4)
    port = free_port()
    w = start_worker(b, tmp_path, "--prefix", prefix, "--metrics-port", str(port), app_id="ctx")
    p = KafkaProducer(bootstrap_servers=b)
    fw = topics.ingest_topic("firewall")

    def asset_of(src: str) -> str | None:
        for r in read_topic(b, f"{prefix}alerts.normalized", timeout=2):
            a = decode_alert(r.value)
            if a.src and a.src.ip == src:
                return a.asset.name if a.asset else "-"
        return None

    try:
        assert wait_until(lambda: healthz(port)[0] == 200, 90, every=0.5), w.tail()
        p.send(fw, envelope([eve("curl/8", "198.51.100.20", 1, "10.20.5.10")], "shop", "suricata", "s1"), key=b"s1")
        p.flush()
        assert wait_until(lambda: asset_of("198.51.100.20") is not None, 30), w.tail()
        assert asset_of("198.51.100.20") == "-"  # no inventory yet

        inventory = Path(__file__).resolve().parents[1] / "context" / "data" / "assets.yaml"
        env = {**os.environ, "MDR_HOME": str(tmp_path / "home")}  # the worker's (tests/stream/fixtures_worker.py)
        subprocess.run([sys.executable, "-m", "pipeline.cli", "assets", "import", str(inventory), "--tenant", "shop"],
                       check=True, env=env, capture_output=True)
        assert wait_until(lambda: metric(metrics(port), "mdr_context_reloads_total") >= 1, 10, every=0.2), w.tail()
        p.send(fw, envelope([eve("curl/8", "198.51.100.21", 2, "10.20.5.10")], "shop", "suricata", "s1"), key=b"s1")
        p.flush()
        assert wait_until(lambda: asset_of("198.51.100.21") is not None, 30), w.tail()
        assert asset_of("198.51.100.21") == "db-01"  # critical database: the asset now rides on the alert
    finally:
        p.close()
        assert w.stop() == 0, w.tail()


def test_promoted_model_is_loaded_without_a_restart(kafka_broker, tmp_path: Path) -> None:
    """`mdr worker --model REGISTRY`: promoting another model (`mdr model promote`) while the worker runs makes
    it the model that suppresses from the next alerts on, without a restart; the shadow model beside the
    active one logs its decisions. A model of another feature schema made active (as an earlier build could)
    is not loaded: the worker logs why and keeps suppressing with the model it runs."""
    from pipeline.classify.registry import Registry, read_shadow
    from pipeline.classify.train import load_data, merge, train
    from pipeline.stream.producer import produce

    sample = Path(__file__).resolve().parents[1] / "fixtures" / "labeled" / "waf-pl4-sample"
    reg = Registry.create(tmp_path / "registry")
    versions = []
    ds = merge(*(load_data([sample], t) for t in ("shop", "shop2", "shop3")))  # the models know the tenants
    for kind in ("linear", "hgb"):
        m, _, _ = train([], 0.95, (kind,), ((),), novel=False, ds=ds)
        versions.append(reg.add(m.save(tmp_path / kind), shadow=False))
    a, b = versions
    reg.promote(a, force=True)
    reg.add(tmp_path / "hgb", shadow=True)  # b in shadow first
    b_topic, prefix = kafka_broker.bootstrap, "mdr.promo."
    topics = Topics(prefix=prefix)
    ensure_topics(b_topic, topics, 4)
    port = free_port()
    w = start_worker(b_topic, tmp_path, "--prefix", prefix, "--metrics-port", str(port), "--model",
                     str(reg.root), app_id="promo")

    def models_used(tenant: str | None = None) -> set[str]:
        return {d["model_version"] for d in map(orjson.loads, (r.value for r in read_topic(
            b_topic, f"{prefix}suppressed", 3))) if tenant in (None, d["alert"]["tenant_id"])}

    try:
        assert wait_until(lambda: healthz(port)[0] == 200, 90, every=0.5), w.tail()
        produce(b_topic, [str(sample / "modsec_audit.jsonl.gz")], topics.ingest_topic("waf"), "shop")
        assert wait_until(lambda: models_used() == {a}, 60), w.tail()
        assert wait_until(lambda: len(read_shadow(reg.shadow_log(b))) > 0, 30), w.tail()
        old = reg.root / "noise-schema2"  # an earlier build's model, made active by that build
        shutil.copytree(reg.path(a), old)
        m = orjson.loads((old / "manifest.json").read_bytes())
        m["features"]["version"] = "2"
        (old / "manifest.json").write_bytes(orjson.dumps(m))
        st = reg.state()
        (reg.root / "registry.json").write_bytes(orjson.dumps({**st, "active": old.name}))
        assert wait_until(lambda: metric(metrics(port), "mdr_model_reloads_total", 'result="failed"') >= 1, 15,
                          every=0.2), w.tail()
        assert "keeping the running one" in w.tail() and "feature schema 2" in w.tail(), w.tail()
        produce(b_topic, [str(sample / "modsec_audit.jsonl.gz")], topics.ingest_topic("waf"), "shop3")
        assert wait_until(lambda: models_used("shop3") == {a}, 60), w.tail()
        reg.promote(b, force=True)
        assert wait_until(lambda: metric(metrics(port), "mdr_model_reloads_total", 'result="ok"') >= 1, 15,
                          every=0.2), w.tail()
        produce(b_topic, [str(sample / "modsec_audit.jsonl.gz")], topics.ingest_topic("waf"), "shop2")
        assert wait_until(lambda: b in models_used("shop2"), 60), w.tail()
        assert metric(metrics(port), "mdr_noise_scored_total", 'tenant="shop"') > 0
    finally:
        assert w.stop() == 0, w.tail()
