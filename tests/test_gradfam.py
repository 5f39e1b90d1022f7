"""Grad-FAM: the closed form for pooled ResNets, equality with Grad-CAM, ViT hooks, hygiene."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from salve_utils.method.gradfam import class_target, grad_cam, grad_fam, latent_target, overlay
from salve_utils.method.models import build_model
from salve_utils.method.sae import SparseAutoencoder

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_model("vit_small", CLASSES, image_size=32, num_layers=2).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _layer4(model, images):
    body = model.body
    x = model.normalize(images)
    x = body.maxpool(body.relu(body.bn1(body.conv1(x))))
    return body.layer4(body.layer3(body.layer2(body.layer1(x))))


def test_closed_form_for_pooled_resnet_and_linear_encoder(resnet, images):
    torch.manual_seed(2)
    sae = SparseAutoencoder(resnet.num_features, 6, activation="linear")
    with torch.no_grad():
        sae.encoder.weight[0].abs_()  # one latent that surely has positive evidence
        A = _layer4(resnet, images)
    seen_signal = 0
    for feature in range(6):
        with torch.no_grad():
            cam = F.relu(torch.einsum("k,nkhw->nhw", sae.encoder.weight[feature], A))
            cam = F.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
            peak = cam.amax(dim=(1, 2), keepdim=True)
            expected = torch.where(peak > 0, cam / peak.clamp_min(1e-30), 0.0)
        heat = grad_fam(resnet, sae, images, feature)
        assert heat.shape == (2, 32, 32)
        torch.testing.assert_close(heat, expected, atol=1e-5, rtol=0)
        seen_signal += int((peak > 0).sum())
    assert seen_signal >= 2


def test_grad_fam_of_a_head_row_is_grad_cam_of_that_class(resnet, images):
    sae = SparseAutoencoder(resnet.num_features, 4, activation="linear")
    k, feature = 1, 1
    with torch.no_grad():
        sae.encoder.weight[feature] = resnet.head.weight[k]
    cam = grad_cam(resnet, images, class_target(resnet, k))
    assert (cam.amax(dim=(1, 2)) == 1).all()
    torch.testing.assert_close(grad_fam(resnet, sae, images, feature), cam, atol=1e-6, rtol=0)


def test_sign_flips_the_target(resnet, images):
    torch.manual_seed(3)
    sae = SparseAutoencoder(resnet.num_features, 4, activation="linear")
    neg = SparseAutoencoder(resnet.num_features, 4, activation="linear")
    with torch.no_grad():
        neg.encoder.weight.copy_(-sae.encoder.weight)
        neg.encoder.bias.copy_(-sae.encoder.bias)
    torch.testing.assert_close(grad_fam(resnet, sae, images, 1, sign=-1.0), grad_fam(resnet, neg, images, 1))


def test_vit_maps_from_tokens_entering_the_last_block_are_nonzero(vit, images):
    torch.manual_seed(4)
    sae = SparseAutoencoder(vit.num_features, 6, activation="linear")
    heat = grad_fam(vit, sae, images, 3)
    assert heat.shape == (2, 32, 32)
    assert torch.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert (heat.amax(dim=(1, 2)) == 1).all()  # every map has signal
    # hooking the last block's *output* instead gives zero gradients (METHOD.md): all-zero maps
    after = grad_cam(vit, images, latent_target(sae, 3), hook="output")
    assert (after == 0).all()


@pytest.mark.parametrize("arch", ["resnet", "vit"])
def test_hooks_are_removed_even_when_the_target_raises(arch, request, images):
    model = request.getfixturevalue(arch)
    layer = model.gradcam_layer
    grad_fam(model, SparseAutoencoder(model.num_features, 4, activation="linear"), images, 0)

    def broken(a):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(model, images, broken)
    assert not layer._forward_hooks and not layer._forward_pre_hooks
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_raise(resnet, images):
    sae = SparseAutoencoder(resnet.num_features, 4, activation="linear")
    with pytest.raises(ValueError, match="feature"):
        grad_fam(resnet, sae, images, 4)
    with pytest.raises(ValueError, match="feature"):
        grad_fam(resnet, sae, images, -1)
    with pytest.raises(ValueError, match="images"):
        grad_fam(resnet, sae, images[0], 0)
    with pytest.raises(ValueError, match="images"):
        grad_fam(resnet, sae, (images * 255).to(torch.uint8), 0)
    with pytest.raises(ValueError, match="sign"):
        grad_fam(resnet, sae, images, 0, sign=0.5)
    with pytest.raises(ValueError, match="k"):
        class_target(resnet, len(CLASSES))
    with pytest.raises(ValueError, match="hook"):
        grad_cam(resnet, images, class_target(resnet, 0), hook="middle")
    assert not resnet.gradcam_layer._forward_hooks


def test_overlay_blends_in_unit_range():
    image = torch.rand(3, 8, 8)
    out = overlay(image, torch.zeros(8, 8), alpha=0.0)
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out, image.permute(1, 2, 0).numpy(), atol=1e-7)
    mixed = overlay(image, torch.rand(8, 8), alpha=0.4)
    assert mixed.min() >= 0 and mixed.max() <= 1
    with pytest.raises(ValueError, match="heatmap"):
        overlay(image, torch.zeros(4, 4))
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, torch.zeros(8, 8), alpha=2)
