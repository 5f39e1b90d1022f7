"""Running nodes: each in its staging folder with papermill, published only on success.

:func:`run` executes the stale nodes of a profile in dependency order under the
project lock, one at a time or (``jobs`` > 1) as many side by side as are ready;
:func:`_execute` runs one node and publishes its chapter, tables, artifacts and
record together (its kernel: :mod:`salve_utils.pipeline.kernels`). A Ctrl-C or a
failure publishes nothing. :func:`error_outputs` lists executed chapters holding an error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..common.runtime import (
    PROGRESS_FILE,
    atomic_write_json,
    default_device,
    describe_hardware,
    git_commit,
    package_versions,
    project_root,
)
from .book import _provenance_cell, _scope_figure_labels, _title_with_edition, _trained_in
from .context import rebase_staged_tables
from .graph import CHAPTERS_DIR, PipelineError, descendants, load_profile
from .planning import Plan, _ancestors, plan
from .kernels import _KERNELS, _environment, _interrupt_kernels, _kernel_manager, _recording_sigint
from .progress import _minutes, _watching, expected_time, last_times
from .store import (
    STAGE_DIR,
    STAGE_NODE,
    _finish_publish,
    artifact_dir,
    chapter_path,
    project_lock,
    recover,
    results_dir,
    staging_dir,
)


#: Publication and the run manifest are written by one node at a time (nodes may run side by side).
_PUBLISHING = threading.Lock()


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
    rebase_staged_tables(stage, results_dir(p.root, p.profile), name)  # nodes ran side by side: keep both rows
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


def _execute(p: Plan, name: str, cell_timeout: float | None = None,
             on_progress: Callable[[str], None] | None = None, interrupted: list[float] | None = None) -> dict[str, Any]:
    """Run one node with papermill into its staging folder; publish everything together only on success.

    A failure or an interruption leaves the previously published chapter, tables,
    artifacts and record untouched (and ``status`` truthful); the failed copy is kept
    in ``data/runs/<profile>/failed/``. The node's long loops report to
    ``<staging>/progress.jsonl`` (``$SALVE_PROGRESS_FILE``), which ``on_progress`` sees
    as :func:`progress_line` every second. ``interrupted`` is the runner's record of
    SIGINT when the node runs beside others (in a worker thread, which cannot take signals).
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
        env = {STAGE_NODE: name, STAGE_DIR: str(stage), PROGRESS_FILE: str(progress_file)}
        with (_recording_sigint() if interrupted is None else contextlib.nullcontext(interrupted)) as sigint, \
                _watching(progress_file, on_progress):
            pm.execute_notebook(str(src), str(tmp), parameters=p.params[name], cwd=str(p.root),
                                kernel_name="python3", progress_bar=False, log_output=False,
                                execution_timeout=cell_timeout, kernel_manager_class=_kernel_manager(name, env),
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
    finally:
        _KERNELS.pop(name, None)
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
    with _PUBLISHING:
        _publish(p, name, stage, nb, meta)
        manifest_path = results_dir(p.root, p.profile) / "run_manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        manifest = {k: v for k, v in manifest.items() if k in p.nodes}  # nodes no longer in the graph are dropped
        manifest[name] = {k: v for k, v in meta.items() if k != "outputs"}
        atomic_write_json(manifest_path, dict(sorted(manifest.items())))
    return meta


def run(profile: str, root: str | os.PathLike | None = None, overrides: Iterable[str] = (),
        only: str | None = None, force: bool = False, progress: bool = True, log=print,
        downstream: bool = True, cell_timeout: float | None = None, jobs: int = 1) -> list[str]:
    """Run every stale node of ``profile`` in dependency order; return the names of the nodes executed.

    Staleness is re-checked just before each node runs, so a node whose upstream
    outputs changed is re-executed, and one whose upstream reran to identical
    outputs is not. One run at a time holds the project (:func:`project_lock`); a run
    first completes any publication a killed run left half done (:func:`recover`).
    ``cell_timeout`` (seconds) stops a node whose cell runs longer. ``jobs`` > 1 runs up
    to that many nodes side by side, each as soon as its upstream nodes are done: the
    same kernels with the same threads, so the same bytes, in less wall time on a machine
    whose nodes leave cores idle (Python, pandas, figures); after a failure no new node
    starts, the running ones finish, and the first error is raised.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 64:
        raise PipelineError(f"--jobs must be a whole number from 1 to 64, got {jobs!r}")
    if cell_timeout is not None and not 0 < cell_timeout < math.inf:
        raise PipelineError(f"--cell-timeout must be a positive number of seconds, got {cell_timeout}; "
                            "leave it out for no limit")
    p = plan(profile, root, overrides, only, force, downstream)  # bad input is refused before the lock
    with project_lock(p.root, profile):
        for name in recover(p.root, profile):
            log(f"completed the publication of {name}, interrupted by an earlier run")
        p = plan(profile, root, overrides, only, force, downstream)
        try:
            return _run_locked(p, profile, only, force, progress, log, downstream, cell_timeout, jobs)
        finally:
            _remove_empty(p.root / "data" / "runs" / profile / "staging")


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` if nothing but empty folders is left in it (a staging area after its runs)."""
    if folder.is_dir() and not any(f.is_file() for f in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


def _run_locked(p: Plan, profile: str, only: str | None, force: bool, progress: bool, log,
                downstream: bool, cell_timeout: float | None, jobs: int = 1) -> list[str]:
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
        if jobs == 1:
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
        else:
            _run_side_by_side(p, candidates, forced, jobs, cell_timeout, bar if progress else None, log, executed)
        bar.close()
    if not executed:
        log("nothing to run: every node is up to date")
    return executed


def _run_side_by_side(p: Plan, candidates: list[str], forced: set[str], jobs: int, cell_timeout: float | None,
                      bar, log, executed: list[str]) -> None:
    """Run ``candidates`` (in dependency order) on ``jobs`` worker threads, each node once its upstream is done.

    A node is checked for staleness when it becomes ready, as in the sequential loop. The
    main thread keeps SIGINT (:func:`_recording_sigint`) and shares its record with the
    workers; publication is serialised (:data:`_PUBLISHING`).
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    wanted = set(candidates)
    needs = {n: _ancestors(p.nodes, n) & wanted for n in candidates}
    pending, done, running = list(candidates), set(), {}
    lines: dict[str, str] = {}

    def show(name: str):
        def update(line: str) -> None:
            lines[name] = f"{name}: {line}" if line else name
            bar.set_postfix_str(" | ".join(lines[n] for n in running.values() if n in lines))
        return update if bar is not None else None

    with _recording_sigint() as sigint, ThreadPoolExecutor(jobs, thread_name_prefix="node") as pool:
        try:
            while pending or running:
                for name in [n for n in pending if needs[n] <= done]:
                    if len(running) >= jobs:
                        break
                    pending.remove(name)
                    if name not in forced and p.is_current(name):
                        done.add(name)
                        if bar is not None:
                            bar.update()
                        continue
                    running[pool.submit(_execute, p, name, cell_timeout, show(name), sigint)] = name
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    lines.pop(name, None)
                    meta = future.result()  # a failed node raises here; the others finish below
                    done.add(name)
                    executed.append(name)
                    if bar is not None:
                        bar.update()
                    log(f"  ran {name} in {meta['wall_seconds']:.0f} s")
        except BaseException as err:
            pending.clear()
            if isinstance(err, KeyboardInterrupt):  # the kernels run in sessions of their own: pass Ctrl-C on
                _interrupt_kernels(running.values())
            for future in wait(running).done:  # the nodes already running finish (and publish) or fail alone
                if not future.exception():
                    executed.append(running[future])
            raise


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
