"""Runtime plumbing shared by every stage: devices, seeds, paths, atomic files, hashes, progress.

Nothing here is part of the SALVE method itself; it is the small amount of
infrastructure that makes every stage reproducible (same seed, same result),
resumable (nothing half-written), cacheable (artifacts keyed by what produced
them, and verified by a checksum when read back) and observable (long loops
report their progress to the pipeline runner).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch

__all__ = [
    "CODE_VERSIONS",
    "CorruptArtifact",
    "PROGRESS_FILE",
    "atomic_path",
    "atomic_write_json",
    "cache_dir",
    "checksum_path",
    "default_device",
    "describe_hardware",
    "enclosing_project",
    "git_commit",
    "hash_json",
    "hash_file",
    "hash_tree",
    "load_artifact",
    "load_cached",
    "package_versions",
    "project_root",
    "report_progress",
    "save_artifact",
    "torch_load",
    "track",
    "versioned",
]

T = TypeVar("T")


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
    found = enclosing_project(here)
    if found is not None:
        return found
    raise FileNotFoundError(
        f"Could not find the SALVE project root above {here} (a folder with _toc.yml and "
        "salve_utils/). Run from inside the project or set SALVE_PROJECT_ROOT."
    )


def enclosing_project(start: str | os.PathLike) -> Path | None:
    """The nearest folder at or above ``start`` that holds ``_toc.yml`` and ``salve_utils/`` (``None`` if none)."""
    here = Path(start).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "_toc.yml").is_file() and (candidate / "salve_utils").is_dir():
            return candidate
    return None


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


class CorruptArtifact(ValueError):
    """A saved file whose bytes are damaged: they differ from its checksum, or torch cannot read them."""

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        super().__init__(f"{path} is damaged: {reason}. Fix: {fix}")
        self.path = path


def checksum_path(path: str | os.PathLike) -> Path:
    """The checksum written beside an artifact: ``<file>.sha256``, in ``sha256sum`` format."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _write_checksum(path: Path, digest: str) -> None:
    with atomic_path(checksum_path(path)) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n")


def save_artifact(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically, with the file's SHA-256 in ``<file>.sha256`` (checked by :func:`torch_load`).

    The old checksum goes first, so that a kill between the two writes leaves a
    file without a checksum (read as unverified, see :func:`load_artifact`), never
    new bytes beside an old checksum. The same ``obj`` always gives the same bytes:
    ``torch.save`` to a *path* would write the temporary file's random name into
    the archive, so it writes to an open file instead.
    """
    path = Path(path)
    checksum_path(path).unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        digest = hash_file(tmp)
    _write_checksum(path, digest)
    return path


def _fix_for(path: Path) -> str:
    """How to get an intact copy of ``path``: rerun the node that wrote it, or delete the file so it is rebuilt."""
    parts = path.resolve().parts
    if "artifacts" in parts and parts.index("artifacts") > 0 and parts[parts.index("artifacts") - 1] == "data":
        profile = parts[parts.index("artifacts") + 1]
        return (f"run `python -m salve_utils.pipeline run --profile {profile}`: the node that recorded this file "
                "no longer matches it and reruns")
    return f"delete {path} (and {checksum_path(path).name}) and rerun the step that wrote it"


def torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``), verified.

    A file with a checksum (``<file>.sha256``, written by :func:`save_artifact`) must
    match it; a file torch cannot read (truncated, overwritten) raises
    :class:`CorruptArtifact` naming the path and the fix, not a bare unpickling error.
    """
    path = Path(path)
    sidecar = checksum_path(path)
    if sidecar.is_file():
        expected = (sidecar.read_text().split() or [""])[0]
        actual = hash_file(path)
        if actual != expected:
            raise CorruptArtifact(path, f"its SHA-256 is {actual[:12]}..., its checksum file says "
                                        f"{expected[:12] or 'nothing'}...", _fix_for(path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, MemoryError):
        raise
    except Exception as err:  # a damaged zip or pickle raises many types; all mean the same here
        raise CorruptArtifact(path, f"torch cannot read it ({type(err).__name__}: {str(err)[:200]}); "
                                    "truncated or overwritten", _fix_for(path)) from None


def _non_finite(obj: Any, where: str = "") -> str | None:
    """Where the first NaN or infinite float tensor sits in a nest of dicts and lists (``None`` if nowhere)."""
    if isinstance(obj, torch.Tensor):
        bad = obj.is_floating_point() and not bool(torch.isfinite(obj).all())
        return (where or "the tensor") if bad else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def load_artifact(path: str | os.PathLike, fmt: str, what: str, hint: str = "") -> dict[str, Any]:
    """Read a dict that SALVE wrote with ``{"format": fmt, ...}``, safely (``weights_only=True``) and verified.

    A missing file raises ``FileNotFoundError``; a file that is not a ``fmt``
    artifact raises ``ValueError`` naming ``what`` it should have been (plus ``hint``);
    a damaged one :class:`CorruptArtifact` (see :func:`torch_load`). A file written
    before checksums existed has none: it is verified by its content instead (it
    loads, and every float tensor is finite).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    blob = torch_load(path)
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise ValueError(f"{path} is not a {what} (format {fmt}){hint}")
    if not checksum_path(path).is_file():
        bad = _non_finite(blob)
        if bad:
            raise CorruptArtifact(path, f"{bad} holds NaN or infinite values", _fix_for(path))
    return blob


def load_cached(path: str | os.PathLike, load: Callable[[Path], T]) -> T | None:
    """Read a cache file with ``load``; ``None`` when it is missing or damaged (then it is discarded, with a warning).

    The caller rebuilds what ``None`` stands for. A cache written before checksums
    existed that ``load`` reads without complaint gets its checksum now, so later
    damage to it is caught; only caches written through :func:`save_artifact` use this.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = load(path)
    except CorruptArtifact as err:
        warnings.warn(f"{err}; discarded, rebuilding it", stacklevel=2)
        path.unlink(missing_ok=True)
        checksum_path(path).unlink(missing_ok=True)
        return None
    if not checksum_path(path).is_file():
        with contextlib.suppress(OSError):  # a read-only cache stays unverified, but usable
            _write_checksum(path, hash_file(path))
    return value


#: The version of the code that writes each kind of cached artifact. Bump a number when a change to that
#: code changes what it writes: the version is part of the cache key (:func:`versioned`), so every cache the
#: old code made is rebuilt instead of silently reused. Backbone checkpoints are keyed in ``models``.
CODE_VERSIONS: dict[str, int] = {"datasets": 1, "activations": 1, "checkpoints": 1}


def versioned(producer: str, key: dict[str, Any]) -> dict[str, Any]:
    """A cache key's fields plus the producer's code version (:data:`CODE_VERSIONS`).

    Version 1 adds nothing, so the keys of caches written before versions existed
    stay the same; version 2 and later add ``code_version``.

    >>> versioned("activations", {"size": 32})
    {'size': 32}
    """
    version = CODE_VERSIONS[producer]
    return key if version == 1 else {**key, "code_version": version}


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
    """Hash of every file matching ``pattern`` under ``root``: names and contents, newline-normalised.

    A Python file counts as Python reads it (:func:`code_text`): a docstring or a comment
    that changes changes no result, so it changes no hash.
    """
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(root.rglob(pattern)):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode())
        data = path.read_bytes().replace(b"\r\n", b"\n")
        h.update(code_text(data).encode() if path.suffix == ".py" else data)
    return h.hexdigest()[:16]


def code_text(source: bytes | str) -> str:
    """Python source without its comments, docstrings and layout (``ast.unparse``); the text itself if unparsable.

    >>> code_text("def f(x):\\n    'Doc.'\\n    return x  # note\\n") == code_text("def f(x): return x")
    True
    >>> code_text("x = 1") == code_text("x = 2")
    False
    """
    import ast

    text = source.decode() if isinstance(source, bytes) else source
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


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


# --------------------------------------------------------------------------- progress

#: The file where long loops report their progress; the pipeline runner sets it for the node it runs.
PROGRESS_FILE = "SALVE_PROGRESS_FILE"


def report_progress(done: int, total: int, what: str) -> None:
    """Tell the pipeline runner that ``done`` of ``total`` ``what`` (e.g. epochs) are finished.

    Appends one JSON line ``{"done", "total", "what", "t"}`` to ``$SALVE_PROGRESS_FILE``;
    a no-op when it is not set (a notebook run by hand, a test). The runner turns
    the lines into "12/40 epochs, ETA 3:10" from the measured rate.
    """
    target = os.environ.get(PROGRESS_FILE)
    if not target:
        return
    line = json.dumps({"done": int(done), "total": int(total), "what": what, "t": round(time.time(), 3)})
    with contextlib.suppress(OSError), open(target, "a") as f:  # progress must never break a run
        f.write(line + "\n")


def track(items: Iterable[T], what: str, total: int | None = None, start: int = 0) -> Iterator[T]:
    """Yield ``items``, reporting ``start`` done before the first and one more after each (:func:`report_progress`).

    ``total`` defaults to ``start + len(items)``; ``start`` is where a resumed loop
    begins (e.g. the epochs a checkpoint already holds).

    >>> [epoch for epoch in track(range(3), "epochs")]
    [0, 1, 2]
    """
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    total = start + len(items) if total is None else total  # type: ignore[arg-type]
    report_progress(start, total, what)
    for done, item in enumerate(items, start + 1):
        yield item
        report_progress(done, total, what)
