"""Benchmark: the training loop of ``salve_utils.models.train`` against a bare torchvision step.

Both train the same ResNet-18 at the same batch size, resolution and precision
(bf16 autocast and channels-last where the CPU supports them, as ``train`` does).
The bare step feeds a pre-made tensor: no augmentation, no bookkeeping. The
ratio ``ours / bare`` says how much the loop costs on top of the network itself
(target: at least 0.85, i.e. within 15%). Timings are printed, never asserted.

Usage::

    python benchmarks/bench_train_step.py                    # batch 128 at 128 px (the cpu profile)
    python benchmarks/bench_train_step.py --size 64 --steps 20
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchvision

from salve_utils.data import ImageSet
from salve_utils.models import TrainConfig, _autocast, build_model, train
from salve_utils.runtime import default_device


def bare_images_per_second(batch: int, size: int, steps: int, device: torch.device, precision: str) -> float:
    model = torchvision.models.resnet18(num_classes=10).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with _autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def ours_images_per_second(batch: int, size: int, steps: int, device: torch.device, precision: str) -> float:
    gen = torch.Generator().manual_seed(0)
    n = batch * (steps + 2)
    store = int(size * 1.25)
    data = ImageSet(torch.randint(0, 256, (n, 3, store, store), dtype=torch.uint8, generator=gen),
                    torch.randint(0, 10, (n,), generator=gen), [f"c{i}" for i in range(10)], "random", "train")
    model = build_model("resnet18", data.classes, image_size=size)
    config = TrainConfig(epochs=1, batch_size=batch, train_size=size, eval_size=size, precision=precision)
    history = train(model, data, None, config, device=device, progress=False)
    return float(history["img_per_s"].iloc[0])  # the whole epoch, its first (warm-up) steps included


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = default_device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch} at {args.size} px, "
          f"precision {args.precision}")
    bare = bare_images_per_second(args.batch, args.size, args.steps, device, args.precision)
    ours = ours_images_per_second(args.batch, args.size, args.steps, device, args.precision)
    bare_again = bare_images_per_second(args.batch, args.size, args.steps, device, args.precision)
    bare = max(bare, bare_again)  # the faster of two bare runs: a conservative reference
    print(f"bare torchvision step: {bare:8.1f} images/s")
    print(f"salve_utils.train:     {ours:8.1f} images/s (augmentation, schedule, metrics included; "
          "its two warm-up steps are counted)")
    print(f"ratio ours / bare: {ours / bare:.3f} (target >= 0.85)")


if __name__ == "__main__":
    main()
