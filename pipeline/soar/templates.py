"""Jinja2 templates for playbooks, rendered in a sandbox (`SandboxedEnvironment`) within a budget.

Playbook values are templates over a context of plain data: `incident` (the incident as JSON-like dicts),
`ticket` (id, status, priority, sla_due), `steps` (results of earlier steps by id), `playbook`, `tenant`,
`now`. A string that is one single `{{ expression }}` renders to the expression's own value (a list stays a
list), anything else renders to text. `when:` conditions are expressions. Missing attributes render empty
instead of failing (`ChainableUndefined`); syntax is checked when playbooks are validated.
Named templates are files `playbooks/templates/<name>.j2`.

Text for a channel is rendered in the channel's markup (`markup=`, pipeline/textsafe.py): every `{{ ... }}`
value is escaped for it, while the template's own text keeps its formatting. Formatting therefore belongs
in the template text, never in values (an incident title cannot add a link, an image or a mention). Values are
redacted (pipeline/redact.py) before they are escaped: a secret that record text carried never goes out.

Budget: one render (a value, a condition, a named template) may take `Budget.steps` loop iterations and
calls, `Budget.seconds` of time, and build strings or lists of at most `Budget.output` items; beyond that it
fails with `TemplateBudgetError` (the step fails, the run goes on). Loops are counted by wrapping every `for`
in a counting iterator when the template is compiled; `*`, `**` and `%` are checked before they run, size
arguments of filters and string methods too, and `lipsum` is gone. Validation renders every template once
against a sample incident (`sample_context`), so a template that cannot finish is rejected before it runs.
A value shows at most `VALUE_CHARS` characters in a rendered text (the whole value stays in the ticket and its
evidence): record text an attacker inflates cannot push a notice over its budget and so silence it.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, FileSystemLoader, Template, TemplateError, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.filters import FILTERS
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from pipeline import textsafe
from pipeline.redact import redact

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.S)
SUFFIX = ".j2"
VALUE_CHARS = 4096  # of one value in a rendered text: a 96 KB Host header cannot fill a notice or its budget
_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\d+)?(?:\.(\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_DIGITS = re.compile(r"\d+")
_SIZED_FILTERS = ("center", "indent", "slice", "format", "replace")


@dataclass(frozen=True, slots=True)
class Budget:
    steps: int = 100_000  # loop iterations + calls of one render
    seconds: float = 2.0
    output: int = 256 * 1024  # characters (or items) of any string or list a render builds


class TemplateBudgetError(TemplateRuntimeError):
    """A render went over its budget (steps, time or size)."""


class _Meter:
    def __init__(self, budget: Budget):
        self.budget = budget
        self.steps = budget.steps
        self.deadline = time.monotonic() + budget.seconds
        self.written = 0  # characters output so far (templates, macros and blocks alike)

    def tick(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateBudgetError(f"more than {self.budget.steps} loop iterations and calls")
        if not self.steps & 0xFF and time.monotonic() > self.deadline:
            raise TemplateBudgetError(f"rendering took more than {self.budget.seconds:g} s")

    def size(self, n: int, what: str = "value") -> None:
        if n > self.budget.output:
            raise TemplateBudgetError(f"a {what} of {n} characters or items (limit {self.budget.output})")

    def emit(self, value: Any) -> str:
        text = value if isinstance(value, str) else str(value)
        self.written += len(text)
        if self.written > self.budget.output:
            raise TemplateBudgetError(f"more than {self.budget.output} characters of output")
        return text

    def sized(self, value: Any) -> Any:
        if isinstance(value, str | bytes | list | tuple | dict):
            self.size(len(value))
        return value

    def widths(self, fmt: str) -> None:
        """Refuse a printf or str.format spec whose width or precision is over the output limit."""
        for m in _PRINTF_WIDTH.finditer(fmt):
            for g in m.groups():
                if g:
                    self.size(int(g), "width")
        for spec in _FORMAT_SPEC.findall(fmt):
            for d in _DIGITS.findall(spec):
                self.size(int(d), "width")


_meter: ContextVar[_Meter | None] = ContextVar("template_meter", default=None)


def _current() -> _Meter:
    """The meter of the render in progress (outside `Templates`' methods: a fresh one per check, so sizes
    are still bounded)."""
    return _meter.get() or _Meter(Budget())


def _counted(iterable: Any) -> Iterator[Any]:
    m = _current()
    for item in iterable:
        m.tick()
        yield item


def _sized(value: Any) -> Any:
    return _current().sized(value)


class _Text(str):
    """The template's own text (not a value): counted, never escaped for the channel."""


# Both run when the template renders (a context filter is never folded into a constant at compile time), so
# all output is counted, and the channel's `finalize` escapes values while it passes the template's text on.
@pass_context
def _emit(_ctx: Any, value: Any) -> str:
    return _current().emit(_clipped(value))


def _clipped(value: Any) -> str:
    """A value as it is shown in a text: at most VALUE_CHARS characters, `…` marking the cut (redacted first, so
    that a cut never leaves part of a secret)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= VALUE_CHARS:
        return text
    return redact(text)[:VALUE_CHARS] + "…"


@pass_context
def _emit_text(_ctx: Any, value: Any) -> str:
    return _Text(_current().emit(value))


def _finalizer(esc: Callable[[str], str]) -> Callable[[Any], str]:
    """`finalize` of a channel's environment: redact the configured secrets in every value, then escape it (an
    escaped secret would no longer be recognized); keep the template's own text."""
    return lambda v: v if isinstance(v, _Text) else esc(redact(str(v)))


class _Instrument(NodeTransformer):
    """Counts every loop iteration and every character output, and checks the size of concatenations."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_counted", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, "_sized", [], [], None, None, lineno=node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [nodes.Filter(n, "_emit_text" if isinstance(n, nodes.TemplateData) else "_emit", [], [], None,
                                   None, lineno=n.lineno) for n in node.nodes]
        return node


def _replace_size(m: _Meter, s: Any, old: Any, new: Any) -> None:
    if isinstance(s, str):
        m.size(len(s) * max(len(str(new)), 1) // max(len(str(old)), 1), "replace result")


# Filters that can build far more than they are given: check their size arguments before they run.
def _checks(name: str, m: _Meter, value: Any, args: tuple[Any, ...]) -> None:
    if name in ("center", "indent", "slice") and args and isinstance(args[0], int):
        m.size(args[0], f"{name} argument")
    elif name == "format" and isinstance(value, str):
        m.widths(value)
    elif name == "replace" and len(args) >= 2:
        _replace_size(m, value, args[0], args[1])


def _checked_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    skip = 0 if getattr(fn, "jinja_pass_arg", None) is None else 1  # environment / context comes first

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        m = _current()
        _checks(name, m, args[skip] if len(args) > skip else None, args[skip + 1:] + tuple(kwargs.values()))
        return m.sized(fn(*args, **kwargs))
    return checked


class BudgetedSandbox(SandboxedEnvironment):
    """The sandbox with the budget of the current render (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.filters["_counted"] = _counted
        self.filters["_sized"] = _sized
        self.filters["_emit"] = _emit
        self.filters["_emit_text"] = _emit_text
        for name in _SIZED_FILTERS:
            self.filters[name] = _checked_filter(name, FILTERS[name])
        self.globals.pop("lipsum", None)

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        return super()._generate(_Instrument().visit(source), name, filename, defer_init)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        m = _current()
        m.tick()
        if getattr(__obj, "__self__", None).__class__ is str:  # a str method: its widths and counts
            for a in (*args, *kwargs.values()):
                if isinstance(a, int) and not isinstance(a, bool):
                    m.size(a, f"{__obj.__name__} argument")
            if __obj.__name__ == "replace" and len(args) >= 2:
                _replace_size(m, __obj.__self__, args[0], args[1])
        return m.sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        fmt = super().wrap_str_format(value)
        if fmt is not None:
            _current().widths(value.__self__)
        return fmt

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        m = _current()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    m.size(len(seq) * n, "repetition")
        elif operator == "**" and isinstance(right, int) and isinstance(left, int) and abs(right) > 64 \
                and abs(left) > 1:
            raise TemplateBudgetError(f"an integer power with exponent {right} (limit 64)")
        elif operator == "%" and isinstance(left, str):
            m.widths(left)
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            m.size(len(left) + len(right), "concatenation")
        return m.sized(super().call_binop(context, operator, left, right))


@contextmanager
def budget(b: Budget) -> Iterator[_Meter]:
    """Meter the renders inside the block with a fresh budget."""
    token = _meter.set(_Meter(b))
    try:
        yield _meter.get()  # type: ignore[misc]  # set just above
    finally:
        _meter.reset(token)


def _fmt_time(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value.strftime(fmt) if isinstance(value, datetime) else str(value or "")


def sample_context() -> dict[str, Any]:
    """Template variables shaped like a step's (`runner.step_context`), with a few values in every list:
    what validation renders each template against."""
    from pipeline.schema import Entities, Incident, IntelHit, MatchExplanation, to_builtins

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"{i:032x}" for i in range(1, 4)]
    inc = Incident(
        incident_id="0" * 32, tenant_id="sample", title="Sample incident", category="web_attack",
        class_="network_attack", priority="P3", base_priority="P3", priority_reasons=["base P3 from use case"],
        sla_due=t0 + timedelta(hours=4), use_cases=["uc-1", "uc-2"], first_seen=t0,
        last_seen=t0 + timedelta(minutes=5), alert_count=3, alert_ids=ids,
        sources={"families": ["waf", "ids"], "products": ["ModSecurity", "Suricata"]},
        entities=Entities(src_ips=["198.51.100.7", "203.0.113.9", "192.0.2.44"], dst_ips=["10.0.0.5"],
                          hosts=["web-01", "web-02"], users=["alice", "bob"], files=["/srv/www/x.php"],
                          urls=["/login.php?id=1"], processes=["/bin/sh"], domains=["c2.example"]),
        attack=["T1190", "T1110"], outcome="attempted",
        explanation=[MatchExplanation("uc-1", "Sample rule", ids[:2]), MatchExplanation("uc-2", "Other", ids)],
        intel=[IntelHit("203.0.113.9", "ip", "src.ip", "sample-feed", 80, ["c2"])],
    )
    related = [{"id": i, "category": "scan", "status": "new", "title": "Related"} for i in range(1, 4)]
    return {
        "incident": to_builtins(inc), "playbook": "sample", "tenant": "sample", "now": t0.isoformat(),
        "ticket": {"id": 1, "status": "new", "priority": "P3", "title": inc.title,
                   "sla_due": inc.sla_due.isoformat() if inc.sla_due else None, "tenant": "sample",
                   "external": {}},
        "steps": {"enrich": {"related": related, "asset": None, "intel": []}},
        "available": lambda name: True,
    }


def _trial(fn: Callable[[], Any], b: Budget) -> str | None:
    """The budget or sandbox problem of one trial render (other errors depend on the data: not reported)."""
    try:
        with budget(b):
            fn()
    except (TemplateBudgetError, SecurityError) as e:
        return f"{type(e).__name__}: {e}"
    except Exception:
        return None
    return None


class Templates:
    def __init__(self, directory: str | Path | None = None, budget: Budget = Budget()):
        self.directory = Path(directory) if directory else None
        self.budget = budget
        self._loader = FileSystemLoader(str(self.directory)) if self.directory and self.directory.is_dir() else None
        self._envs: dict[str, SandboxedEnvironment] = {}
        self.env = self.environment("raw")
        self._cache: dict[tuple[str, str], Template] = {}
        self._exprs: dict[str, Any] = {}

    def environment(self, markup: str) -> SandboxedEnvironment:
        """The sandbox that renders for `markup`: each expression's value is escaped for it."""
        env = self._envs.get(markup)
        if env is None:
            esc = textsafe.escaper(markup)
            env = BudgetedSandbox(
                loader=self._loader,
                undefined=ChainableUndefined,
                autoescape=False,
                trim_blocks=True,
                lstrip_blocks=True,
                finalize=_finalizer(esc),
            )
            env.filters["time"] = _fmt_time
            self._envs[markup] = env
        return env

    # ---- checks (validation) ------------------------------------------------------------------------
    def check(self, source: str) -> str | None:
        """None when `source` compiles and renders the sample context within the budget, else the error
        (with the template line)."""
        try:
            m = _SINGLE.match(source)
            if m:
                self.env.compile_expression(m.group("expr"))
            else:
                self.env.parse(source)
        except TemplateError as e:
            line = getattr(e, "lineno", None)
            return f"{type(e).__name__}: {e}" + (f" (template line {line})" if line else "")
        return _trial(lambda: self.value(source, sample_context()), self.budget)

    def check_expression(self, expr: str) -> str | None:
        try:
            self.env.compile_expression(expr)
        except TemplateError as e:
            return f"{type(e).__name__}: {e}"
        return _trial(lambda: self.evaluate(expr, sample_context()), self.budget)

    def has(self, name: str) -> bool:
        return self.directory is not None and (self.directory / f"{name}{SUFFIX}").is_file()

    def check_file(self, name: str) -> str | None:
        if not self.has(name):
            return f"no template {name!r} ({self.directory}/{name}{SUFFIX})"
        try:
            self.env.get_template(f"{name}{SUFFIX}")
        except TemplateError as e:
            return f"template {name}: {type(e).__name__}: {e}"
        problem = _trial(lambda: self.render_file(name, sample_context()), self.budget)
        return f"template {name}: {problem}" if problem else None

    # ---- rendering (each call within one budget; TemplateBudgetError beyond it) ---------------------
    @contextmanager
    def _metered(self) -> Iterator[_Meter]:
        m = _meter.get()
        if m is not None:  # inside a render already (value() of a container): the same budget
            yield m
            return
        with budget(self.budget) as m:
            yield m

    def _text(self, t: Template, ctx: dict[str, Any]) -> str:
        with self._metered():
            return t.render(ctx)

    def render(self, source: str, ctx: dict[str, Any], markup: str = "raw") -> str:
        t = self._cache.get((markup, source))
        if t is None:
            t = self._cache[(markup, source)] = self.environment(markup).from_string(source)
        return self._text(t, ctx)

    def render_file(self, name: str, ctx: dict[str, Any], markup: str = "raw") -> str:
        return self._text(self.environment(markup).get_template(f"{name}{SUFFIX}"), ctx)

    def evaluate(self, expr: str, ctx: dict[str, Any]) -> Any:
        f = self._exprs.get(expr)
        if f is None:
            f = self._exprs[expr] = self.env.compile_expression(expr, undefined_to_none=True)
        with self._metered():
            return f(**ctx)

    def truthy(self, expr: str, ctx: dict[str, Any]) -> bool:
        return bool(self.evaluate(expr, ctx))

    def value(self, v: Any, ctx: dict[str, Any]) -> Any:
        """Render a playbook value: strings as templates (native for a lone expression), containers deeply,
        all within one budget."""
        with self._metered():
            return self._value(v, ctx)

    def _value(self, v: Any, ctx: dict[str, Any]) -> Any:
        if isinstance(v, str):
            if "{{" not in v and "{%" not in v:
                return v
            m = _SINGLE.match(v)
            if m:
                return self.evaluate(m.group("expr"), ctx)
            return self.render(v, ctx)
        if isinstance(v, dict):
            return {k: self._value(x, ctx) for k, x in v.items()}
        if isinstance(v, list):
            return [self._value(x, ctx) for x in v]
        return v
