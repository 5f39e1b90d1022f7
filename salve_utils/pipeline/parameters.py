"""Every node's parameters: declared by its notebook, set by the profile and the command line, checked.

:func:`notebook_parameters` reads a notebook's parameters cell; :func:`check_type`
and :func:`check_value` (with :data:`PARAM_RULES`) judge a value; and
:func:`resolve_parameters` layers the notebook defaults, the profile and the
``-p`` overrides into each node's full parameter set, refusing a bad name, type,
range or class name before anything runs.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from .graph import GRAPH_FILE, PROFILES_DIR, RESERVED, Graph, Node, PipelineError


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
