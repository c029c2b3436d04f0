"""Run `mdr` as a user does (a subprocess on an 80-column terminal) and check what a mistake prints."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB1 = ROOT / "samples" / "lab-1"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def one_error_line(self) -> str:
        """The output is one `error:` line naming the problem and the fix: no traceback, nothing else."""
        assert "Traceback" not in self.text, self.text
        lines = [ln for ln in self.text.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), self.text
        return lines[0]


def mdr(*args: str, home: Path, timeout: float = 120, cwd: Path = ROOT, **env: str) -> Run:
    """`mdr ARGS` with MDR_HOME=`home`, no MDR_DB_URL / MDR_KAFKA_BOOTSTRAP from the caller, 80 columns."""
    base = {k: v for k, v in os.environ.items() if k not in ("MDR_DB_URL", "MDR_KAFKA_BOOTSTRAP", "MDR_HOME")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base.get("PYTHONPATH")]))
    p = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=cwd,
                       timeout=timeout, env={**base, "MDR_HOME": str(home), "COLUMNS": "80", **env}, check=False)
    return Run(p.returncode, p.stdout, p.stderr)
