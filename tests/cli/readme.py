"""The README as a user reads it: its sections and shell blocks, and the `mdr`, `make` and `docker compose`
commands, repository paths and environment variables it shows (tests/cli/test_readme.py and the streaming
recipe in tests/stream/test_first_hour.py)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "README.md").read_text()
# what the README names that a run creates (in the checkout or in MDR_HOME): not in a fresh clone
GENERATED = frozenset({"out", "context", ".mdr-kafka", ".mdr-worker"})


def section(title: str, text: str = TEXT) -> str:
    """The text of the `## title` section, up to the next one."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"no section {title!r} in the README"
    return m.group(1)


def bash_blocks(text: str = TEXT) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def shell_lines(block: str) -> list[str]:
    """The command lines of a shell block: continuations joined, comments dropped."""
    lines = (re.sub(r"(^|\s+)#.*$", "", ln).strip() for ln in block.replace("\\\n", " ").splitlines())
    return [ln for ln in lines if ln]


def shell_commands_of(line: str, program: tuple[str, ...]) -> list[list[str]]:
    """The arguments of every `program ...` command in a shell line (`&&` lists and `$(...)` included)."""
    out = []
    for part in re.split(r"&&|\$\(|\)", line):
        words = shlex.split(part) if part.strip() else []
        if words and words[0] == "export" and "=" in words[-1]:
            words = []
        n = len(program)
        if tuple(words[:n]) == program:
            out.append(words[n:])
    return out


def shell_commands(program: tuple[str, ...]) -> list[list[str]]:
    """`program ...` commands of all shell blocks (`("mdr",)`, `("make",)`, `("docker", "compose")`)."""
    return [c for block in bash_blocks() for line in shell_lines(block)
            for c in shell_commands_of(line, program)]


def inline_commands(program: str) -> list[list[str]]:
    """`program ...` commands quoted in the prose. `a|b|c` lists sub-commands: each is one command, and the
    words after the list belong to the last (`playbooks validate|run --dry-run`). Placeholders (`COMMAND`,
    `…`) end a command."""
    prose = re.sub(r"```.*?```", "", TEXT, flags=re.S)
    out = []
    for span in re.findall(rf"`{re.escape(program)}((?: [^`]*)?)`", prose):
        words = []
        for w in span.split():
            if w == "…" or w.isupper():
                break
            words.append(w)
        alt = next((i for i, w in enumerate(words) if "|" in w), None)
        if alt is None:
            out.append(words)
            continue
        choices = words[alt].split("|")
        out.extend([*words[:alt], c] for c in choices[:-1])
        out.append([*words[:alt], choices[-1], *words[alt + 1:]])
    return unique(w for w in out if w)


def unique(commands: Iterable[list[str]]) -> list[list[str]]:
    seen: dict[tuple[str, ...], list[str]] = {}
    for c in commands:
        seen.setdefault(tuple(c), c)
    return list(seen.values())


def repository_paths() -> list[str]:
    """Paths in the repository the README names (in backquotes, or as link targets)."""
    names = re.findall(r"`([^`\s]+)`", TEXT) + re.findall(r"\]\(([^)\s]+)\)", TEXT)
    return sorted({n.rstrip("/") for n in names
                   if "/" in n and ":" not in n and not n.startswith(("/", "~", "-", "http"))})


def variables(text: str = TEXT) -> set[str]:
    return set(re.findall(r"\bMDR_[A-Z0-9_]+\b", text))
