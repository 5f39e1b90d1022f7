"""What the device pack costs: the same backbone trained on the original and on the packed Imagenette.

Trains ResNet-18 twice with one configuration and seed -- once on the original
JPEGs (``$SALVE_DATA_ROOT``), once on the device pack's WebPs (``.stage``, see
``salve_utils.pipeline.devicepack``) -- and evaluates each on its own validation images
(what the GPU edition does: it trains and evaluates on the pack) and on the
original ones. The validation images are the same 3,925 in the same order, so the
accuracy difference gets a paired bootstrap interval (resampling images); each
accuracy gets its exact bootstrap interval (``salve_utils.study.stats``). The interval
covers the choice of validation images only, not the run-to-run spread of
training (another seed moves a CPU-sized run by about a point).

Kept small for a CPU (a few minutes a run): the images are decoded at ``--store``
px, so the measurement says what the packing costs at that resolution; at 224 px
the WebP artefacts are larger relative to what the network sees, and the cost may
be larger. Not in ``make bench`` (minutes, and it needs the data and the pack).

    SALVE_DATA_ROOT=../shared/data python benchmarks/packing_cost.py --pack .stage --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from salve_utils.pipeline import devicepack
from salve_utils.method.data import load_imagenette
from salve_utils.method.models import TrainConfig, evaluate, train_or_load
from salve_utils.study.stats import accuracy_interval


def paired_interval(a: np.ndarray, b: np.ndarray, draws: int = 10_000, level: float = 0.95,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) - mean(b)`` for per-image 0/1 outcomes on the same images."""
    rng = np.random.default_rng(seed)
    d = a.astype(np.float64) - b.astype(np.float64)
    idx = rng.integers(0, len(d), size=(draws, len(d)))
    means = d[idx].mean(axis=1)
    q = (1 - level) / 2
    return float(np.quantile(means, q)), float(np.quantile(means, 1 - q))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack", default=".stage")
    p.add_argument("--store", type=int, default=96, help="decode size of both copies")
    p.add_argument("--train-size", type=int, default=80)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the record here (JSON)")
    args = p.parse_args()
    manifest = devicepack.verify_pack(args.pack)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, train_size=args.train_size,
                         eval_size=args.store, crop_scale=0.35, precision="bf16", eval_every=args.epochs,
                         seed=args.seed)
    record = {"config": vars(args), "pack": {k: manifest[k] for k in ("tar", "encoder")},
              "encoding": manifest["datasets"]["imagenette"]["encoding"],
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()}, "runs": {}}
    try:
        record["machine"]["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with tempfile.TemporaryDirectory(prefix="salve-pack-") as tmp:
        packed_root = devicepack.unpack(args.pack, tmp)
        copies = {"original": None, "packed": packed_root}
        data = {name: (load_imagenette("train", args.store, root=root), load_imagenette("val", args.store, root=root))
                for name, root in copies.items()}
        assert torch.equal(data["original"][1].labels, data["packed"][1].labels), "validation images differ"
        correct = {}
        for name, (train, val) in data.items():
            t0 = time.time()
            model, history, _ = train_or_load("resnet18", train, val, config, device="cpu", progress=False)
            seconds = time.time() - t0
            for on, v in (("own", val), ("original", data["original"][1])):
                ev = evaluate(model, v, size=args.store, device="cpu")
                correct[(name, on)] = (ev.logits.argmax(1) == ev.labels).numpy()
            acc = float(correct[(name, "own")].mean())
            lo, hi = accuracy_interval(acc, len(val))
            record["runs"][name] = {"val_acc_own": acc, "interval": [lo, hi],
                                    "val_acc_on_original": float(correct[(name, "original")].mean()),
                                    "train_seconds": round(seconds, 1),
                                    "img_per_s": float(history["img_per_s"].mean())}
            print(f"{name:8s}: val {acc:.2%} [{lo:.2%}, {hi:.2%}] on its own images, "
                  f"{record['runs'][name]['val_acc_on_original']:.2%} on the original ones; {seconds:.0f} s", flush=True)
    a, b = correct[("packed", "own")], correct[("original", "own")]
    lo, hi = paired_interval(a, b)
    record["difference_packed_minus_original"] = {"value": float(a.mean() - b.mean()), "interval": [lo, hi],
                                                  "what": "packed run on packed val minus original run on original val"}
    a2 = correct[("packed", "original")]
    lo2, hi2 = paired_interval(a2, b)
    record["difference_packed_on_original"] = {"value": float(a2.mean() - b.mean()), "interval": [lo2, hi2],
                                               "what": "packed run on the original val minus original run on it"}
    print(f"difference (packed - original): {a.mean() - b.mean():+.2%} [{lo:+.2%}, {hi:+.2%}]; "
          f"packed run on the original images: {a2.mean() - b.mean():+.2%} [{lo2:+.2%}, {hi2:+.2%}]")
    record["date"] = time.strftime("%Y-%m-%d")
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
