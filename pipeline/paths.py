"""Where the project's bundled content lives (use cases, playbooks, sample data)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pick(env: str, name: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    for base in (ROOT, Path.cwd()):
        if (base / name).is_dir():
            return base / name
    return ROOT / name


def usecases_dir() -> Path:
    return _pick("MDR_USECASES", "usecases")


def playbooks_dir() -> Path:
    return _pick("MDR_PLAYBOOKS", "playbooks")


def samples_dir() -> Path:
    return _pick("MDR_SAMPLES", "samples")
