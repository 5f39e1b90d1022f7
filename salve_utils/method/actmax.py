"""Stage 4b — Verify: activation-maximisation images of an SAE latent (or of any score of ``a(x)``).

We look for an image that drives one score high (Olah et al., 2017, "Feature
Visualization"; the recipe of lucid/lucent)::

    x* = argmax_x  E_T[ sign · s(a(T(x))) ]  -  λ2 · mean (x - 1/2)²  -  λtv · TV(x)

* ``s`` is an SAE latent ``z_l`` (:func:`activation_maximization`) or any callable
  of the head input, e.g. a class logit (:func:`maximize` with
  :func:`~salve_utils.method.gradfam.class_target`);
* ``T`` is a random jitter (shift of up to ``jitter`` px), scale and rotation,
  drawn anew every step: only patterns that survive them are kept (transformation
  robustness), which removes most high-frequency adversarial noise;
* ``x`` is parameterised either directly by pixels or — the default — by a
  Fourier spectrum scaled by ``1/f`` (so that every frequency band starts with
  equal energy, as in natural images, and gradient steps are not dominated by
  high frequencies), with colours decorrelated by the square root of the ImageNet
  colour covariance; a sigmoid maps the result into ``[0, 1]``.

>>> images, history = activation_maximization(model, sae, feature=7, n=4)   # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .gradfam import latent_target
from ..common.runtime import default_device
from .validation import InputTypeError, check_choice, check_images, check_int

__all__ = ["activation_maximization", "feature_gallery", "gallery_scores", "maximize"]

Objective = Callable[[torch.Tensor], torch.Tensor]

#: Square root of the ImageNet RGB colour covariance (rows: R, G, B; columns: decorrelated
#: components), the standard matrix of feature-visualisation work; scaled below so that its
#: largest column has unit norm.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                            [0.27, 0.00, -0.05],
                            [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
#: Fourier images are scaled down by this factor so that the initial image is close to grey.
_FFT_GAIN = 0.25


# --------------------------------------------------------------------------- the image


def _spectrum_scale(h: int, w: int) -> torch.Tensor:
    """``1 / max(|f|, 1 / max(h, w))`` on the ``rfft2`` grid of an ``h x w`` image."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return 1.0 / torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / max(h, w))


def _image_parameterisation(param: str, decorrelate: bool, n: int, size: int, generator: torch.Generator,
                            device: torch.device) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """The trainable tensor and the function that turns it into images ``(n, 3, size, size)`` in ``[0, 1]``.

    ``fft``: ``x = σ(C · irfft2(S ⊙ P) · gain)``; ``pixel``: ``x = σ(C · P)``, where
    ``S`` is the ``1/f`` scale, ``C`` the colour matrix (identity without decorrelation)
    and ``σ`` the sigmoid.
    """
    colour = (_COLOR if decorrelate else torch.eye(3)).to(device)
    if param == "fft":
        scale = _spectrum_scale(size, size).to(device)
        shape = (n, 3, size, size // 2 + 1, 2)
    else:
        shape = (n, 3, size, size)
    init = 0.01 * torch.randn(shape, generator=generator)
    params = init.to(device).requires_grad_(True)

    def render() -> torch.Tensor:
        if param == "fft":
            spectrum = torch.view_as_complex(params) * scale
            x = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho") * _FFT_GAIN
        else:
            x = params
        return torch.sigmoid(torch.einsum("ij,njhw->nihw", colour, x))

    return params, render


# --------------------------------------------------------------------------- transforms and penalties


def _random_transform(x: torch.Tensor, generator: torch.Generator, jitter: int, scales: Sequence[float],
                      rotate: float) -> torch.Tensor:
    """Each image shifted by up to ``jitter`` px, zoomed by one of ``scales``, rotated by up to ``rotate`` degrees.

    One bilinear ``grid_sample`` per batch; areas that come from outside the image are grey (0.5).
    Random numbers come from the CPU ``generator``, so results do not depend on the device.
    """
    n, _, h, w = x.shape
    zoom = torch.tensor(scales, dtype=torch.float32)[torch.randint(len(scales), (n,), generator=generator)]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(rotate)
    shift = torch.randint(-jitter, jitter + 1, (n, 2), generator=generator).float()
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, 2 * shift[:, 0] / w], 1),
                         torch.stack([sin, cos, 2 * shift[:, 1] / h], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


def _l2(x: torch.Tensor) -> torch.Tensor:
    """Per image ``mean (x - 1/2)²``."""
    return (x - 0.5).pow(2).mean(dim=(1, 2, 3))


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per image ``mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]|``."""
    dy = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2, 3))
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    return dx + dy


# --------------------------------------------------------------------------- validation


def _check_arguments(model: nn.Module, n: int, size: int, steps: int, lr: float, seed: int, param: str,
                     jitter: int, scales: Sequence[float], rotate: float, l2: float, tv: float) -> None:
    ints = {"n": (n, 1), "size": (size, 8), "steps": (steps, 0), "seed": (seed, 0), "jitter": (jitter, 0)}
    for name, (value, low) in ints.items():
        check_int(value, name, low)
    if getattr(model, "arch", "resnet18") != "resnet18" and size != model.image_size:
        raise ValueError(f"size must be {model.image_size} for {model.arch} (a ViT takes one input size), got {size}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    check_choice(param, "param", ("fft", "pixel"))
    if len(scales) == 0 or any(not s > 0 for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive zoom factors, got {scales!r}")
    for name, value in {"rotate": rotate, "l2": l2, "tv": tv}.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


# --------------------------------------------------------------------------- public API


def maximize(
    model: nn.Module,
    objective: Objective,
    n: int = 1,
    size: int | None = None,
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    param: str = "fft",
    decorrelate: bool = True,
    jitter: int = 8,
    scales: Sequence[float] = (0.9, 0.95, 1.0, 1.05, 1.1),
    rotate: float = 10.0,
    l2: float = 0.05,
    tv: float = 0.5,
    device: str | torch.device | None = "auto",
    progress: bool = True,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Images that maximise any score of the head input ``a(x)``.

    Maximises, with Adam over the image parameters ``P`` (``x = x(P)``)::

        Σ_n [ s(a(T_t(x_n))) - l2 · mean (x_n - 1/2)² - tv · TV(x_n) ]

    where ``T_t`` is a fresh random jitter/scale/rotation at every step ``t``.

    Parameters
    ----------
    model : a :class:`~salve_utils.method.models.SalveNet` (anything with ``features(x)``); moved to
        ``device`` and put in eval mode; its parameters receive no gradients
    objective : callable ``a (N, M) -> (N,)`` scores to maximise
    n : number of images, optimised independently (different starting noise)
    size : image side in px (default ``model.image_size``; ViTs need exactly that)
    steps : optimisation steps (0 returns the starting images)
    lr : Adam learning rate
    seed : seeds the starting noise and every transform (same seed, same images on CPU)
    param : ``"fft"`` (1/f-scaled Fourier spectrum) or ``"pixel"``
    decorrelate : mix colours through the square-root ImageNet colour covariance
    jitter : largest shift, px
    scales : zoom factors, one drawn per image and step
    rotate : largest rotation, degrees
    l2, tv : weights of the per-image penalties ``mean (x - 1/2)²`` and total variation
        ``mean |∂x/∂i| + mean |∂x/∂j|``, in units of the score: mild for scores that
        move by 1-10 (trained logits and latents); raise ``tv`` for smoother images
    device : ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``
    progress : show a tqdm bar

    Returns
    -------
    images : ``(n, 3, size, size)`` float CPU tensor in ``[0, 1]``
    history : DataFrame with columns ``step`` and ``objective`` (mean score of the
        transformed images at that step, before its update)

    Raises
    ------
    InputTypeError
        ``n``, ``size``, ``steps``, ``seed`` or ``jitter`` not an int; ``objective`` not callable
    ValueError
        any of them out of range, ``lr`` <= 0, an unknown ``param``, empty or non-positive
        ``scales``, negative ``rotate``, ``l2`` or ``tv``, a ViT ``size`` other than its own

    Examples
    --------
    >>> from salve_utils.method.gradfam import class_target
    >>> images, history = maximize(model, class_target(model, 3), n=2, steps=128)  # doctest: +SKIP
    >>> history.plot(x="step", y="objective")                                       # doctest: +SKIP
    """
    size = getattr(model, "image_size", None) if size is None else size
    _check_arguments(model, n, size, steps, lr, seed, param, jitter, scales, rotate, l2, tv)
    if not callable(objective):
        raise InputTypeError(f"objective must be a callable a -> (N,) scores, got {type(objective).__name__}")
    device = default_device(device)
    model.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    params, render = _image_parameterisation(param, decorrelate, n, size, generator, device)
    optimizer = torch.optim.Adam([params], lr=lr)
    history = []
    bar = tqdm(range(steps), disable=not progress, desc="actmax", unit="step", dynamic_ncols=True)
    for step in bar:
        with torch.enable_grad():
            x = render()
            score = objective(model.features(_random_transform(x, generator, jitter, scales, rotate)))
            if score.shape != (n,):
                raise ValueError(f"objective must return one score per image, shape ({n},), got {tuple(score.shape)}")
            loss = -(score - l2 * _l2(x) - tv * _total_variation(x)).sum()
            (params.grad,) = torch.autograd.grad(loss, [params])
        optimizer.step()
        history.append({"step": step, "objective": float(score.detach().mean())})
        bar.set_postfix(objective=f"{history[-1]['objective']:.3g}", refresh=False)
    with torch.no_grad():
        images = render().cpu()
    return images, pd.DataFrame(history, columns=["step", "objective"])


def activation_maximization(model: nn.Module, sae: object, feature: int, sign: float = 1.0,
                            **options: Any) -> tuple[torch.Tensor, pd.DataFrame]:
    """Images that maximise one SAE latent, ``sign · z_l`` with ``z = sae.encode(a(x))``.

    :func:`maximize` with the score ``s(a) = sign · sae.encode(a)[:, l]``, i.e.::

        x* = argmax_x  E_T[ sign · z_l(a(T(x))) ] - l2 · mean (x - 1/2)² - tv · TV(x)

    Parameters
    ----------
    model : a :class:`~salve_utils.method.models.SalveNet`
    sae : anything with ``encode(a) -> z`` of shape ``(N, d)``
    feature : latent index ``l`` in ``[0, d)`` (the upper bound is checked at the first step)
    sign : +1, or -1 to visualise what drives a latent *negative* (``sign(μ_k,l)``)
    **options : passed to :func:`maximize` with its defaults: ``n``, ``size``, ``steps``, ``lr``, ``seed``,
        ``param``, ``decorrelate``, ``jitter``, ``scales``, ``rotate``, ``l2``, ``tv``, ``device``, ``progress``

    Returns
    -------
    images : ``(n, 3, size, size)`` float CPU tensor in ``[0, 1]``
    history : DataFrame with columns ``step`` and ``objective`` (signed latent, mean over images)

    Examples
    --------
    >>> images, history = activation_maximization(model, sae, feature=7, n=4, seed=0)  # doctest: +SKIP
    >>> grid = torchvision.utils.make_grid(images, nrow=4)                               # doctest: +SKIP
    """
    return maximize(model, latent_target(sae, feature, sign), **options)


def feature_gallery(
    model: nn.Module,
    sae: object,
    features: Sequence[int],
    signs: Sequence[float] | None = None,
    **kwargs,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """One activation-maximisation image per feature, optimised together as one batch.

    Image ``i`` maximises ``signs[i] · z_{features[i]}``; the batch shares the
    random transforms' generator but each image has its own objective, so the
    result equals running :func:`activation_maximization` feature by feature
    in distribution, at the cost of one batched run. ``kwargs`` go to
    :func:`maximize` (``steps``, ``lr``, ``seed``, ``size``, ...).

    >>> images, history = feature_gallery(model, sae, [3, 17, 42], signs=[1, -1, 1])  # doctest: +SKIP
    """
    feats = torch.as_tensor(list(features), dtype=torch.long)
    if feats.ndim != 1 or len(feats) == 0 or (feats < 0).any():
        raise ValueError(f"features must be a non-empty list of non-negative latent indices, got {features!r}")
    sgn = torch.ones(len(feats)) if signs is None else torch.as_tensor(list(signs), dtype=torch.float32)
    if sgn.shape != feats.shape or not torch.all(sgn.abs() == 1):
        raise ValueError("signs must hold one +1 or -1 per feature")

    def objective(a: torch.Tensor) -> torch.Tensor:
        z = sae.encode(a)
        return z[torch.arange(len(feats), device=z.device), feats.to(z.device)] * sgn.to(z.device)

    return maximize(model, objective, n=len(feats), **kwargs)


@torch.no_grad()
def gallery_scores(model: nn.Module, sae: object, images: torch.Tensor, features: Sequence[int],
                   signs: Sequence[float] | None = None) -> pd.DataFrame:
    """Did the optimisation work? Each feature's signed latent on its own image and on a plain grey image.

    For image ``x_i`` of a gallery (:func:`feature_gallery`) and its feature ``l_i``, without
    the random transforms of the optimisation::

        score_i = sign_i · z_{l_i}(a(x_i)),    grey_i = sign_i · z_{l_i}(a(g)),    g = 1/2 everywhere

    ``g`` is the image every optimisation starts close to (the mean of the parameterisation).
    An image excites its feature where ``score_i > grey_i``; where it does not, the image says
    nothing about the feature. ``model`` and ``sae`` are evaluated on the devices they are on.

    Parameters
    ----------
    model : a :class:`~salve_utils.method.models.SalveNet` (anything with ``features(x)`` and parameters)
    sae : anything with ``encode(a) -> z`` of shape ``(N, d)`` and parameters
    images : ``(n, 3, H, W)`` float images in ``[0, 1]``, image ``i`` optimised for ``features[i]``;
        non-empty and finite, a ``UserWarning`` when far outside ``[0, 1]``
    features : ``n`` latent indices
    signs : ``n`` values +1 / -1 (default +1): the sign each image was optimised for

    Returns
    -------
    DataFrame with one row per image: ``feature``, ``sign``, ``score``, ``grey``, ``above_grey``.

    Examples
    --------
    >>> scores = gallery_scores(model, sae, images, [3, 17], signs=[1, -1])  # doctest: +SKIP
    >>> int(scores["above_grey"].sum())                                       # doctest: +SKIP
    2
    """
    images = check_images(images)
    feats = torch.as_tensor(list(features), dtype=torch.long)
    if feats.shape != (len(images),) or (feats < 0).any():
        raise ValueError(f"features must hold one non-negative latent index per image ({len(images)}), "
                         f"got {features!r}")
    sgn = torch.ones(len(feats)) if signs is None else torch.tensor([float(s) for s in signs])
    if sgn.shape != feats.shape or not torch.all(sgn.abs() == 1):
        raise ValueError(f"signs must hold one +1 or -1 per image, got {signs!r}")
    device, sae_device = next(model.parameters()).device, next(sae.parameters()).device
    z_image = sae.encode(model.features(images.to(device)).to(sae_device)).cpu()
    z_grey = sae.encode(model.features(torch.full_like(images[:1], 0.5).to(device)).to(sae_device)).cpu()[0]
    if int(feats.max()) >= z_image.shape[1]:
        raise ValueError(f"features must lie in [0, {z_image.shape[1]}), got {features!r}")
    score = (z_image[torch.arange(len(feats)), feats] * sgn).numpy()
    grey = (z_grey[feats] * sgn).numpy()
    return pd.DataFrame({"feature": feats.numpy(), "sign": sgn.numpy(), "score": score, "grey": grey,
                         "above_grey": score > grey})
