"""The README answers a new user's first questions with commands that exist (issue 14, §5): its first screen
gives `make demo` and `make test`; every `mdr` command, option and file it shows is real; and its sample-day
replay, tickets and report run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from pipeline.cli import app
from tests.cli.helpers import ROOT, mdr

README = (ROOT / "README.md").read_text()
FIRST_SCREEN = 24  # lines


def commands() -> list[list[str]]:
    """The `mdr ...` command lines of the README's shell blocks (continuations joined, comments dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in re.split(r"&&|\$\(|\)", line):
                words = shlex.split(part.strip()) if part.strip() else []
                if words and words[0] == "mdr":
                    out.append(words[1:])
    return out


def test_first_screen_gives_the_two_commands() -> None:
    head = "\n".join(README.splitlines()[:FIRST_SCREEN])
    assert "make demo" in head and "make test" in head


@pytest.mark.parametrize("words", commands(), ids=lambda w: " ".join(w[:3]))
def test_every_mdr_command_and_option_in_the_readme_exists(words: list[str]) -> None:
    cmd = typer.main.get_command(app)
    rest = list(words)
    while getattr(cmd, "commands", None) is not None and rest and not rest[0].startswith("-"):  # a group
        sub = cmd.commands.get(rest[0])
        assert sub is not None, f"no command {rest[0]!r} in `mdr {' '.join(words)}`"
        cmd, rest = sub, rest[1:]
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for w in rest:
        if w.startswith("--"):
            assert w.split("=")[0] in known, f"`mdr {' '.join(words)}`: no option {w}"
        elif w.startswith(("samples/", "usecases/", "playbooks/", "models/", "docs/")):  # shipped files
            assert (ROOT / w).exists(), f"`mdr {' '.join(words)}`: no file {w}"


def test_readme_covers_the_first_questions() -> None:
    for needle in ("source .venv/bin/activate", "sqlite:///", "postgresql://", "samples/lab-1-context/assets.yaml",
                   "samples/lab-1-context/intel.csv", "mdr report --tenant shop --period day --from 2026-11-24",
                   "playbooks/channels.yaml", "MDR_DINGTALK_URL", "mdr incidents tail", "Stop them in this order",
                   "## Docker Compose", "MDR_HOME"):
        assert needle in README, needle


def test_the_sample_day_runs_as_written(tmp_path: Path) -> None:
    """The README's replay (with the shipped inventory and intel), tickets and report, in a fresh MDR_HOME."""
    home = tmp_path / "home"
    lines = [w for w in commands() if w[0] in ("replay", "tickets", "report")][:3]
    assert [w[0] for w in lines] == ["replay", "tickets", "report"]
    for words in lines:
        words = [str(tmp_path / w) if w.startswith("out/") else w for w in words]
        r = mdr(*words, home=home, timeout=300)
        assert r.code == 0 and "Traceback" not in r.text, r.text
    assert (tmp_path / "out" / "incidents.jsonl").is_file() and (tmp_path / "out" / "report.html").is_file()
    assert "raised to P1: threat intel" in (tmp_path / "out" / "incidents.jsonl").read_text()  # the feed was used
