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
    python -m salve_utils.pipeline run --profile cpu --jobs 2     # two ready nodes side by side
    python -m salve_utils.pipeline check --profile cpu            # validate only, in seconds
    python -m salve_utils.pipeline status --profile cpu           # what would run
    python -m salve_utils.pipeline toc --profile cpu              # the book's table of contents

Inside a notebook, :class:`NodeContext` is how a node finds its upstream
artifacts and records its own.

The modules, in floor order (each imports only the ones before it):

================  ==============================================================
``graph``         ``pipeline.yml`` and the profiles: Node, Graph, topological
                  order, descendants; the fixed paths, RESERVED, PipelineError
``parameters``    notebook parameters, types and PARAM_RULES, overrides, and
                  resolving every node's parameters
``store``         the on-disk layout, recorded outputs and fingerprints, staging,
                  the publication journal and its recovery, the project lock
``context``       NodeContext: what a running notebook reads and records
``planning``      Plan and plan(): what a run would do, and which project
``book``          a chapter's provenance note, labels and title; the book's
                  table of contents
``progress``      a node's progress line and the expected time of a run
``kernels``       a node's kernel: its environment, its process group, Ctrl-C
``execute``       running and publishing nodes: run(), one or side by side; error outputs
``cli``           ``main(argv)``, the command line
================  ==============================================================

``chapter`` (a chapter's set-up), ``devicepack`` and ``gpu_edition`` (the GPU
edition's device call) sit on top of them.

This layer may import ``salve_utils.common``, ``.method``, ``.study`` and
``.figures``; nothing imports it except the chapters (notebooks) and the tests.
"""

from __future__ import annotations

from .graph import (
    CHAPTERS_DIR,
    EDITION_NAME,
    GRAPH_FILE,
    PROFILES_DIR,
    RESERVED,
    Graph,
    Node,
    PipelineError,
    available_profiles,
    descendants,
    load_graph,
    load_profile,
    read_yaml,
    topological_order,
)
from .parameters import (
    PARAM_RULES,
    check_type,
    check_value,
    describe_rule,
    notebook_parameters,
    parse_overrides,
    resolve_parameters,
)
from .store import (
    STAGE_DIR,
    STAGE_NODE,
    artifact_dir,
    chapter_path,
    node_path,
    notebook_hash,
    outputs_intact,
    project_lock,
    recover,
    results_dir,
    staging_dir,
)
from .context import NodeContext
from .planning import Plan, plan
from .book import BOOK_BACK, BOOK_FRONT, book_toc, write_toc
from .progress import expected_time, last_times, progress_line
from .execute import error_outputs, run
from .cli import main

__all__ = [
    "BOOK_BACK",
    "BOOK_FRONT",
    "CHAPTERS_DIR",
    "EDITION_NAME",
    "GRAPH_FILE",
    "Graph",
    "Node",
    "NodeContext",
    "PARAM_RULES",
    "PROFILES_DIR",
    "PipelineError",
    "Plan",
    "RESERVED",
    "STAGE_DIR",
    "STAGE_NODE",
    "artifact_dir",
    "available_profiles",
    "book_toc",
    "chapter_path",
    "check_type",
    "check_value",
    "descendants",
    "describe_rule",
    "error_outputs",
    "expected_time",
    "last_times",
    "load_graph",
    "load_profile",
    "main",
    "node_path",
    "notebook_hash",
    "notebook_parameters",
    "outputs_intact",
    "parse_overrides",
    "plan",
    "progress_line",
    "project_lock",
    "read_yaml",
    "recover",
    "resolve_parameters",
    "results_dir",
    "run",
    "staging_dir",
    "topological_order",
    "write_toc",
]
