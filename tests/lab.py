"""The lab-1 day (samples/lab-1) as the tests replay it: the core `mdr replay` builds, and the one replay of the
day that a test session shares (the `lab1_replay` fixture of tests/conftest.py).

`mdr replay samples/lab-1 --tenant shop --host web-01 --out OUT` runs once per session, with an empty MDR_HOME
of its own; `LabReplay` holds what it gave: the in-memory result and the core after it, the output files, the
ticket store and what the command printed. It is shared: a test reads it and never changes it (a test that
needs other options, a second replay into the same store, or a core of its own replays for itself).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from pipeline.core.engine import Core
from pipeline.replay import ReplayResult
from pipeline.schema import DeadLetter, Incident

ROOT = Path(__file__).resolve().parents[1]
LAB1 = ROOT / "samples" / "lab-1"
USECASES = ROOT / "usecases"
ARGS = ("--tenant", "shop", "--host", "web-01")  # the day's tenant and its one collection point
# The asset inventory of the day's one server (its loopback address, its syslog and site names).
WEB_01 = """assets:
  - name: web-01
    ips: [127.0.0.1]
    hostnames: [vm, shop.lab.local]
    criticality: high
    owner: shop
"""


def lab_core(**settings: Any) -> Core:
    """The core `mdr replay` builds with nothing saved in MDR_HOME (`pipeline.assemble.build_core`)."""
    from pipeline.assemble import build_core
    from pipeline.context.store import Context
    from pipeline.rules.usecase import load_usecases

    return build_core(load_usecases(str(USECASES)), Context(), **settings)


@dataclass(frozen=True)
class LabReplay:
    """`mdr replay` of the lab day, run once: read it, never change it."""

    result: ReplayResult  # what the replay computed (alerts, fates, incidents, dead letters...)
    core: Core  # the core after the replay (its state)
    out: Path  # --out: alerts, dlq, fates, incidents, suppressed and tickets, one JSONL file each
    home: Path  # MDR_HOME of the run: the ticket store soar.db (tickets, report statistics)
    output: str  # what the command printed (summary table, file list)

    @property
    def incidents(self) -> dict[str, Incident]:
        return self.result.incidents

    @property
    def dead(self) -> list[DeadLetter]:
        return self.result.dead

    def digest(self) -> str:
        """A hash of the in-memory result and the output files (the fixture checks nothing changed them)."""
        h = hashlib.sha256(msgspec.json.encode([self.result.alerts, self.result.dead, self.result.fates,
                                                sorted(self.result.incidents.items())]))
        for f in sorted(self.out.iterdir()):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        return h.hexdigest()

    @cached_property
    def tickets(self) -> list[dict[str, Any]]:
        """The ticket snapshots of the replay (tickets.jsonl)."""
        return [json.loads(x) for x in (self.out / "tickets.jsonl").read_text().splitlines()]


def replay_lab1(base: Path) -> LabReplay:
    """Run `mdr replay` of the lab day under `base` (its MDR_HOME and --out there) and keep what it computed."""
    import pipeline.replay
    from pipeline.cli import app

    home, out = base / "home", base / "out"
    seen: list[tuple[ReplayResult, Core]] = []
    run = pipeline.replay.replay

    def keep(*args: Any, **kw: Any) -> ReplayResult:  # the command's own call, its result kept as it returns
        res = run(*args, **kw)
        seen.append((res, args[1]))
        return res

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MDR_HOME", str(home))
        for name in ("MDR_DB_URL", "MDR_SOAR_CHANNELS"):
            mp.delenv(name, raising=False)
        mp.setattr(pipeline.replay, "replay", keep)
        r = CliRunner().invoke(app, ["replay", str(LAB1), *ARGS, "--out", str(out)])
    assert r.exit_code == 0, r.output
    [(res, core)] = seen
    return LabReplay(res, core, out, home, r.output)
