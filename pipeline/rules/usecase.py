"""Use cases: Sigma rules (and Sigma correlation rules) plus an optional `mdr:` block and inline `tests:`.

A use-case file is plain Sigma YAML (several documents allowed); pySigma parses it, so SigmaHQ rules load
unchanged. The `mdr:` block adds what an MDR incident needs:

    mdr:
      priority: P3              # P1..P5; default from `level`
      category: web_attack      # see pipeline.schema.CATEGORIES; default from tags, else "other"
      playbook: web-attack      # playbook name; default: chosen by category
      title: "Web attack campaign from {src.ip} on {asset}"
      group_by: [src.ip, asset] # entity fields that make one incident (correlations: their group-by)
      window: 30m               # an incident absorbs alerts until it is quiet this long
      incident: true            # false: the rule only feeds correlations

A detection rule opens incidents unless `mdr.incident` is false or, when it has no `mdr:` block, a
correlation references it (Sigma's `generate: false` default). `load_usecases` never raises on a broken file:
it records the error (file:line, the offending key: `mdr.priority: ...`, `tests: ...`, `level: ...`) and keeps
the rest. Files are read with the project's safe YAML loader (`pipeline.safeyaml`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.rule import SigmaRule

from pipeline.rules.compile import CompiledRule, compile_rule
from pipeline.rules.index import RuleIndex
from pipeline.safeyaml import key_line, load_all_with_nodes
from pipeline.schema import CATEGORIES, PRIORITIES

LEVEL_PRIORITY = {"critical": "P1", "high": "P2", "medium": "P3", "low": "P4", "informational": "P5"}
DEFAULT_WINDOW = 1800.0
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# ATT&CK tactic / technique tags -> incident category, for rules without an explicit mdr.category.
_TAG_CATEGORY = (
    ("attack.t1505.003", "webshell"), ("attack.t1110", "brute_force"), ("attack.t1595", "scan"),
    ("attack.t1046", "scan"), ("attack.t1498", "dos"), ("attack.t1499", "dos"),
    ("attack.t1071", "c2"), ("attack.command-and-control", "c2"), ("attack.command_and_control", "c2"),
    ("attack.t1491", "defacement"), ("attack.t1078", "account_compromise"), ("attack.t1190", "exploit"),
    ("attack.initial-access", "exploit"), ("attack.initial_access", "exploit"),
    ("attack.exfiltration", "data_leak"), ("attack.reconnaissance", "scan"),
)


def parse_duration(v: Any, where: str = "window") -> float:
    """`30m`, `2h`, `45s`, `1d` or a number of seconds."""
    if isinstance(v, int | float):
        return float(v)
    m = _DURATION.match(str(v).strip())
    if not m:
        raise ValueError(f"{where}: not a duration: {v!r} (use e.g. 30s, 10m, 2h, 1d)")
    return float(int(m.group(1)) * _UNITS[m.group(2)])


class UseCaseError(ValueError):
    """A problem with one key of a use case; `key` is its path in the document, e.g. ("mdr", "priority"),
    and the message starts with it."""

    def __init__(self, key: tuple[str, ...], message: str):
        super().__init__(f"{'.'.join(key)}: {message}")
        self.key = key


# The top-level key a pySigma error is about (its subclasses name what failed to parse).
_SIGMA_KEYS: dict[str, tuple[str, ...]] = {
    "SigmaTitleError": ("title",), "SigmaIdentifierError": ("id",), "SigmaNameError": ("name",),
    "SigmaLevelError": ("level",), "SigmaStatusError": ("status",), "SigmaDateError": ("date",),
    "SigmaModifiedError": ("modified",), "SigmaTagError": ("tags",), "SigmaAuthorError": ("author",),
    "SigmaDescriptionError": ("description",), "SigmaReferencesError": ("references",),
    "SigmaFalsePositivesError": ("falsepositives",), "SigmaFieldsError": ("fields",),
    "SigmaLicenseError": ("license",), "SigmaRelatedError": ("related",), "SigmaScopeError": ("scope",),
    "SigmaTaxonomyError": ("taxonomy",), "SigmaLogsourceError": ("logsource",),
    "SigmaConditionError": ("detection", "condition"), "SigmaTimespanError": ("correlation", "timespan"),
    "SigmaCorrelationTypeError": ("correlation", "type"),
    "SigmaCorrelationConditionError": ("correlation", "condition"),
    "SigmaCorrelationRuleError": ("correlation",),
}


def _error_key(e: Exception, raw: dict[str, Any]) -> tuple[str, ...]:
    if isinstance(e, UseCaseError):
        return e.key
    for cls in type(e).__mro__:
        if cls.__name__ in _SIGMA_KEYS:
            return _SIGMA_KEYS[cls.__name__]
    return ("correlation",) if "correlation" in raw and "detection" not in raw else ("detection",)


@dataclass(slots=True)
class MdrBlock:
    priority: str
    category: str
    playbook: str | None
    title: str
    group_by: list[str]
    window: float
    incident: bool
    explicit: bool  # the rule had an mdr: block


@functools.lru_cache(maxsize=4096)
def techniques(tags: tuple[str, ...]) -> tuple[str, ...]:
    """The ATT&CK technique ids of a rule's tags (`attack.t1190` -> `T1190`), computed once per tag list."""
    return tuple(t.split(".", 1)[1].upper() for t in tags if t.startswith("attack.t") and t[8:9].isdigit())


@dataclass(slots=True)
class UseCase:
    """One loaded use case: a compiled detection rule or a correlation rule, with its MDR attributes."""

    id: str
    name: str | None
    title: str
    level: str
    mdr: MdrBlock
    path: str
    line: int
    tags: list[str]
    compiled: CompiledRule | None = None  # detection rules
    correlation: SigmaCorrelationRule | None = None  # correlation rules
    tests: list[dict[str, Any]] = field(default_factory=list)
    sigma: SigmaRule | SigmaCorrelationRule | None = None
    key_lines: dict[str, int] = field(default_factory=dict)  # line of each top-level key
    test_lines: list[int] = field(default_factory=list)  # line of each inline test

    def key_line(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def test_line(self, i: int) -> int:
        return self.test_lines[i] if i < len(self.test_lines) else self.key_line("tests")

    @property
    def attack(self) -> list[str]:
        return list(techniques(tuple(self.tags)))


@dataclass(slots=True)
class LoadError:
    path: str
    line: int
    message: str
    rule: str | None = None

    def __str__(self) -> str:
        who = f" [{self.rule}]" if self.rule else ""
        return f"{self.path}:{self.line}:{who} {self.message}"


@dataclass(slots=True)
class UseCaseSet:
    """All use cases loaded from files, the rule index over the detection rules, and what failed."""

    usecases: list[UseCase] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    index: RuleIndex | None = None
    by_ref: dict[str, UseCase] = field(default_factory=dict)
    # detection rule id -> correlations that reference it (directly)
    feeds: dict[str, list[UseCase]] = field(default_factory=dict)

    @property
    def detections(self) -> list[UseCase]:
        return [u for u in self.usecases if u.compiled is not None]

    @property
    def correlations(self) -> list[UseCase]:
        return [u for u in self.usecases if u.correlation is not None]

    def get(self, ref: str) -> UseCase | None:
        return self.by_ref.get(ref)

    def reject(self, uc: UseCase, message: str) -> None:
        """Take a use case out of the set (reported as a load error at its file:line)."""
        if uc in self.usecases:
            self.usecases.remove(uc)
        for k in [k for k, v in self.by_ref.items() if v is uc]:
            del self.by_ref[k]
        self.errors.append(LoadError(uc.path, uc.line, message, uc.title))


MDR_KEYS = ("priority", "category", "playbook", "title", "group_by", "window", "incident")


def _mdr_block(raw: dict[str, Any], level: str, tags: list[str], group_default: list[str]) -> MdrBlock:
    m = raw.get("mdr")
    explicit = m is not None
    m = m or {}
    if not isinstance(m, dict):
        raise UseCaseError(("mdr",), "must be a mapping")
    unknown = sorted(str(k) for k in m if k not in MDR_KEYS)
    if unknown:
        raise UseCaseError(("mdr", unknown[0]), f"unknown keys {unknown} (allowed: {', '.join(MDR_KEYS)})")
    prio = str(m.get("priority") or LEVEL_PRIORITY.get(level, "P4")).upper()
    if prio not in PRIORITIES:
        raise UseCaseError(("mdr", "priority"), f"{prio!r} is not one of {', '.join(PRIORITIES)}")
    cat = m.get("category")
    if cat is None:
        cat = next((c for t, c in _TAG_CATEGORY for tag in tags if tag.startswith(t)), "other")
    if cat not in CATEGORIES:
        raise UseCaseError(("mdr", "category"), f"{cat!r} is not one of {', '.join(CATEGORIES)}")
    group_by = m.get("group_by", group_default)
    if isinstance(group_by, str):
        group_by = [group_by]
    if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
        raise UseCaseError(("mdr", "group_by"), "must be a list of field names")
    try:
        window = parse_duration(m.get("window", DEFAULT_WINDOW), "window")
    except ValueError as e:
        raise UseCaseError(("mdr", "window"), str(e).removeprefix("window: ")) from None
    return MdrBlock(
        priority=prio, category=cat, playbook=m.get("playbook"),
        title=str(m.get("title") or raw.get("title") or "untitled"),
        group_by=list(group_by), window=window, incident=bool(m.get("incident", True)), explicit=explicit,
    )


def _lines(uc: UseCase, node: yaml.MappingNode) -> None:
    """Record the line of each top-level key and of each inline test of the use case's document."""
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode):
            uc.key_lines[k.value] = k.start_mark.line + 1
            if k.value == "tests" and isinstance(v, yaml.SequenceNode):
                uc.test_lines = [n.start_mark.line + 1 for n in v.value]


def _load_file(path: str, out: UseCaseSet) -> None:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as e:
        out.errors.append(LoadError(path, 0, f"cannot read: {e}"))
        return
    try:
        docs = load_all_with_nodes(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        out.errors.append(LoadError(path, (mark.line + 1) if mark else 1, f"YAML error: {e}"))
        return
    for raw, node in docs:
        start = node.start_mark.line + 1
        if not isinstance(raw, dict):
            out.errors.append(LoadError(path, start, "document is not a mapping"))
            continue
        name = raw.get("name") or raw.get("title")
        try:
            coll = SigmaCollection.from_dicts([raw], collect_errors=True, resolve_references=False)
            if coll.errors:
                raise coll.errors[0]
            sig = coll.rules[0]
            uc = _usecase(sig, raw, path, start)
        except Exception as e:  # pySigma raises more than SigmaError on odd input (a list as `id`): never fatal
            key = _error_key(e, raw)
            line, found = key_line(node, key)
            msg = str(e) if isinstance(e, UseCaseError) else f"{'.'.join(found or key[:1])}: {e}"
            out.errors.append(LoadError(path, line, f"{type(e).__name__}: {msg}", str(name)))
            continue
        if isinstance(node, yaml.MappingNode):  # always: `raw` is a mapping
            _lines(uc, node)
        out.usecases.append(uc)


def _usecase(sig: SigmaRule | SigmaCorrelationRule, raw: dict[str, Any], path: str, line: int) -> UseCase:
    level = str(sig.level.name).lower() if sig.level else "medium"
    tags = [f"{t.namespace}.{t.name}" for t in (sig.tags or [])]
    tests = raw.get("tests") or []
    if not isinstance(tests, list):
        raise UseCaseError(("tests",), "must be a list")
    if isinstance(sig, SigmaCorrelationRule):
        group = [str(g) for g in (sig.group_by or [])]
        mdr = _mdr_block(raw, level, tags, group)
        return UseCase(id=str(sig.id or sig.name or sig.title), name=sig.name, title=sig.title, level=level,
                       mdr=mdr, path=path, line=line, tags=tags, correlation=sig, tests=tests, sigma=sig)
    mdr = _mdr_block(raw, level, tags, ["src.ip", "asset"])
    compiled = compile_rule(sig)
    return UseCase(id=compiled.id, name=sig.name, title=sig.title, level=level, mdr=mdr, path=path,
                   line=line, tags=tags, compiled=compiled, tests=tests, sigma=sig)


def _link(out: UseCaseSet) -> None:
    """Resolve correlation references; drop correlations whose rules are missing (reported)."""
    for uc in out.usecases:
        out.by_ref[uc.id] = uc
        if uc.name:
            out.by_ref.setdefault(uc.name, uc)
    ok: list[UseCase] = []
    referenced: set[str] = set()
    for uc in out.usecases:
        if uc.correlation is None:
            ok.append(uc)
            continue
        refs = [str(r.reference) for r in uc.correlation.rules or ()]
        missing = [r for r in refs if r not in out.by_ref]
        if missing:
            out.errors.append(LoadError(uc.path, uc.key_line("correlation"),
                                        f"correlation.rules: references unknown rules {missing}", uc.title))
            continue
        ok.append(uc)
        for r in refs:
            target = out.by_ref[r]
            out.feeds.setdefault(target.id, []).append(uc)
            if not uc.correlation.generate:
                referenced.add(target.id)
    out.usecases = ok
    for uc in out.usecases:
        # Sigma: rules referenced by a correlation do not generate on their own unless asked to.
        if uc.compiled is not None and uc.id in referenced and not uc.mdr.explicit:
            uc.mdr.incident = False
    out.index = RuleIndex([u.compiled for u in out.usecases if u.compiled is not None])


def iter_rule_files(paths: Iterable[str]) -> list[str]:
    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith((".yml", ".yaml")))
        else:
            files.append(p)
    return files


def load_usecases(paths: Iterable[str] | str) -> UseCaseSet:
    """Load every use-case file under the given files/directories. Broken files are reported, not fatal."""
    if isinstance(paths, str):
        paths = [paths]
    out = UseCaseSet()
    for f in iter_rule_files(paths):
        out.files.append(f)
        _load_file(f, out)
    seen: dict[str, UseCase] = {}
    unique: list[UseCase] = []
    for uc in out.usecases:
        if uc.id in seen:
            out.errors.append(LoadError(uc.path, uc.key_line("id"),
                                        f"id: duplicate id {uc.id} (first in {seen[uc.id].path})", uc.title))
            continue
        seen[uc.id] = uc
        unique.append(uc)
    out.usecases = unique
    _link(out)
    return out
