"""The report's graph and its profiles: ``notebooks/pipeline.yml`` and ``notebooks/profiles/<name>.yml``.

:class:`Graph` is the chain of notebooks declared once plus the report nodes;
:meth:`Graph.nodes` instantiates it per edition into :class:`Node` objects, in an
order :func:`topological_order` checks for cycles. :func:`load_profile` reads a
profile (its common parameters, per-node values and editions). Also here, at the
floor of the package: the project's fixed paths, the reserved parameters and
:class:`PipelineError`, which every other module raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


GRAPH_FILE = "notebooks/pipeline.yml"
PROFILES_DIR = "notebooks/profiles"
CHAPTERS_DIR = "book/chapters"
#: Parameters the runner injects into every notebook; every parameters cell declares them.
RESERVED = ("profile", "node", "upstream")


class PipelineError(Exception):
    """A problem with the graph, a profile or a parameter, found before anything runs."""


#: An edition name: lower-case letters, digits, ``-`` and ``_`` (it becomes a folder name).
EDITION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass
class Node:
    """One node of the report: a notebook, its fixed parameters and its upstream nodes (role -> node).

    A node of the SALVE chain is instantiated once per edition and named
    ``<edition>.<chain node>`` (e.g. ``vit-imagenette.control``); a report node
    (the summary) exists once per profile and may read every edition's nodes.
    """

    name: str
    notebook: str
    upstream: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    title: str = ""
    edition: str | None = None
    chain_node: str | None = None

    @property
    def relpath(self) -> str:
        """Where the node's files live below a profile folder: ``<edition>/<chain node>`` or ``<node>``."""
        return f"{self.edition}/{self.chain_node}" if self.edition else self.name


@dataclass
class Graph:
    """``notebooks/pipeline.yml``: the chain declared once, the report nodes, and the class-name parameters."""

    chain: dict[str, dict[str, Any]]
    report: dict[str, dict[str, Any]]
    class_params: list[str]
    dataset_param: tuple[str, str]

    def nodes(self, editions: dict[str, dict[str, Any]], datasets: dict[str, str]) -> dict[str, Node]:
        """Instantiate the chain for every edition (in profile order), then the report nodes."""
        nodes: dict[str, Node] = {}
        for edition in editions:
            for name, body in self.chain.items():
                only = body.get("datasets")
                if only and datasets[edition] not in only:
                    continue
                nodes[f"{edition}.{name}"] = Node(
                    f"{edition}.{name}", body["notebook"],
                    {role: f"{edition}.{up}" for role, up in (body.get("upstream") or {}).items()},
                    dict(body.get("params") or {}), body.get("title", ""), edition, name)
        for name, body in self.report.items():
            upstream = dict(body.get("upstream") or {})
            for edition in editions:
                for role, up in (body.get("per_edition") or {}).items():
                    if f"{edition}.{up}" in nodes:
                        upstream[f"{edition}.{role}"] = f"{edition}.{up}"
            nodes[name] = Node(name, body["notebook"], upstream, dict(body.get("params") or {}), body.get("title", ""))
        for node in nodes.values():
            for role, up in node.upstream.items():
                if up not in nodes:
                    raise PipelineError(f"{GRAPH_FILE}: node {node.name!r} has upstream {role}: {up!r}, not a node")
        topological_order(nodes)
        return nodes


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects a key given twice in one mapping (PyYAML keeps the last silently)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: Path, root: Path | None = None) -> Any:
    """Parse a YAML file; a syntax error or a duplicate key names the file and the line."""
    shown = path.relative_to(root).as_posix() if root and path.is_relative_to(root) else str(path)
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        fix = "keep one of them" if problem.startswith("duplicate key") else "correct the YAML there"
        raise PipelineError(f"{shown}{where}: {problem}. Fix: {fix}") from None


_NODE_KEYS = {"notebook", "upstream", "params", "title", "datasets", "per_edition", "part"}
#: Where a report node's page goes in the book: beside the method pages, or with the conclusions.
_PARTS = ("first", "front", "back")  # "first": the book opens with it, before the method


def load_graph(root: Path) -> Graph:
    """Read ``notebooks/pipeline.yml``; check the notebooks exist and the upstream names resolve."""
    spec = read_yaml(root / GRAPH_FILE, root) or {}
    unknown = set(spec) - {"chain", "nodes", "class_params", "edition_dataset"}
    if unknown:
        raise PipelineError(f"{GRAPH_FILE}: unknown top-level key(s) {sorted(unknown)}")
    chain = {k: dict(v or {}) for k, v in (spec.get("chain") or {}).items()}
    report = {k: dict(v or {}) for k, v in (spec.get("nodes") or {}).items()}
    for name in set(chain) & set(report):
        raise PipelineError(f"{GRAPH_FILE}: {name!r} is both a chain node and a report node; rename one of them")
    for kind, group in (("chain", chain), ("nodes", report)):
        for name, body in group.items():
            bad = set(body) - _NODE_KEYS
            bad |= ({"per_edition", "part"} & set(body)) if kind == "chain" else ({"datasets"} & set(body))
            if bad:
                raise PipelineError(f"{GRAPH_FILE}: {kind} node {name!r} has unknown key(s) {sorted(bad)}")
            nb = body.get("notebook")
            if not nb or not (root / "notebooks" / nb).is_file():
                raise PipelineError(f"{GRAPH_FILE}: node {name!r} names notebook {nb!r}, not found in notebooks/")
            if body.get("part", "back") not in _PARTS:
                raise PipelineError(f"{GRAPH_FILE}: node {name!r} has part {body['part']!r}; use one of {list(_PARTS)}")
            clash = set(body.get("params") or {}) & set(RESERVED)
            if clash:
                raise PipelineError(f"{GRAPH_FILE}: node {name!r} sets reserved parameter(s) {sorted(clash)}")
            ups = dict(body.get("upstream") or {}).values()
            targets = chain if kind == "chain" else report
            for up in ups:
                if up not in targets:
                    raise PipelineError(f"{GRAPH_FILE}: node {name!r} has upstream {up!r}, not a {kind} node")
            for up in (body.get("per_edition") or {}).values():
                if up not in chain:
                    raise PipelineError(f"{GRAPH_FILE}: node {name!r} reads {up!r} per edition, not a chain node")
    dataset_node, _, dataset_param = str(spec.get("edition_dataset", "backbone.dataset")).partition(".")
    if chain and dataset_node not in chain:
        raise PipelineError(f"{GRAPH_FILE}: edition_dataset names {dataset_node!r}, not a chain node")
    graph = Graph(chain, report, list(spec.get("class_params") or []), (dataset_node, dataset_param))
    graph.nodes({"e": {}} if chain else {}, {"e": ""})  # upstream names and cycles, checked once
    return graph


def topological_order(nodes: dict[str, Node]) -> list[str]:
    """Node names, every node after its upstream nodes (ties in file order)."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise PipelineError(f"{GRAPH_FILE}: cycle through {' -> '.join(trail + (name,))}")
        state[name] = 1
        for up in nodes[name].upstream.values():
            visit(up, trail + (name,))
        state[name] = 2
        order.append(name)

    for name in nodes:
        visit(name, ())
    return order


def descendants(nodes: dict[str, Node], start: str) -> set[str]:
    """``start`` and every node downstream of it."""
    out = {start}
    changed = True
    while changed:
        changed = False
        for node in nodes.values():
            if node.name not in out and set(node.upstream.values()) & out:
                out.add(node.name)
                changed = True
    return out


def available_profiles(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / PROFILES_DIR).glob("*.yml"))


def load_profile(root: Path, name: str) -> dict[str, Any]:
    """Read ``notebooks/profiles/<name>.yml``.

    Keys: ``description``; ``params`` (every notebook that declares them);
    ``nodes`` (per node: a report node, or a chain node whose values every edition
    shares); ``editions`` (name -> ``title`` and per-chain-node values).
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", name):
        raise PipelineError(f"profile name {name!r} must be a plain name (letters, digits, - and _), not a path; "
                            f"available: {', '.join(available_profiles(root))}")
    path = root / PROFILES_DIR / f"{name}.yml"
    if not path.is_file():
        raise PipelineError(f"unknown profile {name!r}; available: {', '.join(available_profiles(root))}")
    spec = read_yaml(path, root)
    shown = f"{PROFILES_DIR}/{name}.yml"
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise PipelineError(f"{shown}: a profile is a mapping with description, params, nodes, editions")
    unknown = set(spec) - {"description", "params", "nodes", "editions"}
    if unknown:
        raise PipelineError(f"{shown}: unknown top-level key(s) {sorted(unknown)}; "
                            "use description, params, nodes, editions")
    editions: dict[str, dict[str, Any]] = {}
    for edition, body in (spec.get("editions") or {}).items():
        if not isinstance(edition, str) or not EDITION_NAME.fullmatch(edition):
            raise PipelineError(f"{shown}: edition name {edition!r} must be lower-case letters, digits, - and _")
        body = dict(body or {})
        editions[edition] = {"title": str(body.pop("title", edition)),
                             "nodes": {k: dict(v or {}) for k, v in body.items()}}
    return {"description": spec.get("description", ""), "params": dict(spec.get("params") or {}),
            "nodes": {k: dict(v or {}) for k, v in (spec.get("nodes") or {}).items()}, "editions": editions,
            "empty": not (spec.get("params") or spec.get("nodes") or spec.get("editions"))}
