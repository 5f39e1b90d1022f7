"""Stage 11 — the pipeline: run the parameterized notebooks, in dependency order, into the book.

The report is a graph of nodes declared once in ``notebooks/pipeline.yml``; each
node runs one notebook of ``notebooks/`` with papermill (a notebook may back
several nodes with different fixed parameters, e.g. once per backbone). A
*profile* (``notebooks/profiles/<name>.yml``) sets the parameters: ``smoke``
(minutes, synthetic data; CI), ``cpu`` (the reference edition, a 2-core machine)
and ``paper`` (a GPU, the paper's sizes). Any parameter can be overridden on the
command line.

Before anything runs, every parameter of every node is checked against its
notebook's parameters cell (name and type). A node is skipped when nothing that
produced it changed: its source notebook, its parameters, the ``salve_utils``
code and its upstream outputs. Executed copies land in ``book/chapters/`` only
when they ran without error, each carrying its provenance (profile, parameters,
commit, versions, hardware, wall time) in its metadata and in
``data/results/<profile>/run_manifest.json``.

Command line::

    python -m salve_utils.pipeline run --profile smoke            # run what is stale
    python -m salve_utils.pipeline run --profile cpu --only vit-imagenette.control -p control.strength_max=4
    python -m salve_utils.pipeline check --profile cpu            # validate only, in seconds
    python -m salve_utils.pipeline status --profile cpu           # what would run
    python -m salve_utils.pipeline toc --profile cpu              # the book's table of contents

Inside a notebook, :class:`NodeContext` is how a node finds its upstream
artifacts and records its own.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import json
import math
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml

from ..common import tables
from ..common.runtime import (
    atomic_path,
    atomic_write_json,
    PROGRESS_FILE,
    default_device,
    describe_hardware,
    enclosing_project,
    git_commit,
    hash_file,
    hash_json,
    hash_tree,
    package_versions,
    project_root,
)

__all__ = [
    "Graph",
    "Node",
    "NodeContext",
    "PipelineError",
    "Plan",
    "book_toc",
    "load_graph",
    "load_profile",
    "main",
    "plan",
    "run",
    "write_toc",
]

GRAPH_FILE = "notebooks/pipeline.yml"
PROFILES_DIR = "notebooks/profiles"
CHAPTERS_DIR = "book/chapters"
#: Parameters the runner injects into every notebook; every parameters cell declares them.
RESERVED = ("profile", "node", "upstream")


class PipelineError(Exception):
    """A problem with the graph, a profile or a parameter, found before anything runs."""


# =========================================================================== graph and profiles

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


# =========================================================================== parameters


def notebook_parameters(path: Path) -> dict[str, dict[str, str]]:
    """Parameters declared in a notebook's ``parameters`` cell: name -> {type, default, help}.

    papermill's parser reads one ``name: type = value  # help`` per line; a line it
    cannot read (an ``=`` inside a comment, say) would silently drop a parameter,
    so the names are checked against Python's own parse of the cell.
    """
    import ast

    from papermill.inspection import inspect_notebook

    found = {name: {"type": p["inferred_type_name"], "default": p["default"], "help": p["help"]}
             for name, p in inspect_notebook(str(path)).items()}
    cells = json.loads(path.read_text())["cells"]
    source = next(("".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), "")
    declared = [t.id for node in ast.parse(source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    lost = [name for name in declared if name not in found]
    if lost:
        raise PipelineError(f"notebooks/{path.name}: papermill cannot read parameter(s) {lost} of the parameters "
                            "cell; keep one `name: type = value  # help` per line, with no '=' in the help")
    return found


_SCALARS: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def check_type(value: Any, annotation: str) -> bool:
    """Does ``value`` fit a parameter annotation such as ``int``, ``list[float]`` or ``str | None``?"""
    annotation = annotation.replace(" ", "")
    m = re.fullmatch(r"Optional\[(.+)\]", annotation)
    options = [m.group(1), "None"] if m else _split_top(annotation, "|")
    if len(options) > 1:
        return any(check_type(value, opt) for opt in options)
    if annotation == "None":
        return value is None
    if annotation in _SCALARS:
        return isinstance(value, _SCALARS[annotation]) and not (annotation != "bool" and isinstance(value, bool))
    m = re.fullmatch(r"(list|tuple|dict)(?:\[(.*)\])?", annotation)
    if not m:
        return True  # an annotation we do not model: accept
    kind, inner = m.groups()
    if kind in ("list", "tuple"):
        return isinstance(value, (list, tuple)) and (inner is None or all(check_type(v, inner) for v in value))
    if not isinstance(value, dict):
        return False
    if inner is None:
        return True
    key_t, val_t = _split_top(inner, ",")
    return all(check_type(k, key_t) and check_type(v, val_t) for k, v in value.items())


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


#: The values each notebook parameter may take, by name: a name means the same thing in every notebook that
#: declares it (a profile's ``params:`` already sets it in all of them). A rule is an interval, ``"[low, high]"``
#: with ``(`` or ``)`` for an open end (each item, for a list), or a tuple of choices. :func:`check_value`
#: applies them, and NaN and infinity are refused everywhere: ``check`` and ``run`` reject a bad value before
#: any node executes. A new numeric or choice parameter gets its rule here (a test checks that each has one).
PARAM_RULES: dict[str, str | tuple[str, ...]] = {
    # data and backbone (01_backbone)
    "dataset": ("imagenette", "cifar100", "planted"), "arch": ("resnet18", "vit_b_16", "vit_small"),
    "weights": ("none", "imagenet"), "optimizer": ("sgd", "adamw"), "device": ("auto", "cpu", "cuda"),
    "store_size": "[8, 1024]", "train_size": "[8, 1024]", "eval_size": "[8, 1024]",
    "epochs": "[1, 10000]", "batch_size": "[1, 65536]", "lr": "(0, 10]", "weight_decay": "[0, 1]",
    "warmup": "[0, 1]", "label_smoothing": "[0, 1)", "crop_scale": "(0, 1]", "grad_clip": "[0, 1000]",
    "eval_every": "[1, 10000]", "precision": ("fp32", "bf16", "auto"), "seed": "[0, 4294967295]",
    "tower_seed": "[0, 4294967295]", "null_seed": "[0, 4294967295]",
    # autoencoder (02)
    "d_latent": "[1, 65536]", "l1": "[0, 1000]", "max_fvu": "(0, 10]", "activation": ("linear", "relu", "topk"),
    "topk": "[0, 65536]", "sweep_l1": "[0, 1000]", "sweep_latents": "[1, 65536]",
    # discover, verify, compare (03, 04, 11)
    "top": "[1, 1000]", "heatmap_features": "[1, 65536]", "plot_classes": "[1, 1000]", "share_threshold": "[0, 1]",
    "tower_null_draws": "[1000, 1000000]", "tower_level": "(0, 1)", "images_per_class": "[1, 1000]",
    "actmax_steps": "[1, 100000]", "actmax_lr": "(0, 100]",
    # sweeps: control, alpha_crit, tower, seeds, known answers, baselines (05-09, 12)
    "strength_max": "(0, 1000]", "n_alphas": "[2, 10001]", "target_accuracy": "[0, 1)",
    "permanence_images": "[1, 100000]", "null_draws": "[1, 100000]", "null_classes": "[0, 1000]",
    "null_every": "[1, 1000]", "empirical_per_class": "[1, 10000]", "n_grid": "[2, 10001]",
    "suppress_max": "(0, 1000000]", "n_suppress": "[2, 10001]", "special_share": "[0, 1]", "n_seeds": "[1, 1000]",
    "function_strength": "(0, 1000]", "min_images": "[1, 100000]", "recovery_threshold": "[0, 1]",
    "tolerance": "[0, 1]", "n_strengths": "[2, 10001]", "iterations": "[0, 100]", "steering_max": "(0, 1000]",
    "rome_max": "(0, 1000]", "rome_margin": "[0, 1000]", "max_classes": "[0, 100000]",
    # ablations (13); 0 classes or epochs there mean "all" and "the chapter's own"
    "strength_tail": "(0, 1000]", "tail_points": "[1, 10001]", "sae_epochs": "[0, 10000]",
    "grid_latents": "[1, 65536]", "grid_l1": "[0, 1000]", "atlas_strength": "(0, 1000]",
    "composition_strength": "(0, 1000]", "pairs": "[0, 10000]", "triples": "[0, 10000]", "mixed": "[0, 10000]",
    "deep_train_per_class": "[1, 100000]", "deep_val_per_class": "[1, 100000]", "deep_latents": "[1, 65536]",
    "deep_l1": "[0, 1000]", "deep_epochs": "[1, 10000]", "deep_strengths": "[0, 1000]",
    # method or reproduction (14) and the known answers by construction (15)
    "probe_l2": "[0, 100]", "l0_tau": "(0, 1)", "path_factor": "(1, 1000]", "path_extra": "[0, 100]",
    "dims_per_part": "[1, 4096]", "distractor_prob": "[0, 1]",
    # summary (10)
    "mean_tolerance": "[0, 1]", "partly_factor": "[1, 100]", "fixed_strength": "(0, 1000]", "majority": "[0, 1]",
    "null_level": "(0, 1)", "agreement": "(0, 1]", "exact_share": "[0, 1]", "min_compared": "[1, 100000]",
    "baseline_match": "[0, 1]", "min_classes": "[1, 100000]", "replication": "[0, 1]", "inert_change": "[0, 1]",
    "effect_points": "[1, 64]",
    # the teaching page (00)
    "n_classes": "[2, 100]", "d_model": "[1, 4096]", "n_per_class": "[1, 100000]", "p_own": "[0, 1]",
    "p_tower": "[0, 1]", "tower_strength": "[0, 100]", "noise": "[0, 100]", "sae_steps": "[1, 1000000]",
    "target": "[0, 99]", "direction": ("suppress", "enhance"), "alpha_max": "(0, 1000]",
}

_INTERVAL = re.compile(r"([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])")


def describe_rule(name: str) -> str:
    """The rule of parameter ``name`` in words: ``in [1, 65536]`` or ``one of 'sgd', 'adamw'``."""
    rule = PARAM_RULES.get(name)
    if rule is None:
        return "that is finite"
    return f"one of {', '.join(map(repr, rule))}" if isinstance(rule, tuple) else f"in {rule}"


def check_value(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the parameter ``name`` (:data:`PARAM_RULES`), or ``None``.

    >>> check_value("d_latent", 0)
    'is out of range: it must be in [1, 65536]'
    >>> check_value("strength_max", float("nan")) is not None, check_value("lr", 0.1)
    (True, None)
    """
    if not _finite(value):
        return "holds NaN or infinity: every number must be finite"
    rule = PARAM_RULES.get(name)
    items = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(rule, tuple):
        bad = [v for v in items if v not in rule]
        return f"is not allowed: it must be one of {', '.join(map(repr, rule))}" if bad else None
    if isinstance(rule, str):
        numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not all(_inside(v, rule) for v in numbers):
            return f"is out of range: it must be in {rule}" + (" (each item)" if items is value else "")
    return None


def _inside(x: float, interval: str) -> bool:
    """Is ``x`` in ``interval``, written ``"[low, high]"`` with ``(`` or ``)`` for an open end?"""
    opening, low, high, closing = _INTERVAL.fullmatch(interval).groups()
    above = float(low) < x if opening == "(" else float(low) <= x
    below = x < float(high) if closing == ")" else x <= float(high)
    return above and below


def _finite(value: Any) -> bool:
    """Is every float in ``value`` (a number, or lists and dicts of them) finite?"""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def parse_overrides(items: Iterable[str]) -> list[tuple[tuple[str, ...], Any]]:
    """``["seed=1", "control.n_alphas=5", "vit-imagenette.control.target_class=church"]`` -> (key path, value).

    A key path has one part (every node declaring the parameter), two (a node:
    a report node, or a chain node in every edition) or three (one edition's
    chain node). Values are parsed as YAML.
    """
    out = []
    for item in items:
        if "=" not in item:
            raise PipelineError(f"override {item!r} must look like name=value, node.name=value or "
                                "edition.node.name=value")
        key, raw = item.split("=", 1)
        parts = tuple(key.strip().split("."))
        if len(parts) > 3 or not all(parts):
            raise PipelineError(f"override {item!r}: use name, node.name or edition.node.name before the '='")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise PipelineError(f"override {item!r}: the value is not valid YAML ({err})") from None
        out.append((parts, value))
    return out


def resolve_parameters(root: Path, graph: Graph, profile_name: str, profile: dict[str, Any],
                       overrides: Iterable[str] = ()) -> tuple[dict[str, Node], dict[str, dict[str, Any]]]:
    """Instantiate the graph for the profile's editions and give every node its full parameter set.

    Precedence, lowest first: the notebook's defaults; the profile's ``params``;
    its ``nodes.<chain node>`` (shared by every edition); its
    ``editions.<edition>.<chain node>``; then the command-line overrides in the
    same three layers. Parameters fixed in the graph cannot be overridden. An
    unknown name, a wrong type or a class name that the edition's dataset lacks
    raises :class:`PipelineError` -- before anything runs.
    """
    where = f"profile {profile_name}"
    editions = profile["editions"]
    for edition in editions:
        if edition in graph.chain or edition in graph.report:
            raise PipelineError(f"{where}: edition name {edition!r} is also a node name; rename the edition")
    titles = [body["title"] for body in editions.values()]
    if len(set(titles)) < len(titles):
        raise PipelineError(f"{where}: two editions share the title {next(t for t in titles if titles.count(t) > 1)!r}; "
                            "titles name the book's parts and the summary's columns, so make them unique")
    if graph.chain and not editions:
        raise PipelineError(f"{where}: no editions; declare at least one under `editions:` "
                            "(e.g. resnet18-imagenette: {backbone: {dataset: imagenette, arch: resnet18}})")
    chain, report = graph.chain, graph.report
    layers: list[tuple[str, dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]] = [
        (where, dict(profile["params"]), {k: dict(v) for k, v in profile["nodes"].items()},
         {e: {k: dict(v) for k, v in body["nodes"].items()} for e, body in editions.items()})]
    cli: tuple[str, dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]] = (
        "command line", {}, {}, {})
    for parts, value in parse_overrides(overrides):
        if len(parts) == 1:
            cli[1][parts[0]] = value
        elif len(parts) == 2:
            if parts[0] in editions and parts[0] not in chain and parts[0] not in report:
                raise PipelineError(f"override {'.'.join(parts)}: {parts[0]!r} is an edition; name its node too, "
                                    f"e.g. {parts[0]}.control.{parts[1]}=...")
            cli[2].setdefault(parts[0], {})[parts[1]] = value
        else:
            cli[3].setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = value
    layers.append(cli)

    declared = {name: notebook_parameters(root / "notebooks" / body["notebook"])
                for name, body in {**chain, **report}.items()}
    every = sorted({p for d in declared.values() for p in d})
    for pname in graph.class_params:
        if pname not in every:
            raise PipelineError(f"{GRAPH_FILE}: class_params names {pname!r}, which no notebook declares"
                                f"{_suggest(pname, every)}")
    for source, common, shared, per_edition in layers:
        for name in common:
            if name in RESERVED:
                raise PipelineError(f"{source}: {name!r} is set by the runner, not by a profile")
            if name not in every:
                raise PipelineError(f"{source}: common parameter {name!r} is declared by no notebook"
                                    f"{_suggest(name, every)}")
        for node in shared:
            if node not in declared:
                known = list(chain) + list(report)
                raise PipelineError(f"{source}: unknown node {node!r}{_suggest(node, known)}; chain nodes: "
                                    f"{', '.join(chain)}; report nodes: {', '.join(report)}")
        for edition, nodes_ in per_edition.items():
            if edition not in editions:
                raise PipelineError(f"{source}: unknown edition {edition!r}{_suggest(edition, editions)}; "
                                    f"editions of {where}: {', '.join(editions)}")
            for node in nodes_:
                if node not in chain:
                    raise PipelineError(f"{source}: edition {edition} has no chain node {node!r}"
                                        f"{_suggest(node, chain)}; chain nodes: {', '.join(chain)}")
        # parameter names are checked even for nodes no edition runs (a typo must not pass unseen)
        for node, given in [*shared.items(), *((n, v) for e in per_edition.values() for n, v in e.items())]:
            params = declared[node]
            for pname in given:
                if pname not in params and pname not in RESERVED:
                    nb = f"notebooks/{(chain.get(node) or report[node])['notebook']}"
                    raise PipelineError(f"{source}: {nb} (node {node}) has no parameter {pname!r}"
                                        f"{_suggest(pname, params)}; its parameters: {', '.join(params)}")

    def values_for(base: str, edition: str | None) -> dict[str, Any]:
        params = declared[base]
        body = chain[base] if edition else report[base]
        nb = f"notebooks/{body['notebook']}"
        for reserved in RESERVED:
            if reserved not in params:
                raise PipelineError(f"{nb} must declare the parameter {reserved!r} in its parameters cell")
        for pname, p in params.items():
            if p["type"] == "None":
                raise PipelineError(f"{nb}: parameter {pname!r} needs a type annotation (e.g. `{pname}: int = ...`)")
        fixed = dict(body.get("params") or {})
        label = f"{edition}.{base}" if edition else base
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}  # where each value was set, for the error messages
        for source, common, shared, per_edition in layers:
            values.update({k: v for k, v in common.items() if k in params})
            given = {**shared.get(base, {}), **(per_edition.get(edition, {}).get(base, {}) if edition else {})}
            origin.update({k: source for k in [*common, *given] if k in params})
            for pname, value in given.items():
                if pname in RESERVED:
                    raise PipelineError(f"{source}: {label}.{pname} is set by the runner, not by a profile")
                if pname in fixed:
                    raise PipelineError(f"{source}: {label}.{pname} is fixed by {GRAPH_FILE} ({fixed[pname]!r})")
                if pname not in params:
                    raise PipelineError(f"{source}: {nb} (node {label}) has no parameter {pname!r}"
                                        f"{_suggest(pname, params)}; its parameters: {', '.join(params)}")
                values[pname] = value
        values.update(fixed)
        origin.update({k: GRAPH_FILE for k in fixed})
        for pname, value in values.items():
            setter = (f"in {PROFILES_DIR}/{profile_name}.yml" if origin[pname] == where
                      else "on the command line" if origin[pname] == "command line" else f"in {origin[pname]}")
            if not check_type(value, params[pname]["type"]):
                raise PipelineError(f"{where}: {nb} (node {label}) parameter {pname!r} must be "
                                    f"{params[pname]['type']}, got {value!r} ({type(value).__name__}, set {setter}). "
                                    f"Fix: give {base}.{pname} a value of type {params[pname]['type']}")
            problem = check_value(pname, value)
            if problem:
                raise PipelineError(f"{where}: {nb} (node {label}) parameter {pname}={value!r} (set {setter}) "
                                    f"{problem}. Fix: give {base}.{pname} a value {describe_rule(pname)}")
        return values

    datasets: dict[str, str] = {}
    if chain:
        dnode, dparam = graph.dataset_param
        for edition in editions:
            values = values_for(dnode, edition)
            default = declared[dnode].get(dparam, {}).get("default")
            datasets[edition] = values.get(dparam, yaml.safe_load(default) if default else "")
            given = {n for _, _, _, per_edition in layers for n in per_edition.get(edition, {})}
            bad = sorted(n for n in given if chain[n].get("datasets") and datasets[edition] not in chain[n]["datasets"])
            if bad:
                raise PipelineError(f"{where}: edition {edition} sets {bad[0]}, which only runs on "
                                    f"{chain[bad[0]]['datasets']} (this edition's dataset: {datasets[edition]})")
    nodes = graph.nodes(editions, datasets)
    resolved: dict[str, dict[str, Any]] = {}
    for name, node in nodes.items():
        values = values_for(node.chain_node or name, node.edition)
        if node.edition:
            _check_class_names(graph, values, datasets[node.edition], values_for(graph.dataset_param[0], node.edition),
                               f"{where}: node {name}")
        values.update(profile=profile_name, node=name, upstream=dict(node.upstream))
        resolved[name] = values
    return nodes, resolved


def _check_class_names(graph: Graph, values: dict[str, Any], dataset: str, data_spec: dict[str, Any],
                       where: str) -> None:
    """Every parameter named in ``class_params`` must name classes of the edition's dataset."""
    from ..method.data import dataset_classes

    wanted = {p: values[p] for p in graph.class_params if p in values}
    if not wanted:
        return
    classes = dataset_classes(dataset, **dict(data_spec.get("data_options") or {}))
    for pname, value in wanted.items():
        for name in (value if isinstance(value, (list, tuple)) else [value]):
            if name not in classes:
                raise PipelineError(f"{where}: {pname}={name!r} is not a class of {dataset}"
                                    f"{_suggest(str(name), classes)}. Fix: name one of its classes: "
                                    f"{', '.join(classes[:20])}" + (" ..." if len(classes) > 20 else ""))


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# =========================================================================== staleness


def notebook_hash(path: Path) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata ignored)."""
    cells = json.loads(path.read_text())["cells"]
    return hash_json([(c["cell_type"], "".join(c["source"])) for c in cells])


def node_path(node: str) -> str:
    """A node's folder below its profile: ``vit-imagenette.control`` -> ``vit-imagenette/control``."""
    return node.replace(".", "/")


def chapter_path(root: Path, profile: str, node: str) -> Path:
    """The executed copy of a node: ``book/chapters/<profile>/<edition>/<node>.ipynb``."""
    return root / CHAPTERS_DIR / profile / f"{node_path(node)}.ipynb"


def artifact_dir(root: Path, profile: str, node: str) -> Path:
    return root / "data" / "artifacts" / profile / node_path(node)


def results_dir(root: Path, profile: str, edition: str | None = None) -> Path:
    """Result tables: ``data/results/<profile>/<edition>/`` (a report node's: ``data/results/<profile>/``)."""
    base = root / "data" / "results" / profile
    return base / edition if edition else base


def _read_outputs(root: Path, profile: str, node: str) -> dict[str, Any] | None:
    path = artifact_dir(root, profile, node) / "outputs.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def outputs_intact(root: Path, outputs: dict[str, Any] | None) -> bool:
    """Are all recorded artifact files still there, with their recorded sizes and SHA-256?"""
    if outputs is None:
        return False
    for rec in outputs.get("artifacts", {}).values():
        path = Path(rec["path"]) if Path(rec["path"]).is_absolute() else root / rec["path"]
        if not path.is_file() or path.stat().st_size != rec["size"]:
            return False
        if "sha256" in rec and _sha256(path) != rec["sha256"]:
            return False
    return True


_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """:func:`~salve_utils.common.runtime.hash_file`, remembered per (path, size, mtime): a plan checks every record."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = hash_file(path)
    return _HASHES[key]


def _executed_fingerprint(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["metadata"].get("salve", {}).get("fingerprint")
    except (json.JSONDecodeError, KeyError):
        return None


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


# =========================================================================== running


def _trained_in(p: "Plan", name: str, stage: Path) -> str | None:
    """The precision the node's edition's backbone trained in, from its record (``backbone.json``), if recorded."""
    edition = p.nodes[name].edition
    if not edition:
        return None
    own = stage / "artifacts" / "backbone.json"  # the backbone node itself: not yet published
    path = own if own.is_file() else artifact_dir(p.root, p.profile, f"{edition}.backbone") / "backbone.json"
    record = json.loads(path.read_text()).get("precision") if path.is_file() else None
    return f"{record['precision']} ({record['source']})" if record else None


def _provenance_cell(meta: dict[str, Any], trained_in: str | None = None):
    import nbformat

    hw = meta["hardware"]
    device = hw.get("gpu") or f"{hw['cpu']} ({hw['cpu_count']} cores)"
    minutes, seconds = divmod(round(meta["wall_seconds"]), 60)
    params = ", ".join(f"`{k}={v!r}`" for k, v in meta["parameters"].items() if k not in RESERVED)
    text = (
        "```{admonition} Provenance of this page\n:class: note\n"
        f"Generated by the **{meta['profile']}** profile (node `{meta['node']}`) on {meta['finished'][:16]} UTC, "
        f"in {minutes} min {seconds} s on {device}, device `{hw['device']}`, commit `{meta['commit']}`, "
        f"torch {meta['versions'].get('torch', '?')}"
        + (f"; the backbone trained in {trained_in}" if trained_in else "")
        + f".\n\nParameters: {params or 'defaults'}.\n```"
    )
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = ["salve-provenance"]
    return cell


def _scope_figure_labels(nb, node: str) -> None:
    """Prefix figure labels (``mystnb.figure.name``) and their ``{numref}`` references with the node name.

    A notebook that backs several nodes (one per backbone) would otherwise define
    the same label twice in the book.
    """
    prefix = node.replace(".", "-")
    for cell in nb.cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        if figure and figure.get("name"):
            figure["name"] = f"{prefix}-{figure['name']}"
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\{numref\}`(fig-[\w-]+)`", lambda m: f"{{numref}}`{prefix}-{m.group(1)}`",
                                 cell.source)


def _title_with_edition(nb, title: str) -> None:
    """Append the edition to the chapter's first heading, so every page title in the book is unique.

    A dash, not parentheses: an edition's title may hold parentheses of its own.
    """
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            first, _, rest = cell.source.partition("\n")
            cell.source = f"{first} — {title}" + (f"\n{rest}" if rest else "")
            return


#: Environment variables through which the runner tells a node's kernel where to stage its outputs.
STAGE_NODE, STAGE_DIR = "SALVE_STAGE_NODE", "SALVE_STAGE_DIR"


def staging_dir(root: Path, profile: str, node: str) -> Path:
    """Where a running node writes everything it produces, until it is published:
    ``data/runs/<profile>/staging/<edition>/<node>/`` (``artifacts/``, ``results/``, ``chapter.ipynb``)."""
    return root / "data" / "runs" / profile / "staging" / node_path(node)


def _move(src: Path, dst: Path) -> None:
    """Move a file, or replace a whole folder, idempotently (a move already done is skipped)."""
    if not src.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        old = dst.with_name(dst.name + ".replaced")
        if dst.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(dst, old)
        os.replace(src, dst)
        if old.exists():
            shutil.rmtree(old)
    else:
        os.replace(src, dst)


def _finish_publish(journal: Path) -> None:
    """Carry out (or complete, after a kill) the moves a journal lists, then remove the staging folder."""
    moves = json.loads(journal.read_text())
    for src, dst in moves:
        if not dst:  # a published file the node no longer writes (a table now in another format): removed
            Path(src).unlink(missing_ok=True)
            continue
        _move(Path(src), Path(dst))
    shutil.rmtree(journal.parent, ignore_errors=True)


def recover(root: Path, profile: str) -> list[str]:
    """Complete publications a killed run left half done; discard stagings that never reached publication.

    A node is published by a journal of moves written atomically *before* the first
    move: a journal on disk means the node succeeded, so its moves are completed; a
    staging folder without one belongs to a node that never finished, and is removed.
    Returns the nodes whose publication was completed.
    """
    base = root / "data" / "runs" / profile / "staging"
    done = []
    for journal in sorted(base.rglob("publish.json")) if base.is_dir() else []:
        _finish_publish(journal)
        done.append(journal.parent.relative_to(base).as_posix().replace("/", "."))
    if base.is_dir():
        shutil.rmtree(base, ignore_errors=True)
    return done


def _publish(p: Plan, name: str, stage: Path, nb, meta: dict[str, Any]) -> None:
    """Publish a node's staged chapter, tables, artifacts and record together (see :func:`recover`)."""
    import nbformat

    final_dir = artifact_dir(p.root, p.profile, name)
    staged_rel = (stage / "artifacts").relative_to(p.root).as_posix()
    final_rel = final_dir.relative_to(p.root).as_posix()
    outputs = meta["outputs"]
    for rec in outputs.get("artifacts", {}).values():  # staged paths become their published paths
        if rec["path"].startswith(staged_rel + "/"):
            rec["path"] = final_rel + rec["path"][len(staged_rel):]
    (stage / "artifacts").mkdir(parents=True, exist_ok=True)
    atomic_write_json(stage / "artifacts" / "outputs.json", outputs)
    nbformat.write(nb, str(stage / "chapter.ipynb"))
    staged = sorted(t for t in (stage / "results").rglob("*") if t.suffix in (".csv", ".parquet", ".json")) \
        if (stage / "results").is_dir() else []
    moves = [(str(t), str(results_dir(p.root, p.profile) / t.relative_to(stage / "results"))) for t in staged]
    for t in staged:  # a table that changed format: its file of the other format would be a stale second copy
        other = t.with_suffix({".csv": ".parquet", ".parquet": ".csv"}.get(t.suffix, t.suffix))
        if other != t and not other.exists():
            moves.append((str(results_dir(p.root, p.profile) / other.relative_to(stage / "results")), ""))
    moves += [(str(stage / "artifacts"), str(final_dir)),
              (str(stage / "chapter.ipynb"), str(chapter_path(p.root, p.profile, name)))]
    atomic_write_json(stage / "publish.json", moves)
    _finish_publish(stage / "publish.json")


def progress_line(path: Path, now: float) -> str:
    """What a node's long loops report (:func:`~salve_utils.common.runtime.report_progress`), as one line.

    Every loop still running, outermost first: ``"2/8 SAE sweep points, ETA 1:10 · 12/60
    SAE epochs, ETA 0:09"``. An ETA is measured, never guessed: the loop's rate since
    it started (or resumed) times what is left, less the time since its last report;
    a loop with nothing done yet has none.
    """
    loops: dict[str, tuple[float, int, float, int, int]] = {}  # what -> first t, first done, last t, done, total
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        old = loops.get(r["what"])
        if old is None or r["done"] < old[3]:  # a loop starts (again: the next SAE of a sweep)
            loops[r["what"]] = (r["t"], r["done"], r["t"], r["done"], r["total"])
        else:
            loops[r["what"]] = (old[0], old[1], r["t"], r["done"], r["total"])
    parts = []
    for what, (t0, d0, t1, done, total) in loops.items():
        if done >= total:
            continue
        eta = ""
        if done > d0 and t1 > t0:
            eta = f", ETA {_clock(max(0.0, (t1 - t0) / (done - d0) * (total - done) - (now - t1)))}"
        parts.append(f"{done}/{total} {what}{eta}")
    return " · ".join(parts)


def _clock(seconds: float) -> str:
    """``190`` -> ``"3:10"``; ``3725`` -> ``"1:02:05"``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@contextlib.contextmanager
def _watching(path: Path, show: Callable[[str], None] | None, every: float = 1.0):
    """While the block runs, pass :func:`progress_line` of ``path`` to ``show`` every ``every`` seconds."""
    if show is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every):
            try:
                if path.is_file():
                    show(progress_line(path, time.time()))
            except Exception:  # noqa: BLE001 -- a progress display never stops a run
                continue

    thread = threading.Thread(target=poll, name="salve-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _execute(p: Plan, name: str, cell_timeout: float | None = None,
             on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one node with papermill into its staging folder; publish everything together only on success.

    A failure or an interruption leaves the previously published chapter, tables,
    artifacts and record untouched (and ``status`` truthful); the failed copy is kept
    in ``data/runs/<profile>/failed/``. The node's long loops report to
    ``<staging>/progress.jsonl`` (``$SALVE_PROGRESS_FILE``), which ``on_progress`` sees
    as :func:`progress_line` every second.
    """
    import nbformat
    import papermill as pm

    node = p.nodes[name]
    src = p.root / "notebooks" / node.notebook
    work = p.root / "data" / "runs" / p.profile
    stage = staging_dir(p.root, p.profile, name)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    tmp = stage / "running.ipynb"
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    sigint: list[float] = []
    try:
        progress_file = stage / "progress.jsonl"
        with _recording_sigint() as sigint, \
                _environment(**{STAGE_NODE: name, STAGE_DIR: str(stage), PROGRESS_FILE: str(progress_file)}), \
                _watching(progress_file, on_progress):
            pm.execute_notebook(str(src), str(tmp), parameters=p.params[name], cwd=str(p.root),
                                kernel_name="python3", progress_bar=False, log_output=False,
                                execution_timeout=cell_timeout,
                                extra_arguments=["--IPKernelApp.log_level=CRITICAL"])  # no kernel chatter
    except pm.PapermillExecutionError as err:
        if err.ename == "KeyboardInterrupt" or sigint:  # Ctrl-C reached the kernel too
            shutil.rmtree(stage, ignore_errors=True)
            raise KeyboardInterrupt from None
        failed = work / "failed"
        failed.mkdir(exist_ok=True)
        os.replace(tmp, failed / f"{name}.ipynb")
        shutil.rmtree(stage, ignore_errors=True)
        raise PipelineError(
            f"node {name} failed in notebooks/{node.notebook}, cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"The executed copy with the error is at {failed / f'{name}.ipynb'}; nothing was published."
        ) from None
    except Exception as err:
        shutil.rmtree(stage, ignore_errors=True)
        if sigint:  # e.g. the kernel died of the same Ctrl-C before the runner's interrupt surfaced
            raise KeyboardInterrupt from None
        if type(err).__name__ == "DeadKernelError":
            raise PipelineError(
                f"node {name} (notebooks/{node.notebook}): the kernel died without a Python error; the usual cause "
                "is running out of memory (check `dmesg`), or a native crash. Nothing was published."
            ) from None
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if sigint:  # a Ctrl-C that something below swallowed still stops the run before publication
        shutil.rmtree(stage, ignore_errors=True)
        raise KeyboardInterrupt
    wall = time.perf_counter() - t0
    nb = nbformat.read(tmp, as_version=4)
    staged = stage / "artifacts" / "outputs.json"
    outputs = json.loads(staged.read_text()) if staged.is_file() else {"artifacts": {}, "tables": {}}
    meta = {
        "profile": p.profile, "node": name, "notebook": f"notebooks/{node.notebook}",
        "parameters": p.params[name], "fingerprint": p.fingerprint(name), "code_hash": p.code_hash,
        "commit": git_commit(p.root), "versions": package_versions(), "hardware": describe_hardware(),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 1), "outputs": outputs,
    }
    nb.metadata["salve"] = meta
    _scope_figure_labels(nb, name)
    if node.edition:
        _title_with_edition(nb, p.editions[node.edition]["title"])
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_md + 1, _provenance_cell(meta, _trained_in(p, name, stage)))
    tmp.unlink()
    _publish(p, name, stage, nb, meta)
    manifest_path = results_dir(p.root, p.profile) / "run_manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest = {k: v for k, v in manifest.items() if k in p.nodes}  # nodes no longer in the graph are dropped
    manifest[name] = {k: v for k, v in meta.items() if k != "outputs"}
    atomic_write_json(manifest_path, dict(sorted(manifest.items())))
    return meta


@contextlib.contextmanager
def project_lock(root: Path, profile: str):
    """One run at a time per project: an exclusive lock on ``data/runs/.lock`` naming its holder.

    The lock is the operating system's (``flock``): it is released when the holder
    exits, however it exits, so a killed run never leaves a stale lock behind.
    """
    import fcntl
    import socket

    path = root / "data" / "runs" / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise PipelineError(f"another pipeline run holds this project ({holder}); wait for it to finish, "
                                f"or stop it, then run again") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, profile {profile}, since "
                f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def run(profile: str, root: str | os.PathLike | None = None, overrides: Iterable[str] = (),
        only: str | None = None, force: bool = False, progress: bool = True, log=print,
        downstream: bool = True, cell_timeout: float | None = None) -> list[str]:
    """Run every stale node of ``profile`` in dependency order; return the names of the nodes executed.

    Staleness is re-checked just before each node runs, so a node whose upstream
    outputs changed is re-executed, and one whose upstream reran to identical
    outputs is not. One run at a time holds the project (:func:`project_lock`); a run
    first completes any publication a killed run left half done (:func:`recover`).
    ``cell_timeout`` (seconds) stops a node whose cell runs longer.
    """
    if cell_timeout is not None and not 0 < cell_timeout < math.inf:
        raise PipelineError(f"--cell-timeout must be a positive number of seconds, got {cell_timeout}; "
                            "leave it out for no limit")
    p = plan(profile, root, overrides, only, force, downstream)  # bad input is refused before the lock
    with project_lock(p.root, profile):
        for name in recover(p.root, profile):
            log(f"completed the publication of {name}, interrupted by an earlier run")
        p = plan(profile, root, overrides, only, force, downstream)
        try:
            return _run_locked(p, profile, only, force, progress, log, downstream, cell_timeout)
        finally:
            _remove_empty(p.root / "data" / "runs" / profile / "staging")


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` if nothing but empty folders is left in it (a staging area after its runs)."""
    if folder.is_dir() and not any(f.is_file() for f in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


def _run_locked(p: Plan, profile: str, only: str | None, force: bool, progress: bool, log,
                downstream: bool, cell_timeout: float | None) -> list[str]:
    from tqdm.auto import tqdm

    if load_profile(p.root, profile)["empty"]:
        log(f"warning: profile {profile} sets nothing; every node runs on its notebook's defaults")
    log(f"profile {profile}: device {default_device()}; {len(p.order)} nodes, "
        f"{len(p.stale)} to check or run")
    if p.stale_upstream:
        log(f"warning: --only {only} reads the outputs of {', '.join(p.stale_upstream)}, which are not up to date "
            "(their code, notebook or parameters changed); rerun them for a consistent edition")
    forced = set(p.stale) if force else (set(p.select(only)) if only else set())
    candidates = [n for n in p.order if n in set(p.stale) or (downstream and n in _downstream_of(p, p.stale))]
    last = last_times(p.root, profile)
    if candidates:
        log(expected_time(candidates, last))
    executed: list[str] = []
    # the kernels find the project through SALVE_PROJECT_ROOT; two torch threads on two busy
    # cores collapse without OMP_WAIT_POLICY=PASSIVE
    with _environment(SALVE_PROJECT_ROOT=str(p.root), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE")):
        # no ETA over nodes: they differ by minutes; a node's own loops give a measured one
        bar = tqdm(candidates, desc=f"pipeline[{profile}]", disable=not progress or not candidates,
                   bar_format="{desc}: {n_fmt}/{total_fmt} nodes [{elapsed}]{postfix}")
        for name in bar:
            bar.set_postfix_str(name)
            if name not in forced and p.is_current(name):
                continue
            label = f"{name} (last run {_minutes(last[name][0])})" if name in last else name
            show = (lambda line, label=label: bar.set_postfix_str(f"{label}: {line}" if line else label)) \
                if progress else None
            meta = _execute(p, name, cell_timeout, show)
            executed.append(name)
            log(f"  ran {name} in {meta['wall_seconds']:.0f} s")
        bar.close()
    if not executed:
        log("nothing to run: every node is up to date")
    return executed


def last_times(root: Path, profile: str) -> dict[str, tuple[float, str]]:
    """Per node of ``profile``, the wall time of its last published run and the machine it ran on.

    Read from the run manifest (``data/results/<profile>/run_manifest.json``); nodes never run are absent.
    """
    path = results_dir(root, profile) / "run_manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    out = {}
    for name, meta in manifest.items():
        hw = meta.get("hardware", {})
        machine = hw.get("gpu") or f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} cores)"
        if isinstance(meta.get("wall_seconds"), (int, float)):
            out[name] = (float(meta["wall_seconds"]), machine)
    return out


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def expected_time(nodes: Sequence[str], last: dict[str, tuple[float, str]]) -> str:
    """One line: what the last runs of ``nodes`` took, summed, and on which machines (an estimate, not a promise).

    >>> expected_time(["a", "b", "c"], {"a": (90.0, "EPYC (2 cores)"), "b": (30.0, "EPYC (2 cores)")})
    'expected: about 2.0 min for 2 of 3 nodes, as their last runs took on EPYC (2 cores); 1 never ran here (c)'
    """
    known = [n for n in nodes if n in last]
    unknown = [n for n in nodes if n not in last]
    if not known:
        return f"expected: unknown, none of the {len(nodes)} nodes has run in this profile before"
    machines = sorted({last[n][1] for n in known})
    text = (f"expected: about {_minutes(sum(last[n][0] for n in known))} for {len(known)} of {len(nodes)} nodes, "
            f"as their last runs took on {' and '.join(machines)}")
    if unknown:
        text += f"; {len(unknown)} never ran here ({', '.join(unknown[:3])}{', …' if len(unknown) > 3 else ''})"
    return text


_EXECUTOR_LOGGERS = ("papermill", "traitlets", "asyncio")


@contextlib.contextmanager
def _recording_sigint():
    """Yield a list that gains an entry when SIGINT arrives; the previous handler still runs.

    Ctrl-C in a terminal reaches the kernel as well as the runner, and the kernel may die of
    it before the runner's ``KeyboardInterrupt`` surfaces; whatever error then comes out of
    the executor is the interruption, not a failure of the node. An ignored SIGINT (a job
    started in the background by a script) stays ignored.
    """
    import logging
    import signal

    seen: list[float] = []
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is None or previous == signal.SIG_IGN:
        yield seen
        return
    # once interrupted, the executor's teardown ("Kernel died while waiting ...") is noise, not news
    quiet = logging.Filter()
    quiet.filter = lambda record: not seen  # type: ignore[method-assign]
    chatty = [logging.getLogger(n) for n in _EXECUTOR_LOGGERS]

    def record(signum, frame):  # noqa: ANN001 -- signal handler signature
        seen.append(time.time())
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL would end the process; end the run instead, cleanly
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, record)
    for logger in chatty:
        logger.addFilter(quiet)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)
        for logger in chatty:
            logger.removeFilter(quiet)


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the duration of a block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _downstream_of(p: Plan, names: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for n in names:
        out |= descendants(p.nodes, n)
    return out


def error_outputs(root: str | os.PathLike | None = None, profile: str | None = None) -> list[str]:
    """Executed chapters (of one profile, or of all) that hold an error output (``path: cell index``)."""
    root = Path(root) if root else project_root()
    base = root / CHAPTERS_DIR / (profile or "")
    bad = []
    for path in sorted(base.rglob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                bad.append(f"{path.relative_to(root / CHAPTERS_DIR).as_posix()}: cell {i}")
    return bad


# =========================================================================== inside a notebook


class NodeContext:
    """What a running notebook uses to read its upstream artifacts and record its own.

    Parameters
    ----------
    profile, node, upstream : the reserved parameters the runner injects (a
        notebook opened by hand uses the defaults of its parameters cell)

    A chain node (``<edition>.<chain node>``) writes its tables to its edition's
    folder; a report node reads any edition's with ``read_table(name, edition)``.

    >>> ctx = NodeContext("smoke", "resnet18-planted.control",
    ...                   {"features": "resnet18-planted.discover"})       # doctest: +SKIP
    >>> sae_path = ctx.artifact("features", "sae")                         # doctest: +SKIP
    >>> ctx.save_table(curves, "suppression_curves")                       # doctest: +SKIP
    """

    def __init__(self, profile: str, node: str, upstream: dict[str, str] | None = None,
                 root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root else project_root()
        self.profile = profile
        self.node = node
        self.upstream = dict(upstream or {})
        self.edition = node.split(".")[0] if "." in node else None
        self.published = results_dir(self.root, profile, self.edition)
        stage = os.environ.get(STAGE_DIR) if os.environ.get(STAGE_NODE) == node else None
        if stage:  # run by the pipeline: everything goes to the staging folder, published on success
            self.dir = Path(stage) / "artifacts"
            self.results = Path(stage) / "results" / (self.edition or "")
            self.outputs: dict[str, Any] = {"artifacts": {}, "tables": {}}
        else:  # run by hand (e.g. in Jupyter): write in place
            self.dir = artifact_dir(self.root, profile, node)
            self.results = self.published
            self.outputs = _read_outputs(self.root, profile, node) or {"artifacts": {}, "tables": {}}
        self.dir.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)
        self._outputs_path = self.dir / "outputs.json"

    def _rel(self, path: Path) -> str:
        path = Path(path).resolve()
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    def path(self, name: str) -> Path:
        """Where this node writes an artifact called ``name`` (in ``data/artifacts/<profile>/<node>/``)."""
        return self.dir / name

    def record(self, name: str, path: str | os.PathLike) -> Path:
        """Register an artifact file (written here or living in the cache) so downstream nodes can find it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"cannot record {name!r}: {path} does not exist")
        self.outputs["artifacts"][name] = {"path": self._rel(path), "size": path.stat().st_size,
                                           "sha256": hash_file(path)}
        atomic_write_json(self._outputs_path, self.outputs)
        return path

    def save_table(self, df, name: str):
        """Write a tidy result table to ``data/results/<profile>/<edition>/<name>.{csv,parquet}`` (atomically).

        The format is the table's (:func:`~salve_utils.common.tables.table_path`: Parquet for
        the sweeps, CSV for the small tables); readers use :meth:`read_table`, which
        reads either. Several nodes may contribute rows to one table
        (``suppression_curves`` gets rows from control, tower and seeds): every row
        carries the ``node`` that wrote it, and a node's new rows replace all of its old
        ones, so no stale row survives a rerun with other parameters. The nodes' blocks
        are kept in the order of their names (each block in the order its node wrote
        it), so rerunning one node rewrites the same bytes. The node's record keeps the
        hash of its own rows, so its descendants rerun only when those change. Columns
        no reader uses are left out (:data:`~salve_utils.common.tables.NOT_STORED`).
        """
        import pandas as pd

        path = tables.table_path(self.results, name)
        df = tables.stored_columns(df, name).assign(node=self.node)
        # the node's record holds the hash of its own rows: other nodes' rows in a shared table are not its output
        own = tables.table_hash(df)
        # staged (written earlier in this run), else published
        current = tables.find_table(self.results, name) or tables.find_table(self.published, name)
        if current is not None:
            old = tables.read_table_file(current)
            if "node" in old.columns:
                kept = old[old["node"] != self.node]
                columns = list(df.columns) + [c for c in kept.columns if c not in df.columns]
                df = pd.concat([kept, df], ignore_index=True)[columns]  # the writer's column order
                df = df.sort_values("node", kind="stable", ignore_index=True)
        with atomic_path(path) as tmp:
            tables.write_table(df, tmp, path.suffix.lstrip("."))
        self.outputs["tables"][name] = own
        atomic_write_json(self._outputs_path, self.outputs)
        return path

    def save_result_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as ``<name>.json`` beside this node's tables (committed with them, published with the node).

        For what a table cannot hold but a reader of the tables needs, e.g. the
        summary's record of which rows and chapter records its claims came from.
        """
        path = self.results / f"{name}.json"
        atomic_write_json(path, obj)
        return path

    def save_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as ``<name>.json`` in this node's artifact folder (atomically) and record it."""
        path = self.path(f"{name}.json")
        atomic_write_json(path, obj)
        return self.record(name, path)

    def read_json(self, role: str, name: str) -> Any:
        """A JSON artifact recorded by the upstream node playing ``role``."""
        return json.loads(self.artifact(role, name).read_text())

    @property
    def editions(self) -> list[str]:
        """The editions this node reads (a report node's upstream roles are ``<edition>.<role>``), in order."""
        seen: dict[str, None] = {}
        for role in self.upstream:
            if "." in role:
                seen.setdefault(role.split(".")[0], None)
        return list(seen)

    def read_table(self, name: str, edition: str | None = None):
        """A result table of this node's edition (or of ``edition``), e.g. ``ctx.read_table("alpha_crit")``.

        CSV or Parquet alike (:func:`~salve_utils.common.tables.load_table`).
        """
        folder = results_dir(self.root, self.profile, edition or self.edition)
        path = tables.find_table(folder, name)
        if (edition or self.edition) == self.edition:
            path = tables.find_table(self.results, name) or path  # this node's own table, written earlier in this run
        if path is None:
            raise FileNotFoundError(f"no table {tables.table_path(folder, name)}; run the node that writes it "
                                    f"(profile {self.profile})")
        return tables.read_table_file(path)

    def published_table(self, name: str):
        """Table ``name`` of this node's results folder as last published (``None`` if there is none).

        While a node runs, what it writes is staged; the published table is the one of
        the previous run (e.g. the last edition's ``claims``), until this node succeeds.
        """
        path = tables.find_table(self.published, name)
        return tables.read_table_file(path) if path is not None else None

    def artifact(self, role: str, name: str) -> Path:
        """Path of artifact ``name`` recorded by the upstream node playing ``role``."""
        if role not in self.upstream:
            raise KeyError(f"node {self.node} has no upstream role {role!r}; roles: {sorted(self.upstream)}")
        up = self.upstream[role]
        outputs = _read_outputs(self.root, self.profile, up)
        if outputs is None or name not in outputs.get("artifacts", {}):
            raise FileNotFoundError(
                f"upstream node {up!r} has not recorded {name!r} for profile {self.profile}; "
                f"run `python -m salve_utils.pipeline run --profile {self.profile}` first"
            )
        rec = outputs["artifacts"][name]
        path = Path(rec["path"]) if Path(rec["path"]).is_absolute() else self.root / rec["path"]
        if not path.is_file():
            raise FileNotFoundError(f"artifact {name!r} of node {up!r} is missing at {path}; rerun that node")
        return path


# =========================================================================== command line


# =========================================================================== the book's table of contents

#: Hand-written pages around the executed chapters.
BOOK_FRONT = [("The method", ["book/method", "book/api"])]
BOOK_BACK = ["book/reproduce", "book/references"]


def book_toc(profile: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The Jupyter Book table of contents of one profile: the answer, one part per edition, then the report nodes.

    Only chapters that have been executed (exist under ``book/chapters/<profile>/``)
    are listed, so the book renders whatever part of a profile has run.
    """
    root = Path(root).resolve() if root else project_root()
    graph = load_graph(root)
    spec = load_profile(root, profile)
    executed = {name: f"{CHAPTERS_DIR}/{profile}/{name}" for name in graph.report
                if (root / CHAPTERS_DIR / profile / f"{name}.ipynb").is_file()}
    first = [f for name, f in executed.items() if graph.report[name].get("part") == "first"]
    front = [f for name, f in executed.items() if graph.report[name].get("part") == "front"]
    parts: list[dict[str, Any]] = [{"caption": "The answer", "chapters": [{"file": f} for f in first]}] if first else []
    parts += [{"caption": c, "chapters": [{"file": f} for f in files + (front if i == 0 else [])]}
              for i, (c, files) in enumerate(BOOK_FRONT)]
    for edition, body in spec["editions"].items():
        files = [f"{CHAPTERS_DIR}/{profile}/{edition}/{name}" for name in graph.chain
                 if (root / CHAPTERS_DIR / profile / edition / f"{name}.ipynb").is_file()]
        if files:
            parts.append({"caption": body["title"], "chapters": [{"file": f} for f in files]})
    report = [f for name, f in executed.items() if graph.report[name].get("part", "back") == "back"]
    parts.append({"caption": "Conclusions", "chapters": [{"file": f} for f in report + BOOK_BACK]})
    return {"format": "jb-book", "root": "book/intro", "parts": parts}


def write_toc(profile: str, dest: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Write :func:`book_toc` as YAML to ``dest`` (atomically)."""
    text = (f"# Table of contents of the {profile!r} edition, written by "
            f"`python -m salve_utils.pipeline toc --profile {profile}` from notebooks/pipeline.yml.\n"
            + yaml.safe_dump(book_toc(profile, root), sort_keys=False))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return dest


# =========================================================================== command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salve_utils.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, text in [("run", "run the stale nodes of a profile"), ("check", "validate graph, profile, parameters"),
                      ("status", "show which nodes would run")]:
        sp = sub.add_parser(cmd, help=text)
        sp.add_argument("--profile", default="smoke")
        sp.add_argument("-p", "--param", action="append", default=[], metavar="[[EDITION.]NODE.]NAME=VALUE",
                        help="override a parameter (YAML value): for every node declaring it, for one node "
                             "(in every edition) or for one edition's node")
        sp.add_argument("--only", metavar="NODE", help="run NODE (a node, an edition or a chain node) always, "
                                                       "and its stale descendants")
        sp.add_argument("--no-downstream", dest="downstream", action="store_false",
                        help="with --only: run only the named nodes, not their descendants")
        sp.add_argument("--force", action="store_true", help="re-execute even up-to-date nodes")
        sp.add_argument("--root", help="project root (default: found from the working directory)")
        if cmd == "run":
            sp.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                            help="stop a node whose cell runs longer than this (default: no limit)")
    sp = sub.add_parser("errors", help="list executed chapters that hold an error output")
    sp.add_argument("--profile", help="only this profile's chapters")
    sp = sub.add_parser("toc", help="write the book's table of contents for a profile")
    sp.add_argument("--profile", default="cpu")
    sp.add_argument("--out", default="_toc.yml", help="where to write it (default: _toc.yml)")
    sp.add_argument("--root", help="project root (default: found from the working directory)")
    args = parser.parse_args(argv)
    try:
        if args.command == "errors":
            bad = error_outputs(profile=args.profile)
            print("\n".join(bad) if bad else "no error outputs")
            return 1 if bad else 0
        if args.command == "toc":
            print(f"table of contents of profile {args.profile}: {write_toc(args.profile, args.out, args.root)}")
            return 0
        if args.command == "run":
            run(args.profile, args.root, args.param, args.only, args.force, downstream=args.downstream,
                cell_timeout=args.cell_timeout)
            return 0
        p = plan(args.profile, args.root, args.param, args.only, args.force, args.downstream)
        if args.command == "check":
            if load_profile(p.root, args.profile)["empty"]:
                print(f"warning: profile {args.profile} sets nothing; every node runs on its notebook's defaults",
                      file=sys.stderr)
            print(f"profile {args.profile}: {len(p.editions)} editions ({', '.join(p.editions)}), "
                  f"{len(p.order)} nodes, parameters valid")
        else:
            for n in p.order:
                state = "run" if n in p.stale else "current" if p.is_current(n) else "stale"
                print(f"{state:<8} {n:<34} notebooks/{p.nodes[n].notebook}")
        return 0
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        import logging

        # the executor's abandoned tasks report the kernel's shutdown when collected at exit
        for name in _EXECUTOR_LOGGERS:
            logging.getLogger(name).disabled = True
        print("\ninterrupted: the running node was not published; every published chapter, table and record is "
              "as before. Run the same command again to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
