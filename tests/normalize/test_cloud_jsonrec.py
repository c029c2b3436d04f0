"""The typed JSON-record access shared by the cloud normalizers (pipeline.normalize._jsonrec)."""

from __future__ import annotations

import pytest

from pipeline.normalize._jsonrec import Rec, host_only, load
from pipeline.normalize.base import BadRecord


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5), ("5", 5), (" 7 ", 7), ("-5", -5), (3.0, 3), (None, None), ("", None), ("-", None),
])
def test_integer_accepts_numbers_and_decimal_text(value, expected):
    assert Rec({"k": value}).integer("k") == expected


@pytest.mark.parametrize("value", ["--5", "1e3", "１２", 3.5, True, [1], {"a": 1}, "9" * 25])
def test_integer_rejects_anything_else_naming_the_field(value):
    with pytest.raises(BadRecord) as e:
        Rec({"k": value}, "outer.").integer("k")
    assert (e.value.reason, e.value.field) == ("bad_field", "outer.k")


def test_nested_paths_in_errors():
    d = load('{"a": {"b": [{"c": "x"}, {"c": 7, "ip": "300.1.1.1"}]}}')
    items = d.sub("a").items("b")
    assert [i.text("c") for i in items] == ["x", "7"]
    with pytest.raises(BadRecord) as e:
        items[1].ip("ip")
    assert (e.value.reason, e.value.field) == ("bad_ip", "a.b[1].ip")
    with pytest.raises(BadRecord) as e:
        d.sub("a").sub("b")
    assert (e.value.reason, e.value.field) == ("bad_field", "a.b")
    with pytest.raises(BadRecord) as e:
        d.sub("a").text("missing", required=True)
    assert (e.value.reason, e.value.field) == ("missing_field", "a.missing")


def test_ports_ips_flags_and_lists():
    r = Rec({"p": "443", "big": 70000, "ip": "2001:DB8::1", "t": "true", "f": False, "s": "one", "l": ["a"]})
    assert (r.port("p"), r.ip("ip"), r.flag("t"), r.flag("f"), r.strings("s"), r.strings("l")) == (
        443, "2001:db8::1", True, False, ["one"], ["a"])
    with pytest.raises(BadRecord):
        r.port("big")
    assert r.first("nope", "s", "p") == "one"
    assert r.texts("s", "nope", "p") == {"s": "one", "p": "443"}


@pytest.mark.parametrize(("text", "reason"), [("{", "bad_json"), ("[1]", "bad_json"), ('"x"', "bad_json")])
def test_load_needs_an_object(text, reason):
    with pytest.raises(BadRecord) as e:
        load(text)
    assert (e.value.reason, e.value.field) == (reason, "record")


@pytest.mark.parametrize(("host", "expected"), [
    ("shop.example.com:443", "shop.example.com"), ("[2001:db8::1]:8443", "2001:db8::1"),
    ("2001:db8::1", "2001:db8::1"), ("shop.example.com", "shop.example.com"), ("", None), (None, None),
])
def test_host_only(host, expected):
    assert host_only(host) == expected


def test_lone_surrogate_escapes_read_as_replacement_characters():
    """`\\udfff` (a JSON writer's escape for a byte it could not decode) is no reason to lose the record: it
    reads as U+FFFD; surrogate pairs stay characters; anything else orjson refuses is still bad JSON."""
    from pipeline.normalize._jsonrec import loads

    assert loads('{"u": "/a\\udfff\\ud800b", "e": "\\ud83d\\ude00", "k\\udc80": [1]}') == \
        {"u": "/a\ufffd\ufffdb", "e": "\U0001f600", "k\ufffd": [1]}
    for bad in ('{"u": "\\udfff"', '{"u": "\\ud800\\x"}', "[1,]"):
        with pytest.raises(ValueError):
            loads(bad)


def test_a_lone_surrogate_in_a_url_does_not_hide_the_detection():
    from .conftest import fixture_lines, run_text

    line = next(x for x in fixture_lines("ids/eve_attack.jsonl") if '"event_type":"alert"' in x and '"url":"/' in x)
    out = run_text("suricata", line.replace('"url":"/', '"url":"/\\udfff', 1))
    assert out.dead == [] and len(out.alerts) == 1 and "/\ufffd" in (out.alerts[0].http.url or "")
