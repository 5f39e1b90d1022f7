"""What a run would do, worked out without running anything: :func:`plan` and its :class:`Plan`.

A plan validates the graph, the profile and every parameter, fingerprints each
node (notebook, parameters, ``salve_utils`` code, upstream outputs) and lists the
stale ones; :func:`_project` decides which project a command works on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..common.runtime import enclosing_project, hash_json, hash_tree, project_root
from .graph import Node, PipelineError, descendants, load_graph, load_profile, topological_order
from .parameters import _suggest, resolve_parameters
from .store import _executed_fingerprint, _read_outputs, chapter_path, notebook_hash, outputs_intact


@dataclass
class Plan:
    """What a run would do: every node's parameters and fingerprint, and which nodes are stale."""

    root: Path
    profile: str
    order: list[str]
    params: dict[str, dict[str, Any]]
    nodes: dict[str, Node]
    code_hash: str
    editions: dict[str, dict[str, Any]] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    stale_upstream: list[str] = field(default_factory=list)  # --only: ancestors used although not current

    def fingerprint(self, name: str) -> str:
        """Hash of the notebook, its parameters, the salve_utils code and the upstream nodes' outputs."""
        node = self.nodes[name]
        upstream = {}
        for role, up in sorted(node.upstream.items()):
            outputs = _read_outputs(self.root, self.profile, up)
            upstream[role] = hash_json(outputs) if outputs is not None else "missing"
        # edition titles are written into the chapters (headings, the summary's columns)
        titles = ({node.edition: self.editions[node.edition]["title"]} if node.edition else
                  {e: body["title"] for e, body in self.editions.items()})
        return hash_json({"notebook": notebook_hash(self.root / "notebooks" / node.notebook),
                          "params": self.params[name], "code": self.code_hash, "upstream": upstream,
                          "titles": titles})

    def is_current(self, name: str) -> bool:
        return (_executed_fingerprint(chapter_path(self.root, self.profile, name)) == self.fingerprint(name)
                and outputs_intact(self.root, _read_outputs(self.root, self.profile, name)))

    def select(self, only: str) -> list[str]:
        """The nodes ``--only`` names: a node, an edition (all its nodes) or a chain node (in every edition)."""
        if only in self.nodes:
            return [only]
        hits = [n for n in self.order if self.nodes[n].edition == only or self.nodes[n].chain_node == only]
        if not hits:
            chain = {n.chain_node for n in self.nodes.values() if n.chain_node}
            raise PipelineError(f"--only {only!r} is not a node, an edition or a chain node"
                                f"{_suggest(only, [*self.nodes, *self.editions, *chain])}; "
                                f"nodes: {', '.join(self.order)}")
        return hits


def plan(profile: str, root: str | os.PathLike | None = None, overrides: Iterable[str] = (),
         only: str | None = None, force: bool = False, downstream: bool = True) -> Plan:
    """Validate everything and work out which nodes are stale — without running anything.

    ``only`` names a node, an edition or a chain node: those always run, and their
    stale descendants after them unless ``downstream`` is false.
    """
    root = _project(root)
    graph = load_graph(root)
    spec = load_profile(root, profile)
    nodes, params = resolve_parameters(root, graph, profile, spec, overrides)
    order = topological_order(nodes)
    p = Plan(root, profile, order, params, nodes, hash_tree(root / "salve_utils"), spec["editions"])
    selected = set(order)
    named: set[str] = set()
    if only is not None:
        named = set(p.select(only))
        selected = set().union(*(descendants(nodes, n) for n in named)) if downstream else set(named)
    # stale = selected nodes that are forced or not current; staleness of a node
    # propagates through fingerprints (which include upstream outputs) at run time
    p.stale = [n for n in order if n in selected and (force or n in named or not p.is_current(n))]
    if only is not None:
        ancestors = set().union(*(_ancestors(nodes, n) for n in named)) - selected
        for n in order:
            if n in ancestors and not outputs_intact(root, _read_outputs(root, profile, n)):
                raise PipelineError(f"--only {only}: upstream node {n!r} has no outputs for profile "
                                    f"{profile}; run it first (or the whole profile)")
        p.stale_upstream = [n for n in order if n in ancestors and not p.is_current(n)]
    return p


def _project(root: str | os.PathLike | None) -> Path:
    """The project a command works on: ``root`` when given, else :func:`~salve_utils.common.runtime.project_root`.

    A ``SALVE_PROJECT_ROOT`` that names another project than the one this code, or
    the working directory, belongs to is refused rather than followed: the run would
    mix one clone's code with another's notebooks and results.
    """
    if root:
        return Path(root).resolve()
    found = project_root()
    env = os.environ.get("SALVE_PROJECT_ROOT")
    if env:
        for other, what in ((enclosing_project(Path(__file__).parent), "this salve_utils code"),
                            (enclosing_project(Path.cwd()), "the working directory")):
            if other is not None and other != found:
                raise PipelineError(f"SALVE_PROJECT_ROOT={env} names another project than {what} ({other}). "
                                    f"Fix: `unset SALVE_PROJECT_ROOT` to work on {other}, or pass --root {found} "
                                    "to work on that one on purpose")
    return found


def _ancestors(nodes: dict[str, Node], name: str) -> set[str]:
    out: set[str] = set()
    todo = list(nodes[name].upstream.values())
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo += nodes[n].upstream.values()
    return out
