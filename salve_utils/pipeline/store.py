"""Where a node's files live on disk, how they are checked, and how they are published safely.

The layout (:func:`node_path`, :func:`chapter_path`, :func:`artifact_dir`,
:func:`results_dir`, :func:`staging_dir`); what staleness reads from it (a
notebook's hash, a node's recorded outputs and whether they are intact, an executed
chapter's fingerprint); the journal of moves that publishes a staged node all at
once, and :func:`recover` that completes one a killed run left half done; and
:func:`project_lock`, one run at a time per project.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..common.runtime import hash_file, hash_json
from .graph import CHAPTERS_DIR, PipelineError


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
