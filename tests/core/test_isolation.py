"""All state is per core (per partition, in the worker): two cores in one process share nothing they change,
and running a core changes no module-level state (caches included)."""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import msgspec

from pipeline.core.engine import Core
from pipeline.rules.usecase import UseCaseSet, load_usecases
from tests.days import lab_day
from tests.time_repros import ROOT

USECASES = load_usecases(str(ROOT / "usecases"))
_MUTABLE = (dict, list, set, deque)


def _run(core: Core, tenant: str, back: int = 0) -> None:
    alerts = lab_day(tenant, back)
    for i in range(0, len(alerts), 2048):
        core.feed_alerts(alerts[i:i + 2048])
    core.take()


def _module_state() -> dict[tuple[str, str], int]:
    """(module, name) -> size of every mutable container held by a pipeline module, directly or as an object's
    attribute (a cache object)."""
    out: dict[tuple[str, str], int] = {}
    for mod_name, mod in list(sys.modules.items()):
        if not mod_name.startswith("pipeline.") or mod is None:
            continue
        for name, v in list(vars(mod).items()):
            if isinstance(v, type) or callable(v):
                continue
            if isinstance(v, _MUTABLE):
                out[(mod_name, name)] = len(v)
            elif type(v).__module__.startswith("pipeline."):
                for attr, x in vars(v).items() if hasattr(v, "__dict__") else ():
                    if isinstance(x, _MUTABLE):
                        out[(mod_name, f"{name}.{attr}")] = len(x)
    return out


def _reachable(root: Any, shared: UseCaseSet) -> set[int]:
    """ids of the mutable containers reachable from `root` through containers and pipeline objects (not through
    the use-case set the cores share on purpose, nor functions, classes and modules)."""
    seen: set[int] = set()
    found: set[int] = set()
    todo = [root]
    while todo:
        x = todo.pop()
        if id(x) in seen or x is shared:
            continue
        seen.add(id(x))
        if isinstance(x, dict):
            found.add(id(x))
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, _MUTABLE):
            found.add(id(x))
            todo.extend(x)
        elif isinstance(x, tuple):
            todo.extend(x)
        elif isinstance(x, msgspec.Struct):
            todo.extend(getattr(x, f) for f in x.__struct_fields__)
        elif type(x).__module__.startswith("pipeline.") and not isinstance(x, type) and not callable(x):
            if hasattr(x, "__dict__"):
                todo.append(vars(x))
            todo.extend(getattr(x, s) for c in type(x).__mro__ for s in getattr(c, "__slots__", ())
                        if hasattr(x, s))
    return found


def test_two_cores_share_no_state() -> None:
    _run(Core(USECASES), "warm-up")  # lazily built pure caches (format registry, ...) are built now
    before = _module_state()
    a, b = Core(USECASES), Core(USECASES)
    _run(a, "a")
    _run(b, "b", back=1)
    assert _module_state() == before, "running a core changed module-level state"
    assert a.builder.idsets._sets and a.fusion.source_sets._sets  # the caches are in use, in the core
    common = _reachable(a, USECASES) & _reachable(b, USECASES)
    assert not common, f"{len(common)} mutable objects reachable from both cores"
