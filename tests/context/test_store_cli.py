"""State directory and the `mdr assets` / `mdr intel` commands; `mdr replay --assets/--intel/--escort`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.context.store import Context
from tests.e2e.test_lab1_context import LAB
from tests.lab import WEB_01

from .conftest import alert, data

runner = CliRunner()


def mdr(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_assets_import_list_and_rejection(mdr_home: Path):
    r = mdr("assets", "import", data("assets.yaml"), "--tenant", "shop")
    assert r.exit_code == 0, r.output
    saved = mdr_home / "context" / "shop" / "assets.json"
    assert [a["name"] for a in orjson.loads(saved.read_bytes())["assets"]] == [
        "web-01", "office-lan", "db-01", "finance-subnet"]
    r = mdr("assets", "import", data("assets_bad.yaml"), "--tenant", "shop")
    assert r.exit_code == 1
    assert "assets_bad.yaml:8: ips[1]: not an IP or CIDR: '10.0.0.300'" in r.output
    assert len(orjson.loads(saved.read_bytes())["assets"]) == 4  # the last good set stays
    r = mdr("assets", "list")
    assert r.exit_code == 0 and "web-01" in r.output and "db-01" in r.output


def test_intel_import_scopes_and_lookup(mdr_home: Path):
    assert mdr("intel", "import", data("iocs.csv")).exit_code == 2  # neither --tenant nor --global
    assert mdr("intel", "import", data("iocs.csv"), "--tenant", "shop", "--global").exit_code == 2
    r = mdr("intel", "import", data("iocs.csv"), "--tenant", "shop")
    assert r.exit_code == 0 and "7 indicators (csv)" in r.output
    r = mdr("intel", "import", data("stix_bundle.json"), "--global")
    assert r.exit_code == 0 and "complex pattern: 1" in r.output
    r = mdr("intel", "lookup", "c2.malware-lab.test", "--tenant", "shop")
    assert r.exit_code == 0 and "lab-feed" in r.output and "Lab CERT" in r.output
    r = mdr("intel", "lookup", "203.0.113.5", "--tenant", "shop")
    assert r.exit_code == 0 and r.output.strip().endswith("not valid now")  # expired in 2021
    assert mdr("intel", "lookup", "127.0.0.66").exit_code == 1  # a tenant feed is not global
    assert mdr("intel", "lookup", "127.0.0.66", "--tenant", "bank").exit_code == 1
    r = mdr("intel", "import", data("assets.yaml"), "--global")
    assert r.exit_code == 1 and "not valid JSON" in r.output


def test_state_round_trip_and_tenant_filter(mdr_home: Path):
    ctx = Context()
    assert ctx.load_assets("acme-eu", data("assets.csv"))
    assert ctx.load_assets("shop", data("assets.yaml"))
    ctx.load_intel(data("misp_event.json"))
    ctx.load_intel(data("iocs.csv"), tenant="shop")
    esc = mdr_home.parent / "escort.csv"
    esc.write_text("start,end,name\n2026-11-20,2026-11-30,Shopping festival\n")
    assert ctx.load_escort("shop", esc)
    ctx.save()
    back = Context.from_state(tenants=["acme-eu"])
    assert set(back.assets) == {"acme-eu"} and back.inventory("acme-eu").by_name("mx1.example.org")
    assert set(back.intel) == {"_global"}
    full = Context.from_state()
    assert set(full.assets) == {"acme-eu", "shop"}
    assert full.escort["shop"].periods[0].name == "Shopping festival"
    a = alert(src={"ip": "127.0.0.66"}, dst={"ip": "127.0.0.1"}, dns={"query": "cdn.shell-drop.example"})
    full.enrich(a)
    assert a.asset.name == "web-01"
    assert {h.source for h in a.intel} == {"lab-feed", "misp:CIRCL"}


@pytest.mark.skipif(LAB is None, reason="lab-1 sample (shared or bundled) not present")
def test_replay_with_context_files(mdr_home: Path, tmp_path: Path):
    (tmp_path / "assets.yaml").write_text(WEB_01)
    (tmp_path / "escort.csv").write_text("start,end,name\n2026-11-24,2026-11-24,Audit day\n")
    out = tmp_path / "out"
    r = mdr("replay", LAB, "--tenant", "shop", "--out", out, "--assets", tmp_path / "assets.yaml",
            "--escort", tmp_path / "escort.csv",
            "--intel", data("iocs.csv"), "--intel", data("stix_bundle.json"))
    assert r.exit_code == 0, r.output
    incidents = [orjson.loads(ln) for ln in (out / "incidents.jsonl").read_bytes().splitlines()]
    live = [i for i in incidents if i.get("status") != "merged"]
    assert live
    assert all(i["escort"] == "Audit day" and i["title"].endswith(" [escort: Audit day]") for i in live)
    assert any(i.get("asset", {}).get("name") == "web-01" and i["priority"] == "P1" for i in live)
    assert any(h["indicator"] == "malware-lab.test" for i in incidents for h in i.get("intel", []))
    r = mdr("replay", LAB, "--tenant", "shop", "--out", out, "--assets", data("assets_bad.yaml"))
    assert r.exit_code == 2 and "assets_bad.yaml:8: ips[1]" in r.output


@pytest.mark.parametrize("content", ["", "# nothing but a comment\n", "assets: []\n", "name,ips,criticality\n"])
def test_empty_inventory_file_is_rejected_and_the_inventory_stays(mdr_home: Path, tmp_path: Path,
                                                                  content: str):
    assert mdr("assets", "import", data("assets.yaml"), "--tenant", "shop").exit_code == 0
    saved = mdr_home / "context" / "shop" / "assets.json"
    before = saved.read_bytes()
    empty = tmp_path / ("empty.csv" if content.startswith("name,") else "empty.yaml")
    empty.write_text(content)
    r = mdr("assets", "import", empty, "--tenant", "shop")
    assert r.exit_code == 1 and "no assets in the file" in r.output and "--allow-empty" in r.output
    assert saved.read_bytes() == before  # the last good inventory is kept
    ctx = Context()
    assert not ctx.load_assets("shop", empty) and "no assets in the file" in ctx.errors[0]  # `replay --assets`


def test_unparseable_inventory_and_feed_are_rejected(mdr_home: Path, tmp_path: Path):
    assert mdr("assets", "import", data("assets.yaml"), "--tenant", "shop").exit_code == 0
    assert mdr("intel", "import", data("iocs.csv"), "--tenant", "shop", "--name", "lab").exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("assets: [\n  - name: web-01\n")
    r = mdr("assets", "import", bad, "--tenant", "shop")
    assert r.exit_code == 1 and "not valid YAML" in r.output
    garbage = tmp_path / "feed.json"
    garbage.write_bytes(b"\x00\x01{{{")
    r = mdr("intel", "import", garbage, "--tenant", "shop", "--name", "lab")
    assert r.exit_code == 1 and "not valid JSON" in r.output
    ctx = Context.from_state(tenants=["shop"])
    assert len(ctx.inventory("shop")) == 4 and len(ctx.intel["shop"]["lab"]) == 7


def test_empty_feed_is_rejected_and_allow_empty_clears_on_purpose(mdr_home: Path, tmp_path: Path):
    assert mdr("intel", "import", data("iocs.csv"), "--tenant", "shop", "--name", "lab").exit_code == 0
    assert mdr("assets", "import", data("assets.yaml"), "--tenant", "shop").exit_code == 0
    empty_csv = tmp_path / "lab.csv"
    empty_csv.write_text("value,type\n")
    r = mdr("intel", "import", empty_csv, "--tenant", "shop", "--name", "lab")
    assert r.exit_code == 1 and "no indicators in the file" in r.output
    assert len(Context.from_state(tenants=["shop"]).intel["shop"]["lab"]) == 7
    r = mdr("intel", "import", empty_csv, "--tenant", "shop", "--name", "lab", "--allow-empty")
    assert r.exit_code == 0 and "0 indicators" in r.output
    empty = tmp_path / "none.yaml"
    empty.write_text("")
    r = mdr("assets", "import", empty, "--tenant", "shop", "--allow-empty")
    assert r.exit_code == 0 and "the inventory is now empty" in r.output
    ctx = Context.from_state(tenants=["shop"])
    assert len(ctx.inventory("shop")) == 0 and len(ctx.intel["shop"]["lab"]) == 0
