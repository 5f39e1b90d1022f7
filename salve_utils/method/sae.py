r"""The sparse autoencoder that turns ``a(x)`` into interpretable latents.

The paper's SAE (Flovik, 2026) is two linear layers with **no activation**:

.. math::

    z &= E\,a + b_e \qquad \text{(encoder, $d$ latents)} \\
    \hat a &= D\,z + b_d \qquad \text{(decoder, $D$ of shape $(M, d)$)} \\
    L &= \lVert A - \hat A\rVert_F^2 + \lambda_1 \lVert Z\rVert_1

``relu`` and ``topk`` encoders are offered as ablations. The decoder is an
``nn.Linear(d, M)``, so ``sae.decoder.weight[j, l]`` is the paper's
``c_j = D[j, l]``: the j-th entry of feature l's decoder column, the number the
weight edit multiplies by α.

>>> import torch
>>> acts = torch.randn(512, 16)
>>> sae, history = train_sae(acts, d_latent=8, l1=1e-3, epochs=2, progress=False)
>>> a_hat, z = sae(acts)
>>> tuple(z.shape), tuple(sae.decoder_column(3).shape)
((512, 8), (16,))
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..common.runtime import default_device, load_artifact, save_artifact, track
from .validation import check_array, check_decoder_column, check_index

__all__ = [
    "ACTIVATIONS",
    "SparseAutoencoder",
    "load_sae",
    "normalized_strength",
    "sae_metrics",
    "save_sae",
    "strength_scale",
    "select_l1",
    "sweep",
    "train_sae",
]

#: Encoder non-linearities: the paper's ``"linear"`` (none) and two ablations.
ACTIVATIONS = ("linear", "relu", "topk")
SAE_FORMAT = "salve-sae/1"


class SparseAutoencoder(nn.Module):
    """``z = act(E a + b_e)``, ``â = D z + b_d``, untied, with biases.

    Parameters
    ----------
    d_in : M, the width of the activations ``a``
    d_latent : d, the number of latents
    activation : ``"linear"`` (the paper: no activation, latents may be negative),
        ``"relu"``, or ``"topk"`` (keep the ``k`` largest pre-activations, after ReLU)
    k : number of active latents for ``"topk"`` (must be ``None`` otherwise)
    unit_norm_decoder : start with unit-L2 decoder columns (:func:`train_sae`
        keeps them unit after every step)
    centre_input : encode ``a - b_d`` instead of ``a`` (the pre-encoder bias of Bricken et
        al. 2023 and Gao et al. 2024). ``None`` (the default) turns it on for ``"relu"`` and
        ``"topk"``: on non-negative head inputs with a large common mean, an uncentred ReLU
        or TopK encoder starts with every latent dead and reconstructs nothing (validation
        FVU 1.04 and 0.91 on the planted edition, 0.10 and 0.16 centred). For ``"linear"``
        the two forms are one model (``E(a - b_d) + b_e = E a + b_e'``), so the paper's
        autoencoder keeps its own parameterisation.

    Examples
    --------
    >>> sae = SparseAutoencoder(16, 4, activation="topk", k=2)
    >>> z = sae.encode(torch.randn(3, 16))
    >>> bool(((z != 0).sum(1) <= 2).all())
    True
    """

    def __init__(self, d_in: int, d_latent: int, activation: str = "linear", k: int | None = None,
                 unit_norm_decoder: bool = False, centre_input: bool | None = None) -> None:
        super().__init__()
        for name, value in (("d_in", d_in), ("d_latent", d_latent)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if activation == "topk":
            if k is None:
                raise ValueError("k must be set for topk")
            if not isinstance(k, int) or not 1 <= k <= d_latent:
                raise ValueError(f"k must be an int in [1, d_latent={d_latent}], got {k!r}")
        elif k is not None:
            raise ValueError(f"k is only used with activation='topk', got k={k!r} with {activation!r}")
        self.activation = activation
        self.k = k
        self.unit_norm_decoder = bool(unit_norm_decoder)
        self.centre_input = activation != "linear" if centre_input is None else bool(centre_input)
        self.encoder = nn.Linear(d_in, d_latent)
        self.decoder = nn.Linear(d_latent, d_in)
        if self.unit_norm_decoder:
            self.renormalize_decoder()

    @property
    def d_in(self) -> int:
        """M, the width of the activations."""
        return self.encoder.in_features

    @property
    def d_latent(self) -> int:
        """d, the number of latents."""
        return self.encoder.out_features

    def encode(self, a: torch.Tensor) -> torch.Tensor:
        """Latents ``z`` of activations ``a`` (N, M) -> (N, d)."""
        pre = self.encoder(a - self.decoder.bias if self.centre_input else a)
        if self.activation == "linear":
            return pre
        if self.activation == "relu":
            return F.relu(pre)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``â = D z + b_d`` (N, d) -> (N, M)."""
        return self.decoder(z)

    def forward(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(â, z)``."""
        z = self.encode(a)
        return self.decode(z), z

    def decoder_column(self, feature: int) -> torch.Tensor:
        """Feature ``feature``'s decoder column ``D[:, l]`` (M,): the ``c_j`` of the edit (a detached copy)."""
        feature = check_index(feature, "feature", self.d_latent)
        return self.decoder.weight[:, feature].detach().clone()

    @torch.no_grad()
    def renormalize_decoder(self) -> None:
        """Scale every decoder column to unit L2 norm, in place."""
        w = self.decoder.weight
        w.div_(w.norm(dim=0, keepdim=True).clamp_min(1e-12))


# =========================================================================== training


def _check_acts(acts: torch.Tensor, d_in: int | None = None) -> torch.Tensor:
    """Activations to train or score an SAE on: a finite, non-empty (N, M) tensor, M = ``d_in`` when given."""
    return check_array(acts, "acts", ("N", "M"), (None, d_in),
                       fix="an SAE trained on them would be NaN. Fix the activations first: a backbone whose "
                           "training diverged gives them (check its loss), or re-extract them")


def _loss_terms(a: torch.Tensor, a_hat: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample squared error and L1 of the latents, each summed over dims and averaged over samples."""
    return (a - a_hat).pow(2).sum(-1).mean(), z.abs().sum(-1).mean()


def train_sae(
    acts: torch.Tensor,
    d_latent: int,
    l1: float,
    activation: str = "linear",
    k: int | None = None,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    unit_norm_decoder: bool = False,
    device: str | torch.device | None = "auto",
    progress: bool = True,
) -> tuple[SparseAutoencoder, pd.DataFrame]:
    r"""Fit a :class:`SparseAutoencoder` to activations with Adam.

    Minimises the paper's loss, averaged over the samples of each mini-batch:

    .. math::

        L = \frac{1}{N} \sum_n \lVert a_n - \hat a_n\rVert_2^2 + \lambda_1 \cdot \frac{1}{N} \sum_n \lVert z_n\rVert_1

    i.e. :math:`\lVert A - \hat A\rVert_F^2 + \lambda_1 \lVert Z\rVert_1` divided by the batch size: squared error
    summed over the M dimensions and L1 summed over the d latents, both *per
    sample*. (λ1 is therefore independent of the batch size, but not of M or d.)

    The decoder bias starts at the mean activation. Training is deterministic
    for a given ``seed`` on the CPU: the seed fixes the initialisation (without
    touching the global RNG) and a ``torch.Generator`` the shuffling.

    **Scale of α.** Without a constraint, the L1 term can be lowered for free by
    shrinking ``Z`` and growing ``D`` by the same factor; that rescales every
    :math:`|c_j|` and so the α at which a weight edit bites. ``unit_norm_decoder=True``
    renormalises decoder columns to unit L2 norm after every step, which fixes
    that scale. Either way, plot edit curves against the normalised strength
    :math:`\alpha \cdot \max_j |c_j|` (:func:`normalized_strength`) to compare SAEs.

    Parameters
    ----------
    acts : (N, M) activations ``a(x)`` (kept where they are; batches move to ``device``)
    d_latent : d, the number of latents
    l1 : λ1 >= 0
    activation, k, unit_norm_decoder : see :class:`SparseAutoencoder`
    epochs, batch_size, lr : the defaults fit ~10k x 512 activations in seconds on a CPU
    seed : non-negative int
    device : ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``
    progress : show a tqdm bar over epochs (the pipeline runner sees them either way: ``runtime.track``)

    Returns
    -------
    sae : the trained model, on the CPU, in eval mode
    history : one row per epoch: ``epoch``, ``loss`` (= mse + λ1·l1), ``mse``
        (mean per-sample squared error), ``l1`` (mean per-sample :math:`\lVert z\rVert_1`)

    Examples
    --------
    >>> sae, hist = train_sae(torch.randn(256, 16), d_latent=8, l1=1e-2, epochs=3, progress=False)
    >>> list(hist.columns)
    ['epoch', 'loss', 'mse', 'l1']
    """
    acts = _check_acts(acts)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not 0 <= l1 < math.inf:
        raise ValueError(f"l1 must be a finite number >= 0, got {l1!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    device = default_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sae = SparseAutoencoder(acts.shape[1], d_latent, activation, k, unit_norm_decoder)
    with torch.no_grad():
        sae.decoder.bias.copy_(acts.float().mean(0))
    sae.to(device).train()
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    bar = tqdm(range(epochs), disable=not progress, desc="train SAE", unit="epoch", dynamic_ncols=True)
    for epoch in track(bar, "SAE epochs"):
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        for idx in torch.randperm(len(acts), generator=gen).split(batch_size):
            a = acts[idx].to(device=device, dtype=torch.float32)
            a_hat, z = sae(a)
            mse, l1_norm = _loss_terms(a, a_hat, z)
            loss = mse + l1 * l1_norm
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sae.unit_norm_decoder:
                sae.renormalize_decoder()
            sums += len(idx) * torch.stack([loss, mse, l1_norm]).detach().double()
        loss_, mse_, l1_ = (sums / len(acts)).tolist()
        rows.append({"epoch": epoch + 1, "loss": loss_, "mse": mse_, "l1": l1_})
        bar.set_postfix(loss=f"{loss_:.4g}", mse=f"{mse_:.4g}", l1=f"{l1_:.4g}")
    return sae.cpu().eval(), pd.DataFrame(rows)


# =========================================================================== metrics


@torch.no_grad()
def sae_metrics(sae: SparseAutoencoder, acts: torch.Tensor, tol: float = 1e-3,
                batch_size: int = 4096) -> dict[str, float]:
    """Reconstruction and sparsity of an SAE on ``acts``.

    Modelled on the evaluation of saprmarks/dictionary_learning
    (``dictionary_learning.evaluation``): fraction of variance unexplained,
    L0, dead latents.

    * ``fvu`` = ``||A - Â||_F^2 / ||A - mean(A)||_F^2`` (0 = perfect, 1 = no better than the mean)
    * ``mse`` = mean over samples of ``||a - â||^2`` (summed over dims, as in the loss)
    * ``l0`` = mean number of latents with ``|z_l| > tol`` per sample
    * ``participation`` = mean over samples of ``(Σ_l |z_l|)² / Σ_l z_l²``, the
      effective number of active latents (1 when one latent carries everything,
      d when all are equal). It needs no tolerance, which matters for the
      paper's linear SAE: its latents are rarely exactly zero, so L0 stays near d
      even when the code is concentrated on a few latents.
    * ``l1`` = mean ``||z||_1`` per sample
    * ``dead_fraction`` = fraction of latents never above ``tol`` on ``acts``

    Examples
    --------
    >>> sae = SparseAutoencoder(4, 4)
    >>> m = sae_metrics(sae, torch.randn(32, 4))
    >>> sorted(m)
    ['dead_fraction', 'fvu', 'l0', 'l1', 'mse', 'participation']
    """
    acts = _check_acts(acts, sae.d_in)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    device = next(sae.parameters()).device
    sse = l1 = l0 = participation = 0.0
    alive = torch.zeros(sae.d_latent, dtype=torch.bool, device=device)
    for chunk in acts.split(batch_size):
        a = chunk.to(device=device, dtype=torch.float32)
        a_hat, z = sae(a)
        sse += float((a - a_hat).double().pow(2).sum())
        l1 += float(z.double().abs().sum())
        z2 = z.double().pow(2).sum(1)
        participation += float((z.double().abs().sum(1).pow(2) / z2.clamp_min(1e-300)).where(z2 > 0, 0.0).sum())
        active = z.abs() > tol
        l0 += float(active.sum())
        alive |= active.any(0)
    a64 = acts.double()
    total = float((a64 - a64.mean(0)).pow(2).sum())
    n = len(acts)
    return {
        "fvu": sse / total if total > 0 else float("nan"),
        "mse": sse / n,
        "l0": l0 / n,
        "participation": participation / n,
        "l1": l1 / n,
        "dead_fraction": 1.0 - float(alive.double().mean()),
    }


def strength_scale(decoder_column: torch.Tensor) -> float:
    """``max_j |c_j|``: the factor between the raw edit strength α and the normalised strength.

    Raises a ``ValueError`` for an all-zero column (nothing to edit) and, through
    :func:`~salve_utils.method.validation.check_decoder_column`, for an empty or non-finite one.
    """
    scale = float(check_decoder_column(decoder_column).detach().abs().max())
    if scale == 0:
        raise ValueError("decoder_column is all zeros: the feature cannot be edited")
    return scale


def normalized_strength(alpha: Any, decoder_column: torch.Tensor) -> Any:
    r"""The scale-free edit strength :math:`s = \alpha \cdot \max_j |c_j|` (works for floats, arrays and tensors).

    At normalised strength 1 the largest-:math:`|c_j|` weight column is fully zeroed by
    a suppression edit; curves of different SAEs line up on this axis. The
    inverse is ``α = s / strength_scale(c)``.

    Examples
    --------
    >>> normalized_strength(2.0, torch.tensor([0.1, -0.5, 0.25]))
    1.0
    """
    return alpha * strength_scale(decoder_column)


# =========================================================================== files


def _check_loadable(meta: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(meta, buf)
    buf.seek(0)
    try:
        torch.load(buf, weights_only=True)
    except Exception as err:  # the unpickler raises several types; all mean the same here
        raise ValueError(f"meta must hold only plain values (numbers, strings, lists, dicts, tensors): {err}") from None


def save_sae(sae: SparseAutoencoder, path: str | os.PathLike, **meta: Any) -> Path:
    """Save an SAE atomically, with a checksum, its shape, activation and ``meta`` (``weights_only``-loadable).

    Examples
    --------
    >>> save_sae(sae, "sae.pt", l1=1e-3, seed=0)          # doctest: +SKIP
    >>> sae, meta = load_sae("sae.pt")                    # doctest: +SKIP
    """
    _check_loadable(meta)
    blob = {
        "format": SAE_FORMAT,
        "d_in": sae.d_in,
        "d_latent": sae.d_latent,
        "activation": sae.activation,
        "k": sae.k,
        "unit_norm_decoder": sae.unit_norm_decoder,
        "centre_input": sae.centre_input,
        "state_dict": {k: v.detach().cpu() for k, v in sae.state_dict().items()},
        "meta": meta,
    }
    return save_artifact(blob, path)


def load_sae(path: str | os.PathLike) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Rebuild an SAE written by :func:`save_sae`, verified against its checksum; returns ``(sae, meta)``."""
    blob = load_artifact(path, SAE_FORMAT, "SALVE SAE file")
    sae = SparseAutoencoder(blob["d_in"], blob["d_latent"], blob["activation"], blob["k"], blob["unit_norm_decoder"],
                            blob.get("centre_input", False))  # files written before centring encoded ``a`` itself
    sae.load_state_dict(blob["state_dict"])
    return sae.eval(), dict(blob["meta"])


def sweep(train_acts: torch.Tensor, val_acts: torch.Tensor, latents: Sequence[int], l1s: Sequence[float],
          progress: bool = True, **options: Any) -> pd.DataFrame:
    """Train one autoencoder per (latent size, λ₁) on ``train_acts``; score each on ``val_acts``.

    ``options`` go to :func:`train_sae` (activation, epochs, seed, ...). Returns
    one row per point: ``d_latent, l1`` and the metrics of :func:`sae_metrics`
    (``fvu, mse, l0, participation, l1_norm, dead_fraction``) on the validation activations.
    """
    from tqdm.auto import tqdm

    rows = []
    grid = [(int(d), float(l)) for d in latents for l in l1s]
    for d, lam in track(tqdm(grid, desc="SAE sweep", disable=not progress), "SAE sweep points"):
        model, _ = train_sae(train_acts, d, lam, progress=False, **options)
        m = sae_metrics(model, val_acts)
        rows.append({"d_latent": d, "l1": lam, "fvu": m["fvu"], "mse": m["mse"], "l0": m["l0"],
                     "participation": m["participation"], "l1_norm": m["l1"], "dead_fraction": m["dead_fraction"]})
    return pd.DataFrame(rows)


def select_l1(sweep_table: pd.DataFrame, d_latent: int, max_fvu: float) -> tuple[float, bool]:
    """The largest λ₁ of a sweep, at latent size ``d_latent``, whose validation FVU is at most ``max_fvu``.

    The sparsest autoencoder that still reconstructs faithfully: SALVE reads its
    edits off the decoder, so reconstruction is not traded away for sparsity.
    Returns ``(λ₁, qualified)``; when no λ₁ meets the bound, the one with the
    lowest FVU and ``qualified=False``, so that the caller can say so.
    """
    rows = sweep_table[sweep_table["d_latent"] == d_latent]
    if rows.empty:
        raise ValueError(f"d_latent={d_latent} is not in the sweep (sizes: {sorted(sweep_table['d_latent'].unique())})")
    ok = rows[rows["fvu"] <= max_fvu]
    if len(ok):
        return float(ok["l1"].max()), True
    return float(rows.loc[rows["fvu"].idxmin(), "l1"]), False
