"""Tenant ids (issue 13 §7): one strict syntax at every entry point; no two tenants share a folder, no id
reaches global data or a path outside its folder."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.context.intel import IntelSet
from pipeline.context.store import Context, save_assets, save_intel
from pipeline.soar.connectors import ChannelConfigError, Channels
from pipeline.soar.playbooks import load_playbooks
from pipeline.tenant import TenantError, check_tenant, is_tenant

from .conftest import alert, data

GOOD = ["shop", "t2", "acme-corp", "cust_0042", "0", "x" * 63, "3f2b8c1e-5a7d-4e2f-9b1a-0c6d2e8f4a11"]
BAD = ["", " ", "a b", "Shop", "_global", "_x", ".", "..", "../x", "a/b", "a\\b", "shop\n", "\nshop", "x" * 64,
       "ѕhop", "a\x00", "-a", "a.b", "[/]", "a:b"]


@pytest.mark.parametrize("good", GOOD)
def test_valid_ids(good: str) -> None:
    assert is_tenant(good) and check_tenant(good) == good


@pytest.mark.parametrize("bad", BAD)
def test_invalid_ids_are_refused_with_one_line(bad: str) -> None:
    assert not is_tenant(bad)
    with pytest.raises(TenantError) as e:
        check_tenant(bad)
    assert "\n" not in str(e.value) and ("reserved" in str(e.value) or "lower-case letters" in str(e.value))


def test_upper_case_gets_a_hint() -> None:
    with pytest.raises(TenantError, match=r"'Shop' \(lower-case\)"):
        check_tenant("Shop")


def _commands(tmp: Path, bad: str) -> list[list[str]]:
    lab = str(Path(__file__).resolve().parents[2] / "samples" / "lab-1")
    db = f"sqlite:///{tmp / 'soar.db'}"
    return [
        ["replay", "--tenant", bad, lab, "--out", str(tmp / "out")],
        ["assets", "import", "--tenant", bad, str(data("assets.yaml"))],
        ["assets", "list", "--tenant", bad],
        ["intel", "import", "--tenant", bad, str(data("iocs.csv"))],
        ["intel", "lookup", "--tenant", bad, "203.0.113.5"],
        ["tickets", "list", "--tenant", bad, "--db", db],
        ["report", "--tenant", bad, "--db", db, "--out", str(tmp / "r.html")],
        ["model", "train", "--tenant", bad, "--data", str(tmp), "--out", str(tmp / "m")],
        ["model", "evaluate", "--tenant", bad, "--model", str(tmp / "m"), "--data", str(tmp)],
        ["produce", "--tenant", bad, lab, "--topic", "waf", "--bootstrap", "127.0.0.1:1"],
        ["demo", "--tenant", bad],
    ]


@pytest.mark.parametrize("bad", ["", "a b", "_global", "..", "[/]"])
def test_every_tenant_option_refuses_bad_ids_before_any_work(bad: str, tmp_path: Path, mdr_home: Path) -> None:
    for args in _commands(tmp_path, bad):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --tenant: "), (args, r.output)
    assert not mdr_home.exists() and not (tmp_path / "out").exists() and not (tmp_path / "soar.db").exists()


def test_worker_refuses_a_bad_topic_binding(tmp_path: Path) -> None:
    for bind in ("waf=a b", "waf=_global", "waf=", "waf"):
        r = CliRunner().invoke(app, ["worker", "--bind", bind, "--data-dir", str(tmp_path / "w")])
        assert r.exit_code == 2 and r.output.startswith("error: --bind: "), (bind, r.output)
        assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_ids_that_used_to_collide_get_their_own_inventory_or_are_refused(mdr_home: Path) -> None:
    """`a b` and `a_b` shared one folder (the second import replaced the first); now `a b` is refused."""
    r = CliRunner().invoke(app, ["assets", "import", str(data("assets.yaml")), "--tenant", "a_b"])
    assert r.exit_code == 0, r.output
    before = (mdr_home / "context" / "a_b" / "assets.json").read_bytes()
    r = CliRunner().invoke(app, ["assets", "import", str(data("assets.csv")), "--tenant", "a b"])
    assert r.exit_code == 2
    assert (mdr_home / "context" / "a_b" / "assets.json").read_bytes() == before
    assert sorted(p.name for p in (mdr_home / "context").iterdir()) == ["a_b"]
    r = CliRunner().invoke(app, ["assets", "import", str(data("assets.csv")), "--tenant", "a-b"])
    assert r.exit_code == 0  # a distinct id, a distinct folder
    ctx = Context.from_state()
    assert set(ctx.assets) == {"a_b", "a-b"}
    assert ctx.inventory("a_b").by_name("shop.lab.local") and not ctx.inventory("a_b").by_name("mail.example.org")
    assert ctx.inventory("a-b").by_name("mail.example.org")


def test_global_is_reserved_so_no_import_becomes_everyones_intel(mdr_home: Path) -> None:
    for args in (["intel", "import", str(data("iocs.csv")), "--tenant", "_global"],
                 ["assets", "import", str(data("assets.yaml")), "--tenant", "_global"]):
        assert CliRunner().invoke(app, args).exit_code == 2
    assert not mdr_home.exists()
    ctx = Context()
    with pytest.raises(TenantError):
        ctx.load_intel(data("iocs.csv"), tenant="_global")
    with pytest.raises(TenantError):
        ctx.add_intel(IntelSet("x", "test"), "_global")
    assert not ctx.intel
    other = alert(tenant="bank", dns={"query": "c2.malware-lab.test"})
    ctx.enrich(other)
    assert other.intel == []


@pytest.mark.parametrize("bad", [".", "..", "../../x", "/tmp/x", "a/../../b", ""])
def test_no_tenant_id_writes_outside_its_folder(bad: str, mdr_home: Path) -> None:
    ctx = Context()
    assert ctx.load_assets("shop", data("assets.yaml"))
    with pytest.raises(TenantError):
        save_assets(bad, ctx.inventory("shop"))
    with pytest.raises(TenantError):
        save_intel(IntelSet("feed", "test"), bad)
    with pytest.raises(TenantError):
        ctx.load_assets(bad, data("assets.yaml"))
    with pytest.raises(TenantError):
        Context.from_state(tenants=[bad])
    root = mdr_home.parent
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == []


def test_state_folders_that_are_not_tenant_ids_are_ignored_and_reported(mdr_home: Path) -> None:
    ctx = Context()
    assert ctx.load_assets("shop", data("assets.yaml"))
    ctx.save()
    legacy = mdr_home / "context" / "A B"  # written by hand, or by an old version's sanitizing
    legacy.mkdir()
    (legacy / "assets.json").write_bytes((mdr_home / "context" / "shop" / "assets.json").read_bytes())
    back = Context.from_state()
    assert set(back.assets) == {"shop"}
    assert any("A B" in e and "not a tenant id" in e for e in back.errors)


def test_feed_names_that_used_to_collide_are_distinct_files(mdr_home: Path) -> None:
    a, b = IntelSet("x y", "one"), IntelSet("x_y", "two")
    a.put("203.0.113.9", ("ip", "one", None, (), None, None))
    b.put("198.51.100.9", ("ip", "two", None, (), None, None))
    pa, pb = save_intel(a, "shop"), save_intel(b, "shop")
    assert pa != pb and pa.parent == pb.parent == mdr_home / "context" / "shop" / "intel"
    assert {s.name for s in Context.from_state().intel_sets("shop")} == {"x y", "x_y"}
    assert save_intel(IntelSet("../../evil", "x"), "shop").parent == pa.parent


def test_config_files_name_tenants_by_id(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="'a b' is not a tenant id"):
        Channels({"tenants": {"a b": {"ops": {"type": "log", "path": str(tmp_path / "x")}}}})
    pb = tmp_path / "pb.yaml"
    pb.write_text("name: t\ntrigger: {tenants: [shop, Bad Tenant]}\nsteps:\n  - enrich: [asset]\n")
    errs = [str(e) for e in load_playbooks(pb).errors]
    assert errs == [f"{pb}:2: trigger.tenants: ['Bad Tenant'] are not tenant ids "
                    "(1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit)"]


def test_saved_inventory_round_trips_with_the_id_as_folder(mdr_home: Path) -> None:
    ctx = Context()
    assert ctx.load_assets("cust-0042", data("assets.yaml"))
    ctx.save()
    doc = orjson.loads((mdr_home / "context" / "cust-0042" / "assets.json").read_bytes())
    assert doc["assets"] and not (mdr_home / "context" / "cust-0042" / ".tenant").exists()
