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
    python -m salve_utils.pipeline run --profile cpu --only control -p control.alpha_max=4
    python -m salve_utils.pipeline check --profile cpu            # validate only, in seconds
    python -m salve_utils.pipeline status --profile cpu           # what would run

Inside a notebook, :class:`NodeContext` is how a node finds its upstream
artifacts and records its own.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .runtime import (
    atomic_path,
    atomic_write_json,
    default_device,
    describe_hardware,
    git_commit,
    hash_file,
    hash_json,
    hash_tree,
    package_versions,
    project_root,
)

__all__ = [
    "Node",
    "NodeContext",
    "PipelineError",
    "Plan",
    "load_graph",
    "load_profile",
    "main",
    "plan",
    "run",
]

GRAPH_FILE = "notebooks/pipeline.yml"
PROFILES_DIR = "notebooks/profiles"
CHAPTERS_DIR = "book/chapters"
#: Parameters the runner injects into every notebook; every parameters cell declares them.
RESERVED = ("profile", "node", "upstream")


class PipelineError(Exception):
    """A problem with the graph, a profile or a parameter, found before anything runs."""


# =========================================================================== graph and profiles


@dataclass
class Node:
    """One node of the report: a notebook, its fixed parameters and its upstream nodes (role -> node)."""

    name: str
    notebook: str
    upstream: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    title: str = ""


def load_graph(root: Path) -> dict[str, Node]:
    """Read ``notebooks/pipeline.yml``; check notebooks exist, upstream names resolve and there is no cycle."""
    path = root / GRAPH_FILE
    spec = yaml.safe_load(path.read_text()) or {}
    nodes: dict[str, Node] = {}
    for name, body in (spec.get("nodes") or {}).items():
        body = body or {}
        unknown = set(body) - {"notebook", "upstream", "params", "title"}
        if unknown:
            raise PipelineError(f"{GRAPH_FILE}: node {name!r} has unknown key(s) {sorted(unknown)}")
        nb = body.get("notebook")
        if not nb or not (root / "notebooks" / nb).is_file():
            raise PipelineError(f"{GRAPH_FILE}: node {name!r} names notebook {nb!r}, not found in notebooks/")
        nodes[name] = Node(name, nb, dict(body.get("upstream") or {}), dict(body.get("params") or {}),
                           body.get("title", ""))
    for node in nodes.values():
        for role, up in node.upstream.items():
            if up not in nodes:
                raise PipelineError(f"{GRAPH_FILE}: node {node.name!r} has upstream {role}: {up!r}, not a node")
        clash = set(node.params) & set(RESERVED)
        if clash:
            raise PipelineError(f"{GRAPH_FILE}: node {node.name!r} sets reserved parameter(s) {sorted(clash)}")
    topological_order(nodes)
    return nodes


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
    """Read ``notebooks/profiles/<name>.yml``: ``description``, common ``params`` and per-node ``nodes``."""
    path = root / PROFILES_DIR / f"{name}.yml"
    if not path.is_file():
        raise PipelineError(f"unknown profile {name!r}; available: {', '.join(available_profiles(root))}")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"description", "params", "nodes"}
    if unknown:
        raise PipelineError(f"profile {name}: unknown top-level key(s) {sorted(unknown)}; "
                            "use description, params, nodes")
    return {"description": spec.get("description", ""), "params": dict(spec.get("params") or {}),
            "nodes": {k: dict(v or {}) for k, v in (spec.get("nodes") or {}).items()}}


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


def parse_overrides(items: Iterable[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``["seed=1", "control.alpha_max=4"]`` -> (common, per-node) values parsed as YAML."""
    common: dict[str, Any] = {}
    per_node: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise PipelineError(f"override {item!r} must look like name=value or node.name=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        if "." in key:
            node, name = key.split(".", 1)
            per_node.setdefault(node, {})[name] = value
        else:
            common[key] = value
    return common, per_node


def resolve_parameters(root: Path, nodes: dict[str, Node], profile_name: str, profile: dict[str, Any],
                       overrides: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Every node's full parameter set; raises :class:`PipelineError` on an unknown name or a wrong type.

    Precedence: the notebook's defaults < the profile's common ``params`` < the
    profile's ``nodes.<node>`` < command-line overrides. Parameters fixed in the
    graph cannot be overridden.
    """
    common_o, node_o = parse_overrides(overrides)
    common = {**profile["params"], **common_o}
    per_node = {k: dict(v) for k, v in profile["nodes"].items()}
    for node, values in node_o.items():
        per_node.setdefault(node, {}).update(values)
    where = f"profile {profile_name}"
    for node in per_node:
        if node not in nodes:
            hint = _suggest(node, nodes)
            raise PipelineError(f"{where}: unknown node {node!r}{hint}; nodes: {', '.join(nodes)}")
    declared = {name: notebook_parameters(root / "notebooks" / n.notebook) for name, n in nodes.items()}
    for name in common:
        if name in RESERVED:
            raise PipelineError(f"{where}: {name!r} is set by the runner, not by a profile")
        if not any(name in d for d in declared.values()):
            every = sorted({p for d in declared.values() for p in d})
            raise PipelineError(f"{where}: common parameter {name!r} is declared by no notebook"
                                f"{_suggest(name, every)}")
    resolved: dict[str, dict[str, Any]] = {}
    for name, node in nodes.items():
        params = declared[name]
        nb = f"notebooks/{node.notebook}"
        for reserved in RESERVED:
            if reserved not in params:
                raise PipelineError(f"{nb} must declare the parameter {reserved!r} in its parameters cell")
        for pname, p in params.items():
            if p["type"] == "None":
                raise PipelineError(f"{nb}: parameter {pname!r} needs a type annotation (e.g. `{pname}: int = ...`)")
        values = {k: v for k, v in common.items() if k in params}
        for pname, value in per_node.get(name, {}).items():
            if pname in RESERVED:
                raise PipelineError(f"{where}: {name}.{pname} is set by the runner, not by a profile")
            if pname in node.params:
                raise PipelineError(f"{where}: {name}.{pname} is fixed by {GRAPH_FILE} ({node.params[pname]!r})")
            if pname not in params:
                raise PipelineError(f"{where}: {nb} (node {name}) has no parameter {pname!r}"
                                    f"{_suggest(pname, params)}; its parameters: {', '.join(params)}")
            values[pname] = value
        values.update(node.params)
        for pname, value in values.items():
            if not check_type(value, params[pname]["type"]):
                raise PipelineError(f"{where}: {nb} (node {name}) parameter {pname!r} must be "
                                    f"{params[pname]['type']}, got {value!r} ({type(value).__name__})")
        values.update(profile=profile_name, node=name, upstream=dict(node.upstream))
        resolved[name] = values
    return resolved


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# =========================================================================== staleness


def notebook_hash(path: Path) -> str:
    """Hash of a notebook's cell types and sources (outputs and metadata ignored)."""
    cells = json.loads(path.read_text())["cells"]
    return hash_json([(c["cell_type"], "".join(c["source"])) for c in cells])


def chapter_path(root: Path, node: str) -> Path:
    return root / CHAPTERS_DIR / f"{node}.ipynb"


def artifact_dir(root: Path, profile: str, node: str) -> Path:
    return root / "data" / "artifacts" / profile / node


def results_dir(root: Path, profile: str) -> Path:
    return root / "data" / "results" / profile


def _read_outputs(root: Path, profile: str, node: str) -> dict[str, Any] | None:
    path = artifact_dir(root, profile, node) / "outputs.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def outputs_intact(root: Path, outputs: dict[str, Any] | None) -> bool:
    """Are all recorded artifact files still there, with their recorded sizes?"""
    if outputs is None:
        return False
    for rec in outputs.get("artifacts", {}).values():
        path = Path(rec["path"]) if Path(rec["path"]).is_absolute() else root / rec["path"]
        if not path.is_file() or path.stat().st_size != rec["size"]:
            return False
    return True


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
    stale: list[str] = field(default_factory=list)

    def fingerprint(self, name: str) -> str:
        """Hash of the notebook, its parameters, the salve_utils code and the upstream nodes' outputs."""
        node = self.nodes[name]
        upstream = {}
        for role, up in sorted(node.upstream.items()):
            outputs = _read_outputs(self.root, self.profile, up)
            upstream[role] = hash_json(outputs) if outputs is not None else "missing"
        return hash_json({"notebook": notebook_hash(self.root / "notebooks" / node.notebook),
                          "params": self.params[name], "code": self.code_hash, "upstream": upstream})

    def is_current(self, name: str) -> bool:
        return (_executed_fingerprint(chapter_path(self.root, name)) == self.fingerprint(name)
                and outputs_intact(self.root, _read_outputs(self.root, self.profile, name)))


def plan(profile: str, root: str | os.PathLike | None = None, overrides: Iterable[str] = (),
         only: str | None = None, force: bool = False) -> Plan:
    """Validate everything and work out which nodes are stale — without running anything."""
    root = Path(root).resolve() if root else project_root()
    nodes = load_graph(root)
    spec = load_profile(root, profile)
    params = resolve_parameters(root, nodes, profile, spec, overrides)
    order = topological_order(nodes)
    p = Plan(root, profile, order, params, nodes, hash_tree(root / "salve_utils"))
    selected = set(order)
    if only is not None:
        if only not in nodes:
            raise PipelineError(f"--only {only!r} is not a node{_suggest(only, nodes)}; nodes: {', '.join(nodes)}")
        selected = descendants(nodes, only)
    # stale = selected nodes that are forced or not current; staleness of a node
    # propagates through fingerprints (which include upstream outputs) at run time
    p.stale = [n for n in order if n in selected and (force or n == only or not p.is_current(n))]
    if only is not None:
        for n in order:
            if n not in selected and n in _ancestors(nodes, only) and not p.is_current(n):
                raise PipelineError(f"--only {only}: upstream node {n!r} is not up to date for profile "
                                    f"{profile}; run the whole profile first")
    return p


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


def _provenance_cell(meta: dict[str, Any]):
    import nbformat

    hw = meta["hardware"]
    device = hw.get("gpu") or f"{hw['cpu']} ({hw['cpu_count']} cores)"
    minutes, seconds = divmod(round(meta["wall_seconds"]), 60)
    params = ", ".join(f"`{k}={v!r}`" for k, v in meta["parameters"].items() if k not in RESERVED)
    text = (
        "```{admonition} Provenance of this page\n:class: note\n"
        f"Generated by the **{meta['profile']}** profile (node `{meta['node']}`) on {meta['finished'][:16]} UTC, "
        f"in {minutes} min {seconds} s on {device}, device `{hw['device']}`, commit `{meta['commit']}`, "
        f"torch {meta['versions'].get('torch', '?')}.\n\nParameters: {params or 'defaults'}.\n```"
    )
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = ["salve-provenance"]
    return cell


def _scope_figure_labels(nb, node: str) -> None:
    """Prefix figure labels (``mystnb.figure.name``) and their ``{numref}`` references with the node name.

    A notebook that backs several nodes (one per backbone) would otherwise define
    the same label twice in the book.
    """
    for cell in nb.cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
        if figure and figure.get("name"):
            figure["name"] = f"{node}-{figure['name']}"
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\{numref\}`(fig-[\w-]+)`", lambda m: f"{{numref}}`{node}-{m.group(1)}`",
                                 cell.source)


def _execute(p: Plan, name: str) -> dict[str, Any]:
    """Run one node with papermill; publish its executed copy only on success."""
    import nbformat
    import papermill as pm

    node = p.nodes[name]
    src = p.root / "notebooks" / node.notebook
    work = p.root / "data" / "runs" / p.profile
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f"{name}.running.ipynb"
    outputs_json = artifact_dir(p.root, p.profile, name) / "outputs.json"
    if outputs_json.exists():
        outputs_json.unlink()  # a rerun records its outputs afresh
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=p.params[name], cwd=str(p.root),
                            kernel_name="python3", progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as err:
        failed = work / "failed"
        failed.mkdir(exist_ok=True)
        os.replace(tmp, failed / f"{name}.ipynb")
        raise PipelineError(
            f"node {name} failed in notebooks/{node.notebook}, cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"The executed copy with the error is at {failed / f'{name}.ipynb'}; nothing was published."
        ) from None
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    wall = time.perf_counter() - t0
    nb = nbformat.read(tmp, as_version=4)
    outputs = _read_outputs(p.root, p.profile, name) or {"artifacts": {}, "tables": {}}
    atomic_write_json(outputs_json, outputs)
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
    first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_md + 1, _provenance_cell(meta))
    dest = chapter_path(p.root, name)
    with atomic_path(dest) as out:
        nbformat.write(nb, str(out))
    tmp.unlink()
    manifest_path = results_dir(p.root, p.profile) / "run_manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest[name] = {k: v for k, v in meta.items() if k != "outputs"}
    atomic_write_json(manifest_path, manifest)
    return meta


def run(profile: str, root: str | os.PathLike | None = None, overrides: Iterable[str] = (),
        only: str | None = None, force: bool = False, progress: bool = True, log=print) -> list[str]:
    """Run every stale node of ``profile`` in dependency order; return the names of the nodes executed.

    Staleness is re-checked just before each node runs, so a node whose upstream
    outputs changed is re-executed, and one whose upstream reran to identical
    outputs is not.
    """
    from tqdm.auto import tqdm

    p = plan(profile, root, overrides, only, force)
    log(f"profile {profile}: device {default_device()}; {len(p.order)} nodes, "
        f"{len(p.stale)} to check or run")
    forced = set(p.stale) if force else ({only} if only else set())
    candidates = [n for n in p.order if n in set(p.stale) or n in _downstream_of(p, p.stale)]
    executed: list[str] = []
    # the kernels find the project through SALVE_PROJECT_ROOT; two torch threads on two busy
    # cores collapse without OMP_WAIT_POLICY=PASSIVE
    with _environment(SALVE_PROJECT_ROOT=str(p.root), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE")):
        bar = tqdm(candidates, desc=f"pipeline[{profile}]", unit="node", disable=not progress or not candidates)
        for name in bar:
            bar.set_postfix_str(name)
            if name not in forced and p.is_current(name):
                continue
            meta = _execute(p, name)
            executed.append(name)
            log(f"  ran {name} in {meta['wall_seconds']:.0f} s")
        bar.close()
    if not executed:
        log("nothing to run: every node is up to date")
    return executed


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


def error_outputs(root: str | os.PathLike | None = None) -> list[str]:
    """Executed chapters in ``book/chapters`` that hold an error output (``node: cell index``)."""
    root = Path(root) if root else project_root()
    bad = []
    for path in sorted((root / CHAPTERS_DIR).glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                bad.append(f"{path.name}: cell {i}")
    return bad


# =========================================================================== inside a notebook


class NodeContext:
    """What a running notebook uses to read its upstream artifacts and record its own.

    Parameters
    ----------
    profile, node, upstream : the reserved parameters the runner injects (a
        notebook opened by hand uses the defaults of its parameters cell)

    >>> ctx = NodeContext("smoke", "control", {"features": "discover"})   # doctest: +SKIP
    >>> sae_path = ctx.artifact("features", "sae")                         # doctest: +SKIP
    >>> ctx.save_table(curves, "suppression_curves")                       # doctest: +SKIP
    """

    def __init__(self, profile: str, node: str, upstream: dict[str, str] | None = None,
                 root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root else project_root()
        self.profile = profile
        self.node = node
        self.upstream = dict(upstream or {})
        self.dir = artifact_dir(self.root, profile, node)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.results = results_dir(self.root, profile)
        self.results.mkdir(parents=True, exist_ok=True)
        self._outputs_path = self.dir / "outputs.json"
        self.outputs = _read_outputs(self.root, profile, node) or {"artifacts": {}, "tables": {}}

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
        """Write a tidy result table to ``data/results/<profile>/<name>.csv`` (atomically).

        Several nodes may contribute rows to one table (``suppression_curves``
        gets rows from control, tower and seeds): every row carries the ``node``
        that wrote it, and a node's new rows replace all of its old ones, so no
        stale row survives a rerun with other parameters.
        """
        import pandas as pd

        path = self.results / f"{name}.csv"
        df = df.assign(node=self.node)
        if path.is_file():
            old = pd.read_csv(path)
            if "node" in old.columns:
                df = pd.concat([old[old["node"] != self.node], df], ignore_index=True)
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
        self.outputs["tables"][name] = hash_file(path)
        atomic_write_json(self._outputs_path, self.outputs)
        return path

    def save_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as ``<name>.json`` in this node's artifact folder (atomically) and record it."""
        path = self.path(f"{name}.json")
        atomic_write_json(path, obj)
        return self.record(name, path)

    def read_json(self, role: str, name: str) -> Any:
        """A JSON artifact recorded by the upstream node playing ``role``."""
        return json.loads(self.artifact(role, name).read_text())

    def read_table(self, name: str):
        """A result table of this profile, e.g. ``ctx.read_table("suppression_curves")``."""
        import pandas as pd

        path = self.results / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no table {path}; run the node that writes it (profile {self.profile})")
        return pd.read_csv(path)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salve_utils.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, text in [("run", "run the stale nodes of a profile"), ("check", "validate graph, profile, parameters"),
                      ("status", "show which nodes would run")]:
        sp = sub.add_parser(cmd, help=text)
        sp.add_argument("--profile", default="smoke")
        sp.add_argument("-p", "--param", action="append", default=[], metavar="[NODE.]NAME=VALUE",
                        help="override a parameter (YAML value), for one node or every node declaring it")
        sp.add_argument("--only", metavar="NODE", help="run NODE (always) and its stale descendants")
        sp.add_argument("--force", action="store_true", help="re-execute even up-to-date nodes")
        sp.add_argument("--root", help="project root (default: found from the working directory)")
    sub.add_parser("errors", help="list executed chapters that hold an error output")
    args = parser.parse_args(argv)
    try:
        if args.command == "errors":
            bad = error_outputs()
            print("\n".join(bad) if bad else "no error outputs")
            return 1 if bad else 0
        if args.command == "run":
            run(args.profile, args.root, args.param, args.only, args.force)
            return 0
        p = plan(args.profile, args.root, args.param, args.only, args.force)
        if args.command == "check":
            print(f"profile {args.profile}: {len(p.order)} nodes, parameters valid")
        else:
            for n in p.order:
                print(f"{'stale   ' if n in p.stale else 'current '} {n:<22} notebooks/{p.nodes[n].notebook}")
        return 0
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
