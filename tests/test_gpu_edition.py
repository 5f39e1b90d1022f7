"""The device call, rehearsed on a CPU at tiny sizes: pack, script, time guard, the ≤ 8 files that come back.

``test_the_device_script_end_to_end_at_tiny_sizes`` runs ``scripts/gpu_edition.sh``
-- the command a device call runs -- in a scratch copy of the project: it unpacks a
pack built from a tiny Imagenette-layout folder (10 classes, 3 train and 2 val images
each, 40 px), runs the ``paper`` profile's ResNet-18 backbone step through the real
pipeline (32 px, one epoch, fp32) and writes its files into a temporary ``$OUT``.
Skipped here, to stay within seconds: the wheel install (no ``.whl/`` in the copy;
this environment has papermill), the other editions' backbones and the step that runs
every chapter (the smoke pipeline in ``test_e2e`` runs every chapter on a CPU).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from salve_utils.pipeline import devicepack, gpu_edition
from salve_utils.method.data import IMAGENETTE_CLASSES, load_imagenette

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_imagenette(tmp_path_factory) -> Path:
    """``imagenette2/{train,val}/<wnid>/*.JPEG``: 3 train and 2 val images per class, 40x40, a colour per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny-data")
    for k, wnid in enumerate(IMAGENETTE_CLASSES):
        for split, n in (("train", 3), ("val", 2)):
            folder = root / "imagenette2" / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                colour = (25 * k, 255 - 20 * k, (60 * i + 40 * k) % 256)
                Image.new("RGB", (40, 40), colour).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return root


def test_pack_round_trip_is_what_the_loader_reads_and_damage_is_refused(tiny_imagenette, tmp_path) -> None:
    manifest = devicepack.build_pack(tmp_path / "pack", tiny_imagenette, size=32, quality=50, workers=1,
                                     log=lambda *_: None)
    assert manifest["datasets"]["imagenette"]["images"] == {"train": 30, "val": 20}
    again = devicepack.build_pack(tmp_path / "again", tiny_imagenette, size=32, quality=50, workers=1,
                                  log=lambda *_: None)
    assert again["tar"]["sha256"] == manifest["tar"]["sha256"]  # the same images give the same bytes
    data = devicepack.unpack(tmp_path / "pack", tmp_path / "data")
    val = load_imagenette("val", 32, root=data, workers=1)
    assert len(val) == 20 and val.classes == list(IMAGENETTE_CLASSES.values())
    tar = tmp_path / "pack" / manifest["tar"]["name"]
    tar.write_bytes(tar.read_bytes()[:-10])
    with pytest.raises(OSError, match="does not match"):
        devicepack.verify_pack(tmp_path / "pack")


def test_outputs_are_split_into_parts_that_come_back(tmp_path) -> None:
    for i in range(3):
        path = tmp_path / "book" / "chapters" / "p" / "e" / f"c{i}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(40_000))  # incompressible
    (tmp_path / "data" / "results" / "p").mkdir(parents=True)
    (tmp_path / "data" / "results" / "p" / "run_manifest.json").write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    parts = gpu_edition.pack_outputs(tmp_path, "p", out, part_bytes=50_000)
    assert [p.name for p in parts] == [f"p-edition.tar.gz.part{i:02d}" for i in range(3)]
    assert all(p.stat().st_size <= 50_000 for p in parts)
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
        assert "data/results/p/run_manifest.json" in tar.getnames()


def test_the_time_guard_stops_a_step_and_the_next_is_skipped() -> None:
    lines: list[str] = []
    t0 = time.time()
    r = gpu_edition.run_step([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"],
                             time.time() + 1.0, lines.append, grace=5.0)
    assert r["stopped"] and time.time() - t0 < 10 and "x" in lines
    assert gpu_edition.run_step(["true"], time.time() - 1, lines.append)["skipped"]


def _project_copy(root: Path) -> None:
    for name in ("_config.yml", "_toc.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    for folder in ("notebooks", "salve_utils", "scripts"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.mark.slow
def test_the_device_script_end_to_end_at_tiny_sizes(tiny_imagenette, tmp_path) -> None:
    project, out = tmp_path / "project", tmp_path / "OUT"
    project.mkdir()
    out.mkdir()
    _project_copy(project)
    devicepack.build_pack(project / ".stage", tiny_imagenette, size=40, quality=50, workers=1, log=lambda *_: None)
    edition = "resnet18-imagenette"
    tiny = {"store_size": 40, "train_size": 32, "eval_size": 32, "epochs": 1, "batch_size": 10, "eval_every": 1,
            "precision": "fp32"}
    params = [a for k, v in tiny.items() for a in ("-p", f"{edition}.backbone.{k}={v}")]
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    env.pop("SALVE_DATA_ROOT", None)
    t0 = time.time()
    proc = subprocess.run(["bash", str(project / "scripts" / "gpu_edition.sh"), "--profile", "paper",
                           "--editions", edition, "--backbones-only", "--budget", "240", "--reserve", "10",
                           "--data-dest", str(tmp_path / "data"), "--cache", str(tmp_path / "cache"), *params],
                          cwd=project, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(out.iterdir())
    assert 0 < len(files) <= gpu_edition.MAX_FILES
    for f in files:  # what the device tool brings back: plain files, ≤ 16 MiB, plain names
        assert f.is_file() and f.stat().st_size <= 16 * 2**20 and re.fullmatch(r"[A-Za-z0-9._-]+", f.name)
    assert {f.name for f in files} == {"edition.json", "run.log", "paper-edition.tar.gz"}
    record = json.loads((out / "edition.json").read_text())
    assert [s["step"] for s in record["steps"]] == [f"{edition}.backbone"]
    assert record["steps"][0]["rc"] == 0 and not record["steps"][0]["stopped"]
    assert f"{edition}.backbone" in record["nodes"] and f"{edition}.autoencoder" in record["not_run"]
    assert record["pack"]["datasets"]["imagenette"]["images"] == {"train": 30, "val": 20}
    assert record["backbones"][edition]["n"] == 20 and 0 <= record["backbones"][edition]["accuracy"] <= 1
    assert record["files"]["paper-edition.tar.gz"]["bytes"] == (out / "paper-edition.tar.gz").stat().st_size
    with tarfile.open(out / "paper-edition.tar.gz") as tar:
        names = set(tar.getnames())
    assert f"book/chapters/paper/{edition}/backbone.ipynb" in names  # the chapter
    assert f"data/results/paper/{edition}/backbone_accuracy.csv" in names  # a table
    assert "data/results/paper/run_manifest.json" in names  # the manifest
    print(f"rehearsal: {seconds:.1f} s")
