"""Backbone runs on a GPU: the paper profile's settings at 224 px, and checks of the cpu profile's recipes.

This is the script behind ``benchmarks/results/gpu-*.json`` (one NVIDIA H200,
2026-11-26). It trains with ``salve_utils.method.models.train_or_load`` — the code path
of the backbone chapter — from the Imagenette copy in ``$SALVE_DATA_ROOT`` and
writes one JSON record per run (settings, wall time, validation accuracy, per-class
accuracy, history) to ``--out``. Runs that would not fit the time budget are
skipped, and every finished run is written at once, so a run cut short keeps its
results.

    SALVE_DATA_ROOT=... python benchmarks/gpu_backbones.py --budget 540 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback

import torch

from salve_utils.method.data import load_imagenette
from salve_utils.method.models import TrainConfig, evaluate, train_or_load

C = TrainConfig
VIT_CPU = dict(optimizer="adamw", lr=2e-3, weight_decay=0.05, warmup=0.1, grad_clip=1.0, batch_size=128,
               crop_scale=0.35, eval_every=5)
#: (name, arch, (train store size, val size), config, seconds it needs at least, arch options)
RUNS = [
    ("paper_resnet18_224_e60", "resnet18", (224, 224),
     C(epochs=60, batch_size=256, lr=0.6, train_size=224, eval_size=224, crop_scale=0.35, eval_every=10), 80, {}),
    ("paper_resnet18_224", "resnet18", (224, 224),
     C(epochs=40, batch_size=256, lr=0.6, train_size=224, eval_size=224, crop_scale=0.35, eval_every=4), 60, {}),
    ("cpu_resnet18_e30", "resnet18", (160, 160),
     C(epochs=30, batch_size=128, lr=0.4, train_size=128, eval_size=160, crop_scale=0.35, eval_every=5), 60, {}),
    ("cpu_resnet18_e40", "resnet18", (160, 160),
     C(epochs=40, batch_size=128, lr=0.4, train_size=128, eval_size=160, crop_scale=0.35, eval_every=5), 60, {}),
    ("cpu_resnet18_e30_112", "resnet18", (144, 160),
     C(epochs=30, batch_size=128, lr=0.4, train_size=112, eval_size=144, crop_scale=0.35, eval_every=5), 60, {}),
    ("cpu_vit_conv64_e40", "vit_small", (80, 64), C(epochs=40, train_size=64, eval_size=64, **VIT_CPU), 80, {}),
    ("cpu_vit_patch64_e40", "vit_small", (80, 64), C(epochs=40, train_size=64, eval_size=64, **VIT_CPU), 80,
     {"stem": "patch"}),
    ("cpu_vit_conv96_e30", "vit_small", (112, 96), C(epochs=30, train_size=96, eval_size=96, **VIT_CPU), 80,
     {"num_layers": 6}),
    ("cpu_vit_conv64_e80", "vit_small", (80, 64), C(epochs=80, train_size=64, eval_size=64, **VIT_CPU), 100, {}),
    ("paper_vit_b_16_224_e20", "vit_b_16", (224, 224),
     C(epochs=20, batch_size=128, optimizer="adamw", lr=5e-4, weight_decay=0.05, warmup=0.1, grad_clip=1.0,
       train_size=224, eval_size=224, crop_scale=0.35, eval_every=5), 60, {}),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=540, help="seconds for all runs")
    p.add_argument("--only", nargs="*", help="names of the runs to do (default: all)")
    p.add_argument("--out", default="gpu_results.json")
    args = p.parse_args()
    torch.backends.cudnn.benchmark = True
    start, results, data = time.time(), [], {}
    for name, arch, store, config, needs, options in RUNS:
        if args.only and name not in args.only:
            continue
        left = args.budget - (time.time() - start)
        if left < needs:
            print(f"SKIP {name}: {left:.0f} s left < {needs} s", flush=True)
            continue
        for split, size in zip(("train", "val"), store):
            if (split, size) not in data:
                data[(split, size)] = load_imagenette(split, size)
        train, val = data[("train", store[0])], data[("val", store[1])]
        t0 = time.time()
        try:
            model, history, _ = train_or_load(arch, train, val, config, device="cuda", progress=False, **options)
        except Exception:  # keep going: one failed run must not lose the others
            traceback.print_exc()
            continue
        seconds = time.time() - t0
        ev = evaluate(model, val, size=config.eval_size, device="cuda")
        results.append({"name": name, "arch": arch, "store": store, "config": config.__dict__, "kw": options,
                        "seconds": round(seconds, 1), "val_acc": ev.accuracy,
                        "per_class": ev.per_class.to_dict("records"), "history": history.to_dict("records"),
                        "gpu": torch.cuda.get_device_name()})
        print(f"== {name}: val_acc={ev.accuracy:.4f} in {seconds:.0f}s", flush=True)
        with open(args.out + ".tmp", "w") as f:
            json.dump(results, f, indent=1, default=str)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
