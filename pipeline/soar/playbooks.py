"""Playbooks: YAML files of a trigger and steps. Model, loader with file:line errors, trigger matching.

    name: web-attack
    description: Web attack campaign against a customer site
    trigger: {categories: [web_attack], priorities: [P1, P2, P3, P4], use_cases: [], tenants: []}
    defaults: {timeout: 10s, retry: {attempts: 3, backoff: 2s}, on_failure: continue}
    steps:
      - enrich: [asset, intel, related]
      - collect: {alerts: true, raw: true, limit: 50}
      - id: notify-customer
        notify: {channel: customer, template: incident}
      - id: approve
        when: "incident.outcome != 'blocked' and incident.entities.src_ips"
        wait_approval: {prompt: "Block {{ incident.entities.src_ips | join(', ') }}?", timeout: 4h}
      - block_ip: {channel: firewall, ips: "{{ incident.entities.src_ips }}", duration: 24h}
        timeout: 15s
        retry: {attempts: 5, backoff: 5s, max_backoff: 5m}

Actions: enrich, collect, notify, ticket (open | update | escalate), block_ip, isolate_host, wait_approval.
Selection: the incident's own `playbook` (named by its use case) when it exists, else the most specific
playbook whose trigger matches, else the default playbook(s) (`trigger: {default: true}`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline import paths
from pipeline.durations import parse_duration
from pipeline.safeyaml import SafeLoader, load_all
from pipeline.schema import CATEGORIES, PRIORITIES, Incident
from pipeline.soar.connectors.base import RetryPolicy
from pipeline.soar.templates import Templates
from pipeline.tenant import SYNTAX, is_tenant

ACTIONS = ("enrich", "collect", "notify", "ticket", "block_ip", "isolate_host", "wait_approval")
STEP_KEYS = frozenset({"id", "name", "when", "timeout", "retry", "on_failure", *ACTIONS})
TOP_KEYS = frozenset({"name", "description", "trigger", "defaults", "steps"})
TRIGGER_KEYS = frozenset({"use_cases", "categories", "priorities", "tenants", "default"})
ENRICH_SOURCES = ("asset", "intel", "related")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY = RetryPolicy(attempts=3, backoff=2.0, factor=2.0, max_backoff=300.0)


# ---- model ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Step:
    id: str
    action: str
    params: dict[str, Any]
    when: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = DEFAULT_RETRY
    on_failure: str = "continue"  # continue | stop
    line: int = 0

    @property
    def channel(self) -> str | None:
        return self.params.get("channel")


@dataclass(frozen=True, slots=True)
class Trigger:
    use_cases: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    default: bool = False

    def matches(self, inc: Incident) -> bool:
        return (
            (not self.use_cases or any(u in self.use_cases for u in inc.use_cases))
            and (not self.categories or inc.category in self.categories)
            and (not self.priorities or inc.priority in self.priorities)
            and (not self.tenants or inc.tenant_id in self.tenants)
        )

    @property
    def specificity(self) -> int:
        return 8 * bool(self.use_cases) + 4 * bool(self.tenants) + 2 * bool(self.categories) + bool(self.priorities)


@dataclass(frozen=True, slots=True)
class Playbook:
    name: str
    description: str
    trigger: Trigger
    steps: tuple[Step, ...]
    path: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class PlaybookError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(slots=True)
class PlaybookSet:
    playbooks: dict[str, Playbook] = field(default_factory=dict)
    errors: list[PlaybookError] = field(default_factory=list)
    templates: Templates = field(default_factory=Templates)
    files: list[str] = field(default_factory=list)

    def get(self, name: str) -> Playbook | None:
        return self.playbooks.get(name)

    def select(self, inc: Incident) -> list[Playbook]:
        """The playbook(s) to run for an incident (see the module docstring)."""
        if inc.status == "merged":
            return []
        if inc.playbook and inc.playbook in self.playbooks:
            return [self.playbooks[inc.playbook]]
        best: list[Playbook] = []
        for p in sorted(self.playbooks.values(), key=lambda p: p.name):
            if p.trigger.default or not p.trigger.matches(inc):
                continue
            if not best or p.trigger.specificity > best[0].trigger.specificity:
                best = [p]
        if best:
            return best
        return [p for p in self.playbooks.values() if p.trigger.default and p.trigger.matches(inc)]


# ---- loading -------------------------------------------------------------------------------------------
class _LineDict(dict):
    line = 0
    key_lines: dict[str, int]


class _Loader(SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    d = _LineDict(loader.construct_mapping(node, deep=True))
    d.line = node.start_mark.line + 1
    d.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return d


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _line(d: Any, key: str | None = None, default: int = 1) -> int:
    if isinstance(d, _LineDict):
        return d.key_lines.get(key, d.line) if key else d.line
    return default


def playbook_files(path: str | Path) -> list[Path]:
    from pipeline.soar.connectors import CHANNELS_FILE
    from pipeline.soar.safety import POLICY_FILE

    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(
        f
        for f in p.rglob("*")
        if f.suffix in (".yaml", ".yml") and f.name not in (CHANNELS_FILE, POLICY_FILE)
        and "templates" not in f.relative_to(p).parts
    )


def load_playbooks(path: str | Path | None = None, *, channels: set[str] | None = None) -> PlaybookSet:
    """Load and validate every playbook under `path` (default: the playbooks directory). Never raises on a
    bad file: errors are collected as file:line messages. `channels`, when given, are the known channel
    names (unknown ones are errors)."""
    root = Path(path) if path else paths.playbooks_dir()
    tdir = (root if root.is_dir() else root.parent) / "templates"
    if not tdir.is_dir():
        tdir = paths.playbooks_dir() / "templates"
    pbs = PlaybookSet(templates=Templates(tdir))
    if not root.exists():
        pbs.errors.append(PlaybookError(str(root), 0, "no such file or directory"))
        return pbs
    for f in playbook_files(root):
        pbs.files.append(str(f))
        _load_file(f, pbs, channels)
    return pbs


def _load_file(f: Path, pbs: PlaybookSet, channels: set[str] | None) -> None:
    try:
        docs = [d for d in load_all(f.read_text(encoding="utf-8"), _Loader) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pbs.errors.append(PlaybookError(str(f), mark.line + 1 if mark else 0, f"YAML: {e}"))
        return
    for doc in docs:
        errors: list[PlaybookError] = []
        pb = _Parser(str(f), pbs.templates, channels, errors).playbook(doc)
        pbs.errors.extend(errors)
        if pb is None or errors:
            continue
        if pb.name in pbs.playbooks:
            other = pbs.playbooks[pb.name]
            pbs.errors.append(
                PlaybookError(pb.path, pb.line, f"duplicate playbook name {pb.name!r} (also {other.path}:{other.line})")
            )
            continue
        pbs.playbooks[pb.name] = pb


class _Parser:
    """Turns one YAML document into a Playbook, recording every problem with its line."""

    def __init__(self, path: str, templates: Templates, channels: set[str] | None, errors: list[PlaybookError]):
        self.path, self.templates, self.channels, self.errors = path, templates, channels, errors

    def err(self, line: int, msg: str) -> None:
        self.errors.append(PlaybookError(self.path, line, msg))

    def playbook(self, doc: Any) -> Playbook | None:
        if not isinstance(doc, dict):
            self.err(1, "a playbook is a mapping")
            return None
        for k in doc:
            if k not in TOP_KEYS:
                self.err(_line(doc, k), f"unknown key {k!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
        name = doc.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            self.err(_line(doc, "name"), f"name must be lower-case letters, digits, '-', '_' or '.': {name!r}")
            name = "?"
        trigger = self.trigger(doc.get("trigger") or {})
        defaults = doc.get("defaults") or {}
        base = self.step_options(defaults, "defaults", Step("defaults", "", {}))
        steps_raw = doc.get("steps")
        if not isinstance(steps_raw, list) or not steps_raw:
            self.err(_line(doc, "steps"), "steps: a non-empty list is required")
            steps_raw = []
        steps: list[Step] = []
        for i, raw in enumerate(steps_raw):
            s = self.step(raw, i, base, _line(doc, "steps"))
            if s is None:
                continue
            if any(x.id == s.id for x in steps):
                self.err(s.line, f"duplicate step id {s.id!r}")
            steps.append(s)
        return Playbook(name, str(doc.get("description") or ""), trigger, tuple(steps), self.path, _line(doc))

    def trigger(self, t: Any) -> Trigger:
        if not isinstance(t, dict):
            self.err(1, "trigger must be a mapping")
            return Trigger()
        for k in t:
            if k not in TRIGGER_KEYS:
                self.err(_line(t, k), f"trigger: unknown key {k!r} (allowed: {', '.join(sorted(TRIGGER_KEYS))})")
        lists: dict[str, tuple[str, ...]] = {}
        for key, allowed in (
            ("use_cases", None),
            ("categories", CATEGORIES),
            ("priorities", PRIORITIES),
            ("tenants", None),
        ):
            v = t.get(key) or []
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list):
                self.err(_line(t, key), f"trigger.{key} must be a list")
                v = []
            bad = [x for x in v if allowed is not None and x not in allowed]
            bad_ids = [x for x in v if key == "tenants" and not is_tenant(x)]
            if bad_ids:
                self.err(_line(t, key), f"trigger.tenants: {bad_ids} are not tenant ids ({SYNTAX})")
            if bad:
                self.err(_line(t, key), f"trigger.{key}: unknown {bad} (allowed: {', '.join(allowed or ())})")
            lists[key] = tuple(str(x) for x in v)
        return Trigger(default=bool(t.get("default", False)), **lists)

    def step_options(self, raw: dict[str, Any], where: str, base: Step) -> Step:
        timeout, retry, on_failure = base.timeout, base.retry, base.on_failure
        if "timeout" in raw:
            try:
                timeout = parse_duration(raw["timeout"])
            except ValueError as e:
                self.err(_line(raw, "timeout"), f"{where}.timeout: {e}")
        if "retry" in raw:
            retry = self.retry(raw["retry"], _line(raw, "retry"), where, base.retry)
        if "on_failure" in raw:
            on_failure = raw["on_failure"]
            if on_failure not in ("continue", "stop"):
                self.err(_line(raw, "on_failure"), f"{where}.on_failure: continue or stop, not {on_failure!r}")
        return Step(base.id, base.action, {}, None, timeout, retry, on_failure)

    def retry(self, r: Any, line: int, where: str, base: RetryPolicy) -> RetryPolicy:
        if isinstance(r, int) and not isinstance(r, bool):
            r = {"attempts": r}
        if not isinstance(r, dict):
            self.err(line, f"{where}.retry: a mapping {{attempts, backoff, factor, max_backoff}} or a number")
            return base
        out = {
            "attempts": base.attempts,
            "backoff": base.backoff,
            "factor": base.factor,
            "max_backoff": base.max_backoff,
        }
        for k, v in r.items():
            try:
                if k == "attempts":
                    out[k] = int(v)
                    if out[k] < 1:
                        raise ValueError("at least 1")
                elif k == "factor":
                    out[k] = float(v)
                elif k in ("backoff", "max_backoff"):
                    out[k] = parse_duration(v)
                else:
                    raise ValueError(f"unknown key {k!r}")
            except (TypeError, ValueError) as e:
                self.err(_line(r, k, line), f"{where}.retry.{k}: {e}")
        return RetryPolicy(int(out["attempts"]), out["backoff"], out["factor"], out["max_backoff"])

    def step(self, raw: Any, i: int, base: Step, list_line: int) -> Step | None:
        where = f"steps[{i}]"
        if not isinstance(raw, dict):
            self.err(list_line, f"{where}: a step is a mapping with one action ({', '.join(ACTIONS)})")
            return None
        line = _line(raw)
        for k in raw:
            if k not in STEP_KEYS:
                self.err(_line(raw, k), f"{where}: unknown key {k!r}")
        actions = [k for k in raw if k in ACTIONS]
        if len(actions) != 1:
            self.err(
                line,
                f"{where}: exactly one action is needed, found {actions or 'none'} (actions: {', '.join(ACTIONS)})",
            )
            return None
        action = actions[0]
        sid = str(raw.get("id") or f"{action}-{i + 1}")
        where = f"steps[{i}] ({sid})"
        when = raw.get("when")
        if when is not None:
            problem = self.templates.check_expression(str(when))
            if problem:
                self.err(_line(raw, "when"), f"{where}.when: {problem}")
        opts = self.step_options(raw, where, base)
        params = PARAMS[action](self, raw[action], _line(raw, action), where) or {}
        self.check_templates(params, _line(raw, action), where)
        return Step(
            sid,
            action,
            params,
            None if when is None else str(when),
            opts.timeout,
            opts.retry,
            opts.on_failure,
            line,
        )

    def check_templates(self, v: Any, line: int, where: str) -> None:
        if isinstance(v, str) and ("{{" in v or "{%" in v):
            problem = self.templates.check(v)
            if problem:
                self.err(line, f"{where}: template: {problem}")
        elif isinstance(v, dict):
            for x in v.values():
                self.check_templates(x, line, where)
        elif isinstance(v, list):
            for x in v:
                self.check_templates(x, line, where)

    # ---- per-action parameters --------------------------------------------------------------------
    def mapping(
        self, v: Any, line: int, where: str, required: tuple[str, ...], optional: tuple[str, ...]
    ) -> dict[str, Any] | None:
        if not isinstance(v, dict):
            self.err(line, f"{where}: parameters must be a mapping")
            return None
        for k in v:
            if k not in required and k not in optional:
                self.err(
                    _line(v, k, line),
                    f"{where}: unknown parameter {k!r} (allowed: {', '.join(required + optional)})",
                )
        for k in required:
            if v.get(k) in (None, "", []):
                self.err(line, f"{where}: missing parameter {k!r}")
        return dict(v)

    def channel(self, p: dict[str, Any], line: int, where: str, required: bool = True) -> None:
        ch = p.get("channel")
        if ch is None:
            if required:
                self.err(line, f"{where}: missing parameter 'channel'")
            return
        if self.channels is not None and "{{" not in str(ch) and ch not in self.channels:
            self.err(
                _line(p, "channel", line),
                f"{where}: unknown channel {ch!r} (configured: {', '.join(sorted(self.channels)) or 'none'})",
            )

    def duration(self, p: dict[str, Any], key: str, default: float, line: int, where: str) -> None:
        try:
            p[key] = parse_duration(p.get(key, default))
        except ValueError as e:
            self.err(_line(p, key, line), f"{where}.{key}: {e}")

    def p_enrich(self, v: Any, line: int, where: str) -> dict[str, Any]:
        if v is True or v is None:
            v = list(ENRICH_SOURCES)
        if isinstance(v, list):
            v = {"sources": v}
        p = self.mapping(v, line, where, (), ("sources", "related_limit")) or {}
        sources = p.get("sources") or list(ENRICH_SOURCES)
        bad = [s for s in sources if s not in ENRICH_SOURCES]
        if bad:
            self.err(line, f"{where}: unknown enrichment {bad} (known: {', '.join(ENRICH_SOURCES)})")
        return {"sources": list(sources), "related_limit": int(p.get("related_limit", 20))}

    def p_collect(self, v: Any, line: int, where: str) -> dict[str, Any]:
        p = self.mapping({} if v in (True, None) else v, line, where, (), ("alerts", "raw", "limit")) or {}
        return {
            "alerts": bool(p.get("alerts", True)),
            "raw": bool(p.get("raw", True)),
            "limit": int(p.get("limit", 50)),
        }

    def p_notify(self, v: Any, line: int, where: str) -> dict[str, Any] | None:
        p = self.mapping(v, line, where, ("channel",), ("template", "text", "title"))
        if p is None:
            return None
        if ("template" in p) == ("text" in p):
            self.err(line, f"{where}: give exactly one of 'template' (a file name) or 'text' (inline)")
        elif "template" in p:
            problem = self.templates.check_file(str(p["template"]))
            if problem:
                self.err(_line(p, "template", line), f"{where}: {problem}")
        self.channel(p, line, where)
        return p

    def p_ticket(self, v: Any, line: int, where: str) -> dict[str, Any] | None:
        p = self.mapping(v, line, where, ("action",), ("channel", "text", "template", "reason"))
        if p is None:
            return None
        if p.get("action") not in ("open", "update", "escalate"):
            self.err(_line(p, "action", line), f"{where}.action: open, update or escalate, not {p.get('action')!r}")
        if "template" in p:
            problem = self.templates.check_file(str(p["template"]))
            if problem:
                self.err(_line(p, "template", line), f"{where}: {problem}")
        self.channel(p, line, where, required=p.get("action") in ("open", "update"))
        return p

    def p_block_ip(self, v: Any, line: int, where: str) -> dict[str, Any] | None:
        p = self.mapping(v, line, where, ("channel", "ips"), ("duration", "reason"))
        if p is not None:
            self.channel(p, line, where)
            self.duration(p, "duration", 86400, line, where)
        return p

    def p_isolate_host(self, v: Any, line: int, where: str) -> dict[str, Any] | None:
        p = self.mapping(v, line, where, ("channel", "hosts"), ("reason",))
        if p is not None:
            self.channel(p, line, where)
        return p

    def p_wait_approval(self, v: Any, line: int, where: str) -> dict[str, Any] | None:
        p = self.mapping(v, line, where, ("prompt",), ("timeout", "on_timeout", "on_deny"))
        if p is None:
            return None
        self.duration(p, "timeout", 4 * 3600, line, where)
        for key, allowed, default in (
            ("on_timeout", ("deny", "approve"), "deny"),
            ("on_deny", ("stop", "continue"), "stop"),
        ):
            p.setdefault(key, default)
            if p[key] not in allowed:
                self.err(_line(p, key, line), f"{where}.{key}: one of {', '.join(allowed)}, not {p[key]!r}")
        return p


PARAMS: dict[str, Callable[[_Parser, Any, int, str], dict[str, Any] | None]] = {
    a: getattr(_Parser, f"p_{a}") for a in ACTIONS
}
