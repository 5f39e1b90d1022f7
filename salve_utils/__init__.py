"""salve_utils: the helpers behind the reproducible SALVE report, in four layers.

=================  ===========================================================
``method``         the paper's method on its own: autoencoder, class-mean features,
                   Grad-FAM, activation maximisation, the edit, α_crit (+ data, models)
``study``          judging the method: nulls, intervals, the rulebook, claims,
                   baselines, seeds, ablations, oracle and sparse arms, report
``figures``        the report's figures, one module per kind of figure
``pipeline``       the papermill runner that builds the book, and a chapter's set-up
``common``         files, caches, hashes, devices, progress, result tables
=================  ===========================================================

Each layer imports only the layers above it in this list's reverse order:
``common`` <- ``method`` <- ``study`` <- ``figures`` <- ``pipeline``.

The method's public functions (fifteen) are importable from here (loaded on first use, so
``import salve_utils.pipeline`` stays light)::

    from salve_utils import load_activations, train_sae, class_mean_latents, dominant_features, edit_curve
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: the method's public functions (see :mod:`salve_utils.method`)
METHOD = (
    "SparseAutoencoder",
    "activation_maximization",
    "alpha_crit",
    "class_mean_latents",
    "dominant_features",
    "edit_curve",
    "edit_logits",
    "edit_model",
    "edit_weights",
    "extract_activations",
    "grad_fam",
    "load_activations",
    "sae_metrics",
    "shared_features",
    "train_sae",
)

__all__ = list(METHOD)


def __getattr__(name: str) -> Any:
    if name in METHOD:
        return getattr(importlib.import_module(".method", __name__), name)
    raise AttributeError(f"module 'salve_utils' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(METHOD))
