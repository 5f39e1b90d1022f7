r"""One deeper edit (the paper's future work): Eq. 1 on a ResNet-18's ``layer3`` channels.

An autoencoder is trained on the channel vectors of ``layer3``'s output, one vector per
image and position: ``h(x)[:, u, v]`` (C = 256). Class-mean latents are averaged over images
*and* positions. The edit of feature l (decoder column ``c = D[:, l]``, C entries) rescales
the *input channels* of the next convolutions — ``layer4[0].conv1`` and its shortcut
``layer4[0].downsample[0]``, the only two modules that read ``h``:

.. math::

    w'_{o,j,\cdot,\cdot} = w_{o,j,\cdot,\cdot}\,\max(0,\ 1 - \alpha\,|c_j|)
    \qquad \text{for every output channel $o$ and input channel $j$}

A permanent weight edit, exactly as Eq. 1 edits the head's input columns; the layers before
``layer4`` are untouched, so the edited model is run on cached ``layer3`` maps and equals the
whole edited model on the images (:func:`check_equivalence`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..method.data import ImageSet
from ..method.features import class_mean_latents
from ..method.models import SalveNet
from .nulls import _is_top
from ..method.sae import SparseAutoencoder

__all__ = ["DeepStudy", "check_equivalence", "channel_vectors", "deep_curves", "dominant_latents", "edit_next_conv",
           "image_means", "layer3_maps", "run_from_layer3", "sample_images", "study"]


def _check_resnet(model: SalveNet) -> None:
    if model.arch != "resnet18":
        raise ValueError(f"the deeper edit is defined for ResNet-18 (layer3 -> layer4), not {model.arch!r}")


@torch.no_grad()
def layer3_maps(model: SalveNet, images: torch.Tensor, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """``h(x)``: the output of ``layer3`` (N, 256, H, W) for uint8 or float images (N, 3, S, S)."""
    _check_resnet(model)
    body, out = model.body, []
    for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="layer3", unit="batch"):
        x = images[start : start + batch_size]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        x = body.maxpool(body.relu(body.bn1(body.conv1(model.normalize(x)))))
        out.append(body.layer3(body.layer2(body.layer1(x))))
    return torch.cat(out)


@torch.no_grad()
def run_from_layer3(model: SalveNet, maps: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``model`` from ``layer3`` maps: ``head(pool(layer4(h)))``."""
    _check_resnet(model)
    body = model.body
    return torch.cat([model.head(torch.flatten(body.avgpool(body.layer4(maps[s : s + batch_size])), 1))
                      for s in range(0, len(maps), batch_size)])


def channel_vectors(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) maps -> (N·H·W, C) channel vectors, one per image and position."""
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


@torch.no_grad()
def image_means(sae: SparseAutoencoder, maps: torch.Tensor) -> torch.Tensor:
    """Per image, the latents averaged over positions: ``z̄(x) = mean_{u,v} z(h(x)[:, u, v])`` (N, d)."""
    n, _, h, w = maps.shape
    return sae.encode(channel_vectors(maps)).reshape(n, h * w, -1).mean(1)


def edit_next_conv(model: SalveNet, decoder_column: torch.Tensor, alpha: float) -> SalveNet:
    """A copy of ``model`` whose ``layer4`` reads channel j of ``layer3`` scaled by ``max(0, 1 - α|c_j|)``.

    >>> from salve_utils.method.models import build_model
    >>> m = build_model("resnet18", ["a", "b"], image_size=32)
    >>> c = torch.zeros(256); c[0] = 1.0
    >>> e = edit_next_conv(m, c, 1.0)
    >>> float(e.body.layer4[0].conv1.weight[:, 0].abs().sum()), bool(torch.equal(e.head.weight, m.head.weight))
    (0.0, True)
    """
    _check_resnet(model)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    block = model.body.layer4[0]
    if decoder_column.shape != (block.conv1.in_channels,):
        raise ValueError(f"decoder_column must have {block.conv1.in_channels} entries, got {tuple(decoder_column.shape)}")
    factors = (1 - alpha * decoder_column.detach().abs()).clamp_min(0)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        for conv in (edited.body.layer4[0].conv1, edited.body.layer4[0].downsample[0]):
            conv.weight.mul_(factors.to(conv.weight)[None, :, None, None])
    return edited


@torch.no_grad()
def check_equivalence(model: SalveNet, decoder_column: torch.Tensor, alpha: float, images: torch.Tensor) -> float:
    """Max absolute difference between the whole edited model on ``images`` and the edited ``layer4`` on cached maps."""
    edited = edit_next_conv(model, decoder_column, alpha).eval()
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    return float((edited(x) - run_from_layer3(edited, layer3_maps(model, images))).abs().max())


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> np.ndarray:
    hits = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, _is_top(logits.clone(), labels).double())
    return (hits / torch.bincount(labels, minlength=k).double()).numpy()


def deep_curves(model: SalveNet, sae: SparseAutoencoder, dominant: dict[str, int], maps: torch.Tensor,
                labels: torch.Tensor, strengths: Sequence[float], progress: bool = False) -> pd.DataFrame:
    """Suppression curves of the deeper edit, in the ``suppression_curves`` format.

    For each class's dominant layer3 feature and normalised strength ``s`` (``α = s / max|c|``),
    the edited ``layer4`` and head run on the cached maps. Returns
    ``feature_role, feature, direction, strength, alpha, class, accuracy, n``.
    """
    model = model.eval()
    classes = model.classes
    counts = np.bincount(labels.numpy(), minlength=len(classes))
    frames = []
    bar = tqdm(total=len(dominant) * len(strengths), disable=not progress, desc="deeper edit", unit="edit")
    for cls, feature in dominant.items():
        column = sae.decoder_column(int(feature)).detach()
        scale = float(column.abs().max())
        for s in strengths:
            acc = _accuracy(run_from_layer3(edit_next_conv(model, column, s / scale), maps), labels, len(classes))
            frames.append(pd.DataFrame({"feature_role": f"dominant:{cls}", "feature": int(feature),
                                        "direction": "suppress", "strength": float(s), "alpha": s / scale,
                                        "class": classes, "accuracy": acc, "n": counts}))
            bar.update()
    bar.close()
    return pd.concat(frames, ignore_index=True)


def sample_images(data: ImageSet, per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded sample of at most ``per_class`` images of every class: ``(images, labels)``."""
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for k in range(len(data.classes)):
        idx = (data.labels == k).nonzero().reshape(-1)
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    idx = torch.cat(keep).sort().values
    return data.images[idx], data.labels[idx]


def dominant_latents(sae: SparseAutoencoder, maps: torch.Tensor, labels: torch.Tensor,
                     classes: Sequence[str]) -> dict[str, int]:
    """Per class, ``argmax_l |μ_kl|`` of the position-averaged latents (:func:`image_means`)."""
    mu = class_mean_latents(image_means(sae, maps), labels, len(classes))
    return dict(zip(classes, (int(l) for l in mu.abs().argmax(1).tolist())))


@dataclass
class DeepStudy:
    """What :func:`study` measured: the layer3 autoencoder, its fit and dominant latents, the deeper edit's
    curves, the equivalence check, and the sampled validation images' labels and head inputs ``a(x)``."""

    sae: SparseAutoencoder
    fit: dict[str, float]
    dominant: dict[str, int]
    training_vectors: int
    curves: pd.DataFrame
    equivalence: float
    labels: torch.Tensor
    features: torch.Tensor


def study(model: SalveNet, train: ImageSet, val: ImageSet, train_per_class: int, val_per_class: int, d_latent: int,
          l1: float, epochs: int, strengths: Sequence[float], seed: int = 0, progress: bool = False) -> DeepStudy:
    """The deeper edit end to end: sample images, cache their layer3 maps, train the autoencoder on the
    training maps' channel vectors, rank its latents per class, and sweep the edit on the validation maps."""
    from ..method.sae import sae_metrics, train_sae

    model = model.eval()
    xt, yt = sample_images(train, train_per_class, seed)
    xv, yv = sample_images(val, val_per_class, seed)
    maps_t, maps_v = layer3_maps(model, xt, progress=progress), layer3_maps(model, xv, progress=progress)
    vectors = channel_vectors(maps_t)
    sae, _ = train_sae(vectors, d_latent, l1, epochs=epochs, batch_size=1024, seed=seed, progress=progress)
    fit = sae_metrics(sae, channel_vectors(maps_v))
    dominant = dominant_latents(sae, maps_t, yt, model.classes)
    column = sae.decoder_column(next(iter(dominant.values())))
    same = check_equivalence(model, column, 1.0 / float(column.abs().max()), xv[:8])
    curves = deep_curves(model, sae, dominant, maps_v, yv, strengths, progress)
    with torch.no_grad():
        feats = torch.cat([model.features(xv[s : s + 256].float() / 255) for s in range(0, len(xv), 256)])
    return DeepStudy(sae, {"fvu": float(fit["fvu"]), "l0": float(fit["l0"])}, dominant, len(vectors), curves, same,
                     yv, feats)
