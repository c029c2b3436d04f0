"""Jinja2 templates for playbooks, rendered in a sandbox (`SandboxedEnvironment`).

Playbook values are templates over a context of plain data: `incident` (the incident as JSON-like dicts),
`ticket` (id, status, priority, sla_due), `steps` (results of earlier steps by id), `playbook`, `tenant`,
`now`. A string that is one single `{{ expression }}` renders to the expression's own value (a list stays a
list), anything else renders to text. `when:` conditions are expressions. Missing attributes render empty
instead of failing (`ChainableUndefined`); syntax is checked when playbooks are validated.
Named templates are files `playbooks/templates/<name>.j2`.

Text for a channel is rendered in the channel's markup (`markup=`, pipeline/textsafe.py): every `{{ ... }}`
value is escaped for it, while the template's own text keeps its formatting. Formatting therefore belongs
in the template text, never in values (an incident title cannot add a link, an image or a mention).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, FileSystemLoader, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from pipeline import textsafe

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.S)
SUFFIX = ".j2"


def _fmt_time(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    return value.strftime(fmt) if isinstance(value, datetime) else str(value or "")


class Templates:
    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory else None
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
            env = SandboxedEnvironment(
                loader=self._loader,
                undefined=ChainableUndefined,
                autoescape=False,
                trim_blocks=True,
                lstrip_blocks=True,
                finalize=None if markup == "raw" else (lambda v: esc(str(v))),
            )
            env.filters["time"] = _fmt_time
            self._envs[markup] = env
        return env

    # ---- checks (validation) ------------------------------------------------------------------------
    def check(self, source: str) -> str | None:
        """None when `source` compiles, else the error (with the template line)."""
        try:
            m = _SINGLE.match(source)
            if m:
                self.env.compile_expression(m.group("expr"))
            else:
                self.env.parse(source)
        except TemplateError as e:
            return f"{type(e).__name__}: {e}" + (f" (template line {e.lineno})" if getattr(e, "lineno", None) else "")
        return None

    def check_expression(self, expr: str) -> str | None:
        try:
            self.env.compile_expression(expr)
        except TemplateError as e:
            return f"{type(e).__name__}: {e}"
        return None

    def has(self, name: str) -> bool:
        return self.directory is not None and (self.directory / f"{name}{SUFFIX}").is_file()

    def check_file(self, name: str) -> str | None:
        if not self.has(name):
            return f"no template {name!r} ({self.directory}/{name}{SUFFIX})"
        try:
            self.env.get_template(f"{name}{SUFFIX}")
        except TemplateError as e:
            return f"template {name}: {type(e).__name__}: {e}"
        return None

    # ---- rendering ----------------------------------------------------------------------------------
    def render(self, source: str, ctx: dict[str, Any], markup: str = "raw") -> str:
        t = self._cache.get((markup, source))
        if t is None:
            t = self._cache[(markup, source)] = self.environment(markup).from_string(source)
        return t.render(ctx)

    def render_file(self, name: str, ctx: dict[str, Any], markup: str = "raw") -> str:
        return self.environment(markup).get_template(f"{name}{SUFFIX}").render(ctx)

    def evaluate(self, expr: str, ctx: dict[str, Any]) -> Any:
        f = self._exprs.get(expr)
        if f is None:
            f = self._exprs[expr] = self.env.compile_expression(expr, undefined_to_none=True)
        return f(**ctx)

    def truthy(self, expr: str, ctx: dict[str, Any]) -> bool:
        return bool(self.evaluate(expr, ctx))

    def value(self, v: Any, ctx: dict[str, Any]) -> Any:
        """Render a playbook value: strings as templates (native for a lone expression), containers deeply."""
        if isinstance(v, str):
            if "{{" not in v and "{%" not in v:
                return v
            m = _SINGLE.match(v)
            if m:
                return self.evaluate(m.group("expr"), ctx)
            return self.render(v, ctx)
        if isinstance(v, dict):
            return {k: self.value(x, ctx) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x, ctx) for x in v]
        return v
