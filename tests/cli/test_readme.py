"""The README answers a new user's first questions with commands that exist (issue 14, §5): its first screen
gives `make demo` and `make test`; every `mdr`, `make` and `docker compose` command, option, path and
environment variable it shows is real; and its sample-day replay, tickets and report run as written and print
the figures it gives. (Its streaming recipe runs as written in tests/stream/test_first_hour.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
import yaml

from pipeline.cli import app
from tests.cli import readme
from tests.cli.helpers import ROOT, mdr

FIRST_SCREEN = 24  # lines
SHIPPED = ("samples/", "usecases/", "playbooks/", "models/", "docs/")  # arguments that name shipped files


def test_first_screen_gives_the_two_commands() -> None:
    head = "\n".join(readme.TEXT.splitlines()[:FIRST_SCREEN])
    assert "make demo" in head and "make test" in head


MDR_COMMANDS = readme.unique([*readme.shell_commands(("mdr",)), *readme.inline_commands("mdr"), *(
    w[3:] for w in readme.shell_commands(("docker", "compose")) if w[:3] == ["run", "--rm", "mdr"])])


@pytest.mark.parametrize("words", MDR_COMMANDS, ids=lambda w: " ".join(w[:4]))
def test_every_mdr_command_and_option_in_the_readme_exists(words: list[str]) -> None:
    cmd = typer.main.get_command(app)
    rest = list(words)
    while getattr(cmd, "commands", None) is not None and rest and not rest[0].startswith("-"):  # a group
        sub = cmd.commands.get(rest[0])
        assert sub is not None, f"no command {rest[0]!r} in `mdr {' '.join(words)}`"
        cmd, rest = sub, rest[1:]
    assert getattr(cmd, "commands", None) is None or rest[:1] == ["--help"], f"`mdr {' '.join(words)}` is a group"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    for w in rest:
        if w.startswith("--"):
            assert w.split("=")[0] in known, f"`mdr {' '.join(words)}`: no option {w}"
        elif w.startswith(SHIPPED):
            assert (ROOT / w).exists(), f"`mdr {' '.join(words)}`: no file {w}"


def test_the_readme_shows_every_kind_of_command() -> None:
    """The parsers above find what they check (a README rewritten into another shape must not pass empty)."""
    shown = {" ".join(w[:2]) for w in MDR_COMMANDS}
    assert {"replay samples/lab-1", "tickets list", "report --tenant", "worker --metrics-port", "incidents tail",
            "broker start", "broker stop", "playbooks run", "assets import", "intel import"} <= shown, shown
    assert {"demo", "test", "install", "replay-demo", "report-demo", "clean"} <= {w[0] for w in _make_targets()}


def _make_targets() -> list[list[str]]:
    return readme.shell_commands(("make",)) + readme.inline_commands("make")


def test_every_make_target_in_the_readme_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    defined = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, re.M))
    for words in _make_targets():
        assert words and words[0] in defined, f"`make {' '.join(words)}`: no such target"


def test_docker_compose_commands_name_its_services() -> None:
    services = set(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])
    shown = readme.shell_commands(("docker", "compose"))
    assert shown
    for words in shown:
        if words[0] == "run":
            assert next(w for w in words[1:] if not w.startswith("-")) in services, words
        elif words[0] == "stop":
            assert set(words[1:]) <= services and words[1:], words


def test_every_repository_path_in_the_readme_exists() -> None:
    paths = readme.repository_paths()
    assert "playbooks/channels.yaml" in paths and "docs/priority.md" in paths
    for p in paths:
        if p.split("/")[0] in readme.GENERATED:
            continue
        assert (ROOT / p).exists(), f"the README names {p}, which is not in the repository"


def test_notification_variables_are_the_ones_channels_yaml_reads() -> None:
    """The Notifications section names every variable playbooks/channels.yaml reads, and no other channel one."""
    text = (ROOT / "playbooks" / "channels.yaml").read_text()
    read = set(re.findall(r"\benv\??:(MDR_[A-Z0-9_]+)", text))
    named = readme.variables(readme.section("Notifications"))
    assert read and read <= named, read - named
    others = named - read
    for var in others:  # the file's own location and the secrets file: read by the code
        assert any(var in p.read_text() for p in (ROOT / "pipeline").rglob("*.py")), var


def test_every_variable_the_readme_names_is_read_somewhere() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "pipeline").rglob("*.py")) + \
        (ROOT / "playbooks" / "channels.yaml").read_text()
    for var in sorted(readme.variables()):
        assert var in sources, f"the README names {var}, which nothing reads"


def test_readme_covers_the_first_questions() -> None:
    for needle in ("source .venv/bin/activate", "sqlite:///", "postgresql://", "samples/lab-1-context/assets.yaml",
                   "samples/lab-1-context/intel.csv", "mdr report --tenant shop --period day --from 2026-11-24",
                   "playbooks/channels.yaml", "MDR_DINGTALK_URL", "mdr incidents tail", "Stop them in this order",
                   "## Docker Compose", "MDR_HOME"):
        assert needle in readme.TEXT, needle


def _stage_table() -> dict[str, int]:
    """The sample day's `| stage | count |` table of the README."""
    rows = re.findall(r"^\| ([^|]+?) \| ([\d,]+) \|$", readme.section("One real attack day"), re.M)
    return {label: int(n.replace(",", "")) for label, n in rows}


def _summary_figure(text: str, label: str) -> int:
    m = re.search(rf"│ *{re.escape(label)} *│ *(\d+)", text)
    assert m, (label, text)
    return int(m.group(1))


def test_the_sample_day_runs_as_written(tmp_path: Path) -> None:
    """The README's replay (with the shipped inventory and intel), tickets and report, in a fresh MDR_HOME;
    the replay prints the figures of the README's table."""
    home = tmp_path / "home"
    lines = [w for w in readme.shell_commands(("mdr",)) if w[0] in ("replay", "tickets", "report")][:3]
    assert [w[0] for w in lines] == ["replay", "tickets", "report"]
    runs = []
    for words in lines:
        words = [str(tmp_path / w) if w.startswith("out/") else w for w in words]
        r = mdr(*words, home=home, timeout=300)
        assert r.code == 0 and "Traceback" not in r.text, r.text
        runs.append(r)
    assert (tmp_path / "out" / "incidents.jsonl").is_file() and (tmp_path / "out" / "report.html").is_file()
    assert "raised to P1: threat intel" in (tmp_path / "out" / "incidents.jsonl").read_text()  # the feed was used

    table, summary = _stage_table(), runs[0].text
    dedup = re.fullmatch(r"after dedup \(([\d,]+) repeats folded, ([\d,]+) error-log lines merged into their "
                         r"audit-log alert\)", next(k for k in table if k.startswith("after dedup")))
    assert dedup, table
    expect = {"records read": table["records read"], "alerts (normalized)": table["alerts (normalized)"],
              "alerts after dedup": table[dedup.group(0)],
              "repeats folded by dedup": int(dedup.group(1).replace(",", "")),
              "same-event merges (error log into audit log)": int(dedup.group(2).replace(",", "")),
              "dead letters": table["dead letters"], "incidents": table["incidents"]}
    assert {k: _summary_figure(summary, k) for k in expect} == expect
    assert len([ln for ln in runs[1].out.splitlines() if re.match(r"\s*\d+\s+P\d", ln)]) == table["incidents"]
