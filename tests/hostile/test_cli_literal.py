"""Issue 13 §3: text from records is printed literally by every CLI table and line (replay summary, tickets
list / show, assets and intel, playbooks, report, the demo's live table, log lines). Rich markup in it
(`[/]`, `[link=...]`) neither crashes a command nor makes a link, and control sequences (ANSI / OSC 8,
C1, bidi overrides) never reach the terminal raw: they show as escapes."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from rich.console import Console
from rich.errors import MarkupError
from typer.testing import CliRunner, Result

from pipeline.cli import app
from tests.hostile.corpus import AIDE_FILE, CONTROL, HOST, LAB1, SSH_HOST, write_aide, write_sshd, write_waf

pytestmark = pytest.mark.skipif(not LAB1.is_dir(), reason="samples/lab-1 not present")


def run(*args: str) -> Result:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, (r.output, r.exception)
    return r


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The CLI's consoles as one wide colour terminal: what a user's terminal would receive."""
    import pipeline.classify.cli
    import pipeline.cli
    import pipeline.context.cli
    import pipeline.report.cli
    import pipeline.soar.cli

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, color_system="truecolor", width=4000)
    for mod, name in ((pipeline.cli, "console"), (pipeline.soar.cli, "out"), (pipeline.soar.cli, "err"),
                      (pipeline.context.cli, "out"), (pipeline.context.cli, "err"), (pipeline.report.cli, "err"),
                      (pipeline.classify.cli, "console")):
        monkeypatch.setattr(mod, name, console)
    return buf


def clear(buf: io.StringIO) -> None:
    buf.seek(0)
    buf.truncate()


def assert_literal(shown: str, *fragments: str) -> None:
    """No link, no raw control sequence; the record text itself is there, literally."""
    assert "\x1b]8;" not in shown  # no OSC 8 hyperlink (a spoofed [link=...])
    for c in CONTROL[1:]:
        assert c not in shown, repr(c)
    assert "\x1b[2J" not in shown
    for f in fragments:
        assert f in shown, f


def test_issue_reproduction_user_name_markup(home: Path) -> None:
    """The issue's reproduction: six sshd lines for user `[/]`, `mdr replay DIR`, `mdr tickets list`."""
    d = write_sshd(home / "in")
    out, db = home / "out", f"sqlite:///{home}/home/soar.db"  # the default store, in MDR_HOME
    run("replay", str(d), "--tenant", "shop", "--out", str(out))
    run("replay", str(d), "--tenant", "acme", "--out", str(out))
    for tenant in ([], ["--tenant", "shop"], ["--tenant", "acme"]):
        run("tickets", "list", "--db", db, *tenant)
    run("tickets", "show", "1", "--db", db)
    run("tickets", "show", "2", "--json", "--db", db)


@pytest.mark.parametrize("where", ["sshd host", "aide path", "waf host header"])
def test_record_markup_and_controls_print_literally(where: str, home: Path, terminal: io.StringIO) -> None:
    d = home / "in"
    if where == "sshd host":
        write_sshd(d, host=SSH_HOST)
        shown = [SSH_HOST]
    elif where == "aide path":
        write_aide(d)
        shown = [AIDE_FILE]
    else:
        write_waf(d)
        shown = ["[link=http://evil.example/]click[/link]", "\\x1b]8;;http://evil.example/\\x07spoof", "\\u202eRLO"]
    out, db = home / "out", f"sqlite:///{home}/home/soar.db"  # the default store, in MDR_HOME
    # without --host: the records' own names (the syslog host, the Host header) name the server (docs/assets.md)
    run("replay", str(d), "--tenant", "shop", "--out", str(out))
    if where != "aide path":  # its incident is fused into the compromise incident: in that ticket only
        assert_literal(terminal.getvalue(), *shown)
    clear(terminal)
    run("tickets", "list", "--db", db)
    tickets = [json.loads(line) for line in (out / "tickets.jsonl").read_text().splitlines()]
    for t in tickets:
        run("tickets", "note", str(t["id"]), "seen [/] \x1b[2J", "--by", "[bold]ana[/bold]", "--db", db)
        run("tickets", "ack", str(t["id"]), "--by", "[link=http://evil.example/]ana[/link]", "--db", db)
        run("tickets", "show", str(t["id"]), "--db", db)
    assert_literal(terminal.getvalue(), *shown, "seen [/] \\x1b[2J", "[link=http://evil.example/]ana[/link]")


def test_json_output_escapes_controls(home: Path, terminal: io.StringIO) -> None:
    write_waf(home / "in")
    out, db = home / "out", f"sqlite:///{home}/home/soar.db"  # the default store, in MDR_HOME
    run("replay", str(home / "in"), "--tenant", "shop", "--out", str(out))
    clear(terminal)
    run("tickets", "list", "--json", "--db", db)
    run("tickets", "show", "1", "--json", "--db", db)
    assert_literal(terminal.getvalue(), "\\u202eRLO")


def test_error_messages_with_markup(home: Path, terminal: io.StringIO) -> None:
    """A ticket reference or an inventory value with markup comes back in an error message: shown literally."""
    from pipeline.soar.tickets import TicketStore

    TicketStore(f"sqlite:///{home}/soar.db").close()  # an existing, empty store
    r = CliRunner().invoke(app, ["tickets", "show", "[/]", "--db", f"sqlite:///{home}/soar.db"])
    assert r.exit_code == 1 and "no ticket [/]" in terminal.getvalue()
    bad = home / "assets.yaml"
    bad.write_text("assets:\n  - name: '[/]x'\n    criticality: '[link=http://evil.example/]high[/link]'\n")
    r = CliRunner().invoke(app, ["assets", "import", str(bad), "--tenant", "shop"])
    assert r.exit_code == 1 and "[link=http://evil.example/]high[/link]" in terminal.getvalue()
    assert_literal(terminal.getvalue())


LINK = "[link=http://evil.example/]x[/link]"


def _error_cases(home: Path) -> dict[str, tuple[list[str], int, str]]:
    """Commands whose arguments come back in their error line: (arguments, exit code, text shown literally)."""
    rules = home / "[link=file:evil]x[" / "]rules"  # the path reads `.../[link=file:evil]x[/]rules`
    rules.mkdir(parents=True)
    (rules / "bad.yaml").write_text("title: [unclosed\n")
    sshd = write_sshd(home / "in")
    return {
        "report --period": (["report", "--tenant", "shop", "--period", "[/]"], 2, "[/]"),
        "report --from": (["report", "--tenant", "shop", "--from", LINK], 2, repr(LINK)),
        "report --format": (["report", "--tenant", "shop", "--format", "[/]"], 2, "'[/]' is not one of"),
        "replay --format": (["replay", str(sshd), "--format", LINK], 2, f"unknown format {LINK!r}"),
        "replay missing input": (["replay", str(home / "x[" / "]none.log")], 2, "x[/]none.log"),
        "replay --usecases": (["replay", str(sshd), "--usecases", str(home / "x[" / "]no-rules"), "--out",
                               str(home / "o")], 2, "x[/]no-rules"),
        "rules validate": (["rules", "validate", str(rules)], 1, "[link=file:evil]x[/]rules"),
        "rules test": (["rules", "test", str(rules)], 1, "[link=file:evil]x[/]rules"),
        "model train --data": (["model", "train", "--data", str(home / "x[" / "]data"), "--out", str(home / "m")],
                               2, "x[/]data"),
        "model evaluate --split": (["model", "evaluate", "--model", str(home), "--data", str(home), "--split",
                                    "[/]"], 2, "unknown split '[/]'"),
    }


@pytest.mark.parametrize("case", ["report --period", "report --from", "report --format", "replay --format",
                                  "replay missing input", "replay --usecases", "rules validate", "rules test",
                                  "model train --data", "model evaluate --split"])
def test_error_lines_print_arguments_literally(case: str, home: Path, terminal: io.StringIO) -> None:
    """`fail()` and every error line quote what the user (or a file an attacker wrote) gave: never read as
    markup (`[/]` used to end `mdr report` with a MarkupError traceback), never a link."""
    args, code, shown = _error_cases(home)[case]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == code and not isinstance(r.exception, MarkupError), (r.output, r.exception)
    assert_literal(terminal.getvalue() + r.output, shown)


def test_assets_list_and_intel_lookup(home: Path, terminal: io.StringIO) -> None:
    inv = home / "assets.yaml"
    inv.write_text('assets:\n  - name: "[/]web \\u001b[2J"\n    criticality: high\n    ips: [203.0.113.5]\n'
                   '    owner: "[link=http://evil.example/]ops[/link]"\n    tags: ["\\u202eRLO"]\n')
    run("assets", "import", str(inv), "--tenant", "shop")
    run("assets", "list")
    assert_literal(terminal.getvalue(), "[/]web \\x1b[2J", "[link=http://evil.example/]ops[/link]", "\\u202eRLO")
    feed = home / "feed.csv"
    feed.write_text("value,type,source,tags\nevil.example,domain,[/]src \x1b[2J,[/]c2;\u202eRLO\n")
    run("intel", "import", str(feed), "--tenant", "shop", "--name", "[/]feed")
    r = run("intel", "lookup", "evil.example", "--tenant", "shop")
    assert "source=[/]src \\x1b[2J" in r.output and "[/]c2,\\u202eRLO" in r.output
    assert not any(c in r.output for c in CONTROL)


def test_playbook_dry_run_prints_record_text_literally(home: Path, terminal: io.StringIO) -> None:
    from tests.soar.helpers import incident

    inc = incident(1, title=f"Web attack against {HOST}", hosts=[HOST])
    from pipeline.schema import encode

    f = home / "incident.json"
    f.write_bytes(encode(inc))
    run("playbooks", "run", str(f), "--dry-run")
    assert_literal(terminal.getvalue(), "[link=http://evil.example/]click[/link]")


def test_report_cli_path_with_markup(home: Path, terminal: io.StringIO) -> None:
    out = home / "[/]reports" / "r.md"
    run("replay", str(write_sshd(home / "in")), "--tenant", "shop", "--out", str(home / "out"))  # data to report
    run("report", "--tenant", "shop", "--format", "md", "--out", str(out))
    assert out.is_file()
    assert_literal(terminal.getvalue(), "[/]reports")


def test_demo_live_table_is_literal() -> None:
    from pipeline.tables import incident_table
    from tests.soar.helpers import incident

    inc = incident(1, title=f"Web attack against {HOST}")
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=400).print(incident_table([inc], 400, "streaming"))
    assert_literal(buf.getvalue(), "[link=http://evil.example/]click[/link]", "\\u202eRLO")


def test_log_lines_cannot_be_forged_or_drive_the_terminal() -> None:
    from pipeline.redact import install_logging

    install_logging()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    log = logging.getLogger("pipeline.test.hostile")
    log.addHandler(handler)
    try:
        log.warning("rejected user %s", f"x\n2026-11-24 INFO all clear {AIDE_FILE}\x1b[2J\u202e")
        try:
            raise ValueError("bad value \x1b]8;;http://evil.example/\x07")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    lines = buf.getvalue().splitlines()
    assert lines[0] == ("rejected user x\\n2026-11-24 INFO all clear " + AIDE_FILE + "\\x1b[2J\\u202e")
    assert_literal(buf.getvalue(), "bad value \\x1b]8;;http://evil.example/\\x07")
