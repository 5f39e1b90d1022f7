"""The device pack: the data a GPU edition needs, re-encoded to travel with the code to a machine with no network.

The lent GPU machine gets a copy of the working tree, at most 64 MiB in all
(tracked files, untracked-not-ignored files and the paths a call carries), and
sends back at most 8 files of 16 MiB. The tracked tree alone is about 31 MiB (the
committed chapters), so Imagenette (161 MB as 224 px JPEGs) travels re-encoded:

* every image at ``size`` px (224: the resolution the ``paper`` profile trains
  and evaluates at; shorter side resized and centre-cropped as the loader does),
  as lossy WebP at ``quality`` (default 3: about 1.7 KiB an image, 22 MiB for
  all 13,394; quality 6 made 27 MiB, too little room left beside the tree and the wheels);
* in the layout the loader already reads: ``imagenette2/{train,val}/<wnid>/*.webp``,
  so ``SALVE_DATA_ROOT`` pointed at the unpacked pack is all the pipeline needs
  (no per-file SHA-256 list: the manifest's checksum of the whole tar covers every
  image, and a list would cost 0.8 MiB);
* inside one gzipped tar (the images are compressed already; gzip removes the tar's
  headers and padding, about 10 MiB of its 13,394 entries) with a manifest
  (``pack.json``: format, counts per split and class, the tar's SHA-256, the
  encoder's version and settings).

CIFAR-100 does not travel: its 60,000 images are 184 MB of raw pixels and about
60 MB even as lossy WebP. The planted-parts control is generated, it needs no data.

What the packing costs is measured, not assumed: ``benchmarks/packing_cost.py``
trains the same backbone on the original and the packed images (``book/device.md``).

Commands (``python -m salve_utils.pipeline.devicepack ...``)::

    build  --out .stage [--size 224 --quality 3]   # pack $SALVE_DATA_ROOT's Imagenette (a minute or two)
    unpack --pack .stage --dest /tmp/salve-data    # verify and extract; prints the SALVE_DATA_ROOT to use
    size   --carry .stage .whl                     # what a device call would send, against 64 MiB
    edition --pack .stage --out $OUT ...           # on the device: see salve_utils.pipeline.gpu_edition
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable

from ..common.runtime import hash_file

__all__ = ["PACK_FORMAT", "TRAVEL_LIMIT", "build_pack", "encode_image", "travel_size", "unpack", "verify_pack"]

PACK_FORMAT = "salve-device-pack/1"
#: What one device call may send: the working tree and its carried paths together.
TRAVEL_LIMIT = 64 * 2**20
TAR_NAME = "imagenette-webp.tar.gz"
MANIFEST = "pack.json"
_SUFFIXES = {".jpeg", ".jpg", ".png", ".webp"}


def encode_image(data: bytes, size: int, quality: int) -> bytes:
    """One image (any format Pillow reads) as an RGB ``size``-px square WebP at ``quality``.

    Shorter side resized to ``size`` (bicubic) and centre-cropped, as
    :func:`salve_utils.method.data.load_imagenette` decodes; an image already at ``size``
    is only re-encoded. ``method=6`` (the slowest, smallest encoding) and no
    metadata: the same bytes for the same input and libwebp version.

    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, "PNG")
    >>> out = encode_image(buf.getvalue(), 16, 50)
    >>> Image.open(io.BytesIO(out)).size, out[8:12]
    ((16, 16), b'WEBP')
    """
    from PIL import Image

    from ..method.data import square_image

    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        square_image(im.convert("RGB"), size).save(out, "WEBP", quality=int(quality), method=6)
        return out.getvalue()


def _encode_job(args: tuple[str, int, int]) -> bytes:
    path, size, quality = args
    return encode_image(Path(path).read_bytes(), size, quality)


def _source_files(folder: Path, per_class: int | None) -> list[tuple[str, str, Path]]:
    """``(split, class dir, file)`` of an Imagenette-layout folder, sorted; at most ``per_class`` per class."""
    out = []
    for split in ("train", "val"):
        split_dir = folder / split
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir} is missing: not an Imagenette-layout folder "
                                    "(imagenette2/{train,val}/<wnid>/*.JPEG)")
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _SUFFIXES)
            out += [(split, class_dir.name, p) for p in files[:per_class]]
    return out


def build_pack(out: str | os.PathLike, source: str | os.PathLike | None = None, size: int = 224,
               quality: int = 3, per_class: int | None = None, workers: int | None = None,
               log=print) -> dict:
    """Pack Imagenette for the device: WebP at ``size`` px and ``quality`` in one tar, plus ``pack.json``.

    ``source`` is a folder holding ``imagenette2/`` (default: :func:`salve_utils.method.data.data_root`,
    i.e. ``$SALVE_DATA_ROOT``); ``per_class`` keeps the first few images of each class
    (tests). The tar holds ``imagenette2/{train,val}/<wnid>/<name>.webp``; extracted,
    it is a data root the loader reads unchanged.
    Returns the manifest.
    """
    from PIL import Image, features

    from ..method.data import _find_imagenette, data_root

    if not 1 <= int(quality) <= 100 or int(size) < 8:
        raise ValueError(f"quality must be in 1..100 and size at least 8 px, got {quality}, {size}")
    base = data_root(source)
    folder = _find_imagenette(base, "full")
    if folder is None:
        raise FileNotFoundError(f"no Imagenette under {base}: set SALVE_DATA_ROOT (or --source) to the folder that "
                                "holds imagenette2/{train,val}/<wnid>/*.JPEG")
    files = _source_files(folder, per_class)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    jobs = [(str(p), int(size), int(quality)) for _, _, p in files]
    workers = workers or max(1, os.cpu_count() or 1)
    counts, source_bytes, packed_bytes = {}, 0, 0
    tmp = out / (TAR_NAME + ".tmp")
    # gzip with no name and mtime 0, tar entries with fixed metadata: the same images give the same bytes
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar, \
            ProcessPoolExecutor(max_workers=workers) as pool:
        for (split, cls, path), blob in zip(files, pool.map(_encode_job, jobs, chunksize=32)):
            name = f"imagenette2/{split}/{cls}/{path.stem}.webp"
            _add_bytes(tar, name, blob)
            counts.setdefault(split, {}).setdefault(cls, 0)
            counts[split][cls] += 1
            source_bytes += path.stat().st_size
            packed_bytes += len(blob)
    os.replace(tmp, out / TAR_NAME)
    manifest = {
        "format": PACK_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "datasets": {"imagenette": {
            "layout": "imagenette2/{train,val}/<wnid>/*.webp",
            "checksum": "the tar's sha256 below covers every image",
            "encoding": {"format": "webp", "quality": int(quality), "method": 6, "size": int(size),
                         "resize": "shorter side bicubic to size, centre crop", "colour": "RGB"},
            "images": {s: sum(c.values()) for s, c in counts.items()},
            "per_class": counts,
            "source": str(folder),
            "source_bytes": source_bytes,
            "packed_image_bytes": packed_bytes,
        }},
        "not_packed": {"cifar100": "184 MB of raw pixels, about 60 MB as lossy WebP: over the 64 MiB a device call "
                                   "carries beside the code", "planted": "generated, needs no data"},
        "tar": {"name": TAR_NAME, "bytes": (out / TAR_NAME).stat().st_size, "sha256": hash_file(out / TAR_NAME)},
        "encoder": {"pillow": Image.__version__, "libwebp": features.version("webp")},
        "seconds": round(time.time() - t0, 1),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log(f"packed {len(files)} images ({source_bytes / 2**20:.1f} MiB) into {out / TAR_NAME}: "
        f"{manifest['tar']['bytes'] / 2**20:.1f} MiB, WebP q{quality} at {size} px, {manifest['seconds']:.0f} s")
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, blob: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(blob), 0, 0o644  # fixed metadata: the same images give the same tar
    tar.addfile(info, io.BytesIO(blob))


def verify_pack(pack: str | os.PathLike) -> dict:
    """Read ``pack.json`` and check the tar's size and SHA-256 against it; returns the manifest."""
    pack = Path(pack)
    path = pack / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build the pack first (python -m salve_utils.pipeline.devicepack build)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {PACK_FORMAT!r}")
    tar = pack / manifest["tar"]["name"]
    if not tar.is_file() or tar.stat().st_size != manifest["tar"]["bytes"] or \
            hash_file(tar) != manifest["tar"]["sha256"]:
        raise OSError(f"{tar} does not match {path} (missing, truncated or damaged): rebuild the pack")
    return manifest


def unpack(pack: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Verify the pack and extract it into ``dest``; returns ``dest``, the ``SALVE_DATA_ROOT`` to use.

    Extraction uses tarfile's ``"data"`` filter (no absolute paths, no ``..``, no
    links), after the tar's SHA-256 was checked against the manifest.
    """
    manifest = verify_pack(pack)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(Path(pack) / manifest["tar"]["name"]) as tar:
        tar.extractall(dest, filter="data")
    for split, n in manifest["datasets"]["imagenette"]["images"].items():
        found = sum(1 for _ in (dest / "imagenette2" / split).glob("*/*.webp"))
        if found != n:
            raise OSError(f"unpacked {found} {split} images into {dest}, the manifest lists {n}")
    return dest


def _git_files(root: Path) -> list[Path]:
    """Tracked and untracked-not-ignored files: what every device call sends."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout
    return [root / f for f in out.decode().split("\0") if f]


def travel_size(root: str | os.PathLike = ".", carry: Iterable[str] = ()) -> dict:
    """Bytes a device call from ``root`` would send: the working tree (git's view) plus the ``carry`` paths.

    Returns ``{"tree": ..., "carry": {path: bytes}, "total": ..., "limit": TRAVEL_LIMIT}``.
    A ``shared/`` folder inside the checkout travels too and is counted when present.
    """
    root = Path(root).resolve()
    tree = sum(p.stat().st_size for p in _git_files(root) if p.is_file() and not p.is_symlink())
    carried = {}
    for c in carry:
        path = root / c
        if path.is_file():
            carried[c] = path.stat().st_size
        elif path.is_dir():
            carried[c] = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        else:
            carried[c] = 0
    shared = root / "shared"
    if shared.is_dir() and not shared.is_symlink():
        carried.setdefault("shared", sum(p.stat().st_size for p in shared.rglob("*") if p.is_file()))
    total = tree + sum(carried.values())
    return {"tree": tree, "carry": carried, "total": total, "limit": TRAVEL_LIMIT}


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salve_utils.pipeline.devicepack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("build", help="pack Imagenette for a device call")
    sp.add_argument("--out", default=".stage", help="folder for the pack (ignored by git; default .stage)")
    sp.add_argument("--source", help="folder holding imagenette2/ (default: $SALVE_DATA_ROOT)")
    sp.add_argument("--size", type=int, default=224)
    sp.add_argument("--quality", type=int, default=3)
    sp.add_argument("--per-class", type=int, default=None, help="only the first N images of each class (tests)")
    sp = sub.add_parser("unpack", help="verify a pack and extract it")
    sp.add_argument("--pack", default=".stage")
    sp.add_argument("--dest", required=True)
    sp = sub.add_parser("size", help="what a device call would send, against the 64 MiB limit")
    sp.add_argument("--carry", nargs="*", default=[".stage", ".whl"])
    sp.add_argument("--root", default=".")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build_pack(args.out, args.source, args.size, args.quality, args.per_class)
        elif args.command == "unpack":
            print(unpack(args.pack, args.dest))
        else:
            s = travel_size(args.root, args.carry)
            parts = ", ".join(f"{k} {_mib(v)}" for k, v in s["carry"].items())
            verdict = "fits" if s["total"] <= s["limit"] else "DOES NOT FIT"
            print(f"working tree {_mib(s['tree'])} + carried ({parts}) = {_mib(s['total'])} of "
                  f"{_mib(s['limit'])}: {verdict} ({_mib(s['limit'] - s['total'])} to spare)")
            return 0 if s["total"] <= s["limit"] else 1
        return 0
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
