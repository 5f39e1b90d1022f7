"""Activation maximisation: shapes, range, progress, determinism, both parameterisations, arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from salve_utils.method.actmax import activation_maximization, gallery_scores, maximize
from salve_utils.method.gradfam import class_target, latent_target
from salve_utils.method.models import build_model
from salve_utils.method.sae import SparseAutoencoder

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


def test_gallery_scores_are_each_images_signed_latent_against_grey(tiny_model):
    model, images, sae = tiny_model
    out = gallery_scores(model, sae, images, [2, 5, 2], signs=[1, -1, -1])
    with torch.no_grad():
        z = torch.cat([sae.encode(model.features(x[None])) for x in images])  # one image at a time
        grey = sae.encode(model.features(torch.full((1, 3, 32, 32), 0.5)))[0]
    np.testing.assert_allclose(out["score"], [z[0, 2], -z[1, 5], -z[2, 2]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["grey"], [grey[2], -grey[5], -grey[2]], rtol=1e-5, atol=1e-6)
    assert out["above_grey"].tolist() == (out["score"] > out["grey"]).tolist()
    assert out[["feature", "sign"]].values.tolist() == [[2, 1], [5, -1], [2, -1]]
    # the grey image the optimisation starts from does not count as raising its feature
    assert not gallery_scores(model, sae, torch.full((1, 3, 32, 32), 0.5), [4])["above_grey"].item()


@pytest.mark.parametrize("kwargs,match", [
    ({"features": [1, 2]}, "one non-negative latent index per image"),
    ({"features": [1, 2, -1]}, "one non-negative latent index per image"),
    ({"features": [1, 2, 8]}, r"features must lie in \[0, 8\)"),
    ({"signs": [1, 0.5, 1]}, "one \\+1 or -1 per image"),
    ({"images": torch.rand(3, 32, 32)}, "float tensor"),
])
def test_gallery_scores_refuse_bad_inputs(tiny_model, kwargs, match):
    model, images, sae = tiny_model
    args = {"images": images, "features": [1, 2, 3], "signs": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        gallery_scores(model, sae, **args)
