"""Stage 2 — activations: a(x), the input of the final linear layer, extracted once and cached.

SALVE only edits the head ``y = W a(x) + b``, so ``a(x)`` never changes under an
edit: every α sweep, class mean and α_crit runs on these cached vectors
(``logits = A W'^T + b``) instead of through the backbone.

>>> acts = compute_activations(model, train_set, val_set)      # doctest: +SKIP
>>> torch.allclose(acts.logits("val"), model(images_val), atol=1e-4)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import ImageSet, class_index
from .models import SalveNet, predict_logits
from ..common.runtime import cache_dir, hash_file, hash_json, load_artifact, load_cached, save_artifact, versioned
from .validation import check_array, check_head, check_labels, check_names

__all__ = ["Activations", "activations_cache_path", "cached_activations", "compute_activations",
           "extract_activations", "load_activations", "save_activations"]


@dataclass
class Activations:
    """Head inputs ``a(x)`` of a train and a val split, with the head that reads them.

    On construction the shapes are checked against each other, the head must be
    finite and ``classes`` must name all K classes (cheap: the activations
    themselves are checked for NaN by the methods that read them).

    Attributes
    ----------
    train, val : float tensors ``(N, M)``
    train_labels, val_labels : int64 tensors ``(N,)``
    classes : class names in label order
    weight, bias : the head's ``W`` (K, M) and ``b`` (K,)
    meta : where they came from (architecture, dataset, evaluation size, checkpoint hash)
    """

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    classes: list[str]
    weight: torch.Tensor
    bias: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weight, _, self.bias, _ = check_head(self.weight, bias=self.bias)
        k, m = self.weight.shape
        for split in ("train", "val"):
            acts = check_array(getattr(self, split), split, ("N", "M"), (None, m), finite=False, allow_empty=True)
            check_labels(getattr(self, f"{split}_labels"), f"{split}_labels", acts.shape[0], k)
        check_names(self.classes, k, "classes")

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(acts, labels)`` of "train" or "val"."""
        if name not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {name!r}")
        return (self.train, self.train_labels) if name == "train" else (self.val, self.val_labels)

    def logits(self, split: str = "val", weight: torch.Tensor | None = None) -> torch.Tensor:
        """``A W^T + b`` for a split, with the original head or an edited ``weight``."""
        acts, _ = self.split(split)
        return acts @ (self.weight if weight is None else weight).T + self.bias

    def class_index(self, name: str | int) -> int:
        """Label of a class given by name; a clear error lists the valid names."""
        return class_index(self.classes, name)


def extract_activations(model: SalveNet, data: ImageSet, size: int | None = None, batch_size: int = 256,
                        device: str | torch.device | None = "auto", progress: bool = True) -> torch.Tensor:
    """``a(x)`` for every image of ``data`` (evaluation transform at ``size`` px), in float32, on the CPU."""
    return predict_logits(model, data, size, batch_size, device, progress, "fp32", fn=model.features)


def compute_activations(model: SalveNet, train: ImageSet, val: ImageSet, size: int | None = None,
                        batch_size: int = 256, device: str | torch.device | None = "auto",
                        progress: bool = True, meta: dict[str, Any] | None = None) -> Activations:
    """Extract train and val activations and copy the head's ``W`` and ``b``."""
    if train.classes != model.classes or val.classes != model.classes:
        raise ValueError("the datasets' classes differ from the model's classes")
    size = size or model.image_size
    return Activations(
        extract_activations(model, train, size, batch_size, device, progress), train.labels.clone(),
        extract_activations(model, val, size, batch_size, device, progress), val.labels.clone(),
        list(model.classes), model.head.weight.detach().float().cpu().clone(),
        model.head.bias.detach().float().cpu().clone(),
        {"arch": model.arch, "size": size, "train": train.name, "val_fingerprint": val.fingerprint(), **(meta or {})},
    )


FORMAT = "salve-activations/1"


def save_activations(acts: Activations, path: str | os.PathLike) -> Path:
    """Write activations atomically, with a checksum (a ``weights_only``-loadable file)."""
    blob = {k: getattr(acts, k) for k in ("train", "train_labels", "val", "val_labels", "classes", "weight",
                                          "bias", "meta")}
    blob["format"] = FORMAT
    return save_artifact(blob, path)


def load_activations(path: str | os.PathLike) -> Activations:
    """Read activations written by :func:`save_activations`, verified against their checksum."""
    blob = load_artifact(path, FORMAT, "SALVE activations file",
                         "; write it with save_activations or cached_activations")
    blob.pop("format")
    return Activations(**blob)


def activations_cache_path(arch: str, checkpoint_sha256: str, train_name: str, train_fingerprint: str,
                           val_fingerprint: str, size: int) -> Path:
    """Where :func:`cached_activations` keeps activations: keyed by the checkpoint's bytes, both datasets'
    contents, the size, the file format and the code version (``runtime.CODE_VERSIONS["activations"]``)."""
    key = hash_json(versioned("activations", {"checkpoint": checkpoint_sha256, "train": train_fingerprint,
                                              "val": val_fingerprint, "size": size, "format": FORMAT}))
    return cache_dir() / "activations" / f"{arch}-{train_name}-{key}.pt"


def cached_activations(model: SalveNet, checkpoint: str | os.PathLike, train: ImageSet, val: ImageSet,
                       size: int | None = None, device: str | torch.device | None = "auto",
                       progress: bool = True) -> tuple[Activations, Path]:
    """:func:`compute_activations`, cached (:func:`activations_cache_path`); a damaged cache is rebuilt."""
    size = size or model.image_size
    ckpt_hash = hash_file(checkpoint)
    path = activations_cache_path(model.arch, ckpt_hash, train.name, train.fingerprint(), val.fingerprint(), size)
    acts = load_cached(path, load_activations)
    if acts is None:
        acts = compute_activations(model, train, val, size, device=device, progress=progress,
                                   meta={"checkpoint_sha256": ckpt_hash})
        save_activations(acts, path)
    return acts, path
