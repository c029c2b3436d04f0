"""The import graph of `pipeline/` points down: each module imports only modules of its own layer or below, and
no two modules import each other, directly or around a loop (docs/architecture.md).

Imports are read with `ast` from every `pipeline/**/*.py`, absolute and relative, at module level and inside
functions; imports under `if TYPE_CHECKING:` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top. A module belongs to the layer of the longest prefix listed here that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("vocabulary", ("pipeline", "pipeline.schema", "pipeline.redact", "pipeline.textsafe", "pipeline.paths",
                    "pipeline.safeyaml", "pipeline.tenant", "pipeline.durations", "pipeline.errors",
                    "pipeline.gc_tuning", "pipeline.schema_export")),
    ("normalize", ("pipeline.normalize", "pipeline.naming")),
    ("rules", ("pipeline.rules",)),
    ("context", ("pipeline.context",)),
    # the database SOAR, reports and the console share (its engine and SOAR/console tables still live in
    # soar/ and console/ modules)
    ("store", ("pipeline.store", "pipeline.migrations", "pipeline.soar.db", "pipeline.soar.models",
               "pipeline.soar.lifecycle", "pipeline.soar.evidence", "pipeline.console.models")),
    ("core", ("pipeline.core", "pipeline.authoring")),
    ("classify", ("pipeline.classify",)),
    ("soar", ("pipeline.soar",)),
    ("report", ("pipeline.report",)),
    ("assembly", ("pipeline.assemble",)),
    # the drivers, and the tools above the core and SOAR: `mdr model evaluate` runs the core as `mdr replay` does,
    # `mdr model retrain` reads the analysts' verdicts from the SOAR store, `mdr trace` reads outputs
    ("adapters", ("pipeline.replay", "pipeline.stream", "pipeline.console", "pipeline.cli", "pipeline.cliargs",
                  "pipeline.clitext", "pipeline.tables", "pipeline.trace", "pipeline.classify.cli",
                  "pipeline.classify.evaluate", "pipeline.classify.retrain",
                  "pipeline.context.cli", "pipeline.report.cli", "pipeline.soar.cli")),
]


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    out = {}
    for p in sorted((root / "pipeline").rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if pkg else parts)] = (p, pkg)
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imported(name: str, path: Path, pkg: bool) -> set[str]:
    """Every module name `name` imports at run time (names of imported attributes included, as `a.b.name`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for c in ast.iter_child_nodes(node):
            if isinstance(c, ast.If) and _type_checking(c):
                for s in c.orelse:
                    visit_one(s)
            else:
                visit_one(c)

    def visit_one(c: ast.AST) -> None:
        if isinstance(c, ast.Import):
            found.update(a.name for a in c.names)
        elif isinstance(c, ast.ImportFrom):
            if c.level:
                base = name.split(".") if pkg else name.split(".")[:-1]
                base = base[: len(base) - (c.level - 1)]
                mod = ".".join([*base, *([c.module] if c.module else [])])
            else:
                mod = c.module or ""
            found.update(f"{mod}.{a.name}" for a in c.names)  # a submodule, else resolved to `mod` below
        else:
            visit(c)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the pipeline modules it imports (the deepest module each import names)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, (path, pkg) in mods.items():
        targets = set()
        for imp in _imported(name, path, pkg):
            parts = imp.split(".")
            hit = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in mods), None)
            if hit is not None and hit != name:
                targets.add(hit)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    best, level = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            inside = module == p or (p != "pipeline" and module.startswith(p + "."))  # `pipeline`: its __init__
            if inside and len(p) > best:
                best, level = len(p), i
    return level


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in sorted(graph.items()):
        for t in sorted(targets):
            if layer_of(t) > layer_of(m):
                bad.append(f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


GRAPH = import_graph()


def test_every_module_has_a_layer() -> None:
    assert [m for m in GRAPH if layer_of(m) < 0] == []


def test_imports_point_down() -> None:
    assert upward_imports(GRAPH) == []


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


@pytest.mark.parametrize("source, expected", [
    ("from . import b\n", {"pipeline.p.b"}),
    ("from .b import x\n", {"pipeline.p.b"}),
    ("from ..q import y\n", {"pipeline.q"}),
    ("import pipeline.p.b as bb\n", {"pipeline.p.b"}),
    ("def f():\n    from pipeline.q import y\n", {"pipeline.q"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.q import y\n", set()),
    ("import typing\nif typing.TYPE_CHECKING:\n    from pipeline.q import y\nelse:\n    from .b import x\n",
     {"pipeline.p.b"}),
])
def test_the_checker_reads_every_kind_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    pkg = tmp_path / "pipeline" / "p"
    pkg.mkdir(parents=True)
    for f in (tmp_path / "pipeline" / "__init__.py", tmp_path / "pipeline" / "q.py", pkg / "__init__.py",
              pkg / "b.py"):
        f.write_text("")
    (pkg / "a.py").write_text(source)
    assert import_graph(tmp_path)["pipeline.p.a"] == expected


def test_the_checker_finds_an_upward_import_and_a_cycle() -> None:
    graph = {"pipeline.rules.x": {"pipeline.core.engine"}, "pipeline.core.engine": {"pipeline.rules.x"}}
    assert upward_imports(graph) == ["pipeline.rules.x (rules) imports pipeline.core.engine (core)"]
    assert cycles(graph) == [["pipeline.core.engine", "pipeline.rules.x"]]
