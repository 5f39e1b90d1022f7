"""From latents to features: class means, dominant and shared features.

Notation: ``Z`` (N, d) the SAE latents of N samples, ``μ_k`` the mean latent
vector of class k, ``μ_k,l`` its l-th entry. The paper's linear SAE has signed
latents, so features are ranked by ``|μ_k,l|``.

>>> import torch
>>> z = torch.tensor([[3.0, 0.1], [1.0, 0.1], [0.0, -2.0]]); labels = torch.tensor([0, 0, 1])
>>> mu = class_mean_latents(z, labels)
>>> dominant_features(mu, top=1)["feature"].tolist()
[0, 1]
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch

from .validation import check_array, check_classes_present, check_int, check_labels, check_names, resolve_class

__all__ = [
    "class_mean_latents",
    "dominant_features",
    "dominant_sharing",
    "shared_features",
    "standardised_means",
]


def _check_mu(mu: torch.Tensor) -> torch.Tensor:
    """Class-mean latents: a finite, non-empty (K, d) tensor."""
    return check_array(mu, "mu", ("K", "d"), fix="a class mean of NaN comes from a class without samples or "
                       "from NaN latents: recompute mu with class_mean_latents on finite latents")


def class_mean_latents(z: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Class-mean latents ``μ_k = 1/|n: y_n = k| Σ_{n: y_n = k} Z_n``, shape (K, d).

    Parameters
    ----------
    z : (N, d) latents; non-empty and finite (integers are converted to float)
    labels : (N,) integer class labels in ``[0, num_classes)``
    num_classes : K (default ``max(labels) + 1``)

    Raises
    ------
    InputTypeError
        ``z`` not a tensor, ``labels`` not integer
    ValueError
        wrong shapes, no sample or no latent, NaN or infinity in ``z``, a label out
        of range, or a class without samples (its mean would be NaN)

    Examples
    --------
    >>> class_mean_latents(torch.tensor([[1.0], [3.0], [5.0]]), torch.tensor([0, 0, 1]))
    tensor([[2.],
            [5.]])
    """
    z = check_array(z, "z", ("N", "d"))
    labels = check_labels(labels, "labels", z.shape[0])
    num_classes = int(labels.max()) + 1 if num_classes is None else check_int(num_classes, "num_classes", 1)
    labels = check_labels(labels, "labels", z.shape[0], num_classes).to(z.device)
    counts = check_classes_present(labels, "labels", num_classes).double()
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64, device=z.device).index_add_(0, labels, z.double())
    return (sums / counts[:, None]).to(z.dtype)


def dominant_features(mu: torch.Tensor, top: int = 3, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``top`` features of every class ranked by ``|μ_k,l|``; rank 1 is ``l*_k = argmax_l |μ_k,l|``.

    Parameters
    ----------
    mu : (K, d) class-mean latents; non-empty and finite
    top : features per class, an int >= 1
    classes : optional class names for the ``class`` column (else the class index); all K of them

    Raises
    ------
    InputTypeError
        ``mu`` not a tensor, ``top`` not an int
    ValueError
        ``mu`` not 2-D, empty or with NaN / infinity, ``top`` < 1, ``classes`` of the wrong length

    Returns
    -------
    DataFrame with columns ``class, rank, feature, mu, abs_mu`` (``mu`` keeps its sign).

    Examples
    --------
    >>> dominant_features(torch.tensor([[0.5, -2.0, 1.0]]), top=2)[["rank", "feature", "mu"]].values.tolist()
    [[1.0, 1.0, -2.0], [2.0, 2.0, 1.0]]
    """
    mu = _check_mu(mu).detach().cpu()
    names = check_names(classes, mu.shape[0], "classes")
    top = check_int(top, "top", 1)
    values, index = mu.abs().topk(min(top, mu.shape[1]), dim=1)
    rows = []
    for k in range(mu.shape[0]):
        for rank, (l, v) in enumerate(zip(index[k].tolist(), values[k].tolist()), start=1):
            rows.append({"class": names[k] if names else k, "rank": rank, "feature": l,
                         "mu": float(mu[k, l]), "abs_mu": v})
    return pd.DataFrame(rows, columns=["class", "rank", "feature", "mu", "abs_mu"])


def shared_features(mu: torch.Tensor, classes: Sequence[int | str], class_names: Sequence[str] | None = None,
                    exclude_own_top: bool = True, top: int = 5, same_sign: bool = True) -> pd.DataFrame:
    r"""Features strong in *all* the given classes: the paper's "Tower" shared by church and gas pump.

    Each class's :math:`|\mu_k|` is normalised by its own largest entry, and a feature's
    score is the smallest of these over the given classes G:

    .. math::

        \mathrm{score}_l = \min_{k \in G} \frac{|\mu_{k,l}|}{\max_{l'} |\mu_{k,l'}|}

    With ``same_sign`` only features whose class means share one sign over G are
    candidates (a latent positive for one class and negative for the other is
    evidence *for* one and *against* the other, not a shared feature). With
    ``exclude_own_top``, each given class's own dominant feature :math:`l^*_k` is left
    out, so that the result is a feature the classes *share* rather than one
    class's identity. This ranking has no null: :func:`tower_search` adds one.

    Parameters
    ----------
    mu : (K, d) class-mean latents
    classes : the classes G, as indices or names (names need ``class_names``)
    class_names : names of all K classes
    exclude_own_top : drop each given class's top feature
    top : rows to return
    same_sign : keep only features with one sign of μ over G

    Returns
    -------
    DataFrame with ``rank, feature, score`` and one ``mu_<class>`` column (signed μ) per given class
    (fewer than ``top`` rows, possibly none, when fewer features qualify).

    Examples
    --------
    >>> mu = torch.tensor([[5.0, 0.0, 3.0, -4.0], [0.0, 4.0, 2.0, 3.5]])
    >>> shared_features(mu, ["church", "pump"], ["church", "pump"], top=1)["feature"].tolist()
    [2]
    >>> shared_features(mu, ["church", "pump"], ["church", "pump"], top=1, same_sign=False)["feature"].tolist()
    [3]
    """
    mu = _check_mu(mu).detach().cpu().double()
    names = check_names(class_names, mu.shape[0], "class_names")
    if len(classes) == 0:
        raise ValueError("classes must name at least one class")
    top = check_int(top, "top", 1)
    idx = [resolve_class(c, names, mu.shape[0]) for c in classes]
    strength = mu[idx].abs()
    score = (strength / strength.amax(1, keepdim=True)).amin(0)
    if same_sign:
        signs = torch.sign(mu[idx])
        score[~((signs == signs[0]).all(0) & (signs[0] != 0))] = -torch.inf
    if exclude_own_top:
        score[strength.argmax(1)] = -torch.inf
    order = [l for l in score.argsort(descending=True).tolist() if score[l] > -torch.inf][:top]
    rows = []
    for rank, l in enumerate(order, start=1):
        row = {"rank": rank, "feature": l, "score": float(score[l])}
        row.update({f"mu_{names[k] if names else k}": float(mu[k, l]) for k in idx})
        rows.append(row)
    columns = ["rank", "feature", "score"] + [f"mu_{names[k] if names else k}" for k in idx]
    return pd.DataFrame(rows, columns=columns)


def standardised_means(z: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    r"""Class means against the typical class, in units of each latent's spread, shape (K, d):

    .. math::

        \tilde\mu_{k,l} = \frac{\mu_{k,l} - \operatorname{median}_{k'} \mu_{k',l}}{\sigma_l}

    with :math:`\sigma_l` the standard deviation of latent ``l`` over all N samples. Centring
    on the *median class* removes what every class shares (the autoencoder's bias:
    a latent large for every image is not shared by two classes in particular)
    without the artefact of centring on the overall mean, which would make a latent
    of one class look like a shared *absence* for all the others. The scaling puts
    latents on one scale, so that the strength of latent ``l1`` in one class can be
    compared with that of ``l2`` in another (the null of :func:`tower_search` does
    exactly that). A latent that never varies gets 0.

    Examples
    --------
    >>> z = torch.tensor([[0.0, 5.0], [0.0, 5.0], [1.0, 5.0], [1.0, 5.0], [2.0, 5.0], [2.0, 5.0]])
    >>> standardised_means(z, torch.tensor([0, 0, 1, 1, 2, 2])).round(decimals=3).tolist()
    [[-1.118, 0.0], [0.0, 0.0], [1.118, 0.0]]
    """
    zd = z.detach().double()
    mu = class_mean_latents(zd, labels, num_classes)
    sd = zd.std(0)
    centre = mu.nanquantile(0.5, dim=0)
    return torch.where(sd > 0, (mu - centre) / sd.clamp_min(1e-300), torch.zeros_like(mu))


def dominant_sharing(mu: torch.Tensor, classes: Sequence[str] | None = None,
                     threshold: float = 0.5) -> pd.DataFrame:
    """How many other classes load on each class's dominant feature.

    With the normalised loading ``ρ_{j,l} = |μ_{j,l}| / max_l' |μ_{j,l'}|``, class
    ``j`` *loads on* feature ``l`` when ``ρ_{j,l} ≥ threshold``. For every class
    ``k`` with dominant feature ``l*_k = argmax_l |μ_{k,l}|`` this counts the other
    classes that load on ``l*_k`` (a feature with a count above 0 is shared, like
    the paper's Tower).

    Returns
    -------
    DataFrame with one row per class: ``class, feature, n_sharing`` (other classes
    loading on its dominant feature) and ``sharing`` (their names, ``;``-joined).

    Examples
    --------
    >>> mu = torch.tensor([[5.0, 0.0, 3.0], [0.0, 4.0, 2.0], [0.0, 0.1, 6.0]])
    >>> dominant_sharing(mu, ["a", "b", "c"])[["class", "feature", "n_sharing"]].values.tolist()
    [['a', 0, 0], ['b', 1, 0], ['c', 2, 2]]
    """
    mu = _check_mu(mu).detach().cpu().double()
    names = check_names(classes, mu.shape[0], "classes") or [str(k) for k in range(mu.shape[0])]
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    strength = mu.abs()
    rho = strength / strength.amax(1, keepdim=True).clamp_min(1e-12)
    top = strength.argmax(1)
    rows = []
    for k, l in enumerate(top.tolist()):
        others = [j for j in range(mu.shape[0]) if j != k and rho[j, l] >= threshold]
        rows.append({"class": names[k], "feature": l, "n_sharing": len(others),
                     "sharing": ";".join(names[j] for j in others)})
    return pd.DataFrame(rows)
