"""Backbones: the a(x)/head split, checkpoints, training resume and determinism."""

from __future__ import annotations

import pytest
import torch

from salve_utils.method import models

CLASSES = [f"c{i}" for i in range(10)]


@pytest.mark.parametrize("arch, kwargs, width", [
    ("resnet18", {"stem": "cifar"}, 512),
    ("vit_small", {"patch_size": 4, "num_layers": 2}, 192),
    ("vit_small", {"patch_size": 4, "num_layers": 2, "stem": "patch"}, 192),
])
def test_head_input_reproduces_logits(arch, kwargs, width) -> None:
    torch.manual_seed(0)
    model = models.build_model(arch, CLASSES, image_size=32, **kwargs).eval()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        a = model.features(x)
        assert a.shape == (3, width)
        assert torch.allclose(a @ model.head.weight.T + model.head.bias, model(x), atol=1e-5)


def test_vit_b_16_features_are_the_cls_token_after_the_final_layernorm() -> None:
    torch.manual_seed(0)
    model = models.build_model("vit_b_16", CLASSES, image_size=32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        reference = model.body  # torchvision's own forward with heads = Identity
        assert torch.allclose(model.features(x), reference(model.normalize(x)), atol=1e-5)
    assert model.num_features == 768


def test_build_model_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown arch"):
        models.build_model("resnet50", CLASSES)
    with pytest.raises(ValueError, match="weights"):
        models.build_model("resnet18", CLASSES, weights="random")
    with pytest.raises(ValueError, match="unknown option"):
        models.build_model("resnet18", CLASSES, patch_size=4)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        models.build_model("vit_small", CLASSES, image_size=30)


def test_checkpoint_roundtrip_and_mismatch_errors(tmp_path) -> None:
    model = models.build_model("resnet18", CLASSES, image_size=32, stem="cifar").eval()
    path = models.save_model(model, tmp_path / "m.pt")
    again = models.load_model(path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    with pytest.raises(ValueError, match="holds a resnet18 checkpoint, not vit_small"):
        models.load_model(path, arch="vit_small")
    with pytest.raises(ValueError, match="for 10 classes, not 5"):
        models.load_model(path, num_classes=5)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a SALVE backbone checkpoint"):
        models.load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        models.load_model(tmp_path / "missing.pt")


def test_train_config_validates() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        models.TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="unknown training option"):
        models.TrainConfig.from_dict({"epoch": 3})


def _tiny(planted_small, epochs=2):
    train, val = planted_small
    config = models.TrainConfig(epochs=epochs, batch_size=16, lr=0.05, train_size=32, eval_size=32, seed=1,
                                precision="fp32")
    torch.manual_seed(0)
    return train, val, config, models.build_model("resnet18", train.classes, image_size=32, stem="cifar")


def test_training_is_deterministic_and_resumes_to_the_same_weights(planted_small, tmp_path, monkeypatch) -> None:
    train, val, config, model_a = _tiny(planted_small)
    hist_a = models.train(model_a, train, val, config, checkpoint=tmp_path / "a.pt", device="cpu", progress=False)
    _, _, _, model_b = _tiny(planted_small)
    models.train(model_b, train, val, config, device="cpu", progress=False)
    for (k, va), vb in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(va, vb), k

    # interrupt after the first epoch's checkpoint, then resume
    real_save = models._save_training_state
    calls = []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        raise KeyboardInterrupt

    _, _, _, model_c = _tiny(planted_small)
    monkeypatch.setattr(models, "_save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        models.train(model_c, train, val, config, checkpoint=tmp_path / "c.pt", device="cpu", progress=False)
    monkeypatch.setattr(models, "_save_training_state", real_save)
    _, _, _, model_d = _tiny(planted_small)
    hist_d = models.train(model_d, train, val, config, checkpoint=tmp_path / "c.pt", device="cpu", progress=False)
    assert len(calls) == 1 and len(hist_d) == len(hist_a) == 2
    for (k, va), vd in zip(model_a.state_dict().items(), model_d.state_dict().values()):
        assert torch.equal(va, vd), k
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written checkpoint left behind


def test_train_or_load_caches_by_configuration(planted_small) -> None:
    train, val, config, _ = _tiny(planted_small, epochs=1)
    m1, h1, p1 = models.train_or_load("resnet18", train, val, config, device="cpu", progress=False, stem="cifar")
    m2, h2, p2 = models.train_or_load("resnet18", train, val, config, device="cpu", progress=False, stem="cifar")
    assert p1 == p2 and h1.equals(h2)
    config.lr = 0.1
    _, _, p3 = models.train_or_load("resnet18", train, val, config, device="cpu", progress=False, stem="cifar")
    assert p3 != p1


def test_evaluation_tables(planted_small) -> None:
    _, val = planted_small
    logits = torch.nn.functional.one_hot(val.labels, 10).float()
    logits[0] = torch.roll(logits[0], 1)  # one mistake
    ev = models.Evaluation(logits, val.labels, val.classes)
    assert ev.accuracy == pytest.approx(1 - 1 / len(val))
    summary = ev.summary()
    assert summary.iloc[-1]["class"] == "all" and summary["n"].iloc[:-1].sum() == len(val)
    assert ev.confusion.values.sum() == len(val) and ev.confusion.values.trace() == len(val) - 1
