"""The method end to end on the planted-parts data, where the right answers are known.

A ResNet-18 is trained on the synthetic set, the paper's linear autoencoder on its
head inputs; then (1) the planted parts must be recovered — each part has a latent
that tracks its presence — and (2) suppressing a class's dominant feature must be
able to remove that class while the other classes hold. The test prints what it
measured, so `pytest -s` reports the match.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salve_utils.method import activations, data, editing, features, models
from salve_utils.study import parts
from salve_utils.method import sae as sae_lib


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    import os

    os.environ["SALVE_CACHE_DIR"] = str(tmp_path_factory.mktemp("planted-cache"))
    train = data.make_planted_parts("train", 60, n_per_class=200, seed=0)
    val = data.make_planted_parts("val", 48, n_per_class=50, seed=0)
    config = models.TrainConfig(epochs=14, batch_size=64, optimizer="adamw", lr=0.002, weight_decay=0.05,
                                train_size=48, eval_size=48, crop_scale=0.8, eval_every=14)  # precision "auto": the faster one here
    model, history, ckpt = models.train_or_load("resnet18", train, val, config, device="cpu", progress=False)
    acts, _ = activations.cached_activations(model, ckpt, train, val, 48, device="cpu", progress=False)
    ae, _ = sae_lib.train_sae(acts.train, 32, 0.1, epochs=60, seed=0, device="cpu", progress=False)
    return val, acts, ae, float(history["val_acc"].dropna().iloc[-1])


@pytest.mark.slow
def test_the_backbone_learns_the_planted_classes(planted_run) -> None:
    *_, val_acc = planted_run
    print(f"planted-parts ResNet-18 val accuracy: {val_acc:.1%}")
    assert val_acc >= 0.8


@pytest.mark.slow
def test_the_autoencoder_recovers_the_planted_parts(planted_run) -> None:
    val, acts, ae, _ = planted_run
    with torch.no_grad():
        z = ae.encode(acts.val)
    recovery = parts.part_recovery(z, val.part_labels, val.parts)
    print("best latent per planted part:\n" + recovery.round(2).to_string(index=False))
    assert recovery["abs_corr"].median() >= 0.5
    assert recovery["abs_corr"].min() >= 0.3
    # a latent chosen at random tracks a part far worse: the recovery is not an artefact of many latents
    shuffled = parts.part_recovery(z[torch.randperm(len(z), generator=torch.Generator().manual_seed(0))],
                                      val.part_labels, val.parts)
    assert shuffled["abs_corr"].median() < 0.2


@pytest.mark.slow
def test_suppressing_a_dominant_feature_removes_its_class_while_the_rest_hold(planted_run) -> None:
    _, acts, ae, _ = planted_run
    with torch.no_grad():
        mu = features.class_mean_latents(ae.encode(acts.train), acts.train_labels, len(acts.classes))
    top = features.dominant_features(mu, top=1, classes=acts.classes)
    roles = {f"dominant:{c}": int(f) for c, f in zip(top["class"], top["feature"])}
    curves = editing.feature_curves(acts, ae, roles, np.linspace(0, 20, 41), "suppress")
    points = editing.operating_points(curves, target_accuracy=0.25)
    print(points.round(3).to_string(index=False))
    specific = points[points["strength"].notna() & (points["others_baseline"] - points["others_accuracy"] <= 0.1)]
    assert len(specific) >= 1, "no class could be suppressed while the others hold"
