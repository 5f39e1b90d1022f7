"""Stage 1 — backbones: ResNet-18 and ViTs with a linear head ``y = W a(x) + b``, and one training loop.

Every backbone is wrapped in :class:`SalveNet`, which splits the network at the
place SALVE edits it:

* ``model.features(x)`` returns ``a(x)``, the exact input of the final linear layer
  (ResNet: the flattened global average pool, 512-d for ResNet-18; ViT: the
  [CLS] token after the final LayerNorm, 768-d for ViT-B/16);
* ``model.head`` is that final ``nn.Linear``: ``model.head.weight`` is ``W``
  (K classes x M dims) and ``model.head.bias`` is ``b``.

Images enter as float tensors in ``[0, 1]``; the ImageNet normalisation lives
inside the model, so Grad-FAM and activation maximisation work in pixel space.

>>> model = build_model("resnet18", classes=["a", "b"], image_size=32).eval()
>>> images = torch.rand(2, 3, 32, 32)
>>> a = model.features(images); logits = a @ model.head.weight.T + model.head.bias
>>> torch.allclose(logits, model(images), atol=1e-5)
True
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import ImageSet, batches, center_resize, random_resized_crop_flip
from .precision import PrecisionChoice, autocast, choose, images_per_second, legacy_auto_precision
from ..common.runtime import (cache_dir, default_device, hash_json, load_artifact, load_cached, save_artifact, torch_load,
                      track, versioned)

__all__ = [
    "ARCHITECTURES",
    "Evaluation",
    "SalveNet",
    "TrainConfig",
    "build_model",
    "check_setup",
    "checkpoint_path",
    "choose_training_precision",
    "evaluate",
    "per_class_accuracy",
    "load_model",
    "predict_logits",
    "save_model",
    "train",
    "train_or_load",
    "train_step_images_per_second",
    "training_seconds",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = "salve-backbone/1"
#: Images per step when ``precision="auto"`` times the training step (small: the timing takes seconds).
PROBE_BATCH = 32

#: Architectures and their default keyword arguments.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # stem "imagenet": 7x7/2 conv + max-pool (torchvision); "cifar": 3x3/1 conv, no pool (small images)
    "resnet18": {"stem": "imagenet"},
    # ViT-B/16 as in the paper (torchvision's vit_b_16)
    "vit_b_16": {},
    # a ViT-Tiny-like model that a CPU can train: width 192, 3 heads, 9 layers;
    # stem "conv" replaces the patchify layer by a small strided-conv stem (Xiao et al., 2021)
    "vit_small": {"patch_size": 8, "hidden_dim": 192, "num_layers": 9, "num_heads": 3, "mlp_ratio": 4, "stem": "conv"},
}


class SalveNet(nn.Module):
    """A backbone ``body`` producing ``a(x)`` and a linear ``head``: ``logits = W a(x) + b``.

    Parameters
    ----------
    arch : name in :data:`ARCHITECTURES`
    body : module mapping normalised images to ``a(x)`` (its own classifier removed)
    head : the final ``nn.Linear(M, K)``
    classes : class names in label order
    image_size : the resolution the model was built for (ViTs need it exactly)
    arch_kwargs : what :func:`build_model` was given, so that checkpoints rebuild it
    """

    def __init__(self, arch: str, body: nn.Module, head: nn.Linear, classes: list[str], image_size: int,
                 arch_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.body = body
        self.head = head
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.arch_kwargs = dict(arch_kwargs or {})
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def num_features(self) -> int:
        """M, the width of ``a(x)``."""
        return self.head.in_features

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``a(x)``: the exact input of the final linear layer, shape ``(N, M)``."""
        x = self.normalize(x)
        if self.arch == "resnet18":
            return self.body(x)  # torchvision ResNet with fc = Identity: flattened avgpool
        vit = self.body
        tokens = vit._process_input(x)
        cls = vit.class_token.expand(tokens.shape[0], -1, -1)
        return vit.encoder(torch.cat([cls, tokens], dim=1))[:, 0]  # encoder ends with the final LayerNorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # -- what Grad-FAM needs (cf. pytorch-grad-cam's target layers and reshape_transform)
    @property
    def gradcam_layer(self) -> nn.Module:
        """The module whose feature maps Grad-FAM weighs: ResNet ``layer4``; ViT the last encoder block."""
        return self.body.layer4 if self.arch == "resnet18" else self.body.encoder.layers[-1]

    @property
    def gradcam_hook(self) -> str:
        """Capture the layer's ``"output"`` (ResNet) or ``"input"`` (ViT: the patch tokens entering the last block)."""
        return "output" if self.arch == "resnet18" else "input"

    def reshape_transform(self, t: torch.Tensor) -> torch.Tensor:
        """Captured activations -> feature maps ``(N, C, h, w)``. ViT: drop [CLS], tokens to the patch grid."""
        if t.ndim == 4:
            return t
        n, length, dim = t.shape
        side = int(math.isqrt(length - 1))
        return t[:, 1:].reshape(n, side, side, dim).permute(0, 3, 1, 2)


# =========================================================================== building


class _ConvStem(nn.Module):
    """log2(patch) stride-2 3x3 convs (BN, ReLU) then a 1x1 projection: an early-convolution ViT stem."""

    def __init__(self, patch_size: int, hidden_dim: int) -> None:
        super().__init__()
        steps = int(math.log2(patch_size))
        if 2**steps != patch_size:
            raise ValueError(f"the conv stem needs a power-of-two patch_size, got {patch_size}")
        layers: list[nn.Module] = []
        channels = 3
        for i in range(steps):
            out = max(24, hidden_dim // 2 ** (steps - i))
            layers += [nn.Conv2d(channels, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        layers.append(nn.Conv2d(channels, hidden_dim, 1))
        self.stem = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


def build_model(
    arch: str,
    classes: list[str],
    weights: str | None = None,
    image_size: int = 224,
    **arch_kwargs: Any,
) -> SalveNet:
    """Build a backbone with a fresh linear head for ``len(classes)`` classes.

    Parameters
    ----------
    arch : "resnet18", "vit_b_16" or "vit_small" (see :data:`ARCHITECTURES`)
    classes : class names, in label order
    weights : ``None`` (random initialisation) or ``"imagenet"`` (torchvision's
        ImageNet weights; downloads once, needs a network)
    image_size : input resolution (ViTs are built for exactly this size)
    arch_kwargs : override the defaults in :data:`ARCHITECTURES`
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be None or 'imagenet', got {weights!r}")
    if len(classes) < 2:
        raise ValueError("classes must name at least two classes")
    unknown = set(arch_kwargs) - set(ARCHITECTURES[arch])
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {arch}; valid: {sorted(ARCHITECTURES[arch])}")
    kw = {**ARCHITECTURES[arch], **arch_kwargs}
    import torchvision.models as tv  # here: importing torchvision costs a second in every chapter that builds no model

    if arch == "resnet18":
        body = tv.resnet18(weights=tv.ResNet18_Weights.IMAGENET1K_V1 if weights else None)
        if kw["stem"] == "cifar":
            body.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            body.maxpool = nn.Identity()
        elif kw["stem"] != "imagenet":
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {kw['stem']!r}")
        width = body.fc.in_features
        body.fc = nn.Identity()
    elif arch == "vit_b_16":
        if weights and image_size != 224:
            raise ValueError("ImageNet ViT-B/16 weights need image_size=224")
        body = tv.vit_b_16(weights=tv.ViT_B_16_Weights.IMAGENET1K_V1 if weights else None, image_size=image_size)
        width = body.hidden_dim
        body.heads = nn.Identity()
    else:
        if weights:
            raise ValueError("no pretrained weights exist for vit_small; use weights=None")
        if image_size % kw["patch_size"]:
            raise ValueError(f"image_size {image_size} must be a multiple of patch_size {kw['patch_size']}")
        body = tv.VisionTransformer(
            image_size=image_size, patch_size=kw["patch_size"], num_layers=kw["num_layers"],
            num_heads=kw["num_heads"], hidden_dim=kw["hidden_dim"], mlp_dim=kw["mlp_ratio"] * kw["hidden_dim"],
        )
        if kw["stem"] == "conv":
            body.conv_proj = _ConvStem(kw["patch_size"], kw["hidden_dim"])
        elif kw["stem"] != "patch":
            raise ValueError(f"stem must be 'patch' or 'conv', got {kw['stem']!r}")
        width = kw["hidden_dim"]
        body.heads = nn.Identity()
    head = nn.Linear(width, len(classes))
    return SalveNet(arch, body, head, classes, image_size, arch_kwargs)


# =========================================================================== checkpoints


def _model_record(model: SalveNet) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "arch": model.arch, "arch_kwargs": model.arch_kwargs,
            "classes": model.classes, "image_size": model.image_size}


def save_model(model: SalveNet, path: str | os.PathLike, **extra: Any) -> Path:
    """Save weights and what rebuilds the model (atomic; loadable with ``weights_only=True``)."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return save_artifact({**_model_record(model), "state_dict": state, **extra}, path)


def load_model(path: str | os.PathLike, arch: str | None = None, num_classes: int | None = None,
               device: str | torch.device = "cpu") -> SalveNet:
    """Rebuild a :class:`SalveNet` from a checkpoint written by :func:`save_model` or :func:`train`.

    ``arch`` and ``num_classes``, when given, are checked against the checkpoint
    and a mismatch raises a ``ValueError`` that says what the file holds.
    """
    blob = load_artifact(path, CHECKPOINT_FORMAT, "SALVE backbone checkpoint")
    if arch is not None and blob["arch"] != arch:
        raise ValueError(f"{path} holds a {blob['arch']} checkpoint, not {arch}")
    if num_classes is not None and len(blob["classes"]) != num_classes:
        raise ValueError(f"{path} holds a head for {len(blob['classes'])} classes, not {num_classes}")
    model = build_model(blob["arch"], blob["classes"], None, blob["image_size"], **blob["arch_kwargs"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the recorded architecture ({err})") from None
    return model.to(device).eval()


# =========================================================================== training


@dataclass
class TrainConfig:
    """Everything that shapes a training run (and keys its cache).

    The defaults are a plain, strong recipe for a small dataset trained from
    scratch: SGD with Nesterov momentum, one-cycle learning rate, label
    smoothing, random-resized-crop + flip, and evaluation at a slightly larger
    size than training (the "FixRes" effect of random-resized-crop).
    """

    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 0.4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    schedule: str = "onecycle"  # "onecycle" (warm-up, cosine down) | "cosine" (no warm-up)
    warmup: float = 0.2  # fraction of the run spent warming up (onecycle)
    label_smoothing: float = 0.1
    train_size: int = 128
    eval_size: int = 160
    crop_scale: float = 0.25  # smallest crop area of random-resized-crop
    grad_clip: float = 0.0  # 0 = off
    precision: str = "auto"  # "auto" (fp32 or bf16, whichever trains faster here: measured) | "bf16" | "fp32"
    eval_every: int = 1  # validate every this many epochs (and always after the last)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"schedule must be 'onecycle' or 'cosine', got {self.schedule!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")
        if not 0 < self.crop_scale <= 1:
            raise ValueError(f"crop_scale must be in (0, 1], got {self.crop_scale}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be positive and weight_decay non-negative, got {self.lr}, {self.weight_decay}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.train_size < 8 or self.eval_size < 8:
            raise ValueError("train_size and eval_size must be at least 8 pixels")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training option(s) {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)


def _lr_factor(config: TrainConfig, step: int, total: int) -> float:
    t = step / max(1, total)
    if config.schedule == "onecycle" and t < config.warmup:
        return t / config.warmup
    start = config.warmup if config.schedule == "onecycle" else 0.0
    return 0.5 * (1 + math.cos(math.pi * (t - start) / (1 - start)))


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "class_token" in name or "pos_embedding" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))


def _channels_last(model: SalveNet, device: torch.device) -> bool:
    """Train in channels-last memory layout? On CUDA, and for convolutional nets on a CPU."""
    return device.type == "cuda" or model.arch == "resnet18"


def _train_step(model: SalveNet, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                config: TrainConfig, device: torch.device, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch: forward in ``precision``, label-smoothed loss, backward, step.

    Returns ``(loss, logits)``, detached.
    """
    with autocast(device, precision):
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    opt.step()
    return loss.detach(), logits.detach()


def train_step_images_per_second(model: SalveNet, config: TrainConfig, precisions: list[str],
                                 device: str | torch.device | None = "auto", batch: int = PROBE_BATCH,
                                 repeats: int = 3) -> dict[str, float]:
    """Images per second of :func:`train`'s step in each of ``precisions``, on a copy of ``model``.

    The step is the real one (forward in the precision, loss, backward, the
    configured optimiser, channels-last where :func:`train` uses it) on random
    images at ``config.train_size``, ``min(batch, config.batch_size)`` per step,
    timed by :func:`salve_utils.method.precision.images_per_second` (two warm-up steps,
    then ``repeats`` interleaved rounds, the fastest kept). It takes seconds;
    augmentation and bookkeeping, the same in every precision, are left out, and
    ``model`` itself is untouched.
    """
    device = default_device(device)
    probe = copy.deepcopy(model).to(device).train()
    batch = min(batch, config.batch_size)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, config.train_size, config.train_size, generator=gen).to(device)
    y = torch.randint(0, len(model.classes), (batch,), generator=gen).to(device)
    if _channels_last(probe, device):
        probe.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = _optimizer(probe, config)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    steps = {p: (lambda p=p: _train_step(probe, opt, x, y, config, device, p)) for p in precisions}
    return images_per_second(steps, batch, warmup=2, repeats=repeats, sync=sync)


def choose_training_precision(model: SalveNet, config: TrainConfig,
                              device: str | torch.device | None = "auto") -> PrecisionChoice:
    """The precision :func:`train` runs ``config`` in: pinned as given, or for ``"auto"`` the faster one here.

    ``"auto"`` times :func:`train_step_images_per_second` in every candidate
    precision once per machine and workload (architecture, options, train size,
    optimiser) and caches the winner (see :func:`salve_utils.method.precision.choose`).
    """
    device = default_device(device)
    workload = {"task": "train", "arch": model.arch, "arch_kwargs": model.arch_kwargs,
                "size": config.train_size, "batch": min(PROBE_BATCH, config.batch_size), "optimizer": config.optimizer}
    return choose(config.precision, workload,
                  lambda options: train_step_images_per_second(model, config, options, device), device)


def _legacy_config(config: TrainConfig, choice: PrecisionChoice, device: torch.device) -> TrainConfig | None:
    """LEGACY, delete once every cache is rebuilt: ``config`` as caches keyed it before precision was resolved.

    Checkpoints written before the measured ``auto`` recorded ``precision="auto"``
    in their keys, and ``auto`` then meant :func:`~salve_utils.method.precision.legacy_auto_precision`
    (bf16 wherever supported). Such a checkpoint trained in ``choice.precision``, and
    may be reused, exactly when that old rule gives ``choice.precision`` on this
    device; otherwise ``None``.
    """
    if legacy_auto_precision(device) != choice.precision:
        return None
    return replace(config, precision="auto")


def train(
    model: SalveNet,
    train_set: ImageSet,
    val_set: ImageSet | None,
    config: TrainConfig,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    precision: PrecisionChoice | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place and return its history (one row per epoch).

    With ``checkpoint``, the full state (weights, optimiser, epoch, history) is
    written atomically after every epoch, and a run that finds a checkpoint of
    the same configuration resumes after its last completed epoch. Each epoch's
    shuffling and augmentation come from a generator seeded by
    ``(config.seed, epoch)``, so an interrupted and resumed run gives the same
    weights as an uninterrupted one.

    ``config.precision="auto"`` is resolved first by :func:`choose_training_precision`
    (a caller that already did so passes its ``precision`` choice); the checkpoint
    records the precision that ran, never ``"auto"``. The choice and how it was
    made are in ``history.attrs["precision"]``.
    """
    device = default_device(device)
    if train_set.classes != model.classes:
        raise ValueError("train_set.classes differ from the model's classes")
    if len(train_set) < config.batch_size:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train_set)} training images; lower it")
    choice = precision or choose_training_precision(model, config, device)
    run = replace(config, precision=choice.precision)
    key = _run_key(model, run)
    legacy = _legacy_config(config, choice, device)
    keys = {key} | ({_run_key(model, legacy)} if legacy else set())
    model.to(device)
    channels_last = _channels_last(model, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = _optimizer(model, config)
    steps_per_epoch = len(train_set) // config.batch_size
    total = steps_per_epoch * config.epochs
    history: list[dict[str, Any]] = []
    start_epoch = 0
    checkpoint = Path(checkpoint) if checkpoint else None
    blob = load_cached(checkpoint, torch_load) if checkpoint else None  # a damaged checkpoint is discarded: retrain
    if blob is not None:
        if blob.get("run_key") in keys and not blob.get("complete"):
            model.load_state_dict(blob["state_dict"])
            opt.load_state_dict(blob["optimizer"])
            history = list(blob["history"])
            start_epoch = len(history)
            print(f"resuming from {checkpoint} after epoch {start_epoch}")
        elif blob.get("run_key") in keys:
            model.load_state_dict(blob["state_dict"])
            model.to(memory_format=torch.contiguous_format).eval()  # as after a fresh run
            done = pd.DataFrame(blob["history"])
            done.attrs["precision"] = blob.get("precision") or PrecisionChoice(run.precision, "legacy rule").as_dict()
            return done
    images = train_set.images.to(device) if device.type == "cuda" else train_set.images
    labels = train_set.labels.to(device)
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, disable=not progress,
               desc=f"train {model.arch}", unit="step", dynamic_ncols=True)
    for epoch in track(range(start_epoch, config.epochs), "epochs", total=config.epochs, start=start_epoch):
        model.train()
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(train_set), generator=gen)
        t0 = time.perf_counter()
        loss_sum = correct = seen = 0.0
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = config.lr * _lr_factor(config, step, total)
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            x = random_resized_crop_flip(images[idx.to(images.device)], config.train_size, gen,
                                         scale=(config.crop_scale, 1.0))
            y = labels[idx.to(labels.device)]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss, logits = _train_step(model, opt, x, y, config, device, run.precision)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
            bar.update(1)
            bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{loss_sum / seen:.3f}",
                            acc=f"{correct / seen:.3f}")
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "lr": opt.param_groups[0]["lr"], "seconds": seconds, "img_per_s": seen / seconds}
        if val_set is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
            t1 = time.perf_counter()
            ev = evaluate(model, val_set, size=config.eval_size, device=device, progress=False,
                          precision=run.precision)
            row.update(val_loss=ev.loss, val_acc=ev.accuracy, val_seconds=time.perf_counter() - t1)
            bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{row['train_loss']:.3f}",
                            val_acc=f"{ev.accuracy:.3f}")
        history.append(row)
        if checkpoint:
            _save_training_state(checkpoint, model, opt, history, run, key, choice,
                                 complete=epoch + 1 == config.epochs)
    bar.close()
    model.to(memory_format=torch.contiguous_format).eval()
    done = pd.DataFrame(history)
    done.attrs["precision"] = choice.as_dict()
    return done


def _run_key(model: SalveNet, config: TrainConfig) -> str:
    return hash_json({**_model_record(model), "config": asdict(config)})


def _save_training_state(path: Path, model: SalveNet, opt: torch.optim.Optimizer, history: list[dict],
                         config: TrainConfig, key: str, choice: PrecisionChoice, complete: bool) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = {**_model_record(model), "state_dict": state, "history": history, "config": asdict(config),
            "run_key": key, "precision": choice.as_dict(), "complete": complete}
    if not complete:
        blob["optimizer"] = opt.state_dict()
    save_artifact(blob, path)


def check_setup(arch: str, config: TrainConfig, weights: str | None = None, **arch_kwargs: Any) -> None:
    """Fail fast, before any data is decoded, on an architecture or option that :func:`train_or_load` would reject."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be None or 'imagenet', got {weights!r}")
    unknown = set(arch_kwargs) - set(ARCHITECTURES[arch])
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {arch}; valid: {sorted(ARCHITECTURES[arch])}")
    if arch != "resnet18" and config.train_size != config.eval_size:
        raise ValueError(f"{arch} has a fixed input size: set train_size == eval_size "
                         f"(got {config.train_size} and {config.eval_size})")


def checkpoint_path(model: SalveNet, train_set: ImageSet, val_set: ImageSet | None, config: TrainConfig,
                    weights: str | None = None) -> Path:
    """Where :func:`train_or_load` caches a run: ``<cache>/checkpoints/<arch>-<data>-<key>.pt``.

    The key hashes the model's record (architecture, options, classes, size), the
    initial ``weights``, every field of ``config`` and the content of both splits.
    """
    key = hash_json(versioned("checkpoints", {"model": _model_record(model), "weights": weights, "config": asdict(config),
                                              "train": train_set.fingerprint(),
                                              "val": val_set.fingerprint() if val_set else None}))
    return cache_dir() / "checkpoints" / f"{model.arch}-{train_set.name}-{key}.pt"


def train_or_load(
    arch: str,
    train_set: ImageSet,
    val_set: ImageSet | None,
    config: TrainConfig,
    weights: str | None = None,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    **arch_kwargs: Any,
) -> tuple[SalveNet, pd.DataFrame, Path]:
    """Train a backbone, or load it from the cache when the same run was done before.

    The cache key covers the architecture, initial weights, the data (content
    hash of both splits) and every field of ``config`` with the precision that
    runs (``"auto"`` resolved, see :func:`choose_training_precision`); an
    interrupted run resumes. Returns ``(model, history, checkpoint_path)``.

    LEGACY (delete once every cache is rebuilt): when no checkpoint exists under
    this key, one keyed the old way, with ``precision="auto"``, is used instead if
    the old rule gives the same precision on this device (see :func:`_legacy_config`).
    """
    check_setup(arch, config, weights, **arch_kwargs)
    device = default_device(device)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global RNG
        torch.manual_seed(config.seed)
        model = build_model(arch, train_set.classes, weights, config.eval_size, **arch_kwargs)
    choice = choose_training_precision(model, config, device)
    path = checkpoint_path(model, train_set, val_set, replace(config, precision=choice.precision), weights)
    legacy = _legacy_config(config, choice, device)
    if not path.is_file() and legacy and checkpoint_path(model, train_set, val_set, legacy, weights).is_file():
        path = checkpoint_path(model, train_set, val_set, legacy, weights)
    history = train(model, train_set, val_set, config, checkpoint=path, device=device, progress=progress,
                    precision=choice)
    return model.to(device).eval(), history, path


def training_seconds(history: pd.DataFrame) -> float:
    """Wall time of a training run from its history: training plus validation seconds."""
    val = history["val_seconds"].fillna(0).sum() if "val_seconds" in history else 0.0
    return float(history["seconds"].sum() + val)


# =========================================================================== evaluation


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy of each class: ``acc[..., k] = mean_{n: y_n = k} [argmax_i logits[..., n, i] == k]``.

    ``logits`` is ``(N, K)`` or batched ``(..., N, K)`` (e.g. one slice per α);
    returns ``(acc (..., K), counts (K,))`` with NaN for classes without samples.

    >>> acc, n = per_class_accuracy(torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 0, 1]))
    >>> acc.tolist(), n.tolist()
    ([0.5, 0.0], [2, 1])
    """
    num_classes = logits.shape[-1]
    labels = labels.to(logits.device)
    onehot = F.one_hot(labels, num_classes).to(torch.float64)
    counts = onehot.sum(0)
    correct = (logits.argmax(-1) == labels).to(torch.float64)
    return correct @ onehot / counts, counts.long()


@dataclass
class Evaluation:
    """Predictions of a model on a labelled set."""

    logits: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    loss: float = field(init=False)
    accuracy: float = field(init=False)

    def __post_init__(self) -> None:
        self.loss = float(F.cross_entropy(self.logits, self.labels))
        self.accuracy = float((self.logits.argmax(1) == self.labels).float().mean())

    @property
    def per_class(self) -> pd.DataFrame:
        """Accuracy and count of every class."""
        acc, counts = per_class_accuracy(self.logits, self.labels)
        return pd.DataFrame({"class": self.classes, "accuracy": acc.cpu().numpy(), "n": counts.cpu().numpy()})

    def summary(self) -> pd.DataFrame:
        """:attr:`per_class` plus a final row ``class="all"`` with the overall accuracy."""
        overall = pd.DataFrame([{"class": "all", "accuracy": self.accuracy, "n": len(self.labels)}])
        return pd.concat([self.per_class, overall], ignore_index=True)

    @property
    def confusion(self) -> pd.DataFrame:
        """Confusion matrix, rows = true class, columns = predicted class (counts)."""
        k = len(self.classes)
        m = torch.zeros(k, k, dtype=torch.long)
        m.index_put_((self.labels, self.logits.argmax(1)), torch.ones_like(self.labels), accumulate=True)
        return pd.DataFrame(m.numpy(), index=self.classes, columns=self.classes)


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageSet, size: int | None = None, batch_size: int = 256,
                   device: str | torch.device | None = "auto", progress: bool = False,
                   precision: str = "fp32", fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Run ``fn`` (default: the model) over ``data`` at ``size`` px; return the stacked outputs on the CPU.

    ``precision`` is ``"fp32"`` (the default, and what every chapter reports) or
    ``"bf16"`` (faster on some machines, but the outputs differ in their low digits;
    ``benchmarks/bench_train_step.py`` measures both).
    """
    device = default_device(device)
    size = size or getattr(model, "image_size", data.size)
    model.to(device).eval()
    fn = fn or model
    outs = []
    for x, _ in tqdm(batches(data, batch_size), total=math.ceil(len(data) / batch_size), disable=not progress,
                     desc="predict"):
        x = center_resize(x.to(device), size)
        with autocast(device, precision):
            outs.append(fn(x).float().cpu())
    return torch.cat(outs)


def evaluate(model: SalveNet, data: ImageSet, size: int | None = None, batch_size: int = 256,
             device: str | torch.device | None = "auto", progress: bool = False,
             precision: str = "fp32") -> Evaluation:
    """Overall and per-class accuracy of ``model`` on ``data`` (evaluation transform at ``size`` px)."""
    logits = predict_logits(model, data, size, batch_size, device, progress, precision)
    return Evaluation(logits, data.labels.clone(), list(data.classes))

