"""Cached activations reproduce the model's logits through the head."""

from __future__ import annotations

import torch

from salve_utils.method import activations, models


def test_cached_activations_reproduce_model_logits(planted_small, tmp_path) -> None:
    train, val = planted_small
    torch.manual_seed(0)
    model = models.build_model("resnet18", train.classes, image_size=32, stem="cifar").eval()
    ckpt = models.save_model(model, tmp_path / "m.pt")
    acts, path = activations.cached_activations(model, ckpt, train, val, 32, device="cpu", progress=False)
    logits = models.predict_logits(model, val, 32, device="cpu")
    assert (acts.logits("val") - logits).abs().max().item() <= 1e-4
    reloaded = activations.load_activations(path)  # from disk, weights_only
    assert (reloaded.logits("val") - logits).abs().max().item() <= 1e-4
    again, path2 = activations.cached_activations(model, ckpt, train, val, 32, device="cpu", progress=False)
    assert path2 == path and torch.equal(again.train, acts.train)
    assert acts.class_index("pump") == train.classes.index("pump")


def test_vit_activations_reproduce_logits(planted_small, tmp_path) -> None:
    train, val = planted_small
    torch.manual_seed(0)
    model = models.build_model("vit_small", train.classes, image_size=32, patch_size=4, num_layers=2).eval()
    ckpt = models.save_model(model, tmp_path / "v.pt")
    acts, _ = activations.cached_activations(model, ckpt, train, val, 32, device="cpu", progress=False)
    assert (acts.logits("val") - models.predict_logits(model, val, 32, device="cpu")).abs().max() <= 1e-4


def test_cache_key_keeps_the_existing_keys_and_changes_with_the_code_version(monkeypatch) -> None:
    from salve_utils.common import runtime

    path = activations.activations_cache_path("resnet18", "c" * 64, "planted", "t" * 16, "v" * 16, 32)
    assert path.name == "resnet18-planted-4a144c39e39e1103.pt"  # the key caches were written under before versions
    monkeypatch.setitem(runtime.CODE_VERSIONS, "activations", 2)
    assert activations.activations_cache_path("resnet18", "c" * 64, "planted", "t" * 16, "v" * 16, 32) != path
