r"""Stage 4a — Verify: Grad-FAM heatmaps, i.e. Grad-CAM with an SAE latent as the target.

Grad-CAM (Selvaraju et al., 2017) explains a scalar score ``s(x)`` through the
feature maps :math:`A^k` (channels :math:`k`, spatial positions :math:`(i, j)`) of a layer:

.. math::

    w_k &= \frac{1}{h w} \sum_{ij} \frac{\partial s}{\partial A^k_{ij}} \qquad \text{(spatially averaged gradient)} \\
    L &= \operatorname{ReLU}\Bigl(\sum_k w_k A^k\Bigr) \qquad \text{($h \times w$ map)} \\
    \mathrm{map} &= \frac{\operatorname{upsample}(L)}{\max(\operatorname{upsample}(L))}
    \qquad \text{(bilinear to the image size, in $[0, 1]$)}

Grad-FAM (the SALVE paper) takes as the score an SAE latent of the head input,
``s(x) = sign · z_l(x)`` with ``z = sae.encode(a(x))``. The score is any callable
of ``a(x)`` (pytorch-grad-cam's "targets as callables"): :func:`latent_target`
gives Grad-FAM, :func:`class_target` gives ordinary Grad-CAM of a class logit.

Where the maps come from (see ``METHOD.md``): ResNet, the output of ``layer4``;
ViT, the patch tokens *entering* the last encoder block, reshaped to the patch
grid — the [CLS] token after the last block does not depend on that block's patch
outputs, so their gradients would be zero.

>>> heat = grad_fam(model, sae, images, feature=7)            # doctest: +SKIP
>>> plt.imshow(overlay(images[0], heat[0]))                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .validation import InputTypeError, check_choice, check_images, check_index

__all__ = ["class_target", "grad_cam", "grad_fam", "latent_target", "overlay"]

Target = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- validation


def _check_sign(sign: float | torch.Tensor) -> float:
    value = float(sign)
    if value not in (1.0, -1.0):
        raise ValueError(f"sign must be +1 or -1, got {value}")
    return value


# --------------------------------------------------------------------------- targets


def class_target(model: nn.Module, k: int) -> Target:
    """Score = the logit of class ``k``: ``s(a) = W_k · a + b_k``.

    Parameters
    ----------
    model : a :class:`~salve_utils.method.models.SalveNet` (its ``head`` is used) or the
        head ``nn.Linear`` itself
    k : class index

    Examples
    --------
    >>> heat = grad_cam(model, images, class_target(model, 3))  # doctest: +SKIP
    """
    head = getattr(model, "head", model)
    k = check_index(k, "k", head.out_features)
    return lambda a: head(a)[:, k]


def latent_target(sae: object, feature: int, sign: float = 1.0) -> Target:
    """Score = one SAE latent, signed: ``s(a) = sign · z_l(a)``, ``z = sae.encode(a)``.

    Parameters
    ----------
    sae : anything with ``encode(a) -> z`` of shape ``(N, d)``
    feature : latent index ``l`` (checked against ``d`` when the target runs)
    sign : +1, or -1 to explain a latent that is negative for the class of
        interest (``sign(μ_k,l)``)

    Examples
    --------
    >>> heat = grad_cam(model, images, latent_target(sae, 7, sign=-1))  # doctest: +SKIP
    """
    feature = check_index(feature, "feature")
    sign = _check_sign(sign)

    def target(a: torch.Tensor) -> torch.Tensor:
        z = sae.encode(a)
        check_index(feature, "feature", z.shape[1])
        return sign * z[:, feature]

    return target


# --------------------------------------------------------------------------- heatmaps


def _capture(model: nn.Module, images: torch.Tensor, target: Target, layer: nn.Module,
             hook: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps of ``layer`` (its output or its first input) and the gradient of ``Σ_n s(x_n)``."""
    captured: list[torch.Tensor] = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().requires_grad_(True)  # a leaf: gradients reach it even if the model is frozen
        captured.append(t)
        return t

    if hook == "output":
        handle = layer.register_forward_hook(lambda m, args, out: keep(out))
    else:
        handle = layer.register_forward_pre_hook(lambda m, args: (keep(args[0]), *args[1:]))
    try:
        with torch.enable_grad():
            score = target(model.features(images))
            if not captured:
                raise ValueError("layer was not called by model.features; pass a layer inside the backbone")
            if score.shape != (images.shape[0],):
                raise ValueError(f"target must return one score per image, shape ({images.shape[0]},), "
                                 f"got {tuple(score.shape)}")
            (grad,) = torch.autograd.grad(score.sum(), captured[-1], allow_unused=True)
    finally:
        handle.remove()
    acts = captured[-1].detach()
    return acts, torch.zeros_like(acts) if grad is None else grad


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Divide each map by its maximum; a map with nothing positive stays zero."""
    peak = maps.amax(dim=(-2, -1), keepdim=True)
    return torch.where(peak > 0, maps / torch.where(peak > 0, peak, 1.0), 0.0)


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    target: Target,
    layer: nn.Module | None = None,
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    hook: str | None = None,
) -> torch.Tensor:
    r"""Grad-CAM heatmaps of any score of the head input ``a(x)``.

    Implements, for captured feature maps ``A`` (``(N, C, h, w)``) and score ``s``:

    .. math::

        w_k &= \operatorname{mean}_{ij} \frac{\partial s}{\partial A^k_{ij}}, \qquad
        L = \operatorname{ReLU}\Bigl(\sum_k w_k A^k\Bigr), \\
        \mathrm{map} &= \frac{\operatorname{upsample}_\text{bilinear}(L, (H, W))}{\max(\ldots)}
        \qquad \text{(all-zero maps stay zero)}

    Parameters
    ----------
    model : a :class:`~salve_utils.method.models.SalveNet` (anything with ``features(x)``); it is put
        in eval mode and its parameters receive no gradients
    images : float ``(N, 3, H, W)`` in ``[0, 1]``, at least one image, finite; a
        ``UserWarning`` when far outside ``[0, 1]`` (0..255 pixels, or normalised twice)
    target : callable ``a (N, M) -> (N,)`` scores, e.g. :func:`class_target`, :func:`latent_target`
    layer : module whose maps are weighed (default ``model.gradcam_layer``)
    reshape_transform : captured tensor -> ``(N, C, h, w)`` maps (default ``model.reshape_transform``)
    hook : ``"output"`` (capture the layer's output) or ``"input"`` (its first input);
        default ``model.gradcam_hook``

    Returns
    -------
    heatmaps : ``(N, H, W)`` float CPU tensor in ``[0, 1]``

    Raises
    ------
    InputTypeError
        ``images`` not a float tensor (convert uint8 with ``/ 255``), ``target`` not callable
    ValueError
        ``images`` of the wrong shape, empty or not finite, an unknown ``hook``

    Examples
    --------
    >>> heat = grad_cam(model, images, class_target(model, 0))   # doctest: +SKIP
    >>> heat.shape == images.shape[:1] + images.shape[2:]         # doctest: +SKIP
    True
    """
    images = check_images(images)
    if not callable(target):
        raise InputTypeError(f"target must be a callable a -> (N,) scores, got {type(target).__name__}")
    hook = check_choice(hook or getattr(model, "gradcam_hook", "output"), "hook", ("output", "input"))
    layer = layer if layer is not None else model.gradcam_layer
    reshape = reshape_transform or getattr(model, "reshape_transform", lambda t: t)
    model.eval()
    images = images.to(next(model.parameters()).device)
    acts, grads = _capture(model, images, target, layer, hook)
    acts, grads = reshape(acts), reshape(grads)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return _normalise(cam[:, 0]).cpu()


def grad_fam(
    model: nn.Module,
    sae: object,
    images: torch.Tensor,
    feature: int,
    layer: nn.Module | None = None,
    sign: float = 1.0,
) -> torch.Tensor:
    """Grad-FAM heatmaps: Grad-CAM with the SAE latent ``sign · z_l`` as the score.

    Implements ``map = norm(upsample(ReLU(Σ_k w_k A^k)))`` with
    ``w_k = mean_ij ∂(sign · z_l)/∂A^k_ij`` and ``z = sae.encode(a(x))``.
    For a global-average-pooled ResNet and a linear encoder ``z = E a + b_e`` this
    is exactly ``ReLU(Σ_k E_lk A^k)``, upsampled and normalised.

    Parameters
    ----------
    model : a :class:`~salve_utils.method.models.SalveNet`
    sae : anything with ``encode(a) -> z`` of shape ``(N, d)``
    images : float ``(N, 3, H, W)`` in ``[0, 1]`` (validated as in :func:`grad_cam`)
    feature : latent index ``l`` in ``[0, d)``, an int
    layer : feature-map layer (default ``model.gradcam_layer``)
    sign : +1, or ``sign(μ_k,l)`` = -1 when the feature is negative for the class

    Returns
    -------
    heatmaps : ``(N, H, W)`` float CPU tensor in ``[0, 1]``

    Raises
    ------
    InputTypeError, ValueError
        as :func:`grad_cam`, and for ``feature`` not an int in ``[0, d)`` or ``sign`` not ±1

    Examples
    --------
    >>> sign = float(torch.sign(mu[k, l]))                          # doctest: +SKIP
    >>> heat = grad_fam(model, sae, images, feature=l, sign=sign)   # doctest: +SKIP
    """
    return grad_cam(model, images, latent_target(sae, feature, sign), layer=layer)


# --------------------------------------------------------------------------- plotting


def overlay(image: torch.Tensor | np.ndarray, heatmap: torch.Tensor | np.ndarray, alpha: float = 0.5,
            cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap over an image: ``(1 - alpha) · image + alpha · cmap(heatmap)``.

    Parameters
    ----------
    image : ``(3, H, W)`` in ``[0, 1]``
    heatmap : ``(H, W)`` in ``[0, 1]``
    alpha : weight of the coloured heatmap, in ``[0, 1]``
    cmap : a matplotlib colormap name

    Returns
    -------
    rgb : ``(H, W, 3)`` float numpy array in ``[0, 1]``, ready for ``plt.imshow``

    Examples
    --------
    >>> plt.imshow(overlay(images[0], grad_fam(model, sae, images[:1], 7)[0]))  # doctest: +SKIP
    """
    import matplotlib  # here, not above: the method imports without a plotting library

    img = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    heat = np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap, dtype=np.float32)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"image must have shape (3, H, W), got {img.shape}")
    if heat.shape != img.shape[1:]:
        raise ValueError(f"heatmap must have shape {img.shape[1:]} (the image's H, W), got {heat.shape}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if cmap not in matplotlib.colormaps:
        raise ValueError(f"cmap must be a matplotlib colormap name, got {cmap!r}")
    colours = matplotlib.colormaps[cmap](np.clip(heat, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img.transpose(1, 2, 0) + alpha * colours, 0, 1)
