"""One safe YAML loader for every YAML file (issue 13 §9): alias bombs, deep nesting, self-containing aliases
and oversized files are refused quickly with file:line, by the asset, escort, playbook, channel, secret and
use-case loaders alike."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline import safeyaml
from pipeline.cli import app
from pipeline.context.assets import load_assets
from pipeline.context.loader import ContextFileError
from pipeline.context.priority import load_escort
from pipeline.rules.usecase import load_usecases
from pipeline.safeyaml import YamlLimitError, key_line, load_all_with_nodes
from pipeline.soar.connectors import ChannelConfigError, load_channels
from pipeline.soar.connectors.base import Secrets
from pipeline.soar.playbooks import load_playbooks

ROOT = Path(__file__).resolve().parents[2]


def bomb(levels: int = 9, key: str = "assets") -> str:
    """Billion laughs: 10^levels nodes once the aliases are expanded, in under 1 KB."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"{key}: [*l{levels - 1}]", ""])


def test_alias_bomb_is_refused_at_once_with_its_line() -> None:
    text = bomb()
    assert len(text) < 1000
    t0 = time.monotonic()
    with pytest.raises(YamlLimitError) as e:
        safeyaml.load(text)
    assert time.monotonic() - t0 < 1.0
    assert "aliases expanded" in str(e.value.problem) and e.value.problem_mark.line + 1 <= 9


def test_limits_on_depth_self_reference_and_size() -> None:
    with pytest.raises(YamlLimitError, match="nesting deeper"):
        safeyaml.load("[" * 5000 + "]" * 5000)  # would be a RecursionError in PyYAML
    with pytest.raises(YamlLimitError, match="contains it"):
        safeyaml.load("a: &a [1, *a]")
    with pytest.raises(YamlLimitError, match="over the limit"):
        safeyaml.load("x: " + "y" * (safeyaml.MAX_BYTES + 1))


def test_ordinary_anchors_and_merge_keys_still_load() -> None:
    doc = safeyaml.load("base: &b {timeout: 10s, retry: 3}\nstep: {<<: *b, retry: 5}\nagain: *b\n")
    assert doc == {"base": {"timeout": "10s", "retry": 3}, "step": {"timeout": "10s", "retry": 5},
                   "again": {"timeout": "10s", "retry": 3}}
    with pytest.raises(yaml.constructor.ConstructorError):
        safeyaml.load("!!python/object/apply:os.system ['true']")


def test_key_line_finds_the_deepest_key() -> None:
    [(_, node)] = load_all_with_nodes("# c\ntitle: x\nmdr:\n  category: exploit\n  priority: P9\n")
    assert key_line(node, ("mdr", "priority")) == (5, ("mdr", "priority"))
    assert key_line(node, ("mdr", "window")) == (3, ("mdr",))
    assert key_line(node, ("tests",)) == (2, ())


def test_asset_import_refuses_a_bomb_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1e8-node bomb ran > 60 s and took 3 GB in `mdr assets import`."""
    monkeypatch.setenv("MDR_HOME", str(tmp_path / "home"))
    f = tmp_path / "assets.yaml"
    f.write_text(bomb())
    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["assets", "import", str(f), "--tenant", "shop"])
    assert time.monotonic() - t0 < 5
    assert r.exit_code == 1 and re.search(r"assets\.yaml:\d+: not valid YAML: more than \d+ nodes", r.output)
    assert not (tmp_path / "home").exists()


def test_every_yaml_loader_refuses_the_bomb(tmp_path: Path) -> None:
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb(key="periods"))
    for loader in (load_assets, load_escort):
        with pytest.raises(ContextFileError, match=r"bomb\.yaml:\d+: not valid YAML: more than"):
            loader(f)
    pb = tmp_path / "pb"
    pb.mkdir()
    (pb / "x.yaml").write_text(bomb(key="steps"))
    [err] = load_playbooks(pb).errors
    assert err.path.endswith("x.yaml") and err.line > 0 and "more than" in err.message
    with pytest.raises(ChannelConfigError, match="more than"):
        load_channels(f)
    with pytest.raises(YamlLimitError):
        Secrets(f).resolve("secret:x")
    uc = tmp_path / "uc"
    uc.mkdir()
    (uc / "rule.yml").write_text(bomb(key="detection"))
    [e] = load_usecases(str(uc)).errors
    assert e.path.endswith("rule.yml") and e.line > 0 and "more than" in e.message


def test_no_module_loads_yaml_around_the_safe_loader() -> None:
    """Every YAML load in the project goes through pipeline.safeyaml."""
    direct = re.compile(r"(?<![\w.])yaml\.(safe_load|load|load_all|safe_load_all|full_load|unsafe_load|compose)\b|"
                        r"(?<![\w.])yaml\.(Safe|Full|Unsafe|C\w*)?Loader\b")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "pipeline").rglob("*.py")
                 if p.name != "safeyaml.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if direct.search(line)]
    assert offenders == []
