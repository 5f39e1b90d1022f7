"""Shared fixtures: tiny synthetic data and models that run in seconds on one CPU core."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its caches to a private folder, never to the project's data/cache."""
    monkeypatch.setenv("SALVE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def planted_small():
    from salve_utils.data import make_planted_parts

    return make_planted_parts("train", 32, n_per_class=8, seed=0), make_planted_parts("val", 32, n_per_class=4)


@pytest.fixture(scope="module")
def resnet():
    """A ResNet-18 with the CIFAR stem for 32 px images of three classes, in eval mode."""
    from salve_utils.models import build_model

    torch.manual_seed(0)
    return build_model("resnet18", ["a", "b", "c"], image_size=32, stem="cifar").eval()


def imagenette_root() -> str | None:
    root = os.environ.get("SALVE_DATA_ROOT")
    return root if root and os.path.isdir(os.path.join(root, "imagenette2")) else None
