"""The one YAML loader of the project: PyYAML's safe loader with limits against hostile files.

Every YAML file the project reads (use cases, playbooks, channels, secrets, asset inventories, escort
calendars) goes through `SafeLoader` or a subclass of it. Besides refusing Python tags (safe loading), it
refuses, while composing and before any object is built:

- text over `MAX_BYTES` characters;
- nesting deeper than `MAX_DEPTH`;
- more than `MAX_NODES` nodes with every alias expanded. A "billion laughs" file is a few hundred bytes
  whose aliases expand to 10^8 nodes or more; PyYAML shares an aliased node, but everything that walks
  the loaded data (validation, copies, `str()`) walks the expansion;
- an alias inside the node it refers to (a self-containing structure).

The refusal is a `YamlLimitError`, a `yaml.MarkedYAMLError` whose `problem_mark` gives the line, so loaders
report it as they report a syntax error (file:line: message).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import Node

MAX_BYTES = 32 << 20
MAX_DEPTH = 100
MAX_NODES = 2_000_000


class YamlLimitError(yaml.MarkedYAMLError):
    """The document exceeds a limit of `SafeLoader` (size, depth, expanded nodes) or is self-containing."""

    def __init__(self, problem: str, mark: Mark | None = None):
        super().__init__(problem=problem, problem_mark=mark)


class SafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` with the limits of this module (subclass it to add constructors)."""

    max_bytes = MAX_BYTES
    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES

    def __init__(self, stream: Any):
        if isinstance(stream, str | bytes) and len(stream) > self.max_bytes:
            raise YamlLimitError(f"document of {len(stream)} characters is over the limit of {self.max_bytes}")
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0  # nodes of the current document, aliases expanded
        self._sizes: dict[int, int] = {}  # id(node) -> its expanded size, for nodes fully composed

    def compose_document(self) -> Node | None:
        self._nodes = 0
        self._sizes.clear()
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        mark = self.peek_event().start_mark
        if self.check_event(AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise YamlLimitError("an alias refers to a node that contains it", mark)
            self._count(size, mark)
            return node
        self._depth += 1
        if self._depth > self.max_depth:
            raise YamlLimitError(f"nesting deeper than {self.max_depth} levels", mark)
        start = self._nodes
        self._count(1, mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._nodes - start
        return node

    def _count(self, n: int, mark: Mark) -> None:
        self._nodes += n
        if self._nodes > self.max_nodes:
            raise YamlLimitError(f"more than {self.max_nodes} nodes with aliases expanded (an alias bomb?)", mark)


def load(text: str, loader: type[SafeLoader] = SafeLoader) -> Any:
    """The single document of `text` (None when empty); yaml.YAMLError on bad or over-limit YAML."""
    return yaml.load(text, Loader=loader)


def load_all(text: str, loader: type[SafeLoader] = SafeLoader) -> list[Any]:
    """Every document of `text`, None documents included."""
    return list(yaml.load_all(text, Loader=loader))


def load_all_with_nodes(text: str, loader: type[SafeLoader] = SafeLoader) -> list[tuple[Any, Node]]:
    """(data, node) of every non-empty document: the node keeps the line of each key (`key_line`)."""
    ldr = loader(text)
    try:
        out = []
        while ldr.check_node():
            node = ldr.get_node()
            if node is not None:
                out.append((ldr.construct_document(node), node))
        return out
    finally:
        ldr.dispose()


def key_line(node: Node, path: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
    """(1-based line, the part of `path` found) of the deepest mapping key along `path` in a composed
    document: the line of `mdr:` > `priority:` for ("mdr", "priority"), or of `mdr:` when it has no
    `priority` key; the document's first line when not even the first key exists."""
    line, found = node.start_mark.line + 1, tuple[str, ...]()
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        hit = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if hit is None:
            break
        line, found, node = hit[0].start_mark.line + 1, (*found, key), hit[1]
    return line, found
