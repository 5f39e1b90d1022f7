"""Activation maximisation: shapes, range, progress, determinism, both parameterisations, arguments."""

from __future__ import annotations

import pytest
import torch

from salve_utils.actmax import activation_maximization, maximize
from salve_utils.gradfam import class_target, latent_target
from salve_utils.models import build_model
from salve_utils.sae import SparseAutoencoder

CLASSES = ["a", "b", "c"]
# 32 px images: a 2 px jitter plays the part of the default 8 px at 128 px
FAST = {"steps": 20, "jitter": 2, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def sae(resnet):
    torch.manual_seed(1)
    sae = SparseAutoencoder(resnet.num_features, 8, activation="linear")
    with torch.no_grad():
        sae.encoder.weight.mul_(10)  # latents that vary by O(1), as for a trained backbone and SAE
    return sae


def _score(model, sae, images, feature, sign=1.0):
    with torch.no_grad():
        return latent_target(sae, feature, sign)(model.features(images))


@pytest.mark.parametrize("param", ["fft", "pixel"])
def test_images_have_the_right_shape_and_range_and_raise_the_latent(resnet, sae, param):
    start, _ = activation_maximization(resnet, sae, 3, n=2, param=param, **{**FAST, "steps": 0})
    images, history = activation_maximization(resnet, sae, 3, n=2, param=param, **FAST)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert images.min() >= 0 and images.max() <= 1
    assert list(history.columns) == ["step", "objective"] and len(history) == FAST["steps"]
    assert (_score(resnet, sae, images, 3) > _score(resnet, sae, start, 3)).all()
    assert all(p.grad is None for p in resnet.parameters())


def test_sign_minimises_the_latent(resnet, sae):
    start, _ = activation_maximization(resnet, sae, 5, sign=-1, **{**FAST, "steps": 0})
    images, _ = activation_maximization(resnet, sae, 5, sign=-1, **FAST)
    assert _score(resnet, sae, images, 5) < _score(resnet, sae, start, 5)


def test_same_seed_same_images_other_seed_other_images(resnet, sae):
    a, ha = activation_maximization(resnet, sae, 1, seed=7, **{**FAST, "steps": 5})
    b, hb = activation_maximization(resnet, sae, 1, seed=7, **{**FAST, "steps": 5})
    c, _ = activation_maximization(resnet, sae, 1, seed=8, **{**FAST, "steps": 5})
    assert torch.equal(a, b) and ha.equals(hb)
    assert not torch.equal(a, c)


def test_maximize_a_class_logit_on_a_vit():
    torch.manual_seed(0)
    vit = build_model("vit_small", CLASSES, image_size=32, num_layers=2).eval()
    images, history = maximize(vit, class_target(vit, 1), param="pixel", decorrelate=False, **FAST)
    assert images.shape == (1, 3, 32, 32)
    assert history["objective"].iloc[-5:].mean() > history["objective"].iloc[:5].mean()
    with pytest.raises(ValueError, match="size"):
        maximize(vit, class_target(vit, 1), size=64, **FAST)


@pytest.mark.parametrize("kwargs, name", [
    ({"n": 0}, "n"), ({"steps": -1}, "steps"), ({"lr": 0.0}, "lr"), ({"seed": -1}, "seed"),
    ({"param": "wavelet"}, "param"), ({"jitter": 1.5}, "jitter"), ({"scales": ()}, "scales"),
    ({"rotate": -1}, "rotate"), ({"l2": -1}, "l2"), ({"tv": -0.1}, "tv"), ({"sign": 2}, "sign"),
    ({"feature": -1}, "feature"), ({"feature": 8}, "feature"),
])
def test_bad_arguments_raise(resnet, sae, kwargs, name):
    kwargs = {"feature": 0, **FAST, "steps": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        activation_maximization(resnet, sae, **kwargs)
