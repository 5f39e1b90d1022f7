"""Bad input to the helpers, refused up front: a matrix over the public API (issue 26).

Every case calls one public function with one bad argument and expects either an
error of the right kind (``TypeError`` for a wrong type, ``ValueError`` for a wrong
value) or, where the value is legal but suspicious, a ``UserWarning``; the message
must name the argument, so that a reader knows what to fix. Tensors and models are
tiny: the tests themselves take well under a second (importing torch takes longer).

Before issue 26, 34 of the 70 cases returned a result silently (NaN heads and class
means, empty tables, 0..255 images) and 15 raised an error of the wrong kind or one
that did not name the argument.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Callable

import pytest
import torch
import torch.nn as nn

from salve_utils.method import actmax, alpha, editing, features, gradfam, sae
from salve_utils.study import baselines
from salve_utils.method.activations import Activations

NAN, INF = float("nan"), float("inf")
K, M, D = 3, 4, 2  # classes, head width, latents


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


W = torch.randn(K, M, generator=_g())
B = torch.zeros(K)
C = torch.tensor([0.5, -0.2, 0.1, 0.3])
A = torch.rand(6, M, generator=_g())
Y = torch.arange(6) % K
MU = torch.randn(K, 5, generator=_g())
IMAGES = torch.rand(2, 3, 8, 8, generator=_g())


def nan_at(t: torch.Tensor, value: float = NAN) -> torch.Tensor:
    """A copy of ``t`` with one entry replaced by ``value``."""
    t = t.clone()
    t.view(-1)[0] = value
    return t


class TinyNet(nn.Module):
    """The least a Grad-FAM / actmax model needs: ``features``, a feature-map layer, a head."""

    arch, image_size = "resnet18", 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, M, 3, padding=1)
        self.head = nn.Linear(M, K)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3))

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.conv


with torch.random.fork_rng():
    torch.manual_seed(0)
    NET, SAE = TinyNet().eval(), sae.SparseAutoencoder(M, D)
FAST = {"steps": 1, "jitter": 0, "progress": False, "device": "cpu", "size": 8}
#: a decoder column full of NaN, as a diverged autoencoder would give
NAN_SAE = sae.SparseAutoencoder(M, D)
with torch.no_grad():
    NAN_SAE.decoder.weight[:, 0] = NAN


def _acts(**change: Any) -> Activations:
    fields = {"train": A, "train_labels": Y, "val": A, "val_labels": Y, "classes": ["a", "b", "c"],
              "weight": W, "bias": B, "meta": {}}
    return Activations(**{**fields, **change})


WARN = UserWarning
#: (id, call, expected TypeError / ValueError / UserWarning, the argument the message must name)
CASES: list[tuple[str, Callable[[], Any], type, str]] = [
    # -- editing: the permanent edit and its sweeps
    ("edit_weights-nan-column", lambda: editing.edit_weights(W, nan_at(C), 1.0), ValueError, "decoder_column"),
    ("edit_weights-inf-weight", lambda: editing.edit_weights(nan_at(W, INF), C, 1.0), ValueError, "weight"),
    ("edit_weights-list-weight", lambda: editing.edit_weights(W.tolist(), C, 1.0), TypeError, "weight"),
    ("edit_weights-complex-weight", lambda: editing.edit_weights(W.to(torch.complex64), C, 1.0), TypeError,
     "weight"),
    ("edit_weights-empty-0x0", lambda: editing.edit_weights(torch.zeros(0, 0), torch.zeros(0), 1.0), ValueError,
     "weight"),
    ("edit_weights-2d-column", lambda: editing.edit_weights(W, C[None], 1.0), ValueError, "decoder_column"),
    ("edit_weights-alpha-str", lambda: editing.edit_weights(W, C, "strong"), TypeError, "alpha"),
    ("edit_weights-direction", lambda: editing.edit_weights(W, C, 1.0, "boost"), ValueError, "direction"),
    ("edit_logits-nan-acts", lambda: editing.edit_logits(nan_at(A), W, B, C, [1.0]), ValueError, "acts"),
    ("edit_logits-no-samples", lambda: editing.edit_logits(A[:0], W, B, C, [1.0]), ValueError, "acts"),
    ("edit_logits-nan-bias", lambda: editing.edit_logits(A, W, nan_at(B), C, [1.0]), ValueError, "bias"),
    ("edit_logits-no-alphas", lambda: editing.edit_logits(A, W, B, C, []), ValueError, "alphas"),
    ("edit_curve-float-labels", lambda: editing.edit_curve(A, Y.float(), W, B, C, [0.0]), TypeError, "labels"),
    ("edit_curve-labels-range", lambda: editing.edit_curve(A, Y + 1, W, B, C, [0.0]), ValueError, "labels"),
    ("edit_curve-classes", lambda: editing.edit_curve(A, Y, W, B, C, [0.0], classes=["a"]), ValueError, "classes"),
    # -- alpha: α_crit
    ("alpha_crit-nan-acts", lambda: alpha.alpha_crit(nan_at(A), W, B, C, 0), ValueError, "acts"),
    ("alpha_crit-nan-column", lambda: alpha.alpha_crit(A, W, B, nan_at(C), 0), ValueError, "decoder_column"),
    ("alpha_crit-no-features", lambda: alpha.alpha_crit(A[:, :0], W[:, :0], B, C[:0], 0), ValueError, "weight"),
    ("alpha_crit-target-name", lambda: alpha.alpha_crit(A, W, B, C, "church"), TypeError, "target"),
    ("alpha_crit-target-bool", lambda: alpha.alpha_crit(A, W, B, C, True), TypeError, "target"),
    ("alpha_crit-target-range", lambda: alpha.alpha_crit(A, W, B, C, K), ValueError, "target"),
    # -- features: class means and dominant features
    ("class_mean_latents-no-samples", lambda: features.class_mean_latents(A[:0], Y[:0], K), ValueError, "z"),
    ("class_mean_latents-empty-class", lambda: features.class_mean_latents(A, Y % 2, K), ValueError, "labels"),
    ("class_mean_latents-nan-z", lambda: features.class_mean_latents(nan_at(A), Y), ValueError, "z"),
    ("class_mean_latents-no-latents", lambda: features.class_mean_latents(A[:, :0], Y), ValueError, "z"),
    ("class_mean_latents-float-labels", lambda: features.class_mean_latents(A, Y.float()), TypeError, "labels"),
    ("class_mean_latents-list-z", lambda: features.class_mean_latents(A.tolist(), Y), TypeError, "z"),
    ("class_mean_latents-1d-z", lambda: features.class_mean_latents(A[0], Y[:1]), ValueError, "z"),
    ("dominant_features-nan-mu", lambda: features.dominant_features(nan_at(MU)), ValueError, "mu"),
    ("dominant_features-0x0", lambda: features.dominant_features(torch.zeros(0, 0)), ValueError, "mu"),
    ("dominant_features-3x0", lambda: features.dominant_features(torch.zeros(3, 0)), ValueError, "mu"),
    ("dominant_features-0x5", lambda: features.dominant_features(torch.zeros(0, 5)), ValueError, "mu"),
    ("dominant_features-top-zero", lambda: features.dominant_features(MU, top=0), ValueError, "top"),
    ("dominant_features-top-float", lambda: features.dominant_features(MU, top=1.5), TypeError, "top"),
    ("dominant_features-list-mu", lambda: features.dominant_features(MU.tolist()), TypeError, "mu"),
    ("shared_features-nan-mu", lambda: features.shared_features(nan_at(MU), [0, 1]), ValueError, "mu"),
    ("shared_features-name-no-names", lambda: features.shared_features(MU, ["a", "b"]), ValueError, "classes"),
    ("shared_features-unknown-name",
     lambda: features.shared_features(MU, ["a", "zebra"], class_names=["a", "b", "c"]), ValueError, "classes"),
    # -- gradfam: Grad-FAM and Grad-CAM
    ("grad_fam-empty-batch", lambda: gradfam.grad_fam(NET, SAE, IMAGES[:0], 0), ValueError, "images"),
    ("grad_fam-0-255", lambda: gradfam.grad_fam(NET, SAE, IMAGES * 255, 0), WARN, "images"),
    ("grad_fam-imagenet-normalised", lambda: gradfam.grad_fam(NET, SAE, (IMAGES - 0.45) / 0.225, 0), WARN,
     "images"),
    ("grad_fam-uint8", lambda: gradfam.grad_fam(NET, SAE, (IMAGES * 255).to(torch.uint8), 0), TypeError, "images"),
    ("grad_fam-nan-images", lambda: gradfam.grad_fam(NET, SAE, nan_at(IMAGES), 0), ValueError, "images"),
    ("grad_fam-3d-images", lambda: gradfam.grad_fam(NET, SAE, IMAGES[0], 0), ValueError, "images"),
    ("grad_fam-feature-range", lambda: gradfam.grad_fam(NET, SAE, IMAGES, D), ValueError, "feature"),
    ("grad_fam-feature-str", lambda: gradfam.grad_fam(NET, SAE, IMAGES, "3"), TypeError, "feature"),
    ("grad_fam-sign", lambda: gradfam.grad_fam(NET, SAE, IMAGES, 0, sign=0.5), ValueError, "sign"),
    ("grad_cam-target-not-callable", lambda: gradfam.grad_cam(NET, IMAGES, 3), TypeError, "target"),
    # -- actmax: activation maximisation and its check
    ("gallery_scores-0-255", lambda: actmax.gallery_scores(NET, SAE, IMAGES * 255, [0, 1]), WARN, "images"),
    ("gallery_scores-nan-images", lambda: actmax.gallery_scores(NET, SAE, nan_at(IMAGES), [0, 1]), ValueError,
     "images"),
    ("gallery_scores-empty", lambda: actmax.gallery_scores(NET, SAE, IMAGES[:0], []), ValueError, "images"),
    ("activation_maximization-n-zero", lambda: actmax.activation_maximization(NET, SAE, 0, n=0, **FAST),
     ValueError, "n"),
    ("activation_maximization-steps-float",
     lambda: actmax.activation_maximization(NET, SAE, 0, **{**FAST, "steps": 1.5}), TypeError, "steps"),
    ("activation_maximization-feature", lambda: actmax.activation_maximization(NET, SAE, -1, **FAST), ValueError,
     "feature"),
    # -- sae: training, metrics, the strength scale
    ("train_sae-inf-acts", lambda: sae.train_sae(nan_at(A, INF), 2, 0.0, progress=False), ValueError, "acts"),
    ("train_sae-no-samples", lambda: sae.train_sae(A[:0], 2, 0.0, progress=False), ValueError, "acts"),
    ("train_sae-list-acts", lambda: sae.train_sae(A.tolist(), 2, 0.0, progress=False), TypeError, "acts"),
    ("sae_metrics-width", lambda: sae.sae_metrics(SAE, A[:, :2]), ValueError, "acts"),
    ("strength_scale-nan-column", lambda: sae.strength_scale(nan_at(C)), ValueError, "decoder_column"),
    ("decoder_column-feature", lambda: SAE.decoder_column(D), ValueError, "feature"),
    # -- baselines: the same arrays into the other edits
    ("steer_activations-nan-acts", lambda: baselines.steer_activations(nan_at(A), SAE, 0, 1.0), ValueError,
     "acts"),
    ("second_moment-nan-acts", lambda: baselines.second_moment(nan_at(A)), ValueError, "acts"),
    ("rome_edit-nan-cov", lambda: baselines.rome_edit(W, A[0], B, nan_at(torch.eye(M))), ValueError, "cov"),
    ("rome_suppress-float-labels", lambda: baselines.rome_suppress(W, B, A, Y.float(), 0), TypeError,
     "train_labels"),
    ("zero_row-nan-weight", lambda: baselines.ZeroRow(nan_at(W), B, 0), ValueError, "weight"),
    ("salve-nan-column", lambda: baselines.Salve(W, B, 0, nan_at(C), 1.0), ValueError, "decoder_column"),
    # -- activations: the cache every chapter reads
    ("activations-bias-shape", lambda: _acts(bias=B[:2]), ValueError, "bias"),
    ("activations-labels-length", lambda: _acts(val_labels=Y[:2]), ValueError, "val_labels"),
    ("activations-classes", lambda: _acts(classes=["a"]), ValueError, "classes"),
    ("activations-nan-weight", lambda: _acts(weight=nan_at(W)), ValueError, "weight"),
]


def names_argument(message: str, arg: str) -> bool:
    """Does ``message`` name ``arg`` as a word (``acts`` is not named by ``train_acts``)?"""
    return re.search(rf"(?<!\w){re.escape(arg)}(?!\w)", message) is not None


@pytest.mark.parametrize("call, expected, arg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_the_argument(call: Callable[[], Any], expected: type, arg: str) -> None:
    if issubclass(expected, Warning):
        with pytest.warns(expected) as record:
            call()
        assert any(names_argument(str(w.message), arg) for w in record), [str(w.message) for w in record]
    else:
        with pytest.raises(expected) as info:
            call()
        assert names_argument(str(info.value), arg), str(info.value)


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


def test_integer_weights_are_promoted_to_float() -> None:
    """As scikit-learn's ``check_array(dtype=FLOAT_DTYPES)``: an integer head is converted, not refused."""
    w = torch.tensor([[1, 2], [3, 4]])
    out = editing.edit_weights(w, torch.tensor([0.5, 0.25]), 1.0)
    assert out.dtype == torch.get_default_dtype()
    assert torch.allclose(out, torch.tensor([[0.5, 1.5], [1.5, 3.0]]))


def test_images_in_range_raise_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        heat = gradfam.grad_fam(NET, SAE, IMAGES, 0)
    assert heat.shape == (2, 8, 8)


def test_type_errors_are_still_value_errors() -> None:
    """Callers written against the old ``ValueError`` keep working: the new type errors are both."""
    with pytest.raises(ValueError, match="weight"):
        editing.edit_weights(W.tolist(), C, 1.0)
