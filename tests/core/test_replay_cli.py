"""`mdr replay` as a user runs it: outputs, summary, exit codes, bad input to dead letters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.normalize.base import Origin, RawRecord
from pipeline.normalize.stage import MAX_RECORD_BYTES, NormalizeResult, NormalizeStage
from tests.lab import LabReplay

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "samples" / "lab-1"


def test_replay_writes_outputs_and_summary(lab1_replay: LabReplay) -> None:
    out = lab1_replay.out
    for name in ("alerts", "dlq", "incidents", "suppressed"):
        assert (out / f"{name}.jsonl").exists()
    incidents = [json.loads(x) for x in (out / "incidents.jsonl").read_text().splitlines()]
    assert incidents and all(i["tenant_id"] == "shop" for i in incidents)
    assert "records read" in lab1_replay.output and "dead letters" in lab1_replay.output


def test_usage_errors_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["replay", str(tmp_path / "nope.log"), "--out", str(tmp_path)])
    assert r.exit_code != 0 and "no such file" in r.output
    r = CliRunner().invoke(app, ["replay", str(LAB), "--format", "nosuch", "--out", str(tmp_path)])
    assert r.exit_code != 0 and "unknown format" in r.output


def test_bad_records_become_dead_letters_and_exit_zero(tmp_path: Path) -> None:
    f = tmp_path / "mixed.log"
    good = (LAB / "host" / "sshd_auth.log").read_text().splitlines()[2]
    f.write_bytes(b"\n".join([good.encode(), b"\xff\xfe\x00binary junk", b"this is no product record",
                              good.encode()]) + b"\n")
    r = CliRunner().invoke(app, ["replay", str(f), "--tenant", "t", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    dead = [json.loads(x) for x in (tmp_path / "o" / "dlq.jsonl").read_text().splitlines()]
    reasons = {d["reason"]: d for d in dead}
    # the file is an sshd log (detected on its first line): the junk line is a bad sshd record
    assert set(reasons) == {"not_utf8", "bad_timestamp"}
    assert reasons["not_utf8"]["raw_encoding"] == "base64" and reasons["not_utf8"]["line"] == 2
    bad = reasons["bad_timestamp"]
    assert (bad["file"].endswith("mixed.log"), bad["line"], bad["source"], bad["field"]) == (True, 3, "sshd", "time")


def test_stdin_and_gz(tmp_path: Path) -> None:
    import gzip

    src = (LAB / "ids" / "eve_attack.jsonl").read_bytes()
    gz = tmp_path / "eve.jsonl.gz"
    gz.write_bytes(gzip.compress(src))
    out_gz = CliRunner().invoke(app, ["replay", str(gz), "--tenant", "t", "--out", str(tmp_path / "a")])
    assert out_gz.exit_code == 0, out_gz.output
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", "replay", "-", "--tenant", "t", "--out",
                        str(tmp_path / "b")], input=src, capture_output=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    a = (tmp_path / "a" / "alerts.jsonl").read_text().count("\n")
    b = (tmp_path / "b" / "alerts.jsonl").read_text().count("\n")
    assert a == b > 0


def test_a_byte_that_is_not_utf8_does_not_hide_a_detection(tmp_path: Path) -> None:
    """Products write bytes they did not choose (a URL, a file name) as they are: an attacker's invalid UTF-8
    byte in the URL of an attack request leaves the detection standing (shown as U+FFFD), not a dead letter."""
    line = next(x for x in (LAB / "ids" / "eve_attack.jsonl").read_text().splitlines()
                if '"event_type":"alert"' in x and '"url":"/' in x)
    bad = line.encode().replace(b'"url":"/', b'"url":"/caf\xe9\xff', 1)
    f = tmp_path / "eve.jsonl"
    f.write_bytes(bad + b"\n")
    r = CliRunner().invoke(app, ["replay", str(f), "--tenant", "t", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    [alert] = [json.loads(x) for x in (tmp_path / "o" / "alerts.jsonl").read_text().splitlines()]
    assert (tmp_path / "o" / "dlq.jsonl").read_text() == ""
    assert alert["rule"]["id"] and "/caf\ufffd\ufffd" in alert["raw"]


def test_oversized_record_is_a_dead_letter() -> None:
    res = NormalizeStage().process(RawRecord("x" * (MAX_RECORD_BYTES + 1), "t", _now(), None, Origin("f", 1)))
    assert [d.reason for d in res.dead] == ["oversized"]


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


LINES = [ln for f in sorted(LAB.rglob("*")) if f.is_file() and f.suffix != ".md" and f.stat().st_size < 300_000
         for ln in f.read_text().splitlines()[:40]]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(LINES), st.integers(min_value=0, max_value=2000), st.binary(max_size=8),
       st.sampled_from(["cut", "insert", "flip"]))
def test_any_mutation_ends_as_alerts_skips_or_dead_letters(line: str, pos: int, junk: bytes, how: str) -> None:
    """Every input, however mangled, ends as alerts, context or dead letters: the stage never raises."""
    b = line.encode()
    pos %= max(len(b), 1)
    if how == "cut":
        b = b[:pos]
    elif how == "insert":
        b = b[:pos] + junk + b[pos:]
    else:
        b = b[:pos] + bytes([b[pos] ^ 0x5A]) + b[pos + 1:] if b else junk
    text = b.decode("utf-8", "surrogateescape")
    stage = NormalizeStage()
    res = NormalizeResult()
    stage.process(RawRecord(text, "t", _now(), "h", Origin("fuzz", 1)), None, res)
    stage.flush(res)
    assert res.records == 1
    assert len(res.alerts) + len(res.dead) + sum(res.skipped.values()) >= 1


@pytest.mark.parametrize("name", ["eve_9999", "eve_0001", "eve_0001_tz", "aide_9999"])
def test_time_reproductions_replay_to_the_end(name: str, tmp_path: Path) -> None:
    """Issue 13 §1: each of these made `mdr replay` exit 1 before writing any output (OverflowError)."""
    from tests.time_repros import write

    f = write(name, tmp_path)
    r = CliRunner().invoke(app, ["replay", str(f), "--tenant", "t", "--host", "web-01", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "o"
    dead = [json.loads(x) for x in (out / "dlq.jsonl").read_text().splitlines()]
    alerts = [json.loads(x) for x in (out / "alerts.jsonl").read_text().splitlines()]
    flagged = [a for a in alerts if "time_untrusted" in a.get("extra", {})]
    if name == "eve_0001_tz":  # unreadable as a UTC time: a dead letter, as the issue's §9 wants
        assert [(d["reason"], d["line"], d["field"]) for d in dead] == [("bad_timestamp", 1, "timestamp")]
        assert not flagged
    else:  # implausible: the alert goes on at its received time, flagged, with the time the product wrote
        assert dead == []
        assert flagged and all(a["extra"]["time_reported"][:4] in ("9999", "0001") for a in flagged)
        assert all(a["time"] == a["received_at"] for a in flagged)
    if name.startswith("eve"):  # the C2 lookup still becomes an incident
        incidents = [json.loads(x) for x in (out / "incidents.jsonl").read_text().splitlines()]
        assert any("c2.malware-lab.test" in i["entities"].get("domains", []) for i in incidents)
    if name in ("eve_0001", "eve_0001_tz"):  # the normal record after it is processed as usual
        assert [a for a in alerts if "time_untrusted" not in a.get("extra", {})]


def test_an_incident_update_the_ticket_store_refuses_is_a_dead_letter(tmp_path: Path, monkeypatch) -> None:
    """The SOAR step of `mdr replay`: one incident the store cannot take is a `soar_error` dead letter; the
    other incidents get their tickets."""
    from pipeline.soar.tickets import TicketStore

    apply = TicketStore.apply_batch

    def refuse_c2(self, incs, *a, **kw):
        if any("c2.malware-lab.test" in i.entities.domains for i in incs):
            raise RuntimeError("store refused")
        return apply(self, incs, *a, **kw)

    monkeypatch.setattr(TicketStore, "apply_batch", refuse_c2)
    monkeypatch.setenv("MDR_HOME", str(tmp_path / "home"))
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["replay", str(LAB), "--tenant", "shop", "--host", "web-01", "--out", str(out)])
    assert r.exit_code == 0, r.output
    dead = [json.loads(x) for x in (out / "dlq.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["stage"], d["tenant_id"]) for d in dead] == [("soar_error", "soar", "shop")]
    assert "RuntimeError: store refused" in dead[0]["detail"] and "c2.malware-lab.test" in dead[0]["raw"]
    tickets = (out / "tickets.jsonl").read_text().splitlines()
    assert tickets and not any("c2.malware-lab.test" in t for t in tickets)
