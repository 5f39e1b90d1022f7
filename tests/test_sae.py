"""Tests of salve_utils.method.sae: the SAE, its loss, training, metrics and files."""

from __future__ import annotations

import pytest
import torch

from salve_utils.method.sae import (
    SparseAutoencoder,
    _loss_terms,
    load_sae,
    normalized_strength,
    sae_metrics,
    save_sae,
    train_sae,
)


@pytest.fixture
def acts() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(4, 12, generator=g)
    codes = torch.randn(300, 4, generator=g) * (torch.rand(300, 4, generator=g) < 0.4)
    return codes @ basis + 0.01 * torch.randn(300, 12, generator=g)


def _identity_sae(d: int) -> SparseAutoencoder:
    sae = SparseAutoencoder(d, d)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.eye(d))
        sae.decoder.weight.copy_(torch.eye(d))
        sae.encoder.bias.zero_()
        sae.decoder.bias.zero_()
    return sae


# --------------------------------------------------------------------------- the module


def test_encode_matches_slow_formula_for_each_activation():
    torch.manual_seed(1)
    a = torch.randn(5, 6)
    for activation, k in (("linear", None), ("relu", None), ("topk", 2)):
        sae = SparseAutoencoder(6, 4, activation=activation, k=k)
        E, be, bd = sae.encoder.weight.detach(), sae.encoder.bias.detach(), sae.decoder.bias.detach()
        z = sae.encode(a).detach()
        centre = bd if activation != "linear" else torch.zeros(6)  # ReLU and TopK encode a - b_d
        for n in range(5):
            pre = [sum(E[l, j] * (a[n, j] - centre[j]) for j in range(6)) + be[l] for l in range(4)]
            if activation == "linear":
                expect = pre
            elif activation == "relu":
                expect = [max(p, 0.0) for p in pre]
            else:
                keep = sorted(range(4), key=lambda l: -float(pre[l]))[:k]
                expect = [max(pre[l], 0.0) if l in keep else 0.0 for l in range(4)]
            assert torch.allclose(z[n], torch.tensor([float(e) for e in expect]), atol=1e-5)
    assert (SparseAutoencoder(6, 4).encode(a) < 0).any()  # the paper's linear SAE: signed latents


def test_decode_and_decoder_column_follow_the_paper_layout():
    torch.manual_seed(2)
    sae = SparseAutoencoder(6, 4)
    z = torch.randn(3, 4)
    D, bd = sae.decoder.weight.detach(), sae.decoder.bias.detach()
    assert D.shape == (6, 4)  # (M, d): D[j, l] = c_j of feature l
    slow = torch.stack([torch.stack([sum(D[j, l] * z[n, l] for l in range(4)) + bd[j] for j in range(6)])
                        for n in range(3)])
    assert torch.allclose(sae.decode(z).detach(), slow, atol=1e-6)
    assert torch.equal(sae.decoder_column(2), D[:, 2].detach())
    a_hat, zz = sae(torch.randn(3, 6))
    assert a_hat.shape == (3, 6) and zz.shape == (3, 4)
    assert sae.d_in == 6 and sae.d_latent == 4


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"d_in": 0, "d_latent": 4}, "d_in"),
        ({"d_in": 4, "d_latent": -1}, "d_latent"),
        ({"d_in": 4, "d_latent": 4, "activation": "tanh"}, "activation"),
        ({"d_in": 4, "d_latent": 4, "activation": "topk"}, "k must be set"),
        ({"d_in": 4, "d_latent": 4, "activation": "topk", "k": 5}, "k must"),
        ({"d_in": 4, "d_latent": 4, "k": 2}, "k is only"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SparseAutoencoder(**kwargs)


def test_decoder_column_rejects_out_of_range_feature():
    with pytest.raises(ValueError, match="feature"):
        SparseAutoencoder(4, 3).decoder_column(3)


# --------------------------------------------------------------------------- loss and training


def test_loss_terms_are_per_sample_sums_averaged_over_the_batch():
    torch.manual_seed(3)
    a, a_hat, z = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 3)
    mse, l1 = _loss_terms(a, a_hat, z)
    slow_mse = sum(float((a[n, j] - a_hat[n, j]) ** 2) for n in range(5) for j in range(4)) / 5
    slow_l1 = sum(abs(float(z[n, l])) for n in range(5) for l in range(3)) / 5
    assert mse.item() == pytest.approx(slow_mse, rel=1e-5)
    assert l1.item() == pytest.approx(slow_l1, rel=1e-5)


def test_train_sae_is_deterministic_per_seed_and_learns(acts):
    kw = dict(d_latent=6, l1=1e-3, epochs=4, batch_size=64, progress=False, device="cpu")
    state = torch.get_rng_state()
    sae1, hist1 = train_sae(acts, seed=0, **kw)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    sae2, hist2 = train_sae(acts, seed=0, **kw)
    sae3, _ = train_sae(acts, seed=1, **kw)
    for p1, p2, p3 in zip(sae1.parameters(), sae2.parameters(), sae3.parameters()):
        assert torch.equal(p1, p2)
    assert not torch.equal(sae1.decoder.weight, sae3.decoder.weight)
    assert hist1.equals(hist2)
    assert list(hist1.columns) == ["epoch", "loss", "mse", "l1"]
    assert hist1["epoch"].tolist() == [1, 2, 3, 4]
    assert (hist1["loss"] - hist1["mse"] - 1e-3 * hist1["l1"]).abs().max() < 1e-6
    assert hist1["loss"].iloc[-1] < hist1["loss"].iloc[0]


def test_unit_norm_decoder_keeps_columns_unit(acts):
    sae, _ = train_sae(acts, d_latent=6, l1=1e-2, epochs=2, progress=False, device="cpu", unit_norm_decoder=True)
    assert torch.allclose(sae.decoder.weight.norm(dim=0), torch.ones(6), atol=1e-5)
    free, _ = train_sae(acts, d_latent=6, l1=1e-2, epochs=2, progress=False, device="cpu")
    assert not torch.allclose(free.decoder.weight.norm(dim=0), torch.ones(6), atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"l1": -1.0}, "l1"), ({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"), ({"seed": -1}, "seed"),
     ({"batch_size": 0}, "batch_size")],
)
def test_train_sae_validates(acts, kwargs, name):
    args = {"d_latent": 4, "l1": 1e-3, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=name):
        train_sae(acts, **args)
    with pytest.raises(ValueError, match="acts"):
        train_sae(acts[0], d_latent=4, l1=0.0, progress=False)


# --------------------------------------------------------------------------- metrics


def test_metrics_of_a_perfect_reconstruction():
    torch.manual_seed(4)
    a = torch.randn(40, 5)
    a[:, 4] = 0.0  # latent 4 never fires: one dead latent out of five
    m = sae_metrics(_identity_sae(5), a, tol=1e-3)
    assert m["fvu"] == pytest.approx(0.0, abs=1e-10)
    assert m["mse"] == pytest.approx(0.0, abs=1e-10)
    assert m["dead_fraction"] == pytest.approx(0.2)
    assert m["l0"] == pytest.approx(float((a.abs() > 1e-3).sum(1).float().mean()))
    assert m["l1"] == pytest.approx(float(a.abs().sum(1).mean()), rel=1e-6)


def test_metrics_match_slow_formulas():
    torch.manual_seed(5)
    sae = SparseAutoencoder(4, 3, activation="relu")
    a = torch.randn(20, 4)
    m = sae_metrics(sae, a, tol=0.05, batch_size=7)  # several chunks
    with torch.no_grad():
        a_hat, z = sae(a)
    mean = [sum(float(a[n, j]) for n in range(20)) / 20 for j in range(4)]
    sse = sum(float(a[n, j] - a_hat[n, j]) ** 2 for n in range(20) for j in range(4))
    sst = sum((float(a[n, j]) - mean[j]) ** 2 for n in range(20) for j in range(4))
    active = [[abs(float(z[n, l])) > 0.05 for l in range(3)] for n in range(20)]
    assert m["fvu"] == pytest.approx(sse / sst, rel=1e-5)
    assert m["mse"] == pytest.approx(sse / 20, rel=1e-5)
    assert m["l0"] == pytest.approx(sum(map(sum, active)) / 20)
    assert m["dead_fraction"] == pytest.approx(sum(not any(r[l] for r in active) for l in range(3)) / 3)
    assert 0 < m["fvu"]


def test_normalized_strength():
    c = torch.tensor([0.1, -0.4, 0.2])
    assert normalized_strength(3.0, c) == pytest.approx(1.2)
    assert torch.allclose(normalized_strength(torch.tensor([0.0, 5.0]), c), torch.tensor([0.0, 2.0]))


# --------------------------------------------------------------------------- files


def test_save_and_load_round_trip(tmp_path, acts):
    sae, _ = train_sae(acts, d_latent=5, l1=1e-3, activation="topk", k=2, epochs=1, progress=False,
                       unit_norm_decoder=True)
    path = save_sae(sae, tmp_path / "sae.pt", l1=1e-3, seed=0, note="test")
    blob = torch.load(path, weights_only=True)
    recorded = {key: blob[key] for key in ("d_in", "d_latent", "activation", "k", "unit_norm_decoder")}
    assert recorded == {"d_in": 12, "d_latent": 5, "activation": "topk", "k": 2, "unit_norm_decoder": True}
    loaded, meta = load_sae(path)
    assert meta == {"l1": 1e-3, "seed": 0, "note": "test"}
    assert (loaded.activation, loaded.k, loaded.unit_norm_decoder) == ("topk", 2, True)
    for x, y in zip(sae(acts), loaded(acts)):
        assert torch.equal(x, y)
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temporary left behind


def test_save_rejects_unloadable_meta_and_load_rejects_other_files(tmp_path):
    sae = SparseAutoencoder(3, 2)
    with pytest.raises(ValueError, match="meta"):
        save_sae(sae, tmp_path / "bad.pt", obj=object())
    assert not (tmp_path / "bad.pt").exists()
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="SAE"):
        load_sae(tmp_path / "other.pt")


def test_an_sae_saved_twice_is_the_same_bytes_with_a_checksum_that_load_verifies(tmp_path):
    from salve_utils.common.runtime import CorruptArtifact, checksum_path, hash_file

    sae = SparseAutoencoder(3, 2)
    first, second = save_sae(sae, tmp_path / "a.pt", seed=0), save_sae(sae, tmp_path / "b.pt", seed=0)
    assert first.read_bytes() == second.read_bytes()  # reruns publish identical artifacts
    assert checksum_path(first).read_text() == f"{hash_file(first)}  a.pt\n"  # `sha256sum -c` reads it
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped, same size
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match=r"a.pt is damaged: its SHA-256"):
        load_sae(first)


@pytest.mark.parametrize("activation,k", [("relu", None), ("topk", 4)])
def test_relu_and_topk_encoders_centre_their_input_so_no_latent_starts_dead(activation, k, tmp_path) -> None:
    # non-negative inputs with a large common mean, like a ResNet's pooled features: uncentred, every latent of a
    # ReLU or TopK encoder can start (and stay) dead, and the autoencoder reconstructs nothing (FVU ~ 1)
    g = torch.Generator().manual_seed(0)
    codes = torch.rand(600, 8, generator=g) * (torch.rand(600, 8, generator=g) < 0.3)
    a = 5.0 + codes @ torch.rand(8, 24, generator=g)  # sparse non-negative parts over a common mean
    fit, _ = train_sae(a, 16, 0.0 if k else 0.01, activation=activation, k=k, epochs=40, seed=0, progress=False)
    assert fit.centre_input and sae_metrics(fit, a)["fvu"] < 0.3
    plain, _ = train_sae(a, 16, 0.0, epochs=5, seed=0, progress=False)
    assert not plain.centre_input  # the paper's linear autoencoder keeps its own parameterisation
    save_sae(fit, tmp_path / "s.pt")
    back, _ = load_sae(tmp_path / "s.pt")
    assert back.centre_input and torch.equal(back.encode(a), fit.encode(a))
