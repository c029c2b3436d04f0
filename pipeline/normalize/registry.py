"""Registry of normalizers and format auto-detection.

Every module in `pipeline.normalize` (other than the plumbing ones) is imported once and registers its
`Normalizer` subclass with `@register`; a new product is one new module plus fixtures.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from pipeline.normalize.base import Normalizer

_PLUMBING = {"base", "registry", "stage", "reader", "timeparse"}
_REGISTRY: dict[str, type[Normalizer]] = {}
_loaded = False


def register(cls: type[Normalizer]) -> type[Normalizer]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"normalizer {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    import pipeline.normalize as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in _PLUMBING and not mod.name.startswith("_"):
            importlib.import_module(f"pipeline.normalize.{mod.name}")
    _loaded = True


def formats() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> type[Normalizer]:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


@functools.cache
def flag(name: str, trait: str) -> bool:
    """A class flag of a format's normalizer (`secondary`, `on_host`); False for a format not registered."""
    try:
        return bool(getattr(get(name), trait))
    except KeyError:
        return False


def ordered() -> list[type[Normalizer]]:
    """Normalizer classes in detection order (highest priority first, then by name)."""
    _load()
    return sorted(_REGISTRY.values(), key=lambda c: (-c.priority, c.name))


class Detector:
    """Finds the format of a record by asking each normalizer's `sniff`, in priority order."""

    def __init__(self) -> None:
        self._instances = [cls() for cls in ordered()]

    def detect(self, text: str) -> str | None:
        for n in self._instances:
            try:
                if n.sniff(text):
                    return n.name
            except Exception:  # a sniff must never break detection
                continue
        return None
