"""What a run shows while it runs: a node's long loops as one line, and how long the nodes took last time."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from .store import results_dir


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
