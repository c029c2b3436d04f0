"""Ingest message -> raw records or a dead letter (no broker needed)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import orjson
import pytest

from pipeline.normalize.stage import DLQ_PREFIX_BYTES
from pipeline.stream.config import Topics, parse_bindings
from pipeline.stream.envelope import Message, envelope, unpack
from pipeline.tenant import TenantError

LINE = '{"timestamp":"2026-11-24T06:39:16.573553+0000","event_type":"alert","src_ip":"127.0.0.66"}'


def msg(value: bytes | None, headers=(), topic: str = "mdr.alerts.waf") -> Message:
    return Message(value, topic, 2, 41, 1_700_000_000_000, headers)


def test_envelope_carries_tenant_host_format() -> None:
    u = unpack(msg(envelope([LINE, LINE], "shop", "suricata", "ids-1")), {})
    assert u.dead is None and u.fmt == "suricata"
    assert [(r.text, r.tenant_id, r.host) for r in u.records] == [(LINE, "shop", "ids-1")] * 2
    assert (u.records[0].origin.topic, u.records[0].origin.partition, u.records[0].origin.offset) == \
        ("mdr.alerts.waf", 2, 41)


def test_tenant_precedence_and_binding() -> None:
    assert unpack(msg(envelope([LINE], "env"), [("tenant", b"hdr")]), {"mdr.alerts.waf": "bound"}) \
        .records[0].tenant_id == "env"
    assert unpack(msg(LINE.encode(), [("tenant", b"hdr")]), {"mdr.alerts.waf": "bound"}).records[0].tenant_id \
        == "hdr"
    assert unpack(msg(LINE.encode()), {"mdr.alerts.waf": "bound"}).records[0].tenant_id == "bound"
    u = unpack(msg(LINE.encode()), {"mdr.alerts.host": "other"})
    assert u.dead is not None and u.dead.reason == "missing_tenant" and not u.records


def test_dead_letters() -> None:
    hdr = [("tenant", b"shop")]
    cases = {
        "bad_envelope": msg(b'{"tenant": "shop", "record": 42}'),
        "oversized": msg(b"x" * 1_000_001, hdr),
        "not_utf8": msg(b"\xff\xfebin", [("envelope", b"1"), *hdr]),  # an envelope must be UTF-8 JSON
        "empty": msg(b"", hdr),
    }
    for reason, m in cases.items():
        d = unpack(m, {}).dead
        assert d is not None and d.reason == reason, (reason, d)
        assert (d.topic, d.partition, d.offset) == ("mdr.alerts.waf", 2, 41)
    d = unpack(cases["not_utf8"], {}).dead
    assert d.raw_encoding == "base64" and base64.b64decode(d.raw) == b"\xff\xfebin"
    bad_fmt = unpack(msg(envelope([LINE], "shop", "no-such-format")), {}).dead
    assert bad_fmt is not None and bad_fmt.reason == "bad_envelope"
    marked = unpack(msg(b"not json", [("envelope", b"1"), ("tenant", b"shop")]), {}).dead
    assert marked is not None and marked.reason == "bad_envelope"


def test_raw_record_that_is_not_utf8_goes_to_the_stage_as_a_files_line_does() -> None:
    """As in `mdr replay`: a record with a byte an attacker chose is still normalized (U+FFFD); junk that is
    no record is a `not_utf8` dead letter keeping the exact bytes."""
    from pipeline.normalize.stage import NormalizeResult, NormalizeStage

    hdr = [("tenant", b"shop")]
    eve = Path(__file__).resolve().parents[1] / "fixtures" / "ids" / "eve_attack.jsonl"
    line = next(x for x in eve.read_text().splitlines() if '"event_type":"alert"' in x and '"url":"/' in x)
    res = NormalizeResult()
    for value in (line.encode().replace(b'"url":"/', b'"url":"/caf\xe9', 1), b"\xff\xfebin"):
        u = unpack(msg(value, hdr), {})
        assert u.dead is None and len(u.records) == 1
        NormalizeStage().process(u.records[0], None, res)
    [a] = res.alerts
    assert a.rule.id and "/caf\ufffd" in a.raw
    [d] = res.dead
    assert (d.reason, d.raw_encoding, base64.b64decode(d.raw), d.offset) == ("not_utf8", "base64", b"\xff\xfebin", 41)


def test_raw_json_record_is_not_an_envelope() -> None:
    u = unpack(msg(b'{"record": "x", "other": 1}', [("tenant", b"shop")]), {})
    assert u.dead is None and u.records[0].text == '{"record": "x", "other": 1}'


BAD_TENANTS = ["", " ", "a b", "Shop", "_global", ".", "..", "../x", "a/b", "shop\n", "x" * 64, "ѕhop", "a\x00"]


@pytest.mark.parametrize("bad", BAD_TENANTS)
def test_bad_tenant_is_a_dead_letter_from_envelope_header_or_binding(bad: str) -> None:
    """A tenant that is present but not a tenant id is `bad_tenant`; it never falls through to a
    lower-precedence source, and the dead letter names no tenant."""
    bound = {"mdr.alerts.waf": "bound"}
    cases = [msg(envelope([LINE], bad), [("tenant", b"hdr")]), msg(LINE.encode(), [("tenant", bad.encode())])]
    for m in cases:
        u = unpack(m, bound)
        assert u.dead is not None and u.dead.reason == "bad_tenant" and not u.records, (bad, u)
        assert u.dead.tenant_id is None and repr(bad[:20])[1:-1][:5] in u.dead.detail
    with pytest.raises(TenantError):
        parse_bindings([f"waf={bad}"], Topics())


def test_tenant_header_that_is_not_utf8_is_rejected_not_ignored() -> None:
    u = unpack(msg(LINE.encode(), [("tenant", b"sh\xffop")]), {"mdr.alerts.waf": "bound"})
    assert u.dead is not None and u.dead.reason == "bad_tenant"


def test_dead_letters_name_only_valid_tenants() -> None:
    d = unpack(msg(b"", [("tenant", b"../etc")]), {}).dead
    assert d is not None and d.reason == "empty" and d.tenant_id is None
    d = unpack(msg(b"", [("tenant", b"shop")]), {}).dead
    assert d is not None and d.tenant_id == "shop"


def test_oversized_message_keeps_prefix_length_and_sha256() -> None:
    value = "é".encode() * 600_000  # 1.2 MB of two-byte characters
    d = unpack(msg(value, [("tenant", b"shop")]), {}).dead
    assert d is not None and d.reason == "oversized"
    assert (d.raw_length, d.raw_sha256) == (len(value), hashlib.sha256(value).hexdigest())
    assert d.raw_encoding == "utf-8" and d.raw == "é" * (DLQ_PREFIX_BYTES // 2)  # cut between characters


def test_produce_reports_a_record_that_is_not_utf8_instead_of_crashing(tmp_path: Path) -> None:
    from pipeline.stream.producer import envelopes

    f = tmp_path / "auth.log"
    good = "Nov 24 06:39:10 vm sshd[701]: Failed password for invalid user x from 198.51.100.1 port 40001 ssh2"
    f.write_bytes(good.encode() + b"\n" + good.replace("user x", "user caf\xe9").encode("latin-1") + b"\n")
    problems: list[str] = []
    sent = [orjson.loads(v) for v in envelopes([str(f)], "shop", problems=problems.append)]
    assert [e["record"] for e in sent] == [good]
    assert len(problems) == 1 and f"{f}:2: not_utf8" in problems[0]
