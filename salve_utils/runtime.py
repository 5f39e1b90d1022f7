"""Runtime plumbing shared by every stage: devices, seeds, paths, atomic files, hashes.

Nothing here is part of the SALVE method itself; it is the small amount of
infrastructure that makes every stage reproducible (same seed, same result),
resumable (nothing half-written) and cacheable (artifacts keyed by what
produced them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = [
    "atomic_path",
    "atomic_write_json",
    "cache_dir",
    "default_device",
    "describe_hardware",
    "git_commit",
    "hash_json",
    "hash_file",
    "hash_tree",
    "package_versions",
    "project_root",
    "torch_load",
]


# --------------------------------------------------------------------------- paths


def project_root(start: str | os.PathLike | None = None) -> Path:
    """Return the project root: ``$SALVE_PROJECT_ROOT`` or the nearest parent holding ``_toc.yml``.

    Notebooks run by the pipeline get ``SALVE_PROJECT_ROOT`` from the runner; a
    notebook opened by hand in Jupyter finds the root by walking up from its
    working directory.
    """
    env = os.environ.get("SALVE_PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "_toc.yml").is_file() and (candidate / "salve_utils").is_dir():
            return candidate
    raise FileNotFoundError(
        f"Could not find the SALVE project root above {here} (a folder with _toc.yml and "
        "salve_utils/). Run from inside the project or set SALVE_PROJECT_ROOT."
    )


def cache_dir() -> Path:
    """Directory for expensive, content-keyed artifacts (decoded images, checkpoints, activations).

    ``$SALVE_CACHE_DIR`` when set (put it outside the work tree so that it survives
    a fresh checkout), else ``<project>/data/cache``.
    """
    env = os.environ.get("SALVE_CACHE_DIR")
    path = Path(env) if env else project_root() / "data" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- atomic files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers never see a half-written file: either the old content or the new one.

    >>> with atomic_path("table.csv") as tmp:          # doctest: +SKIP
    ...     df.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def load_artifact(path: str | os.PathLike, fmt: str, what: str, hint: str = "") -> dict[str, Any]:
    """Read a dict that SALVE wrote with ``{"format": fmt, ...}``, safely (``weights_only=True``).

    A missing file raises ``FileNotFoundError``; a file that is not a ``fmt``
    artifact raises ``ValueError`` naming ``what`` it should have been (plus ``hint``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    blob = torch_load(path)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ValueError(f"{path} is not a {what} (format {fmt}){hint}")
    return blob


# --------------------------------------------------------------------------- hashes


def hash_json(obj: Any, length: int = 16) -> str:
    """Stable short hash of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def hash_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: str | os.PathLike, pattern: str = "*.py") -> str:
    """Hash of every file matching ``pattern`` under ``root`` (names and contents, newline-normalised)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- devices


def default_device(device: str | torch.device | None = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU. ``"auto"``/``None`` picks for you."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA device is visible; use device='auto' or 'cpu'.")
    return device


# --------------------------------------------------------------------------- provenance


#: What a result depends on: the package, the source notebooks and profiles, the build's settings.
PROVENANCE_PATHS = ("salve_utils", "notebooks", "pyproject.toml", "environment.yml", "Makefile")


def git_commit(root: str | os.PathLike | None = None) -> str:
    """Current commit of the project, ``+dirty`` when its code or source notebooks differ from it.

    Only :data:`PROVENANCE_PATHS` count: the runner's own outputs (executed chapters,
    tables, the table of contents) change with every run and say nothing about the
    code that produced a result. ``"unknown"`` outside a git checkout.
    """
    root = Path(root) if root else project_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", *PROVENANCE_PATHS], cwd=root,
            capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def describe_hardware(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model, core count, memory and accelerator, for provenance records."""
    device = device or default_device()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results."""
    from importlib import metadata

    names = ["torch", "torchvision", "numpy", "pandas", "papermill", "jupyter-book", "seaborn", "matplotlib"]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
