"""Datasets: the planted-parts generator, Imagenette loading and caching, batch transforms."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salve_utils.method import data

from conftest import imagenette_root


def test_planted_parts_is_deterministic_and_labelled() -> None:
    a = data.make_planted_parts("train", 32, n_per_class=5, seed=3)
    b = data.make_planted_parts("train", 32, n_per_class=5, seed=3)
    c = data.make_planted_parts("val", 32, n_per_class=5, seed=3)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.shape == (50, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.part_labels.shape == (50, len(data.PLANTED_PARTS))
    for n, label in enumerate(a.labels):  # every image holds all the parts of its class
        for part in data.PLANTED_CLASSES[a.classes[label]]:
            assert a.part_labels[n, data.PLANTED_PARTS.index(part)]
    sharing = [c for c, parts in data.PLANTED_CLASSES.items() if "tower" in parts]
    assert len(sharing) == 2  # the Tower analogue is shared by two classes


def test_planted_regime_a_gives_every_class_one_part_of_its_own_and_no_ambiguous_image() -> None:
    a = data.make_planted_parts("train", 32, n_per_class=20, seed=0, regime="unique")
    own = {c: parts[0] for c, parts in data.PLANTED_UNIQUE.items()}
    assert len(set(own.values())) == len(own) == 10  # unique: no part carried by two classes
    carried = [data.PLANTED_PARTS.index(p) for p in own.values()]
    for n, label in enumerate(a.labels):
        shown = a.part_labels[n, carried]
        assert shown.sum() == 1 and shown[int(label)]  # its own part, and no other class's part
    assert a.part_labels[:, [data.PLANTED_PARTS.index(p) for p in ("disc", "ring")]].any()  # distractors
    assert data.dataset_classes("planted", regime="unique") == list(data.PLANTED_UNIQUE)
    with pytest.raises(ValueError, match="regime"):
        data.make_planted_parts("train", 32, regime="mixed")


def test_planted_parts_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        data.make_planted_parts("test")
    with pytest.raises(ValueError, match="size"):
        data.make_planted_parts("train", 8)


def test_class_index_names_valid_classes(planted_small) -> None:
    train, _ = planted_small
    assert train.class_index("pump") == train.classes.index("pump")
    with pytest.raises(ValueError, match="valid classes: spire"):
        train.class_index("church")


def test_random_resized_crop_flip_is_seeded_and_in_range(planted_small) -> None:
    train, _ = planted_small
    x1 = data.random_resized_crop_flip(train.images[:6], 24, torch.Generator().manual_seed(0))
    x2 = data.random_resized_crop_flip(train.images[:6], 24, torch.Generator().manual_seed(0))
    assert x1.shape == (6, 3, 24, 24) and torch.equal(x1, x2)
    assert 0 <= x1.min() and x1.max() <= 1
    # with the full image and no flip the crop is a plain resize
    full = data.random_resized_crop_flip(train.images[:2], 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    assert torch.allclose(full, train.images[:2].float() / 255, atol=1e-5)


def _fake_imagenette(root: Path, grey: bool = True) -> Path:
    folder = root / "imagenette2"
    sums = []
    for split, n in (("train", 2), ("val", 1)):
        for i, wnid in enumerate(sorted(data.IMAGENETTE_CLASSES)):
            d = folder / split / wnid
            d.mkdir(parents=True)
            for j in range(n):
                mode = "L" if grey and i == 0 else "RGB"
                img = Image.fromarray(np.full((40, 50, 3), 20 * i + j, np.uint8)).convert(mode)
                buf = io.BytesIO()
                img.save(buf, "JPEG")
                (d / f"img{j}.JPEG").write_bytes(buf.getvalue())
                sums.append(f"{hashlib.sha256(buf.getvalue()).hexdigest()}  imagenette2/{split}/{wnid}/img{j}.JPEG")
    (root / "imagenette2.sha256").write_text("\n".join(sums) + "\n")
    return folder


def test_imagenette_local_copy_decodes_caches_and_names_classes(tmp_path, monkeypatch) -> None:
    _fake_imagenette(tmp_path)
    monkeypatch.setenv("SALVE_DATA_ROOT", str(tmp_path))
    train = data.load_imagenette("train", 16, workers=1)
    assert train.images.shape == (20, 3, 16, 16)  # greyscale images became RGB
    assert train.classes[4] == "church" and train.classes[7] == "gas pump"
    cached = list((Path(os.environ["SALVE_CACHE_DIR"]) / "datasets").glob("imagenette-train-16px-*.pt"))
    assert len(cached) == 1
    (tmp_path / "imagenette2" / "train" / "n01440764" / "img1.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="missing .*train/n01440764/img1.JPEG"):  # listed, gone: incomplete
        data.load_imagenette("train", 16, workers=1)
    listing = tmp_path / "imagenette2.sha256"  # a copy that changed with its checksum list: a new cache entry
    listing.write_text("".join(line for line in listing.read_text().splitlines(keepends=True)
                               if not line.rstrip().endswith("train/n01440764/img1.JPEG")))
    assert len(data.load_imagenette("train", 16, workers=1)) == 19


def test_imagenette_damaged_file_fails_its_checksum(tmp_path, monkeypatch) -> None:
    folder = _fake_imagenette(tmp_path)
    victim = next((folder / "val").rglob("*.JPEG"))
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setenv("SALVE_DATA_ROOT", str(tmp_path))
    with pytest.raises(Exception, match="checksum mismatch"):
        data.load_imagenette("val", 16, workers=1)


def test_missing_imagenette_says_how_to_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SALVE_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="SALVE_DATA_ROOT") as err:
        data.load_imagenette("val", 16)
    assert "download=True" in str(err.value)


def test_download_verifies_checksum_and_extracts_safely(tmp_path, monkeypatch) -> None:
    src = _fake_imagenette(tmp_path / "src", grey=False)
    archive = tmp_path / "imagenette2-160.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="imagenette2-160")
    digest = hashlib.md5(archive.read_bytes()).hexdigest()  # noqa: S324

    monkeypatch.setattr(data, "_download", lambda url, dest: shutil.copy(archive, dest))
    monkeypatch.setitem(data.IMAGENETTE_ARCHIVES, "160px", ("https://example.invalid/imagenette2-160.tgz", "0" * 32))
    with pytest.raises(OSError, match="checksum mismatch"):
        data.download_imagenette("160px", tmp_path / "dl")
    assert not (tmp_path / "dl" / "imagenette2-160").exists()
    monkeypatch.setitem(data.IMAGENETTE_ARCHIVES, "160px", ("https://example.invalid/imagenette2-160.tgz", digest))
    out = data.download_imagenette("160px", tmp_path / "dl")
    assert (out / "val").is_dir()

    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    monkeypatch.setattr(data, "_download", lambda url, dest: shutil.copy(evil, dest))
    monkeypatch.setitem(data.IMAGENETTE_ARCHIVES, "320px",
                        ("https://example.invalid/x.tgz", hashlib.md5(evil.read_bytes()).hexdigest()))  # noqa: S324
    with pytest.raises(tarfile.TarError):
        data.download_imagenette("320px", tmp_path / "dl2")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "dl2" / "escaped.txt").exists()


@pytest.mark.imagenette
@pytest.mark.skipif(imagenette_root() is None, reason="needs SALVE_DATA_ROOT with imagenette2/")
def test_real_imagenette_counts() -> None:
    val = data.load_imagenette("val", 32)
    assert len(val) == 3925
    assert val.labels.bincount().tolist() == [387, 395, 357, 386, 409, 394, 389, 419, 399, 390]


def test_cifar100_missing_skips_cleanly_with_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SALVE_DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar100/.*cifar-100-python.*SALVE_DATA_ROOT"):
        data.load_cifar100("train")


def test_load_dataset_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("mnist", "train", 32)


def _cifar_root() -> str | None:
    root = os.environ.get("SALVE_DATA_ROOT")
    ok = root and any(os.path.isdir(os.path.join(root, d)) for d in ("cifar-100-python", "cifar100"))
    return root if ok else None


@pytest.mark.skipif(_cifar_root() is None, reason="needs SALVE_DATA_ROOT with cifar100/ or cifar-100-python/")
def test_real_cifar100_loads_with_names_and_exact_pixels() -> None:
    val = data.load_cifar100("test")
    assert len(val) == 10000 and val.images.shape[1:] == (3, 32, 32) and val.classes == data.CIFAR100_CLASSES
    assert val.labels.bincount().tolist() == [100] * 100
    assert val.source  # the chapters print which copy and split this is
    folder = Path(_cifar_root()) / "cifar100" / "test" / "apple"
    if folder.is_dir():  # the offline copy: lossless WebP decodes to CIFAR's exact bytes
        first = np.asarray(Image.open(sorted(folder.iterdir())[0]).convert("RGB")).transpose(2, 0, 1)
        assert torch.equal(val.images[0], torch.from_numpy(first.copy()))


def test_cifar100_offline_folder_is_read_checked_and_named(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    lines = []
    for split in ("train", "test"):
        for cls in ("apple", "aquarium_fish"):
            d = tmp_path / "cifar100" / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:04d}.webp",
                                                                                     lossless=True)
                blob = (d / f"{i:04d}.webp").read_bytes()
                lines.append(f"{hashlib.sha256(blob).hexdigest()}  cifar100/{split}/{cls}/{i:04d}.webp")
    (tmp_path / "cifar100.sha256").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SALVE_DATA_ROOT", str(tmp_path))
    with pytest.warns(UserWarning, match="partial copy"):
        train = data.load_dataset("cifar100", "train", 32)
    assert train.classes == ["apple", "aquarium fish"] and len(train) == 6 and "not the official" in train.source
    pixels = np.asarray(Image.open(tmp_path / "cifar100/train/apple/0000.webp")).transpose(2, 0, 1)
    assert torch.equal(train.images[0], torch.from_numpy(pixels.copy()))
    with pytest.warns(UserWarning, match="partial copy"):
        assert data.load_dataset("cifar100", "val", 32).split == "val"
    # a file that still decodes but differs from the published checksum is refused, by name
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "cifar100/test/apple/0001.webp",
                                                                lossless=True)
    monkeypatch.setenv("SALVE_CACHE_DIR", str(tmp_path / "fresh-cache"))
    with pytest.raises(OSError, match="checksum mismatch for .*0001.webp"):
        data.load_cifar100("val")
    # a file listed in the checksums but gone is named too
    (tmp_path / "cifar100/test/apple/0001.webp").unlink()
    with pytest.raises(FileNotFoundError, match="missing .*test/apple/0001.webp"):
        data.load_cifar100("val")


def test_dataset_classes_need_no_images() -> None:
    assert data.dataset_classes("imagenette")[4] == "church"
    assert len(data.dataset_classes("cifar100")) == 100 and "aquarium fish" in data.dataset_classes("cifar100")
    assert "spire" in data.dataset_classes("planted")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.dataset_classes("mnist")


def test_dataset_cache_key_keeps_the_existing_keys_and_changes_with_the_code_version(monkeypatch) -> None:
    from salve_utils.common import runtime
    from salve_utils.method.data import dataset_cache_path

    key = {"dataset": "imagenette", "split": "train", "size": 160, "listing": "l" * 16, "v": 1}
    assert dataset_cache_path(key).name == "imagenette-train-160px-735b689bc4755699.pt"  # as before versions
    monkeypatch.setitem(runtime.CODE_VERSIONS, "datasets", 2)
    assert dataset_cache_path(key).name != "imagenette-train-160px-735b689bc4755699.pt"
