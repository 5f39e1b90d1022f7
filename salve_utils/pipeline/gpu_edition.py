"""One device call: unpack the data, run a profile's editions under a time guard, send back ≤ 8 files.

This is what ``scripts/gpu_edition.sh`` runs on the lent GPU machine (no network,
at most 10 minutes a command, results back as at most 8 files of 16 MiB under
``$OUT``). In order:

1. verify and unpack the device pack (:mod:`salve_utils.pipeline.devicepack`) into
   ``--data-dest`` and point ``SALVE_DATA_ROOT`` at it; caches go to ``--cache``
   (outside the tree, never sent back);
2. run the pipeline in steps, each a ``python -m salve_utils.pipeline run`` of its
   own: first every edition's backbone (editions in profile order, which is the
   priority order), then the rest of the profile (every stale node, edition by
   edition, the summary and comparison pages last). A step still running at the
   deadline gets a Ctrl-C (the runner publishes nothing of the node it was in, and
   keeps everything published before), then a kill;
3. write what was published -- ``book/chapters/<profile>/`` and
   ``data/results/<profile>/`` (tables and ``run_manifest.json``) -- into one
   ``<profile>-edition.tar.gz``, split into parts of at most 15 MiB when larger,
   plus ``edition.json`` (steps, times, device, which nodes ran and which did not,
   each file's size and SHA-256) and ``run.log``: at most 8 files.

The deadline is ``--budget`` seconds from the start minus ``--reserve`` for step 3,
so the command ends inside its limit and still returns what it has.

Back here: ``cat <profile>-edition.tar.gz* | tar xz`` in the project root puts the
chapters and tables where ``make html PROFILE=<profile>`` reads them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import select
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from . import devicepack
from ..common.runtime import hash_file

__all__ = ["MAX_FILES", "PART_BYTES", "backbone_accuracies", "default_steps", "pack_outputs", "run_step", "main"]

MAX_FILES = 8
PART_BYTES = 15 * 2**20  # under the 16 MiB a returned file may have
LOG_BYTES = 2 * 2**20  # the log's tail that comes back


def default_steps(editions: list[str], rest: bool = True) -> list[tuple[str, list[str]]]:
    """The pipeline steps, in order: each edition's backbone, then (``rest``) every other stale node.

    >>> default_steps(["a", "b"])
    [('a.backbone', ['--only', 'a.backbone', '--no-downstream']), ('b.backbone', ['--only', 'b.backbone', \
'--no-downstream']), ('the rest', [])]
    """
    steps = [(f"{e}.backbone", ["--only", f"{e}.backbone", "--no-downstream"]) for e in editions]
    return steps + ([("the rest", [])] if rest else [])


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_step(cmd: list[str], deadline: float, log, env: dict | None = None, grace: float = 30.0) -> dict:
    """Run ``cmd`` (its own process group) until it ends or ``deadline`` (a ``time.time()``) passes.

    At the deadline the group gets SIGINT -- the pipeline's Ctrl-C: the node in
    progress is not published, everything before it stays -- and SIGKILL ``grace``
    seconds later if still running. Output lines go to ``log``. Returns
    ``{"rc", "seconds", "stopped"}`` where ``stopped`` says the deadline ended it.

    >>> r = run_step([sys.executable, "-c", "import time; time.sleep(30)"], time.time() + 0.5, lambda s: None)
    >>> r["stopped"], r["seconds"] < 10
    (True, True)
    """
    t0 = time.time()
    if time.time() >= deadline:
        return {"rc": None, "seconds": 0.0, "stopped": True, "skipped": True}
    # A shell without job control (nohup, `cmd &`) starts us with SIGINT ignored, and a child
    # inherits that: the deadline's Ctrl-C would do nothing. The child gets the default back.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            preexec_fn=_default_sigint)
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)  # a progress bar redraws with \r and no \n: never wait for a whole line
    pending = b""

    def drain(final: bool = False) -> None:
        nonlocal pending
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            pending += chunk
        *lines, pending = pending.split(b"\n")
        if final and pending:
            lines.append(pending)
            pending = b""
        for line in lines:  # of a progress bar's redraws, the last one
            log(line.rsplit(b"\r", 1)[-1].decode(errors="replace").rstrip())

    stopped, kill_at = False, None
    while proc.poll() is None:
        now = time.time()
        if not stopped and now >= deadline:
            stopped = True
            log(f"[guard] deadline reached: Ctrl-C to {' '.join(cmd[-4:])}")
            _signal_group(proc, signal.SIGINT)
            kill_at = now + grace
        if kill_at is not None and now >= kill_at:
            log("[guard] still running after the grace period: kill")
            _signal_group(proc, signal.SIGKILL)
            kill_at = None
        select.select([fd], [], [], 0.5)
        drain()
    drain(final=True)
    proc.stdout.close()
    return {"rc": proc.returncode, "seconds": round(time.time() - t0, 1), "stopped": stopped}


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def pack_outputs(root: Path, profile: str, out: Path, part_bytes: int = PART_BYTES,
                 max_parts: int = MAX_FILES - 2) -> list[Path]:
    """``book/chapters/<profile>/`` and ``data/results/<profile>/`` as ``<profile>-edition.tar.gz`` in ``out``.

    Split into ``.partNN`` files of at most ``part_bytes`` when larger (``cat`` them
    back together). If even ``max_parts`` parts cannot hold it, the untracked sweep
    tables (``suppression_curves.csv`` and the like, which the repository never
    commits) are left out first; the manifest says so.
    """
    sources = [root / "book" / "chapters" / profile, root / "data" / "results" / profile]
    heavy = {"suppression_curves.csv", "null_edits.csv", "ablation_curves.csv"}
    for leave_out in (set(), heavy):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
            for src in sources:
                if not src.is_dir():
                    continue
                for path in sorted(src.rglob("*")):
                    rel = path.relative_to(root)
                    scratch = any(part.startswith("tmp") for part in rel.parts[3:])  # data/results/*/tmp*
                    if path.is_file() and path.name not in leave_out and not scratch:
                        tar.add(path, arcname=rel.as_posix(), recursive=False)
        blob = buf.getvalue()
        if len(blob) <= part_bytes * max_parts:
            break
    name = f"{profile}-edition.tar.gz"
    if len(blob) <= part_bytes:
        (out / name).write_bytes(blob)
        return [out / name]
    parts = []
    for i in range(0, len(blob), part_bytes):
        path = out / f"{name}.part{i // part_bytes:02d}"
        path.write_bytes(blob[i : i + part_bytes])
        parts.append(path)
    return parts[:max_parts]


def backbone_accuracies(root: Path, profile: str) -> dict[str, dict]:
    """Each published edition's overall validation accuracy and its bootstrap interval (``backbone_accuracy.csv``)."""
    out = {}
    for path in sorted((root / "data" / "results" / profile).glob("*/backbone_accuracy.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("split") == "val" and row.get("class") == "all":
                    out[path.parent.name] = {"accuracy": float(row["accuracy"]), "lo": float(row["accuracy_lo"]),
                                             "hi": float(row["accuracy_hi"]), "n": int(row["n"])}
    return out


def _device() -> dict:
    info = {"host": platform.node(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    except Exception as err:  # the record must still be written
        info["torch_error"] = repr(err)
    return info


def _commit(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salve_utils.pipeline.gpu_edition", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--root", default=".", help="project root (default: the working directory)")
    parser.add_argument("--pack", default=".stage", help="the device pack (salve_utils.pipeline.devicepack build)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="where the ≤ 8 files go (default: $OUT)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds from start to the last file written")
    parser.add_argument("--reserve", type=float, default=40.0, help="seconds kept for packing the results")
    parser.add_argument("--data-dest", default="/tmp/salve-data")
    parser.add_argument("--cache", default="/tmp/salve-cache", help="SALVE_CACHE_DIR (checkpoints stay there)")
    parser.add_argument("--editions", help="comma-separated editions whose backbones run first "
                                           "(default: all of the profile's, in its order)")
    parser.add_argument("--backbones-only", action="store_true", help="stop after the backbone steps")
    parser.add_argument("-p", "--param", action="append", default=[], help="passed to every pipeline step")
    args = parser.parse_args(argv)
    start = time.time()
    if not args.out:
        parser.error("--out is required where $OUT is not set")
    root, out = Path(args.root).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = start + args.budget - args.reserve
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    record: dict = {"profile": args.profile, "budget_s": args.budget, "reserve_s": args.reserve, "commit": _commit(root),
                    "device": _device(), "params": args.param, "steps": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        from .graph import load_profile

        t0 = time.time()
        data = devicepack.unpack(root / args.pack, args.data_dest)
        record["pack"] = json.loads((root / args.pack / devicepack.MANIFEST).read_text())
        record["unpack_s"] = round(time.time() - t0, 1)
        log(f"[edition] unpacked the pack into {data} in {record['unpack_s']} s")
        editions = args.editions.split(",") if args.editions else list(load_profile(root, args.profile)["editions"])
        env = {**os.environ, "SALVE_DATA_ROOT": str(data), "SALVE_CACHE_DIR": args.cache, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
        base = [sys.executable, "-m", "salve_utils.pipeline", "run", "--profile", args.profile, "--root", str(root)]
        base += [a for p in args.param for a in ("-p", p)]
        for name, extra in default_steps(editions, rest=not args.backbones_only):
            log(f"[edition] step {name}: {deadline - time.time():.0f} s left before packing")
            result = run_step(base + extra, deadline, log, env)
            record["steps"].append({"step": name, **result})
            log(f"[edition] step {name}: rc {result['rc']}, {result['seconds']} s"
                + (", stopped at the deadline" if result["stopped"] else ""))
    except Exception as err:  # whatever happened, the record and the results so far come back
        import traceback

        record["error"] = f"{type(err).__name__}: {err}"
        log(traceback.format_exc())
    manifest = root / "data" / "results" / args.profile / "run_manifest.json"
    ran = json.loads(manifest.read_text()) if manifest.is_file() else {}
    record["nodes"] = {n: {"wall_seconds": m.get("wall_seconds"), "gpu": (m.get("hardware") or {}).get("gpu")}
                       for n, m in ran.items()}
    try:
        from .planning import plan

        order = plan(args.profile, root, args.param).order
        record["not_run"] = [n for n in order if n not in ran]
    except Exception as err:
        record["not_run"] = f"unknown: {err}"
    record["backbones"] = backbone_accuracies(root, args.profile)
    for edition, acc in record["backbones"].items():
        log(f"[edition] {edition}: val top-1 {acc['accuracy']:.1%} [{acc['lo']:.1%}, {acc['hi']:.1%}] "
            f"on {acc['n']} images")
    parts = pack_outputs(root, args.profile, out)
    record["files"] = {p.name: {"bytes": p.stat().st_size, "sha256": hash_file(p)} for p in parts}
    record["seconds"] = round(time.time() - start, 1)
    log(f"[edition] {len(ran)} nodes published, {len(record['not_run']) if isinstance(record['not_run'], list) else '?'}"
        f" not run; {sum(f['bytes'] for f in record['files'].values()) / 2**20:.1f} MiB in {len(parts)} file(s); "
        f"{record['seconds']} s in all")
    text = "\n".join(lines) + "\n"
    (out / "run.log").write_text(text[-LOG_BYTES:])
    (out / "edition.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    return 0 if "error" not in record else 1


if __name__ == "__main__":
    sys.exit(main())
