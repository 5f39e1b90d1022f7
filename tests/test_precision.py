"""Precision: pinned is never measured, auto measures once per machine and workload, old caches stay usable."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from salve_utils.method import models, precision
from salve_utils.common.runtime import cache_dir, hash_file, hash_json


def _tiny(planted_small, precision_: str, epochs: int = 1):
    train, val = planted_small
    config = models.TrainConfig(epochs=epochs, batch_size=16, lr=0.05, train_size=32, eval_size=32, seed=1,
                                precision=precision_)
    return train, val, config


@pytest.fixture
def timed(monkeypatch):
    """Both precisions are candidates, and a fake throughput (fp32 100 img/s, bf16 50) counts its calls."""
    calls: list[str] = []
    rates = {"fp32": 100.0, "bf16": 50.0}

    def fake(model, config, precisions, device="auto", **kw):
        calls.extend(precisions)
        return {p: rates[p] for p in precisions}

    monkeypatch.setattr(precision, "candidates", lambda device: ["fp32", "bf16"])
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (0.5, 0.5, 0.5))  # a quiet machine
    monkeypatch.setattr(models, "train_step_images_per_second", fake)
    return calls, rates


@pytest.mark.parametrize("pinned", ["fp32", "bf16"])
def test_a_pinned_precision_is_used_as_given_and_never_measured(pinned, planted_small, timed) -> None:
    calls, _ = timed
    train, val, config = _tiny(planted_small, pinned)
    model = models.build_model("resnet18", train.classes, image_size=32, stem="cifar")
    choice = models.choose_training_precision(model, config, "cpu")
    assert (choice.precision, choice.source, choice.img_per_s) == (pinned, "pinned", {})
    _, history, path = models.train_or_load("resnet18", train, val, config, device="cpu", progress=False,
                                            stem="cifar")
    assert calls == [] and not (cache_dir() / precision.CACHE_FILE).exists()
    assert history.attrs["precision"] == {"precision": pinned, "source": "pinned", "img_per_s": {}}
    blob = torch.load(path, weights_only=True)
    assert blob["config"]["precision"] == pinned and blob["precision"]["source"] == "pinned"


def test_auto_measures_picks_the_faster_and_caches_it(planted_small, timed) -> None:
    calls, rates = timed
    train, _, config = _tiny(planted_small, "auto")
    model = models.build_model("resnet18", train.classes, image_size=32, stem="cifar")
    first = models.choose_training_precision(model, config, "cpu")
    assert (first.precision, first.source, first.img_per_s) == ("fp32", "measured", rates)
    assert sorted(calls) == ["bf16", "fp32"]
    entry, = json.loads((cache_dir() / precision.CACHE_FILE).read_text()).values()
    assert entry["precision"] == "fp32" and entry["key"]["arch"] == "resnet18" and entry["key"]["size"] == 32
    assert entry["key"]["cpu"] and entry["key"]["torch"] == torch.__version__

    second = models.choose_training_precision(model, config, "cpu")
    assert (second.precision, second.source, second.img_per_s) == ("fp32", "cached", rates)
    assert len(calls) == 2  # read from the cache, not measured again

    models.choose_training_precision(model, replace(config, train_size=24), "cpu")
    assert len(calls) == 4  # another input size is another workload


def test_a_measurement_on_a_busy_machine_is_used_but_not_cached(planted_small, timed, monkeypatch) -> None:
    calls, _ = timed
    monkeypatch.setattr(precision.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    train, _, config = _tiny(planted_small, "auto")
    model = models.build_model("resnet18", train.classes, image_size=32, stem="cifar")
    choice = models.choose_training_precision(model, config, "cpu")
    assert choice.precision == "fp32" and choice.source == "measured on a busy machine, not cached"
    assert not (cache_dir() / precision.CACHE_FILE).exists()
    models.choose_training_precision(model, config, "cpu")
    assert len(calls) == 4  # measured again


def test_auto_is_resolved_before_the_cache_key_and_recorded(planted_small, timed) -> None:
    train, val, config = _tiny(planted_small, "auto")
    _, history, path = models.train_or_load("resnet18", train, val, config, device="cpu", progress=False,
                                            stem="cifar")
    assert history.attrs["precision"]["precision"] == "fp32" and history.attrs["precision"]["source"] == "measured"
    blob = torch.load(path, weights_only=True)
    assert blob["config"]["precision"] == "fp32" and blob["precision"]["img_per_s"] == {"fp32": 100.0, "bf16": 50.0}
    _, _, pinned_path = models.train_or_load("resnet18", train, val, replace(config, precision="fp32"),
                                             device="cpu", progress=False, stem="cifar")
    assert pinned_path == path  # auto that resolved to fp32 is the same run as fp32 pinned


def test_precision_must_be_resolved_before_autocast() -> None:
    with pytest.raises(ValueError, match="'auto' is resolved"):
        precision.autocast(torch.device("cpu"), "auto")
    with pytest.raises(ValueError, match="precision must be"):
        precision.choose("fp16", {}, None)


def _legacy_checkpoint(planted_small):
    """A finished checkpoint exactly as the code before measured ``auto`` wrote it: keyed with precision "auto"."""
    train, val, config = _tiny(planted_small, "bf16")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = models.build_model("resnet18", train.classes, None, config.eval_size, stem="cifar")
    old = asdict(replace(config, precision="auto"))
    record = models._model_record(model)
    file_key = hash_json({"model": record, "weights": None, "config": old, "train": train.fingerprint(),
                          "val": val.fingerprint()})  # the former train_or_load key
    path = cache_dir() / "checkpoints" / f"resnet18-{train.name}-{file_key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    history = [{"epoch": 1, "train_loss": 2.0, "train_acc": 0.1, "lr": 0.0, "seconds": 1.0, "img_per_s": 80.0}]
    torch.save({**record, "state_dict": state, "history": history, "config": old,
                "run_key": hash_json({**record, "config": old}), "complete": True}, path)  # the former run key
    return train, val, config, path


@pytest.mark.parametrize("old_rule, requested, reused", [
    ("bf16", "bf16", True),    # a bf16-capable CPU, the profile pins bf16: the reference checkpoints
    ("bf16", "fp32", False),   # it trained in bf16, not fp32
    ("fp32", "bf16", False),   # on a CPU without bf16, the old "auto" trained in fp32
    ("bf16", "auto", False),   # auto measured fp32 faster here (the fake timing)
])
def test_a_checkpoint_keyed_the_old_way_is_reused_only_for_the_precision_it_trained_in(
        old_rule, requested, reused, planted_small, timed, monkeypatch) -> None:
    train, val, config, legacy = _legacy_checkpoint(planted_small)
    before = hash_file(legacy)
    monkeypatch.setattr(models, "legacy_auto_precision", lambda device: old_rule)
    steps = []
    real_step = models._train_step
    monkeypatch.setattr(models, "_train_step", lambda *a, **k: steps.append(1) or real_step(*a, **k))
    model, history, path = models.train_or_load("resnet18", train, val, replace(config, precision=requested),
                                                device="cpu", progress=False, stem="cifar")
    assert hash_file(legacy) == before  # never rewritten: the activation cache is keyed by its bytes
    if reused:
        assert path == legacy and steps == [] and history["img_per_s"].tolist() == [80.0]
        assert history.attrs["precision"] == {"precision": "bf16", "source": "legacy rule", "img_per_s": {}}
        assert all(torch.all(v == 0.5) for v in model.state_dict().values() if v.is_floating_point())
    else:
        assert path != legacy and steps  # trained anew, under a key that names its precision


def test_estimate_training_seconds_counts_validation_passes() -> None:
    # 2 epochs of 3 full batches of 10 at 10 img/s, validated after epochs 1 and 2 (every 1): 6 s + 2 x 2 s
    assert precision.estimate_training_seconds(10, 35, 10, 2, n_val=10, eval_every=1, eval_img_per_s=5) == 10.0
    # 5 epochs validated every 2nd and after the last: after epochs 2, 4 and 5
    assert precision.estimate_training_seconds(10, 10, 10, 5, n_val=10, eval_every=2) == 5 + 3
    with pytest.raises(ValueError, match="positive"):
        precision.estimate_training_seconds(0, 10, 10, 1)
