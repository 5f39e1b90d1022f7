"""Benchmark: our ResNet-18 training loop against a bare torchvision step, in every precision this machine offers.

For fp32, and bf16 where the device supports it natively, it prints the throughput of

* a bare torchvision ResNet-18 step on a pre-made tensor (no augmentation, no
  bookkeeping), in contiguous and in channels-last memory layout;
* our loop, ``salve_utils.method.models.train`` (augmentation, schedule, metrics);
* the ratio ours / bare in the same precision and layout (channels-last, as ``train``
  uses for ResNets; target at least 0.85);

then what ``precision="auto"`` chooses here (``salve_utils.method.models.choose_training_precision``:
measured, or read from ``<cache>/precision.json`` if this machine measured it before),
bare-step throughput at 1 thread and at torch's default thread count, and inference
(``predict_logits``) in fp32 and bf16 with the largest logit difference between them.
Every number is the fastest of a few timed rounds of ``--steps`` steps (an epoch of
our loop; the bare steps' rounds interleaved), after a warm-up. Timings are printed,
never asserted. On a shared machine they move with the neighbours' load: the load
average is printed first and last.

Usage::

    python benchmarks/bench_train_step.py                          # batch 64 at 128 px: about 2 min on 2 cores
    python benchmarks/bench_train_step.py --batch 128 --steps 8    # the cpu profile's batch size
    python benchmarks/bench_train_step.py --quick                  # batch 32, 3 steps: a smoke check
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision

from salve_utils.method.data import ImageSet
from salve_utils.method.models import TrainConfig, build_model, choose_training_precision, predict_logits, train
from salve_utils.method.precision import autocast, candidates, images_per_second
from salve_utils.common.runtime import default_device, describe_hardware


def bare_images_per_second(steps: dict[str, Callable[[], None]], batch: int, n: int, rounds: int,
                           device: torch.device) -> dict[str, float]:
    """Throughput of each bare step over ``n`` consecutive calls: the fastest of ``rounds`` interleaved rounds.

    Like an epoch of ``train`` (``n`` steps), after ``n`` warm-up calls; the rounds
    alternate between the steps so that a neighbour's load falls on all of them alike.
    """
    def repeat(step: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(n):
                step()
        return run

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    return images_per_second({k: repeat(v) for k, v in steps.items()}, batch * n, warmup=1, repeats=rounds,
                             sync=sync)


def bare_step(batch: int, size: int, device: torch.device, precision: str, channels_last: bool) -> Callable[[], None]:
    """One SGD step of torchvision's ResNet-18 on a fixed random batch."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = torchvision.models.resnet18(num_classes=10).to(device).to(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def random_images(n: int, size: int) -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen),
                    torch.randint(0, 10, (n,), generator=gen), [f"c{i}" for i in range(10)], "random", "train")


def ours_images_per_second(config: TrainConfig, steps: int, rounds: int, device: torch.device) -> float:
    """``train`` for ``1 + rounds`` epochs of ``steps`` batches on random images; the fastest warm epoch."""
    data = random_images(config.batch_size * steps, int(config.train_size * 1.25))
    model = build_model("resnet18", data.classes, image_size=config.train_size)
    history = train(model, data, None, replace(config, epochs=1 + rounds), device=device, progress=False)
    return float(history["img_per_s"].iloc[1:].max())


def inference(config: TrainConfig, n: int, device: torch.device, precisions: list[str]) -> None:
    """``predict_logits`` throughput in each precision at the evaluation size, and the largest logit change."""
    data = random_images(n, config.eval_size)
    model = build_model("resnet18", data.classes, image_size=config.eval_size).eval()
    logits = {}
    for p in precisions:
        predict_logits(model, data, batch_size=64, device=device, precision=p)  # warm-up
        start = time.perf_counter()
        logits[p] = predict_logits(model, data, batch_size=64, device=device, precision=p)
        print(f"  inference {p:>4}: {n / (time.perf_counter() - start):8.1f} img/s "
              f"(predict_logits at {config.eval_size} px, untrained weights)")
    if "bf16" in logits:
        diff = (logits["bf16"] - logits["fp32"]).abs().max().item()
        same = (logits["bf16"].argmax(1) == logits["fp32"].argmax(1)).float().mean().item()
        print(f"  bf16 vs fp32 logits: max |diff| {diff:.2e}, same argmax for {same:.0%} of images "
              "(chapters infer in fp32)")


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=128, help="training crop size (the cpu profile's Imagenette: 128)")
    p.add_argument("--steps", type=int, default=4, help="steps per timed round (an epoch of our loop)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds; the fastest is kept")
    p.add_argument("--quick", action="store_true", help="batch 32, 3 steps")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps = 32, 3
    device = default_device(args.device)
    hw = describe_hardware(device)
    print(f"{hw.get('gpu') or hw['cpu']} ({hw['cpu_count']} cores), device {device}, torch {torch.__version__}; "
          f"threads {torch.get_num_threads()}, interop threads {torch.get_num_interop_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; load average {load()}")
    print(f"ResNet-18, batch {args.batch} at {args.size} px; each number the fastest of {args.rounds} rounds "
          f"of {args.steps} steps")
    config = TrainConfig(batch_size=args.batch, train_size=args.size, eval_size=int(args.size * 1.25))
    precisions = candidates(device)
    bare = bare_images_per_second({(p, cl): bare_step(args.batch, args.size, device, p, cl)
                                   for p in precisions for cl in (False, True)},
                                  args.batch, args.steps, args.rounds, device)
    for precision in precisions:
        ours = ours_images_per_second(replace(config, precision=precision), args.steps, args.rounds, device)
        contiguous, channels_last = bare[precision, False], bare[precision, True]
        print(f"  {precision:>4}: bare step {contiguous:7.1f} img/s contiguous, {channels_last:7.1f} channels-last; "
              f"salve_utils.train {ours:7.1f} img/s; ours / bare (channels-last) {ours / channels_last:.2f}")
    model = build_model("resnet18", [f"c{i}" for i in range(10)], image_size=config.eval_size)
    choice = choose_training_precision(model, replace(config, precision="auto"), device)
    print(f"  precision='auto' here: {choice.describe()}")
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        rate, = bare_images_per_second({"bare": bare_step(args.batch, args.size, device, choice.precision, True)},
                                       args.batch, args.steps, args.rounds, device).values()
        print(f"  {threads} thread(s), {choice.precision}, channels-last: bare step {rate:7.1f} img/s")
    torch.set_num_threads(default_threads)
    inference(config, 2 * args.batch, device, precisions)
    print(f"load average {load()}")


if __name__ == "__main__":
    main()
