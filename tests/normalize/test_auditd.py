"""auditd: real ENRICHED audit.log of the lab day; records assembled into events; rule hits become alerts."""

from __future__ import annotations

import contextlib
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.normalize.base import BadRecord, Skipped
from pipeline.normalize.stage import NormalizeResult, NormalizeStage
from pipeline.schema import Alert, encode, to_builtins

from .conftest import check_contract, detect, fixture, mutated, normalizer, record, run_file, run_text

FMT = "auditd"
LOG = fixture("host/audit.log")
# Not splitlines(): the ENRICHED part of a record follows a GS byte (0x1d), which splitlines() breaks at.
LINES = [ln for ln in LOG.read_text(encoding="utf-8").split("\n") if ln]


def event(serial: int) -> list[str]:
    """The records of one event of the lab log, in file order."""
    return [ln for ln in LINES if f":{serial}): " in ln]


def feed(lines: list[str], n=None, flush: bool = True) -> tuple[list[Alert], list[str]]:
    """Lines through one normalizer: (alerts, Skipped reasons); BadRecord propagates."""
    n = n or normalizer(FMT)
    alerts, skips = [], []
    for ln in lines:
        try:
            alerts += n.normalize(record(ln))
        except Skipped as s:
            skips.append(s.reason)
    if flush:
        alerts += n.flush()
    return alerts, skips


def one(serial: int) -> Alert:
    alerts, _ = feed(event(serial))
    assert len(alerts) == 1
    return alerts[0]


def fields(a: Alert) -> dict:
    d = to_builtins(a)
    for k in ("alert_id", "tenant_id", "source", "received_at", "raw", "rules", "src", "dst"):
        d.pop(k)
    return d


def test_whole_lab_file():
    r = run_file(LOG)
    assert (r.records, len(r.dead)) == (547, 0)
    assert len(r.alerts) == 87
    assert Counter((a.rule.id, a.action) for a in r.alerts) == {
        ("www_net", "failed"): 30, ("www_exec", "succeeded"): 17, ("USER_LOGIN", "failed"): 16,
        ("webroot_change", "succeeded"): 9, ("USER_AUTH", "failed"): 6, ("CONFIG_CHANGE", "detected"): 4,
        ("ANOM_PROMISCUOUS", "detected"): 2, ("ANOM_RBAC_INTEGRITY_FAIL", "detected"): 2,
        ("webroot_change", "failed"): 1,
    }
    assert r.skipped == {"auditd:buffered": 403, "auditd:exec_path_search": 40, "auditd:session": 11,
                         "auditd:config_change": 4, "auditd:promiscuous_off": 2, "auditd:daemon": 1}
    assert all(a.host and a.host.name == "vm" for a in r.alerts)
    assert len({a.alert_id for a in r.alerts}) == 87


def test_every_event_is_an_alert_or_a_counted_skip():
    n = normalizer(FMT)
    alerts, _ = feed(LINES, n)
    events = {ln.split("msg=audit(", 1)[1].split(")", 1)[0] for ln in LINES}
    assert len(events) == 151
    assert n.event_skips == {"exec_path_search": 40, "session": 16, "config_change": 4, "daemon": 2,
                             "promiscuous_off": 2}
    assert len(alerts) + sum(n.event_skips.values()) == len(events)


def test_webshell_recon_execve():
    """www-data runs `sh -c 'id; uname -a; cat /etc/passwd >/dev/null; whoami'`: EXECVE a2 was hex-encoded."""
    a = one(59)
    assert a.raw == "\n".join(event(59))
    assert fields(a) == {
        "time": "2026-11-24T06:38:42.170000Z", "severity": {},  # medium, the default, is omitted
        "rule": {"id": "www_exec", "name": "auditd rule www_exec: execve by www-data",
                 "category": "www_exec"},
        "action": "succeeded",
        "message": "auditd www_exec: www-data execve sh -c id; uname -a; cat /etc/passwd >/dev/null; whoami",
        "host": {"name": "vm"}, "user": "www-data",
        "process": {"name": "sh", "cmdline": "sh -c id; uname -a; cat /etc/passwd >/dev/null; whoami",
                    "uid": "www-data", "pid": 5100, "exe": "/usr/bin/dash"},
        "file": {"path": "/usr/bin/sh"},
        "extra": {"key": "www_exec", "syscall": "execve", "success": "yes", "exit": 0, "type": "EXECVE",
                  "auid": "unset", "euid": "www-data", "exe": "/usr/bin/dash", "comm": "sh", "ppid": 5099,
                  "cwd": "/srv/lab", "argc": 3, "a0": "sh", "a1": "-c",
                  "a2": "id; uname -a; cat /etc/passwd >/dev/null; whoami", "name": "/usr/bin/sh",
                  "nametype": "NORMAL", "types": ["SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE"]},
    }
    assert a.severity.label == "medium" and a.rules == [a.rule]


def test_reverse_shell_connect_to_4444():
    a = one(92)
    assert a.dst.ip == "127.0.0.1" and a.dst.port == 4444 and a.src.ip is None
    assert a.action == "failed" and a.rule.id == "www_net"
    assert a.message == "auditd www_net: www-data connect 127.0.0.1:4444 (failed, exit -111)"
    assert a.process.cmdline == "timeout 3 bash -c exec 3<>/dev/tcp/127.0.0.1/4444"  # from hex PROCTITLE
    assert (a.process.name, a.process.pid, a.user) == ("bash", 5107, "www-data")
    assert a.extra["saddr_fam"] == "inet" and a.extra["exit"] == -111 and a.extra["syscall"] == "connect"
    assert a.extra["types"] == ["SYSCALL", "SOCKADDR", "PROCTITLE"] and a.file is None


def test_local_socket_connect_has_no_dst():
    a = one(61)  # `id` asking nscd through a unix socket (hex saddr of family 1)
    assert a.dst.ip is None and a.extra["saddr_fam"] == "local"
    assert a.extra["sock_path"] == "/var/run/nscd/socket" and a.file is None


def test_webshell_written_to_uploads():
    a = one(31)
    assert (a.file.path, a.file.change) == ("/srv/lab/waf/www/uploads/cmd.php", "added")
    assert (a.extra["name"], a.extra["nametype"], a.extra["syscall"]) == (
        "/srv/lab/waf/www/uploads/cmd.php", "CREATE", "openat")
    assert a.user == "www-data" and a.process.uid == "www-data" and a.action == "succeeded"
    assert a.message == "auditd webroot_change: www-data openat /srv/lab/waf/www/uploads/cmd.php"


@pytest.mark.parametrize(("serial", "path", "change", "extra"), [
    (96, "/srv/lab/waf/www/index.html", "written", {"a2": "441"}),  # O_WRONLY|O_CREAT|O_APPEND, file existed
    (97, "/srv/lab/waf/cgi-bin/app.cgi", "changed", {"new_mode": "0777", "syscall": "fchmodat"}),
    (17, "/srv/lab/waf/www/uploads", "added", {"name": "uploads", "cwd": "/srv/lab/waf/www"}),  # relative
    (8, "/srv/lab/waf/www/index.html", "written", {"comm": "restore.sh"}),
])
def test_file_changes(serial, path, change, extra):
    a = one(serial)
    assert (a.file.path, a.file.change, a.user) == (path, change, "root")
    assert extra.items() <= a.extra.items()


def test_failed_syscall_has_no_file_change():
    a = one(7)  # rm -rf of a missing directory: unlinkat ENOENT, only a PARENT path record
    assert a.action == "failed" and a.file is None and a.extra["nametype"] == "PARENT"


def test_user_auth_failure():
    a = one(106)
    assert fields(a) == {
        "time": "2026-11-24T06:38:45.362000Z", "severity": {"label": "low", "score": 30},
        "rule": {"id": "USER_AUTH", "name": "auditd USER_AUTH: PAM:authentication failed",
                 "category": "authentication"},
        "action": "failed",
        "message": "auditd USER_AUTH: PAM:authentication failed for oracle from 127.0.0.66 (/usr/sbin/sshd)",
        "host": {"name": "vm"}, "user": "oracle",
        "process": {"name": "sshd", "uid": "root", "pid": 5135, "exe": "/usr/sbin/sshd"},
        "extra": {"type": "USER_AUTH", "op": "PAM:authentication", "acct": "oracle", "res": "failed",
                  "terminal": "ssh", "exe": "/usr/sbin/sshd", "auid": "unset", "types": ["USER_AUTH"]},
    }
    assert a.src.ip == "127.0.0.66"


def test_user_login_hex_account():
    a = one(100)  # acct=28696E76616C6964207573657229
    assert a.extra["acct"] == "(invalid user)" and a.user is None and a.src.ip == "127.0.0.66"


def test_anomalies_and_config_changes():
    on = one(10)
    assert (on.rule.id, on.rule.category, on.process.name) == ("ANOM_PROMISCUOUS", "anomaly", "tcpdump")
    assert {"dev": "lo", "prom": "256", "old_prom": "0", "syscall": "setsockopt"}.items() <= on.extra.items()
    aide = one(98)
    assert aide.rule.id == "ANOM_RBAC_INTEGRITY_FAIL" and aide.extra["changed"] == "3"
    removed = one(150)
    assert removed.severity.label == "low" and removed.extra["op"] == "remove_rule"
    assert removed.extra["rule_key"] == "www_exec" and "key" not in removed.extra
    assert removed.process.cmdline.startswith("auditctl -d always,exit")
    for serial, reason in ((16, "promiscuous_off"), (3, "config_change"), (6017, "daemon"), (20, "session"),
                           (22, "exec_path_search")):
        n = normalizer(FMT)
        assert feed(event(serial), n)[0] == [] and n.event_skips == {reason: 1}


def test_unkeyed_syscall_is_skipped():
    n = normalizer(FMT)
    lines = [ln.replace('key="www_exec"', "key=(null)") for ln in event(59)]
    assert feed(lines, n)[0] == [] and n.event_skips == {"unkeyed_syscall": 1}


def test_several_rule_keys():
    """A record matching a rule with several -k keys logs them hex-encoded, separated by 0x01."""
    both = b"www_exec\x01recon".hex().upper()
    a = feed([ln.replace('key="www_exec"', f"key={both}") for ln in event(59)])[0][0]
    assert (a.rule.id, a.extra["key"], a.extra["keys"]) == ("www_exec", "www_exec", ["www_exec", "recon"])


def test_eoe_emits_at_once():
    lines = event(59)
    eoe = "node=vm type=EOE msg=audit(1795502322.170:59): "
    n = normalizer(FMT)
    alerts, skips = feed([*lines, eoe], n, flush=False)
    assert skips == ["buffered"] * len(lines) and len(alerts) == 1
    assert alerts[0].alert_id == one(59).alert_id and n.flush() == []
    with pytest.raises(Skipped, match="eoe"):  # an EOE with nothing buffered
        n.normalize(record(eoe))


def test_complete_event_is_emitted_by_the_next_event():
    n = normalizer(FMT)
    alerts, _ = feed(event(59) + event(60)[:1], n, flush=False)
    assert [a.process.pid for a in alerts] == [5100]
    assert [a.process.cmdline for a in n.flush()] == [None]  # 60 cut after its SYSCALL: emitted as it is


def test_interleaved_events_assemble_the_same():
    a, b = event(65), event(66)
    mixed = [x for pair in zip(a, b, strict=False) for x in pair] + a[len(b):] + b[len(a):]
    assert mixed != a + b
    assert [x.alert_id for x in feed(mixed)[0]] == [x.alert_id for x in feed(a + b)[0]]


def test_same_serial_on_two_nodes_stays_apart():
    other = [ln.replace("node=vm ", "node=db ", 1) for ln in event(59)]
    mixed = [x for pair in zip(event(59), other, strict=True) for x in pair]
    alerts = feed(mixed)[0]
    assert sorted(a.host.name for a in alerts) == ["db", "vm"]
    assert {a.process.cmdline for a in alerts} == {one(59).process.cmdline}


def test_stale_incomplete_event_is_emitted_by_age():
    n = normalizer(FMT)
    lone = event(10)[0]  # ANOM_PROMISCUOUS without its SYSCALL / PROCTITLE
    with pytest.raises(Skipped):
        n.normalize(record(lone))
    with pytest.raises(Skipped):
        n.normalize(record(event(11)[0]))  # 1.5 s later: still waiting
    out = n.normalize(record(event(17)[0]))  # 9.7 s after the first: both incomplete events are stale
    assert [a.rule.id for a in out] == ["ANOM_PROMISCUOUS", "www_exec"] and out[0].raw == lone


def baseline() -> list[bytes]:
    return [encode(a) for a in run_file(LOG, FMT).alerts]


@pytest.mark.parametrize("seed", range(6))
def test_any_chunking_gives_the_same_alerts(seed):
    """The file fed as batches (one result per batch, as a stream consumer would) gives the same alerts."""
    rnd = random.Random(seed)
    cuts = sorted(rnd.sample(range(1, len(LINES)), rnd.randint(1, 40)))
    stage, got = NormalizeStage(FMT), []
    for lo, hi in zip([0, *cuts], [*cuts, len(LINES)], strict=True):
        out = NormalizeResult()
        for ln in LINES[lo:hi]:
            stage.process(record(ln), FMT, out)
        assert out.dead == []
        got += out.alerts
    got += stage.flush().alerts
    assert [encode(a) for a in got] == baseline()


def test_detected_from_any_record_and_not_from_other_products():
    assert {detect(ln) for ln in LINES} == {FMT}
    for other in ("host/sshd_auth.log", "host/fail2ban.log", "host/fail2ban_bans.jsonl",
                  "host/clamscan_webroot.log", "waf/apache_error_samples.log", "ids/eve_samples.jsonl"):
        first = fixture(other).read_text(encoding="utf-8").split("\n")[0]
        assert detect(first) != FMT


def test_raw_format_without_enrichment():
    lines = [ln.split("\x1d")[0] for ln in event(59)]
    a = feed(lines)[0][0]
    assert (a.process.uid, a.user, a.extra["syscall"], a.extra["euid"]) == ("33", "33", "execve", "33")
    assert a.process.cmdline == one(59).process.cmdline


@pytest.mark.parametrize(("line", "reason", "field"), [
    ("node=vm type=SYSCALL arch=c000003e syscall=59", "bad_record", "msg"),
    ("node=vm msg=audit(1795502322.170:59): arch=c000003e", "bad_record", "type"),
    ("node=vm type=SYSCALL msg=audit(1795502322.170): arch=c000003e", "bad_record", "msg"),
    ("node=vm type=SYSCALL msg=audit(yesterday:59): arch=c000003e", "bad_timestamp", "msg"),
    (event(59)[-1].replace("proctitle=72", "proctitle=7Z"), "bad_hex", "proctitle"),
    (event(59)[1].replace("a2=69", "a2=6"), "bad_hex", "a2"),
    (event(92)[1].split("saddr=")[0] + "saddr=0200115C", "bad_saddr", "saddr"),
    (event(92)[1].replace("saddr=02", "saddr=0x"), "bad_hex", "saddr"),
    (event(100)[0].replace("acct=28696E", "acct=28696"), "bad_hex", "acct"),
])
def test_malformed_records_are_dead_letters(line, reason, field):
    with pytest.raises(BadRecord) as e:
        normalizer(FMT).normalize(record(line))
    assert (e.value.reason, e.value.field) == (reason, field)
    dead = run_text(FMT, line).dead
    assert [(d.reason, d.field, d.raw) for d in dead] == [(reason, field, line)]


def test_bad_record_inside_an_event_does_not_lose_the_event():
    lines = event(59)
    lines[2] = lines[2].replace('cwd="/srv/lab"', "cwd=2F7Z")
    stage, out = NormalizeStage(FMT), NormalizeResult()
    for ln in lines:
        stage.process(record(ln), FMT, out)
    stage.flush(out)
    assert [(d.reason, d.field) for d in out.dead] == [("bad_hex", "cwd")]
    assert [a.extra["a2"] for a in out.alerts] == ["id; uname -a; cat /etc/passwd >/dev/null; whoami"]
    assert "cwd" not in out.alerts[0].extra


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(LINES))
def test_fuzz_single_records(text):
    check_contract(FMT, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(LINES[150:260]), min_size=1, max_size=25))
def test_fuzz_streams_assemble_without_errors(texts):
    """Mutated streams through one stateful normalizer: alerts, Skipped or BadRecord only, also at flush."""
    n = normalizer(FMT)
    alerts = []
    for t in texts:
        with contextlib.suppress(BadRecord, Skipped):
            alerts += n.normalize(record(t))
    alerts += n.flush()
    for a in alerts:
        assert isinstance(a, Alert) and a.time.utcoffset().total_seconds() == 0
        assert all(any(part in t for t in texts) for part in a.raw.split("\n"))  # raw = the event's records
        encode(a)
