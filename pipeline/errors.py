"""Errors a user can fix, reported by `mdr` as one line that names the problem and the fix (no traceback).

Exit codes: 2 for usage errors (a bad argument, an output that cannot be written), 1 for runtime failures (a
store or broker that does not answer, an input that is rejected). Core modules raise these where the cause is
known; `pipeline.cli` turns them into the one line.
"""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A runtime failure the user can fix (exit 1). The message says what went wrong and how to fix it."""

    code = 1


class UsageError(UserError):
    """A bad argument or option value (exit 2)."""

    code = 2


def _probe(directory: Path) -> None:
    """Create and remove a file in `directory` (raises OSError): the only test that also holds for root."""
    probe = directory / f".mdr-write-check-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def writable_dir(path: Path, option: str) -> Path:
    """Create `path` if needed and check a file can be written in it, before any work is done."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a directory; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as e:
        raise UsageError(f"cannot write to {option} {path}: {e.strerror or e}; give a writable directory") from None
    return path


def writable_file(path: Path, option: str) -> Path:
    """Check that `path` can be written (its directory is made if needed and takes a new file; it is no
    directory)."""
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory; give a file name")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _probe(parent)
        if path.exists():
            with path.open("ab"):
                pass
    except OSError as e:
        raise UsageError(f"cannot write {option} {path}: {e.strerror or e}; give a writable path") from None
    return path
