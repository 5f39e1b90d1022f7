"""Inside a running notebook: :class:`NodeContext` finds the upstream artifacts and records the node's own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..common import tables
from ..common.runtime import atomic_path, atomic_write_json, hash_file, project_root
from .store import STAGE_DIR, STAGE_NODE, _read_outputs, artifact_dir, results_dir


class NodeContext:
    """What a running notebook uses to read its upstream artifacts and record its own.

    A chain node (``<edition>.<chain node>``) writes its tables to its edition's
    folder; a report node reads any edition's with ``read_table(name, edition)``.

    Parameters
    ----------
    profile, node, upstream : the reserved parameters the runner injects (a
        notebook opened by hand uses the defaults of its parameters cell)

    Examples
    --------
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
        self.stage = Path(stage) if stage else None
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
        it), so rerunning one node rewrites the same bytes; nodes run side by side keep
        each other's rows (:func:`rebase_staged_tables`). The node's record keeps the
        hash of its own rows, so its descendants rerun only when those change. Columns
        no reader uses are left out (:data:`~salve_utils.common.tables.NOT_STORED`).
        """
        path = tables.table_path(self.results, name)
        df = tables.stored_columns(df, name).assign(node=self.node)
        # the node's record holds the hash of its own rows: other nodes' rows in a shared table are not its output
        own = tables.table_hash(df)
        staged = tables.find_table(self.results, name)  # written earlier in this run
        if staged is None and self.stage is not None:  # first write: remember the published table it merges into
            _remember_base(self.stage, path.relative_to(self.stage / "results"), self.published / path.name)
        df = merge_rows(df, staged or tables.find_table(self.published, name), self.node)
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


#: In a staging folder: the published version of each shared table a node merged its rows into.
BASES = "table_bases.json"


def merge_rows(df, current: Path | None, node: str):
    """``df`` (the rows of ``node``) merged into the table at ``current``: the other nodes' rows kept.

    A node's new rows replace all of its old ones; the blocks are ordered by node name
    (stable, each block in the order its node wrote it); columns are the writer's, then
    any the kept rows have besides. A table without a ``node`` column is replaced whole.
    """
    import pandas as pd

    if current is None:
        return df
    old = tables.read_table_file(current)
    if "node" not in old.columns:
        return df
    kept = old[old["node"] != node]
    columns = list(df.columns) + [c for c in kept.columns if c not in df.columns]
    df = pd.concat([kept, df], ignore_index=True)[columns]  # the writer's column order
    return df.sort_values("node", kind="stable", ignore_index=True)


def _remember_base(stage: Path, rel: Path, published: Path) -> None:
    path = stage / BASES
    bases = json.loads(path.read_text()) if path.is_file() else {}
    bases[rel.as_posix()] = hash_file(published) if published.is_file() else ""
    atomic_write_json(path, bases)


def rebase_staged_tables(stage: Path, published_root: Path, node: str) -> list[str]:
    """Merge a staged node's rows again into shared tables published since it read them; return those tables.

    Nodes may run side by side (``run --jobs``): two nodes that write rows into one
    table (``suppression_curves`` gets rows from control, tower and seeds) each merged
    their rows into the table as published when they first wrote it. Publishing the
    second node's staged copy as it is would drop the first node's rows. So, at
    publication (serialised), a staged table whose published version changed since
    is merged again: the node's own rows into the table as published now. One node at
    a time changes nothing, so its bytes are those of a sequential run.
    """
    path = stage / BASES
    if not path.is_file():
        return []
    rebased = []
    for rel, base in sorted(json.loads(path.read_text()).items()):
        staged, published = stage / "results" / rel, published_root / rel
        now = hash_file(published) if published.is_file() else ""
        if now == base or not staged.is_file():
            continue
        rows = tables.read_table_file(staged)
        df = merge_rows(rows[rows["node"] == node], published if published.is_file() else None, node)
        with atomic_path(staged) as tmp:
            tables.write_table(df, tmp, staged.suffix.lstrip("."))
        rebased.append(rel)
    return rebased

