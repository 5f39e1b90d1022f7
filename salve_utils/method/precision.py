"""Numeric precision chosen by measurement, and training time estimated from throughput.

bf16 autocast is not faster everywhere it is supported: on a 2-core AMD EPYC a
ResNet-18 training step at 128 px ran about 1.5x faster in bf16 than in fp32, on a
2-core Intel Xeon with ``avx512_bf16`` it ran 27% *slower*. So ``precision="auto"``
does not trust a capability flag; it times a few steps of the real workload in every
candidate precision, keeps the faster, and caches the choice in
``<cache>/precision.json`` keyed by the machine (CPU model, cores, threads, torch
version, device) and the workload (architecture, input size, batch). A pinned
precision (``"fp32"`` or ``"bf16"``) is used as given and never measured: a profile
whose numbers must be reproducible pins it.

The timing is only as good as the machine is quiet: on a 2-core machine shared with
other jobs, bf16 suffered more from the contention than fp32 and lost, although it
won when the machine was idle. So a measurement taken while the load average
exceeds the core count serves its run but is not cached; each cache entry records
the load average it was measured under. Delete ``precision.json`` (or an entry) to
measure again.

>>> choice = choose("fp32", {"task": "train"}, measure=None)  # pinned: nothing is measured
>>> choice.precision, choice.source
('fp32', 'pinned')
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ContextManager

import torch

from ..common.runtime import atomic_write_json, cache_dir, describe_hardware, hash_json

__all__ = [
    "PRECISIONS",
    "PrecisionChoice",
    "autocast",
    "bf16_supported",
    "candidates",
    "choose",
    "estimate_training_seconds",
    "images_per_second",
    "legacy_auto_precision",
    "machine_key",
]

#: The precisions a run can execute in; ``"auto"`` resolves to one of them.
PRECISIONS = ("fp32", "bf16")
CACHE_FILE = "precision.json"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run executes in and how it was chosen.

    Attributes
    ----------
    precision : ``"fp32"`` or ``"bf16"``
    source : ``"pinned"`` (given by the caller), ``"measured"`` (timed now and
        cached), ``"measured on a busy machine, not cached"``, ``"cached"`` (timed
        earlier on this machine for this workload),
        ``"only candidate"`` (the device offers fp32 only) or ``"legacy rule"``
        (a checkpoint trained under the old capability rule, see :func:`legacy_auto_precision`)
    img_per_s : measured throughput of every candidate (empty unless measured or cached)
    """

    precision: str
    source: str
    img_per_s: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for a page or a log, e.g. ``"fp32 (measured: fp32 63 img/s, bf16 46 img/s)"``.

        >>> PrecisionChoice("fp32", "measured", {"fp32": 63.2, "bf16": 46.0}).describe()
        'fp32 (measured: fp32 63 img/s, bf16 46 img/s)'
        """
        rates = ", ".join(f"{p} {r:.0f} img/s" for p, r in self.img_per_s.items())
        return f"{self.precision} ({self.source}{': ' + rates if rates else ''})"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able record (for a checkpoint, a history or a results file)."""
        return asdict(self)


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} here, got {precision!r} "
                         "('auto' is resolved by salve_utils.method.precision.choose first)")


def bf16_supported(device: torch.device) -> bool:
    """Can ``device`` run bf16 kernels natively (oneDNN bf16 on a CPU, bf16 on a CUDA GPU)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def candidates(device: torch.device) -> list[str]:
    """The precisions worth timing on ``device``: fp32, plus bf16 where it is supported natively."""
    return ["fp32", "bf16"] if bf16_supported(device) else ["fp32"]


def legacy_auto_precision(device: torch.device) -> str:
    """What ``precision="auto"`` resolved to before it was measured: bf16 wherever bf16 was supported.

    The old rule (``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` on a CPU, always
    bf16 on CUDA). It serves only to recognise checkpoints whose cache key recorded
    ``"auto"`` instead of the precision that ran (see
    ``salve_utils.method.models.train_or_load``). Delete it with that legacy lookup once
    every cache has been rebuilt.
    """
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "fp32"
    return "bf16"


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The autocast context that runs a block in ``precision`` (``"fp32"``: autocast off)."""
    _check(precision)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def machine_key(device: torch.device) -> dict[str, Any]:
    """What makes a timing specific to this machine: CPU model, cores, threads, torch version, device."""
    hw = describe_hardware(device)
    return {"cpu": hw["cpu"], "cpu_count": hw["cpu_count"], "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__,
            "device": device.type, "gpu": hw.get("gpu")}


def images_per_second(steps: dict[str, Callable[[], None]], batch: int, warmup: int = 2, repeats: int = 3,
                      timer: Callable[[], float] = time.perf_counter,
                      sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Throughput of each of ``steps`` (one batch of ``batch`` images each): ``batch / min_r t_r``.

    Every step is first called ``warmup`` times untimed (kernel selection,
    allocation); then ``repeats`` rounds time each step once, in turn, so that a
    neighbour's load on a shared machine falls on all of them alike. The fastest
    round of each is kept: contention slows a step down, never speeds it up.
    ``sync`` (e.g. ``torch.cuda.synchronize``) is called around each timing.

    >>> ticks = iter([0.0, 0.5, 0.5, 1.5, 1.5, 1.75, 1.75, 2.0])  # a: 0.5 s, 0.25 s; b: 1 s, 0.25 s
    >>> images_per_second({"a": lambda: None, "b": lambda: None}, batch=16, warmup=0, repeats=2,
    ...                   timer=lambda: next(ticks))
    {'a': 64.0, 'b': 64.0}
    """
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch >= 1, repeats >= 1 and warmup >= 0, got {batch}, {repeats}, {warmup}")
    sync = sync or (lambda: None)
    for step in steps.values():
        for _ in range(warmup):
            step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, step in steps.items():
            sync()
            t0 = timer()
            step()
            sync()
            best[name] = min(best[name], timer() - t0)
    return {name: batch / max(t, 1e-9) for name, t in best.items()}


def _read_cache() -> dict[str, Any]:
    path = cache_dir() / CACHE_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # a damaged cache is re-measured, then rewritten whole


def choose(requested: str, workload: dict[str, Any], measure: Callable[[list[str]], dict[str, float]] | None,
           device: torch.device = torch.device("cpu")) -> PrecisionChoice:
    """Resolve ``requested`` (``"auto"``, ``"fp32"`` or ``"bf16"``) to the precision a run executes in.

    Parameters
    ----------
    requested : a pinned precision is returned as given, with nothing measured;
        ``"auto"`` picks the candidate of :func:`candidates` with the highest
        throughput in ``measure(candidates)`` (images per second), caching the result
    workload : what is timed (task, architecture, input size, batch...); with
        :func:`machine_key` it keys the cache entry
    measure : throughput of the workload in each of the given precisions, e.g.
        timed by :func:`images_per_second` (needed for ``"auto"`` only)
    device : where the workload runs
    """
    if requested in PRECISIONS:
        return PrecisionChoice(requested, "pinned")
    if requested != "auto":
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {requested!r}")
    options = candidates(device)
    if len(options) == 1:
        return PrecisionChoice(options[0], "only candidate")
    key = {**machine_key(device), **workload, "candidates": options}
    name = hash_json(key)
    cache = _read_cache()
    if name in cache:
        entry = cache[name]
        return PrecisionChoice(entry["precision"], "cached", {p: entry["img_per_s"][p] for p in options})
    if measure is None:
        raise ValueError("precision='auto' needs a measure function to time the candidates")
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    measured = measure(options)
    rates = {p: round(float(measured[p]), 1) for p in options}
    best = max(rates, key=rates.get)
    if load is not None and load > (os.cpu_count() or 1):  # other jobs ran: good for this run, not to remember
        return PrecisionChoice(best, "measured on a busy machine, not cached", rates)
    cache = _read_cache()  # another process may have written meanwhile
    cache[name] = {"precision": best, "img_per_s": rates, "key": key, "load_average": load,
                   "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(cache_dir() / CACHE_FILE, cache)
    return PrecisionChoice(best, "measured", rates)


def estimate_training_seconds(train_img_per_s: float, n_train: int, batch_size: int, epochs: int,
                              n_val: int = 0, eval_every: int = 1, eval_img_per_s: float | None = None) -> float:
    """Seconds a training run will take: ``E * S * B / r_train + n_eval * N_val / r_eval``.

    ``S = n_train // batch_size`` steps of ``B = batch_size`` images per epoch (the
    last partial batch is dropped, as ``salve_utils.method.models.train`` does), ``E`` epochs,
    and a validation pass after every ``eval_every``-th epoch and after the last
    (``n_eval`` of them). ``eval_img_per_s=None`` assumes evaluation as slow per image
    as training, an overestimate (it has no backward pass). Data decoding, activation
    extraction and the rest of a chapter are not included.

    The cpu profile's ResNet-18 on Imagenette (9,469 training and 3,925 validation
    images, batch 128, 40 epochs, validated every 5th) at 150 training and 300
    validation images per second:

    >>> round(estimate_training_seconds(150, 9469, 128, 40, n_val=3925, eval_every=5, eval_img_per_s=300))
    2596
    """
    if train_img_per_s <= 0 or (eval_img_per_s is not None and eval_img_per_s <= 0):
        raise ValueError("throughputs must be positive images per second")
    if batch_size < 1 or epochs < 1 or eval_every < 1 or n_train < batch_size:
        raise ValueError(f"need 1 <= batch_size <= n_train, epochs >= 1 and eval_every >= 1; got "
                         f"batch_size={batch_size}, n_train={n_train}, epochs={epochs}, eval_every={eval_every}")
    train = epochs * (n_train // batch_size) * batch_size / train_img_per_s
    evals = epochs // eval_every + (epochs % eval_every != 0) if n_val else 0
    return train + evals * n_val / (eval_img_per_s or train_img_per_s)
