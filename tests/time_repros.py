"""The event-time reproductions of issue 13 ("one event stops everything"), built from the lab-1 samples.

Each is a file `mdr replay` reads and `mdr produce` sends; the tests at unit, replay and broker level use them:
- `eve_9999`: a Suricata EVE `alert` with a `dns` object, timestamp 9999-12-31T23:59:59+00:00;
- `eve_0001`: the same record in year 0001, followed by the normal record;
- `eve_0001_tz`: year 0001 with a +01:00 offset (before year 1 once shifted to UTC), then the normal record;
- `aide_9999`: the AIDE report with `start_time` in year 9999.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "samples" / "lab-1"


def dns_alert() -> str:
    """The lab's C2 DNS alert (one line of eve_attack.jsonl)."""
    for line in (LAB / "ids" / "eve_attack.jsonl").read_text().splitlines():
        if '"event_type":"alert"' in line and '"dns"' in line:
            return line
    raise AssertionError("lab-1 has no Suricata alert with a dns object")


def with_time(line: str, stamp: str) -> str:
    d = json.loads(line)
    d["timestamp"] = stamp
    return json.dumps(d)


def aide_report(start_time: str) -> str:
    d = json.loads((LAB / "host" / "aide_check.json").read_text())
    d["start_time"] = start_time
    return json.dumps(d, indent=2)


def reproductions() -> dict[str, tuple[str, str]]:
    """name -> (file name, content)."""
    dns = dns_alert()
    return {
        "eve_9999": ("eve_9999.jsonl", with_time(dns, "9999-12-31T23:59:59+00:00") + "\n"),
        "eve_0001": ("eve_0001.jsonl", with_time(dns, "0001-01-01T00:00:00+00:00") + "\n" + dns + "\n"),
        "eve_0001_tz": ("eve_0001_tz.jsonl", with_time(dns, "0001-01-01T00:30:00+01:00") + "\n" + dns + "\n"),
        "aide_9999": ("aide_9999.json", aide_report("9999-12-31 23:59:59 +0000")),
    }


def write(name: str, directory: Path) -> Path:
    fname, text = reproductions()[name]
    p = directory / fname
    p.write_text(text)
    return p
