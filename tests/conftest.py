"""Shared fixtures: tiny synthetic data and models that run in seconds on one CPU core."""

from __future__ import annotations

import os
import signal

import pytest
import torch

torch.set_num_threads(1)

# The Ctrl-C tests deliver SIGINT to this process and its children. A shell without job control
# (`make test &`, nohup) starts pytest with SIGINT ignored, which the pipeline rightly keeps
# ignored: give the test process the handler a terminal would have.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its caches to a private folder, never to the project's data/cache."""
    monkeypatch.setenv("SALVE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def planted_small():
    from salve_utils.method.data import make_planted_parts

    return make_planted_parts("train", 32, n_per_class=8, seed=0), make_planted_parts("val", 32, n_per_class=4)


@pytest.fixture(scope="module")
def resnet():
    """A ResNet-18 with the CIFAR stem for 32 px images of three classes, in eval mode."""
    from salve_utils.method.models import build_model

    torch.manual_seed(0)
    return build_model("resnet18", ["a", "b", "c"], image_size=32, stem="cifar").eval()


def imagenette_root() -> str | None:
    root = os.environ.get("SALVE_DATA_ROOT")
    return root if root and os.path.isdir(os.path.join(root, "imagenette2")) else None


@pytest.fixture
def head():
    """A 4-class head on 7-d activations, a decoder column and labels: (acts, labels, weight, bias, column)."""
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(12, 7, generator=g) * 2
    weight = torch.randn(4, 7, generator=g)
    bias = torch.randn(4, generator=g) * 0.1
    column = torch.randn(7, generator=g) * 0.5
    labels = torch.arange(12) % 4
    return acts, labels, weight, bias, column


@pytest.fixture(scope="module")
def tiny_model():
    """A ten-class ResNet-18 (CIFAR stem, 32 px), three images and an untrained SAE on its 512-d head input."""
    from salve_utils.method.models import build_model
    from salve_utils.method.sae import SparseAutoencoder

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("resnet18", classes=[f"class{i}" for i in range(10)], image_size=32, stem="cifar").eval()
        images = torch.rand(3, 3, 32, 32)
        sae = SparseAutoencoder(512, 8)
    return model, images, sae


@pytest.fixture(scope="module")
def toy():
    """Activations of 3 classes that a linear head separates, and an SAE trained on them."""
    from salve_utils.method import sae as sae_lib
    from salve_utils.method.activations import Activations

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 12, generator=g) * 3
    labels = torch.arange(3).repeat_interleave(40)
    x = centres[labels] + torch.randn(len(labels), 12, generator=g)
    weight, bias = centres.clone(), -torch.ones(3)  # logits cross zero under suppression
    acts = Activations(x, labels, x.clone(), labels.clone(), ["a", "b", "c"], weight, bias, {"size": 8})
    ae, _ = sae_lib.train_sae(x, 6, 1e-3, epochs=30, seed=0, device="cpu", progress=False)
    return acts, ae
