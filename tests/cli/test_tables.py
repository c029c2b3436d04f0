"""What an analyst reads on an 80-column terminal (issue 14, §8): whole words in short columns, long titles
cut with an ellipsis, and a replay summary whose counts add up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli.helpers import LAB1, ROOT, mdr

INVENTORY = ROOT / "tests" / "context" / "data" / "assets.yaml"


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(MDR_HOME, replay output) of the lab day with its inventory imported."""
    home = tmp_path_factory.mktemp("tables") / "home"
    assert mdr("assets", "import", str(INVENTORY), "--tenant", "shop", home=home).code == 0
    r = mdr("replay", str(LAB1), "--tenant", "shop", "--host", "web-01", "--out", str(home.parent / "out"),
            home=home)
    assert r.code == 0, r.text
    return home, r.text


def test_assets_list_shows_whole_values_at_80_columns(day: tuple[Path, str]) -> None:
    r = mdr("assets", "list", home=day[0])
    assert r.code == 0 and "internet" in r.out and "internal" in r.out and "intern…" not in r.out, r.out
    assert "critical" in r.out and "finance-subnet" in r.out
    assert max(len(ln) for ln in r.out.splitlines()) <= 80


def test_tickets_list_cuts_long_titles_with_an_ellipsis(day: tuple[Path, str]) -> None:
    r = mdr("tickets", "list", home=day[0])
    lines = r.out.splitlines()
    assert r.code == 0 and max(len(ln) for ln in lines) <= 80
    rows = [ln for ln in lines if re.match(r"\s*\d+\s+P\d", ln)]
    assert rows and any("…" in ln for ln in rows)  # the long titles of this day do not fit
    assert all(re.search(r"(breached|met|pending)\s*$", ln) for ln in rows)  # the SLA column is whole
    wide = mdr("tickets", "list", home=day[0], COLUMNS="200")
    assert "Compromise of web-01: webshell + defacement" in wide.out and "…" not in wide.out.split("C2 /")[0]


def test_replay_summary_adds_up_and_lists_every_context_reason(day: tuple[Path, str]) -> None:
    text = day[1]

    def figure(label: str) -> int:
        m = re.search(rf"│ *{re.escape(label)} *│ *(\d+)", text)
        assert m, (label, text)
        return int(m.group(1))

    alerts_in = figure("alerts (normalized)")
    assert figure("repeats folded by dedup") > 0 and figure("same-event merges (error log into audit log)") > 0
    assert alerts_in == figure("alerts after dedup") + figure("repeats folded by dedup") + \
        figure("same-event merges (error log into audit log)")
    reasons = text.split("context records (not alerts)", 1)[1].split("incidents", 1)[0]
    listed = dict(re.findall(r"│ (\S[^│]*?) +│ +(\d+) +│", reasons))
    more = [k for k in listed if re.fullmatch(r"\d+ more reasons", k)]
    assert len(more) == 1 and len(listed) == 13  # the first 12 by name, then how many more and their records
    assert listed["suricata:fileinfo"] == "1067" and int(listed[more[0]]) > 0


def test_many_context_reasons_end_in_n_more() -> None:
    from pipeline.cli import SKIPPED_SHOWN, _summary, console
    from pipeline.replay import ReplayResult

    res = ReplayResult()
    res.skipped.update({f"fmt:reason{n:02d}": 100 - n for n in range(SKIPPED_SHOWN + 5)})
    with console.capture() as cap:
        _summary(res)
    text = cap.get()
    assert "fmt:reason00" in text and f"fmt:reason{SKIPPED_SHOWN - 1:02d}" in text
    assert f"fmt:reason{SKIPPED_SHOWN:02d}" not in text
    hidden = sum(100 - n for n in range(SKIPPED_SHOWN, SKIPPED_SHOWN + 5))
    assert re.search(rf"5 more reasons +│ +{hidden}", text)


def test_incident_table_names_survivors_and_reasons_at_80_columns() -> None:
    """The demo's live table (and the replay summary): words wrap, a fused row names its survivor's id, and
    every open row says why it has its priority."""
    from rich.console import Console

    from pipeline.tables import incident_line, incident_table
    from tests.soar.helpers import incident

    survivor = incident(1, category="webshell", priority="P1", title="Compromise of web-01: webshell + defacement"
                        " + web attack + c2 + malware (actor 203.0.113.7)",
                        priority_reasons=["base P2 from use case 'x'",
                                          "raised to P1: asset 'web-01' is high-criticality and the activity was "
                                          "not blocked (outcome succeeded)", "SLA 15 min: respond by …"])
    part = incident(2, category="malware", priority="P2", status="merged", merged_into=survivor.incident_id,
                    title="Malware on web-01: Lab.Php.Webshell.SystemGet-NDB.UNOFFICIAL")
    console = Console(width=80, record=True)
    console.print(incident_table([part, survivor], console.width, "mdr.incidents (live)"))
    text = console.export_text()
    assert max(len(ln) for ln in text.splitlines()) <= 80
    flat = " ".join(ln.strip() for ln in text.splitlines())
    assert "→ inc0001" in text and "fused into inc0001" in flat  # the merged row names its survivor
    assert "raised to P1: asset 'web-01' is high-criticality" in flat and "SLA 15 min" not in flat
    assert "(actor 203.0.113.7)" in text and "…" not in text  # wrapped on words, nothing cut
    assert text.index("Compromise of web-01") < text.index("Malware on web-01")  # open first
    console = Console(width=80, record=True)
    console.print(incident_line(part))
    assert "→ inc0001" in console.export_text()
