"""Stage 0 — data: Imagenette, CIFAR-100 and the synthetic "planted parts" control set.

Every dataset becomes an :class:`ImageSet`: a uint8 tensor of images ``(N, 3, S, S)``
plus integer labels and human-readable class names. Real images are decoded once
and cached on disk (keyed by dataset, split, resolution and the file listing), so
training epochs are bound by compute, not by JPEG decoding. Augmentations work on
whole batches of tensors (CPU or GPU).

Where the data comes from, in order:

1. an explicit ``root=`` argument;
2. ``$SALVE_DATA_ROOT`` (a folder holding ``imagenette2/`` and/or ``cifar-100-python/``;
   offline machines point it at a read-only local copy);
3. ``<project>/data/raw``, where ``download=True`` puts the official archives,
   verified by checksum and extracted safely.

>>> train = load_dataset("planted", "train", size=32)   # doctest: +SKIP
>>> train.images.shape, train.classes[:2]                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import os
import tarfile
import tempfile
import urllib.request
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..common.runtime import cache_dir, hash_json, load_cached, project_root, save_artifact, torch_load, versioned

__all__ = [
    "IMAGENETTE_CLASSES",
    "ImageSet",
    "PLANTED_CLASSES",
    "PLANTED_PARTS",
    "PLANTED_REGIMES",
    "PLANTED_UNIQUE",
    "batches",
    "center_resize",
    "class_index",
    "data_root",
    "dataset_classes",
    "dataset_from_spec",
    "download_imagenette",
    "load_cifar100",
    "load_dataset",
    "load_imagenette",
    "make_planted_parts",
    "planted_class_table",
    "planted_classes",
    "random_resized_crop_flip",
    "square_image",
]

#: Imagenette's ten ImageNet classes, wnid -> readable name (wnid order = label order).
IMAGENETTE_CLASSES: dict[str, str] = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}

#: Official archives (fast.ai) and their published MD5 checksums.
IMAGENETTE_ARCHIVES: dict[str, tuple[str, str]] = {
    "full": ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz", "fe2fc210e6bb7c5664d602c3cd71e612"),
    "320px": ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz", "3df6f0d01a2c9592104656642f5e78a3"),
    "160px": ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz", "e793b78cc4c9e9a4ccc0c1155377a412"),
}
_IMAGENETTE_DIRS = {"full": "imagenette2", "320px": "imagenette2-320", "160px": "imagenette2-160"}
_SPLITS = ("train", "val")
#: How the offline CIFAR-100 copy was split (its README): not the official partition.
CIFAR100_OFFLINE_SPLIT = ("offline copy: all 60,000 CIFAR-100 images, split 500/100 per class by a fixed seeded "
                          "shuffle, not the official train/test partition")
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".webp"}


def class_index(classes: Sequence[str], name: str | int) -> int:
    """Position of class ``name`` (or a valid integer index) in ``classes``.

    The one place where a class given by a person is resolved: an unknown name
    raises a ``ValueError`` that lists the valid names.
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool) and 0 <= int(name) < len(classes):
        return int(name)
    if name in classes:
        return list(classes).index(name)
    raise ValueError(f"unknown class {name!r}; valid classes: {', '.join(map(str, classes))}")


@dataclass
class ImageSet:
    """A labelled image set held in memory as uint8 tensors.

    Attributes
    ----------
    images : uint8 tensor ``(N, 3, S, S)``
    labels : int64 tensor ``(N,)``, indices into ``classes``
    classes : readable class names, in label order
    name, split : where it came from
    parts, part_labels : for synthetic data, the planted part names and a bool
        tensor ``(N, len(parts))`` saying which parts each image contains
    source : which copy and split the images came from, in words (e.g. the
        official partition or a seeded re-split), for the chapters to print
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    split: str = ""
    parts: list[str] = field(default_factory=list)
    part_labels: torch.Tensor | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def class_index(self, name: str | int) -> int:
        """Label of a class given by name (or index); a clear error lists the valid names."""
        return class_index(self.classes, name)

    def subset(self, index: torch.Tensor | Sequence[int]) -> "ImageSet":
        """A new set holding the images at ``index``."""
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            self.images[index], self.labels[index], list(self.classes), self.name, self.split, list(self.parts),
            None if self.part_labels is None else self.part_labels[index], self.source,
        )

    def per_class(self, n: int, seed: int = 0) -> "ImageSet":
        """At most ``n`` images of every class, chosen reproducibly."""
        g = torch.Generator().manual_seed(seed)
        keep = []
        for k in range(self.num_classes):
            idx = torch.nonzero(self.labels == k).flatten()
            keep.append(idx[torch.randperm(len(idx), generator=g)[:n]].sort().values)
        return self.subset(torch.cat(keep))

    def fingerprint(self) -> str:
        """Content hash (images and labels) used to key downstream caches."""
        h = hashlib.sha256()
        h.update(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        h.update("|".join(self.classes).encode())
        return h.hexdigest()[:16]


# =========================================================================== locating data


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Folder that holds (or will hold) the raw datasets: ``root``, ``$SALVE_DATA_ROOT`` or ``data/raw``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get("SALVE_DATA_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    return project_root() / "data" / "raw"


def _find_imagenette(root: Path, variant: str) -> Path | None:
    names = [_IMAGENETTE_DIRS[variant]] + [d for v, d in _IMAGENETTE_DIRS.items() if v != variant]
    for candidate in [root] + [root / n for n in names]:
        if all((candidate / s).is_dir() for s in _SPLITS):
            return candidate
    return None


def download_imagenette(variant: str = "320px", root: str | os.PathLike | None = None) -> Path:
    """Download an official Imagenette archive, verify its MD5 and extract it safely.

    The archive is streamed to a temporary file, checked against the checksum
    fast.ai publishes, and extracted with tarfile's ``"data"`` filter (no absolute
    paths, no ``..``, no links out of the tree) into a temporary folder that is
    renamed into place only when complete.
    """
    if variant not in IMAGENETTE_ARCHIVES:
        raise ValueError(f"variant must be one of {sorted(IMAGENETTE_ARCHIVES)}, got {variant!r}")
    url, md5 = IMAGENETTE_ARCHIVES[variant]
    dest_root = data_root(root)
    dest_root.mkdir(parents=True, exist_ok=True)
    final = dest_root / _IMAGENETTE_DIRS[variant]
    if final.is_dir():
        return final
    with tempfile.TemporaryDirectory(dir=dest_root, prefix=".download-") as tmp:
        archive = Path(tmp) / Path(url).name
        _download(url, archive)
        digest = _md5(archive)
        if digest != md5:
            raise OSError(f"checksum mismatch for {url}: expected md5 {md5}, got {digest}. Delete and retry.")
        out = Path(tmp) / "extract"
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
        os.replace(out / _IMAGENETTE_DIRS[variant], final)
    return final


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:  # noqa: S310 (fixed URLs)
        total = int(response.headers.get("Content-Length", 0)) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {Path(url).name}") as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                bar.update(len(chunk))


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 (the publisher's checksum is MD5)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _imagenette_dir(root: str | os.PathLike | None, download: bool, variant: str) -> Path:
    base = data_root(root)
    found = _find_imagenette(base, variant)
    if found is not None:
        return found
    if download:
        return download_imagenette(variant, base)
    raise FileNotFoundError(
        f"Imagenette not found: looked for {base}/{_IMAGENETTE_DIRS[variant]}/{{train,val}}/<wnid>/*.JPEG "
        "(and the other official variants). Fix: pass download=True (or --download) to fetch the official "
        "archive, or set SALVE_DATA_ROOT to a folder that holds imagenette2/, e.g. "
        "`export SALVE_DATA_ROOT=../shared/data` on the offline machines."
    )


# =========================================================================== decoding and caching


def _read_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 list published beside a local copy (``<folder>.sha256``), keyed by relative path."""
    listing = folder.parent / f"{folder.name}.sha256"
    if not listing.is_file():
        return {}
    sums = {}
    for line in listing.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            name = name.lstrip("*").removeprefix("./")
            sums[name.removeprefix(f"{folder.name}/")] = digest
    return sums


def _decode_one(args: tuple[str, int, str | None]) -> np.ndarray:
    from PIL import Image

    path, size, expected = args
    data = Path(path).read_bytes()
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise OSError(f"checksum mismatch for {path}: the local copy is damaged; restore it from the source")
    import io

    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... for damaged files
        raise OSError(f"cannot decode {path}: {type(err).__name__}: {err}; the local copy is damaged, restore "
                      "that file from the source (or delete it, and its line in the .sha256 list if there is one)"
                      ) from None
    with im:
        im = square_image(im.convert("RGB"), size)  # greyscale and CMYK images become RGB
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def square_image(im: "Image.Image", size: int) -> "Image.Image":
    """A PIL image with its shorter side resized to ``size`` (bicubic) and centre-cropped to a square.

    How every real image is brought to its stored size (and how the device pack
    re-encodes them, ``salve_utils.pipeline.devicepack``); an image already ``size`` square
    comes back unchanged.
    """
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC,
                   reducing_gap=3.0)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def _decode_folder(folder: Path, split: str, size: int, classes: dict[str, str], workers: int,
                   name: str = "imagenette", split_dir: str | None = None) -> ImageSet:
    """Decode ``folder/<split_dir>/<class dir>/*`` (class dirs in sorted order = label order) at ``size`` px.

    ``classes`` maps each class folder to its readable name. Every file is checked
    against the SHA-256 list published beside the copy (``<folder>.sha256``), when
    there is one; a missing class folder or an unreadable image names the file.
    """
    dirs = sorted(classes)
    files: list[tuple[Path, int]] = []
    for label, d in enumerate(dirs):
        class_dir = folder / (split_dir or split) / d
        if not class_dir.is_dir():
            raise FileNotFoundError(f"{class_dir} is missing: the {name} copy at {folder} is incomplete")
        found = [(p, label) for p in sorted(class_dir.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES]
        if not found:
            raise FileNotFoundError(f"{class_dir} holds no images ({', '.join(sorted(_IMAGE_SUFFIXES))}): the "
                                    f"{name} copy at {folder} is incomplete; restore that folder from the source")
        files += found
    sums = _read_checksums(folder)
    present = {p.relative_to(folder).as_posix() for p, _ in files}
    prefix = f"{split_dir or split}/"
    missing = sorted(k for k in sums if k.startswith(prefix) and k.split("/")[1] in classes and k not in present)
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) listed in {folder.name}.sha256 are missing from {folder}, "
                                f"e.g. {missing[0]}: the local copy is incomplete; restore it from the source")
    jobs = [(str(p), size, sums.get(p.relative_to(folder).as_posix())) for p, _ in files]
    images = np.empty((len(jobs), 3, size, size), dtype=np.uint8)
    desc = f"decode {name} {split} @{size}px"
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i, arr in enumerate(tqdm(pool.map(_decode_one, jobs, chunksize=64), total=len(jobs), desc=desc)):
            images[i] = arr
    labels = torch.tensor([label for _, label in files], dtype=torch.long)
    return ImageSet(torch.from_numpy(images), labels, [classes[d] for d in dirs], name, split)


def _listing_key(folder: Path, split: str) -> str:
    """Cheap identity of a folder of images: relative names and sizes of every file."""
    entries = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size) for p in (folder / split).rglob("*") if p.is_file()
    )
    return hash_json(entries)


def dataset_cache_path(key: dict) -> Path:
    """Where decoded images are cached: keyed by dataset, split, size, file listing and the code version
    (``runtime.CODE_VERSIONS["datasets"]``)."""
    name = f"{key['dataset']}-{key['split']}-{key['size']}px-{hash_json(versioned('datasets', key))}.pt"
    return cache_dir() / "datasets" / name


def _load_decoded(path: Path) -> ImageSet:
    blob = torch_load(path)
    return ImageSet(blob["images"], blob["labels"], blob["classes"], blob["name"], blob["split"])


def _cached(key: dict, build) -> ImageSet:
    """Decoded images from the cache (:func:`dataset_cache_path`), or ``build()`` them and cache them; a damaged
    cache file is discarded and rebuilt."""
    path = dataset_cache_path(key)
    data = load_cached(path, _load_decoded)
    if data is None:
        data = build()
        save_artifact({"images": data.images, "labels": data.labels, "classes": data.classes, "name": data.name,
                       "split": data.split, "key": key}, path)
    return data


def load_imagenette(
    split: str,
    size: int = 160,
    root: str | os.PathLike | None = None,
    download: bool = False,
    variant: str = "320px",
    workers: int | None = None,
) -> ImageSet:
    """Imagenette ``split`` ("train" or "val") as ``size``-pixel squares (shorter side resized, centre crop).

    The first call decodes every JPEG (checking it against ``imagenette2.sha256``
    when a local copy ships one) and caches the uint8 tensor; later calls load the
    cache in about a second. ``variant`` picks the archive to download.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 pixels, got {size!r}")
    folder = _imagenette_dir(root, download, variant)
    key = {"dataset": "imagenette", "split": split, "size": size, "listing": _listing_key(folder, split), "v": 1}
    workers = workers or max(1, (os.cpu_count() or 1))
    return _cached(key, lambda: _decode_folder(folder, split, size, IMAGENETTE_CLASSES, workers))


def load_cifar100(split: str, root: str | os.PathLike | None = None, download: bool = False,
                  workers: int | None = None) -> ImageSet:
    """CIFAR-100 ``split`` ("train" or "val"/"test") at its native 32 px, with its 100 fine class names.

    Two sources are accepted, in this order:

    * ``<root>/cifar100/{train,test}/<fine label>/*.webp`` -- the offline copy
      (lossless WebP, exact pixels, every file checked against ``cifar100.sha256``).
      Its train/test partition is a *seeded 500/100 split per class, not the official
      one*: ``ImageSet.source`` says so and the chapters print it.
    * ``<root>/cifar-100-python`` -- torchvision's official archive (``download=True``
      fetches it, checksummed by torchvision); ``source`` is ``"official"``.

    Decoded images are cached like Imagenette's.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test' (= val), got {split!r}")
    out_split = "val" if split != "train" else "train"
    base = data_root(root)
    folder = next((c for c in (base / "cifar100", base) if (c / "train").is_dir() and (c / "test").is_dir()
                   and (c / "train" / "apple").is_dir()), None)
    if folder is not None:
        key = {"dataset": "cifar100", "split": out_split, "size": 32,
               "listing": _listing_key(folder, "test" if out_split == "val" else "train"), "v": 1}
        classes = {d.name: d.name.replace("_", " ") for d in (folder / "train").iterdir() if d.is_dir()}
        if len(classes) == len(CIFAR100_CLASSES) and sorted(classes.values()) != sorted(CIFAR100_CLASSES):
            raise ValueError(f"{folder}/train holds class folders that are not CIFAR-100's fine labels; "
                             "restore the copy from the source")
        if len(classes) != len(CIFAR100_CLASSES):
            warnings.warn(f"{folder}/train has {len(classes)} class folders, not CIFAR-100's 100: a partial copy "
                          "(class-name checks assume all 100)", stacklevel=2)
        workers = workers or max(1, (os.cpu_count() or 1))
        data = _cached(key, lambda: _decode_folder(folder, out_split, 32, classes, workers, name="cifar100",
                                                   split_dir="test" if out_split == "val" else "train"))
        data.source = CIFAR100_OFFLINE_SPLIT
        return data
    if not (base / "cifar-100-python").is_dir() and not download:
        raise FileNotFoundError(
            f"CIFAR-100 not found: looked for {base}/cifar100/{{train,test}}/<label>/*.webp (the offline copy) and "
            f"{base}/cifar-100-python (torchvision's archive). Fix: pass data_options={{download: true}} to fetch "
            "the official archive, or set SALVE_DATA_ROOT to a folder holding one of them, e.g. "
            "`export SALVE_DATA_ROOT=../shared/data` on the offline machines."
        )
    from torchvision.datasets import CIFAR100

    ds = CIFAR100(str(base), train=split == "train", download=download)
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    classes = [c.replace("_", " ") for c in ds.classes]
    return ImageSet(images, torch.tensor(ds.targets, dtype=torch.long), classes, "cifar100", out_split,
                    source="official")


#: CIFAR-100's fine labels in label order (official spelling, ``_`` read as a space).
CIFAR100_CLASSES: list[str] = [c.replace("_", " ") for c in (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()]


def dataset_classes(name: str, **options) -> list[str]:
    """The class names of a dataset, in label order, without loading any image.

    >>> dataset_classes("imagenette")[:2]
    ['tench', 'English springer']
    >>> len(dataset_classes("cifar100"))
    100
    """
    if name == "imagenette":
        return list(IMAGENETTE_CLASSES.values())
    if name == "cifar100":
        return list(CIFAR100_CLASSES)
    if name == "planted":
        return list(planted_classes(options.get("regime", "shared")))
    raise ValueError(f"unknown dataset {name!r}; choose 'imagenette', 'cifar100' or 'planted'")


def load_dataset(name: str, split: str, size: int, seed: int = 0, **kwargs) -> ImageSet:
    """One entry point for every dataset the report uses: "imagenette", "cifar100" or "planted"."""
    if name == "imagenette":
        return load_imagenette(split, size, **kwargs)
    if name == "cifar100":
        data = load_cifar100(split, **kwargs)
        return data if size == data.size else _resized(data, size)
    if name == "planted":
        return make_planted_parts(split=split, size=size, seed=seed, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; choose 'imagenette', 'cifar100' or 'planted'")


def dataset_from_spec(spec: dict, split: str) -> ImageSet:
    """Reload the data a backbone was evaluated on, from the spec its chapter recorded.

    ``spec`` holds ``dataset``, ``eval_size``, ``seed`` and ``data_options`` (what
    ``load_dataset`` was given); the split comes back at the evaluation size.
    """
    missing = {"dataset", "eval_size"} - set(spec)
    if missing:
        raise ValueError(f"spec lacks {sorted(missing)}")
    return load_dataset(spec["dataset"], split, spec["eval_size"], seed=spec.get("seed", 0),
                        **spec.get("data_options", {}))


def _resized(data: ImageSet, size: int) -> ImageSet:
    images = torch.cat([center_resize(b, size).mul(255).round().to(torch.uint8) for b in data.images.split(512)])
    return ImageSet(images, data.labels, data.classes, data.name, data.split, data.parts, data.part_labels,
                    data.source)


# =========================================================================== synthetic planted parts

#: The part vocabulary of the synthetic control set.
PLANTED_PARTS: list[str] = [
    "disc", "ring", "square", "triangle", "cross", "stripes", "checker", "dots", "zigzag", "tower", "bar", "arc",
]
#: Each class is a fixed set of parts; "tower" is shared by two classes, like the
#: paper's Tower feature shared by church and gas pump.
PLANTED_CLASSES: dict[str, tuple[str, ...]] = {
    "spire": ("tower", "ring"),
    "pump": ("tower", "checker"),
    "target": ("ring", "dots"),
    "flag": ("stripes", "square"),
    "kite": ("triangle", "zigzag"),
    "medic": ("cross", "disc"),
    "board": ("checker", "bar"),
    "rainbow": ("arc", "stripes"),
    "dice": ("square", "dots"),
    "signal": ("triangle", "bar"),
}


#: Regime A of the known-answer control: each class carried by one part of its own (the same
#: class names, so every profile parameter that names a class works in both regimes). "disc"
#: and "ring" belong to no class: they are the distractors, so no image shows two classes' parts.
PLANTED_UNIQUE: dict[str, tuple[str, ...]] = {
    "spire": ("tower",),
    "pump": ("checker",),
    "target": ("dots",),
    "flag": ("stripes",),
    "kite": ("zigzag",),
    "medic": ("cross",),
    "board": ("bar",),
    "rainbow": ("arc",),
    "dice": ("square",),
    "signal": ("triangle",),
}
#: The planted regimes: "shared" (B, the default: every class an AND of two parts, most parts
#: shared by two classes) and "unique" (A: one class-unique part per class).
PLANTED_REGIMES: dict[str, dict[str, tuple[str, ...]]] = {"shared": PLANTED_CLASSES, "unique": PLANTED_UNIQUE}


def planted_classes(regime: str = "shared") -> dict[str, tuple[str, ...]]:
    """The class -> parts map of a planted regime ("shared", regime B, or "unique", regime A).

    >>> planted_classes("unique")["spire"]
    ('tower',)
    >>> planted_classes("shared")["spire"]
    ('tower', 'ring')
    """
    if regime not in PLANTED_REGIMES:
        raise ValueError(f"regime must be one of {sorted(PLANTED_REGIMES)}, got {regime!r}")
    return PLANTED_REGIMES[regime]


def planted_class_table(regime: str = "shared") -> "pd.DataFrame":
    """The planted classes and the parts each one is made of, in a regime (see :func:`planted_classes`)."""
    import pandas as pd

    return pd.DataFrame([{"class": c, "parts": " + ".join(p)} for c, p in planted_classes(regime).items()])


def _part_mask(part: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    """Boolean mask of one part of radius ``r`` centred at (cy, cx) on a pixel grid."""
    dy, dx = yy - cy, xx - cx
    inside_box = (np.abs(dy) <= r) & (np.abs(dx) <= r)
    if part == "disc":
        return dy**2 + dx**2 <= r**2
    if part == "ring":
        d = np.sqrt(dy**2 + dx**2)
        return (d <= r) & (d >= 0.6 * r)
    if part == "square":
        return (np.abs(dy) <= 0.8 * r) & (np.abs(dx) <= 0.8 * r)
    if part == "triangle":
        return (dy <= 0.8 * r) & (dy >= -r + 2 * np.abs(dx))
    if part == "cross":
        w = 0.3 * r
        return inside_box & ((np.abs(dy) <= w) | (np.abs(dx) <= w))
    if part == "stripes":
        period = max(2.0, 0.5 * r)
        return inside_box & (np.mod(dy, period) < period / 2)
    if part == "checker":
        period = max(2.0, 0.5 * r)
        return inside_box & ((np.floor(dy / period) + np.floor(dx / period)) % 2 == 0)
    if part == "dots":
        period = max(3.0, 0.66 * r)
        my, mx = np.mod(dy, period) - period / 2, np.mod(dx, period) - period / 2
        return inside_box & (my**2 + mx**2 <= (period / 3.2) ** 2)
    if part == "zigzag":
        period = max(3.0, 0.8 * r)
        tri = np.abs(np.mod(dx, period) - period / 2) / (period / 2)  # 0..1 triangle wave
        return (np.abs(dx) <= r) & (np.abs(dy - (tri - 0.5) * r) <= max(1.0, 0.18 * r))
    if part == "tower":  # a tall shaft with a pointed roof: the shared "Tower" analogue
        shaft = (np.abs(dx) <= 0.25 * r) & (dy >= -0.3 * r) & (dy <= r)
        roof = (dy < -0.3 * r) & (dy >= -1.1 * r) & (np.abs(dx) <= 0.45 * (dy + 1.1 * r))
        return shaft | roof
    if part == "bar":
        return (np.abs(dy) <= 0.22 * r) & (np.abs(dx) <= r)
    if part == "arc":
        d = np.sqrt(dy**2 + (dx) ** 2)
        return (d <= r) & (d >= 0.75 * r) & (dy <= 0.1 * r)
    raise ValueError(f"unknown part {part!r}")


def make_planted_parts(
    split: str = "train",
    size: int = 32,
    n_per_class: int | None = None,
    seed: int = 0,
    distractor_prob: float = 0.3,
    regime: str = "shared",
) -> ImageSet:
    """The synthetic "planted parts" set: known features, generated in seconds, no download.

    Each of 10 classes is a composition of two parts from :data:`PLANTED_PARTS`
    (see :data:`PLANTED_CLASSES`), drawn at random positions, sizes and colours over
    a noisy, tinted background. With probability ``distractor_prob`` an image also
    gets one part of another class, so that parts, not classes, are the unit of
    the ground truth. ``part_labels[n, p]`` says whether image ``n`` contains part
    ``p``. The "tower" part is shared by "spire" and "pump": the analogue of the
    paper's Tower feature shared by church and gas pump.

    ``regime="unique"`` (regime A of the known-answer control) gives each class one part
    of its own (:data:`PLANTED_UNIQUE`); its distractors are drawn only from the parts no
    class carries, so every image is unambiguously its class. The default
    ``regime="shared"`` is regime B above, where the paper's claim may break.

    Deterministic: the same ``split``, ``size``, ``n_per_class`` and ``seed`` give
    the same tensor (train and val use different streams).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels for the parts to be drawn, got {size}")
    n_per_class = n_per_class or (300 if split == "train" else 100)
    mapping = planted_classes(regime)
    rng = np.random.default_rng([seed, _SPLITS.index(split), size])
    classes = list(mapping)
    carried = {p for parts in mapping.values() for p in parts}
    part_index = {p: i for i, p in enumerate(PLANTED_PARTS)}
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    n = n_per_class * len(classes)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    part_labels = np.zeros((n, len(PLANTED_PARTS)), dtype=bool)
    for i, label in enumerate(labels):
        parts = list(mapping[classes[label]])
        if rng.random() < distractor_prob:
            others = [p for p in PLANTED_PARTS if p not in parts and (regime == "shared" or p not in carried)]
            parts.append(others[rng.integers(len(others))])
        # background: a random tint with a gentle gradient and pixel noise
        tint = rng.uniform(0.2, 0.8, size=3)
        grad = (yy / size - 0.5)[None] * rng.uniform(-0.3, 0.3, size=(3, 1, 1))
        canvas = tint[:, None, None] + grad + rng.normal(0, 0.08, size=(3, size, size))
        # parts in distinct cells of a 2x2 grid (+ jitter) so that they rarely overlap
        cells = rng.permutation(4)[: len(parts)]
        for part, cell in zip(parts, cells):
            r = size * rng.uniform(0.14, 0.22)
            cy = size * (0.25 + 0.5 * (cell // 2)) + rng.uniform(-0.06, 0.06) * size
            cx = size * (0.25 + 0.5 * (cell % 2)) + rng.uniform(-0.06, 0.06) * size
            mask = _part_mask(part, yy, xx, cy, cx, r)
            colour = rng.uniform(0, 1, size=3)
            while np.abs(colour - tint).max() < 0.35:  # keep parts visible against the background
                colour = rng.uniform(0, 1, size=3)
            canvas[:, mask] = colour[:, None] + rng.normal(0, 0.04, size=(3, int(mask.sum())))
            part_labels[i, part_index[part]] = True
        images[i] = np.clip(canvas * 255, 0, 255).round().astype(np.uint8)
    return ImageSet(
        torch.from_numpy(images), torch.from_numpy(labels).long(), classes, "planted", split,
        list(PLANTED_PARTS), torch.from_numpy(part_labels),
    )


# =========================================================================== batches and transforms


def batches(
    data: ImageSet, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(uint8 images, labels)`` batches; shuffled with ``generator`` when asked."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield data.images[idx], data.labels[idx]


def center_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Evaluation transform: uint8 or float batch -> float in [0, 1] at ``size`` px (antialiased)."""
    x = images.float().div_(255) if images.dtype == torch.uint8 else images
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0, 1)


def random_resized_crop_flip(
    images: torch.Tensor,
    size: int,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip: bool = True,
) -> torch.Tensor:
    """Training transform for a whole batch: random-resized-crop and horizontal flip.

    Each image gets a crop of random area fraction in ``scale`` and aspect ratio
    in ``ratio`` (as torchvision's ``RandomResizedCrop``), resized to ``size`` px
    and flipped with probability 1/2 — all as one batched ``grid_sample``, on
    whatever device ``images`` lives. Bilinear sampling does not antialias, so
    store training images at about 1-1.5x ``size`` (the profiles do). Random numbers come from ``generator`` (a
    CPU generator), so augmentation is seeded and device-independent.
    """
    n = images.shape[0]
    x = images.float().div_(255) if images.dtype == torch.uint8 else images
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    theta = theta.to(x.device, x.dtype)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False).clamp_(0, 1)
