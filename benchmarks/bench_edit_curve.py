"""Benchmark: an α sweep on cached activations (``edit_curve``) vs re-running the edited network per α.

Because the SALVE edit changes only the head, ``a(x)`` is the same for every α,
and a whole sweep is one einsum over cached activations. The naive way builds
the edited model for every α and runs every image through the whole backbone.

The naive way is timed on a small subset of images with a ResNet-18 at 64 px
(CPU-friendly) and its per-image cost is extrapolated to N images; the script
says so in its output. Logits of both ways are checked to agree on the subset.
Timings are printed, never asserted.

With ``--profile`` the benchmark uses a real run of the pipeline: the cached
validation activations, the trained backbone, the chosen autoencoder and a
class's dominant feature (the Imagenette val split for ``--profile cpu``); the
naive way then runs real validation images through the real edited backbone.

Usage::

    python benchmarks/bench_edit_curve.py                      # random activations, N=3925, M=512, K=10
    python benchmarks/bench_edit_curve.py --profile cpu        # the cpu profile's Imagenette val split
"""

from __future__ import annotations

import argparse
import time

import torch

from salve_utils.method.editing import edit_curve, edit_logits, edit_model
from salve_utils.method.models import SalveNet, build_model
from salve_utils.common.runtime import default_device
from salve_utils.method.sae import SparseAutoencoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=3925, help="samples (random activations)")
    p.add_argument("--m", type=int, default=512, help="activation width M (random activations)")
    p.add_argument("--k", type=int, default=10, help="classes K")
    p.add_argument("--alphas", type=int, default=100, help="number of α values in the sweep")
    p.add_argument("--profile", default=None,
                   help="use the artifacts of this pipeline profile (real activations, backbone and SAE)")
    p.add_argument("--subset", type=int, default=4, help="images run through the naive way")
    p.add_argument("--image-size", type=int, default=64, help="image size of the naive ResNet-18")
    p.add_argument("--repeats", type=int, default=3, help="fast way: best of this many runs")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_setup(args: argparse.Namespace, gen: torch.Generator):
    """Random non-negative (post-ReLU-like) activations, a random head and a heavy-tailed decoder column,
    with a ResNet-18 at ``--image-size`` px and random images for the naive way."""
    acts = torch.randn(args.n, args.m, generator=gen).clamp_min(0)
    labels = torch.randint(0, args.k, (args.n,), generator=gen)
    weight = torch.randn(args.k, args.m, generator=gen) / args.m**0.5
    bias = 0.1 * torch.randn(args.k, generator=gen)
    model = build_model("resnet18", classes=[f"c{i}" for i in range(args.k)], image_size=args.image_size).eval()
    sae = SparseAutoencoder(model.num_features, 1)
    with torch.no_grad():
        sae.decoder.weight[:, 0] = torch.rand(model.num_features, generator=gen) ** 3
    images = torch.rand(args.subset, 3, args.image_size, args.image_size, generator=gen)
    return acts, labels, weight, bias, sae.decoder_column(0), model, sae, 0, images, f"random {args.n} x {args.m}"


def profile_setup(args: argparse.Namespace):
    """The pipeline's own artifacts for ``--profile``: val activations, backbone, SAE, a dominant feature."""
    from salve_utils.method.activations import load_activations
    from salve_utils.method.data import center_resize, dataset_from_spec
    from salve_utils.method.models import load_model
    from salve_utils.pipeline import NodeContext
    from salve_utils.method.sae import load_sae

    ctx = NodeContext(args.profile, "benchmark", {"backbone": "backbone_resnet18", "autoencoder": "autoencoder",
                                                  "features": "discover"})
    acts = load_activations(ctx.artifact("backbone", "activations"))
    spec = ctx.read_json("backbone", "backbone")
    found = ctx.read_json("features", "features")
    sae, _ = load_sae(ctx.artifact("autoencoder", "sae"))
    model = load_model(ctx.artifact("backbone", "checkpoint"))
    cls = next(iter(found["dominant"]))
    feature = found["dominant"][cls]
    val = dataset_from_spec(spec, "val").per_class(max(1, args.subset // len(acts.classes)))
    images = center_resize(val.images[: args.subset], spec["eval_size"])
    source = (f"profile {args.profile}: {spec['dataset']} val, {len(acts.val)} x {acts.val.shape[1]}, "
              f"dominant feature z{feature} of {cls}, images at {spec['eval_size']} px")
    return (acts.val, acts.val_labels, acts.weight, acts.bias, sae.decoder_column(feature).detach(), model, sae,
            feature, images, source)


def alpha_grid(column: torch.Tensor, count: int) -> torch.Tensor:
    """α from 0 to normalised strength 1.5 (α · max|c_j|), where the sweep is informative."""
    return torch.linspace(0, 1.5, count, dtype=torch.float64) / float(column.abs().max())


def time_fast(acts: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              column: torch.Tensor, alphas: torch.Tensor, repeats: int, device: torch.device) -> float:
    """Best wall time of ``edit_curve`` over ``repeats`` runs."""
    acts, labels = acts.to(device), labels.to(device)
    weight, bias, column = weight.to(device), bias.to(device), column.to(device)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        edit_curve(acts, labels, weight, bias, column, alphas)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def run_naive(model: SalveNet, sae: SparseAutoencoder, feature: int, images: torch.Tensor, alphas: torch.Tensor,
              device: torch.device) -> tuple[torch.Tensor, float, float]:
    """For every α: build the edited SalveNet, run the images through it. Returns (logits, t_build, t_forward)."""
    out, t_build, t_forward = [], 0.0, 0.0
    for alpha in alphas.tolist():
        t0 = time.perf_counter()
        edited = edit_model(model, sae, feature, alpha)
        t1 = time.perf_counter()
        out.append(edited(images))
        _sync(device)
        t_build += t1 - t0
        t_forward += time.perf_counter() - t1
    return torch.stack(out).cpu(), t_build, t_forward


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = default_device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    setup = profile_setup(args) if args.profile else random_setup(args, gen)
    acts, labels, weight, bias, column, model, sae, feature, images, source = setup
    n = len(acts)
    alphas = alpha_grid(column, args.alphas)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"activations: {source}; K = {weight.shape[0]}; {len(alphas)} α values")

    t_fast = time_fast(acts, labels, weight, bias, column, alphas, args.repeats, device)
    print(f"edit_curve on cached activations: {t_fast * 1e3:.1f} ms for {n} samples x {len(alphas)} α")

    # the naive way, on a subset of images through the backbone whose head we edit
    model, images = model.to(device).eval(), images.to(device)
    naive_logits, t_build, t_forward = run_naive(model, sae, feature, images, alphas, device)

    with torch.no_grad():
        _sync(device)
        t0 = time.perf_counter()
        sub_acts = model.features(images)
        _sync(device)
        t_cache = time.perf_counter() - t0
    cached_logits = edit_logits(sub_acts, model.head.weight.detach(), model.head.bias.detach(),
                                sae.decoder_column(feature).detach().to(device), alphas).cpu()
    diff = float((cached_logits - naive_logits).abs().max())
    assert diff < 1e-4, f"cached-activation logits differ from the edited network's by {diff:.3g}"
    print(f"agreement on {len(images)} images x {len(alphas)} α: max |Δlogit| = {diff:.2e} (< 1e-4)")

    per_image = t_forward / (len(images) * len(alphas))
    naive_total = t_build + per_image * n * len(alphas)
    cache_total = t_cache / len(images) * n
    print(f"naive: {model.arch} at {images.shape[-1]} px, measured on {len(images)} images x {len(alphas)} α: "
          f"build {t_build:.2f} s + forward {t_forward:.2f} s ({per_image * 1e3:.2f} ms per image per α)")
    print(f"naive, extrapolated to N = {n} images (per-image cost x N, builds once per α): {naive_total:.0f} s")
    print(f"speed ratio (naive / edit_curve): {naive_total / t_fast:,.0f}x")
    print(f"one-off cost of caching a(x) for N images (extrapolated): {cache_total:.1f} s; "
          f"ratio including it: {naive_total / (cache_total + t_fast):,.1f}x (about the number of α values: "
          f"the naive way pays one pass over the images per α, the cached way one in all)")


if __name__ == "__main__":
    main()
