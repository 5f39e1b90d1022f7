"""Figures of the report, one module per kind of figure.

This layer may import salve_utils.common, .method and .study, never the pipeline.

==============  ==============================================================
``style``       the report's style, one colour per class, image grids (the floor)
``training``    the backbone's learning curves and confusion, the autoencoder's sweeps
``features``    class-mean latents, dominant and shared features, planted parts
``curves``      the edit's accuracy curves, the paper's examples, null bands
``alpha``       α_crit: distributions, the linear formula's tightness, ranks
``tower``       the Tower: one shared feature edited, beside every other latent
``seeds``       robustness over autoencoder seeds
``atlas``       the edit atlas and the composition of edits
``ablations``   the edit with one design choice changed, and one layer deeper
``baselines``   SALVE against the other edit methods at matched efficacy
``verdicts``    every claim's verdict on every edition at a glance
``explorer``    kernel-free explorers for the static pages
==============  ==============================================================

Every figure is reached here by its name (``figures.curve_plot(...)``); the modules
only sort them. Every function draws on a fresh figure (or a given ``ax``) and
returns the figure.
"""

from .ablations import deep_vs_head_plot, logit_anatomy_plot, variant_plot
from .alpha import alpha_crit_distributions, alpha_crit_scatter, alpha_rank_plot, alpha_ratio_plot
from .atlas import atlas_heatmap, composition_plot
from .baselines import METHOD_COLOURS, tradeoff_plot
from .curves import (alpha_explorer, curve_plot, edit_overview, example_pair, null_band_examples,
                     null_band_multiples, small_multiples)
from .features import (dominant_bars, latent_heatmap, part_recovery_plot, ratio_histograms, shared_scatter,
                       sharing_by_edition, sharing_plot)
from .seeds import seed_alpha_plot, seed_band_plot, seed_match_plot, seed_outcome_plot
from .style import class_palette, image_grid, sample_classes, set_style
from .tower import tower_effects_plot, tower_plot
from .training import confusion_heatmap, history_plot, sparsity_path_plot, sweep_plot, training_curves
from .verdicts import verdict_grid

__all__ = [
    # style
    "set_style", "class_palette", "image_grid", "sample_classes",
    # training
    "training_curves", "confusion_heatmap", "history_plot", "sweep_plot", "sparsity_path_plot",
    # features
    "latent_heatmap", "dominant_bars", "sharing_plot", "sharing_by_edition", "ratio_histograms", "shared_scatter",
    "part_recovery_plot",
    # curves
    "curve_plot", "edit_overview", "small_multiples", "alpha_explorer", "example_pair", "null_band_multiples",
    "null_band_examples",
    # alpha
    "alpha_crit_distributions", "alpha_crit_scatter", "alpha_ratio_plot", "alpha_rank_plot",
    # tower
    "tower_plot", "tower_effects_plot",
    # seeds
    "seed_match_plot", "seed_outcome_plot", "seed_band_plot", "seed_alpha_plot",
    # atlas
    "atlas_heatmap", "composition_plot",
    # ablations
    "logit_anatomy_plot", "variant_plot", "deep_vs_head_plot",
    # baselines
    "METHOD_COLOURS", "tradeoff_plot",
    # verdicts
    "verdict_grid",
]
