"""``BlockGraph``: the model's blocks as a validated, topologically sorted graph (pure python, no torch).

A block is a dict in the config::

    dict(name='neck', type='FPN', inputs=['backbone.layer2', 'backbone.layer3'], in_channels=[128, 256])
    dict(name='det_head', type='AnchorFreeDetHead', inputs='neck', task='detection', ...)

``inputs`` name other blocks (or ``'img'``, the batch of images; ``'image'`` is accepted too); a dotted suffix
takes a sub-output: a dict key (``backbone.layer4``) or a tuple index (``neck.0``). A block with ``task`` is a
head. Everything else in the dict is the block's own constructor arguments, written beside these keys (the
primary spelling) or grouped in ``args=dict(...)`` (the origin README's spelling; both may be mixed, a key given
both ways is an error).
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

IMAGE_INPUT = "img"
IMAGE_INPUT_ALIASES = ("image",)  # other names of the input images in ``inputs``
RESERVED_KEYS = ("name", "type", "inputs", "task", "adapter")
ARGS_KEY = "args"  # constructor arguments grouped in a dict, beside or instead of flat keys
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class GraphError(ValueError):
    """A block graph that cannot be built; the message names the block/edge at fault."""


@dataclass(frozen=True)
class InputRef:
    """One edge: ``block`` (or ``'img'``) and a sub-output ``path``; ``text`` is how the config wrote it."""

    text: str
    block: str
    path: tuple[str, ...]


@dataclass
class BlockNode:
    name: str
    type: str
    inputs: list[InputRef]
    task: str | None = None
    adapter: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_head(self) -> bool:
        return self.task is not None


class BlockGraph:
    """Validate block configs and order them so that every block runs after its inputs.

    Args:
        blocks: the config's list of block dicts.
        is_head: optional ``BlockNode -> bool`` that says whether a block is a task head (the model passes
            one backed by the registries); used to reject a head without ``task`` and a non-head with one.
    """

    def __init__(self, blocks: Sequence[dict], is_head: Callable[[BlockNode], bool] | None = None):
        if not isinstance(blocks, (list, tuple)) or not blocks:
            raise GraphError("model.blocks must be a non-empty list of block dicts")
        self.nodes: dict[str, BlockNode] = {}
        for i, cfg in enumerate(blocks):
            node = self._parse(i, cfg)
            if node.name in self.nodes:
                raise GraphError(f"duplicate block name {node.name!r} (blocks[{i}])")
            self.nodes[node.name] = node
        self._check_edges()
        if is_head is not None:
            self._check_heads(is_head)
        self.order: list[str] = self._toposort()
        self._warn_unused()

    # ----------------------------------------------------------------- parsing
    @staticmethod
    def _parse(i: int, cfg: Any) -> BlockNode:
        if not isinstance(cfg, dict):
            raise GraphError(f"blocks[{i}] must be a dict, got {type(cfg).__name__}")
        name = cfg.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise GraphError(f"blocks[{i}] needs a 'name' that is an identifier (no dots), got {name!r}")
        if name in (IMAGE_INPUT, *IMAGE_INPUT_ALIASES):
            raise GraphError(f"blocks[{i}]: the name {name!r} is reserved for the input images")
        if not isinstance(cfg.get("type"), str):
            raise GraphError(f"block {name!r} needs a 'type' string")
        raw_inputs = cfg.get("inputs")
        if isinstance(raw_inputs, str):
            raw_inputs = [raw_inputs]
        if not raw_inputs or not all(isinstance(s, str) and s for s in raw_inputs):
            raise GraphError(
                f"block {name!r} needs 'inputs': a block name, '{IMAGE_INPUT}', or a list of them "
                f"(dots take sub-outputs, e.g. 'backbone.layer4')"
            )
        refs = []
        for text in raw_inputs:
            head, *path = text.split(".")
            head = IMAGE_INPUT if head in IMAGE_INPUT_ALIASES else head
            refs.append(InputRef(text=text, block=head, path=tuple(path)))
        task = cfg.get("task")
        if task is not None and (not isinstance(task, str) or not task):
            raise GraphError(f"block {name!r}: 'task' must be a non-empty string, got {task!r}")
        return BlockNode(name, cfg["type"], refs, task, cfg.get("adapter"), BlockGraph._kwargs(name, cfg))

    @staticmethod
    def _kwargs(name: str, cfg: dict) -> dict[str, Any]:
        """The block's constructor arguments: its flat keys merged with ``args=dict(...)``, each given once."""
        kwargs = {k: v for k, v in cfg.items() if k not in RESERVED_KEYS and k != ARGS_KEY}
        grouped = cfg.get(ARGS_KEY)
        if grouped is None:
            return kwargs
        if not isinstance(grouped, dict):
            raise GraphError(
                f"block {name!r}: {ARGS_KEY} must be a dict of arguments, got {type(grouped).__name__}"
            )
        for key in grouped:
            if key in RESERVED_KEYS:
                raise GraphError(f"block {name!r}: {key!r} goes beside 'name' and 'type', not in {ARGS_KEY}=")
            if key in kwargs:
                raise GraphError(
                    f"block {name!r}: {key!r} is given twice, as a key of the block and in {ARGS_KEY}=; keep one"
                )
        return {**kwargs, **grouped}

    def _check_edges(self) -> None:
        for node in self.nodes.values():
            for ref in node.inputs:
                if ref.block == IMAGE_INPUT or ref.block in self.nodes:
                    if ref.block == node.name:
                        raise GraphError(f"block {node.name!r} takes its own output as input {ref.text!r}")
                    if ref.block == IMAGE_INPUT and ref.path:
                        raise GraphError(
                            f"block {node.name!r} input {ref.text!r}: the images have no sub-outputs"
                        )
                    continue
                close = difflib.get_close_matches(ref.block, list(self.nodes) + [IMAGE_INPUT], n=3)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                raise GraphError(
                    f"block {node.name!r} input {ref.text!r}: no block named {ref.block!r} "
                    f"(blocks: {', '.join(self.nodes)}){hint}"
                )

    def _check_heads(self, is_head: Callable[[BlockNode], bool]) -> None:
        for node in self.nodes.values():
            head = is_head(node)
            if head and node.task is None:
                raise GraphError(f"block {node.name!r} ({node.type}) is a head but has no 'task'")
            if not head and node.task is not None:
                raise GraphError(
                    f"block {node.name!r} ({node.type}) is not a head, so 'task={node.task}' would be ignored"
                )

    # ----------------------------------------------------------------- order
    def _toposort(self) -> list[str]:
        """Kahn's algorithm, stable in config order; a leftover means a cycle, which is printed."""
        deps = {n: {r.block for r in node.inputs if r.block != IMAGE_INPUT} for n, node in self.nodes.items()}
        order: list[str] = []
        done: set[str] = set()
        while len(order) < len(self.nodes):
            ready = [n for n in self.nodes if n not in done and deps[n] <= done]
            if not ready:
                raise GraphError(f"the block graph has a cycle: {' -> '.join(self._find_cycle(deps, done))}")
            order.append(ready[0])
            done.add(ready[0])
        return order

    @staticmethod
    def _find_cycle(deps: dict[str, set[str]], done: set[str]) -> list[str]:
        start = next(n for n in deps if n not in done)
        path, seen = [start], {start: 0}
        while True:
            nxt = sorted(d for d in deps[path[-1]] if d not in done)[0]
            if nxt in seen:
                cycle = path[seen[nxt] :] + [nxt]
                return list(reversed(cycle))  # producer -> consumer order
            seen[nxt] = len(path)
            path.append(nxt)

    def _warn_unused(self) -> None:
        consumed = {r.block for node in self.nodes.values() for r in node.inputs}
        for name in self.order:
            node = self.nodes[name]
            if not node.is_head and name not in consumed:
                warnings.warn(
                    f"block {name!r} ({node.type}) feeds no other block and is not a head: unused",
                    stacklevel=3,
                )

    # ----------------------------------------------------------------- queries
    @property
    def heads(self) -> list[BlockNode]:
        return [self.nodes[n] for n in self.order if self.nodes[n].is_head]

    @property
    def tasks(self) -> list[str]:
        """Task names in head order, without repeats."""
        return list(dict.fromkeys(h.task for h in self.heads if h.task is not None))

    def ancestors(self, names: Iterable[str]) -> list[str]:
        """``names`` and every block they depend on, in execution order."""
        need: set[str] = set()
        stack = list(names)
        while stack:
            n = stack.pop()
            if n in need:
                continue
            need.add(n)
            stack.extend(r.block for r in self.nodes[n].inputs if r.block != IMAGE_INPUT)
        return [n for n in self.order if n in need]

    def check_tasks(self, labelled: Iterable[str], where: str = "the datasets") -> None:
        """Warn for head tasks that ``labelled`` (the tasks the data labels) never provides."""
        labelled = set(labelled)
        for head in self.heads:
            if head.task not in labelled:
                warnings.warn(
                    f"head {head.name!r} predicts task {head.task!r} but no dataset labels it "
                    f"({where} label: {sorted(labelled)}); it will never be trained",
                    stacklevel=2,
                )
