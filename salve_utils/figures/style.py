"""The shared floor of every figure: the report's style, one colour per class, image grids.

Every function of this package draws on a fresh figure (or a given ``ax``) and
returns the figure, so notebooks stay one call per figure. Colours come from
:func:`class_palette`, so "church" has the same colour in every chapter.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

__all__ = ["set_style", "class_palette", "image_grid", "sample_classes"]


def set_style() -> None:
    """The report's look: seaborn's whitegrid, readable font sizes, tight layouts."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.autolayout": False,
                         "axes.titleweight": "bold", "legend.frameon": False})


def class_palette(classes: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per class name (tab10 up to ten classes, husl beyond)."""
    colours = sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))
    return {c: tuple(colours[i]) for i, c in enumerate(classes)}


def _to_hwc(image: torch.Tensor) -> np.ndarray:
    x = image.detach().cpu()
    if x.dtype == torch.uint8:
        x = x.float() / 255
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def image_grid(images: torch.Tensor | Sequence[torch.Tensor | np.ndarray], titles: Sequence[str] | None = None,
               ncols: int = 8, size: float = 1.6, title_colours: Sequence | None = None, suptitle: str = ""):
    """Images (``(3, H, W)`` tensors in [0, 1] or uint8, or ``(H, W, 3)`` arrays) in a grid with titles."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(titles)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i]
        ax.imshow(img if isinstance(img, np.ndarray) else _to_hwc(img))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8, color=title_colours[i] if title_colours is not None else "black")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def sample_classes(classes: Sequence[str], n: int, keep: Sequence[str] = (), seed: int = 0) -> list[str]:
    """At most ``n`` of ``classes`` for per-class figures (all of them when there are few), always with ``keep``.

    The rest are drawn at random with ``seed``; the result is in label order.

    >>> sample_classes(["a", "b", "c"], 5)
    ['a', 'b', 'c']
    >>> len(sample_classes([str(i) for i in range(100)], 12, keep=["7"]))
    12
    """
    classes = list(classes)
    if len(classes) <= n:
        return classes
    chosen = list(dict.fromkeys(c for c in keep if c in classes))[:n]
    rest = [c for c in classes if c not in chosen]
    rng = np.random.default_rng(seed)
    chosen += [rest[i] for i in sorted(rng.choice(len(rest), size=n - len(chosen), replace=False))]
    return [c for c in classes if c in set(chosen)]
