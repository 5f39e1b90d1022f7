"""Bad input, refused up front: the probe list of issue 13 as one matrix.

Every case is set up in a copy of the real graph, notebooks and profiles with a
stand-in published smoke edition, then asserts three things: the error names the
problem and the fix, it comes in well under two seconds (before any expensive
work: nothing is trained, decoded at scale or executed), and no published
chapter, table or artifact changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from salve_utils import pipeline
from salve_utils.common import runtime
from salve_utils.method.data import _decode_folder
from salve_utils.method.sae import SparseAutoencoder, load_sae, sae_metrics, save_sae, train_sae

ROOT = Path(__file__).resolve().parents[1]
SAE = "data/artifacts/smoke/resnet18-planted/autoencoder/sae.pt"
#: Seconds a refusal may take: reading the graph, the notebooks' parameters and the profile, nothing more.
LIMIT = 2.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The real notebooks, graph and profiles; a published smoke chapter, table and SAE (with its checksum)."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    (tmp_path / "salve_utils").mkdir()
    (tmp_path / "salve_utils" / "code.py").write_text("# stand-in for the package code\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    chapter = tmp_path / "book/chapters/smoke/resnet18-planted/control.ipynb"
    chapter.parent.mkdir(parents=True)
    chapter.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    table = tmp_path / "data/results/smoke/resnet18-planted/suppression_curves.csv"
    table.parent.mkdir(parents=True)
    table.write_text("strength,accuracy,node\n0,0.9,resnet18-planted.control\n")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        save_sae(SparseAutoencoder(16, 4), tmp_path / SAE, l1=1e-3)
    return tmp_path


def _published(root: Path) -> dict[str, str]:
    """SHA-256 of every published file: chapters, tables, artifacts (and their checksums)."""
    files = [f for d in ("book/chapters", "data/results", "data/artifacts") for f in (root / d).rglob("*")
             if f.is_file()]
    return {f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(files)}


class Refused(Exception):
    """The command line exited non-zero; the message is what it printed on stderr."""


def cli(*argv: str, root: bool = True) -> Callable[[Path], None]:
    """A case that runs ``python -m salve_utils.pipeline ARGV`` (with ``--root``) and expects exit code 2."""
    def act(project: Path) -> None:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = pipeline.main([*argv, *(["--root", str(project)] if root else [])])
        if code != 0:
            raise Refused(err.getvalue())
    return act


def check(*overrides: str) -> Callable[[Path], None]:
    """``pipeline check --profile smoke -p OVERRIDE ...``."""
    return cli("check", "--profile", "smoke", *(a for o in overrides for a in ("-p", o)))


def write(relpath: str, text: str) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        (project / relpath).write_text(text)
    return setup


def edit(relpath: str, old: str, new: str) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        path = project / relpath
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new, 1))
    return setup


def flip_bytes(project: Path) -> None:
    """Overwrite four bytes in the middle of the published SAE: same size, same name, damaged."""
    path = project / SAE
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4] = b"\xff\xff\xff\x7f"
    path.write_bytes(bytes(data))


def truncate_legacy(project: Path) -> None:
    """The published SAE cut in half, and no checksum beside it (as written before checksums existed)."""
    path = project / SAE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    runtime.checksum_path(path).unlink()


def nan_legacy(project: Path) -> None:
    """A readable SAE whose weights hold a NaN, with no checksum (written before checksums existed)."""
    path = project / SAE
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["encoder.weight"][0, 0] = float("nan")
    torch.save(blob, path)
    runtime.checksum_path(path).unlink()


def image_folder(files: dict[str, bytes]) -> Callable[[Path], None]:
    """``<project>/images/train/<class>/<file>`` for every entry (an empty value with no name: an empty folder)."""
    def setup(project: Path) -> None:
        for rel, data in files.items():
            path = project / "images/train" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.name != "-":
                path.write_bytes(data)
    return setup


def decode(project: Path) -> None:
    _decode_folder(project / "images", "train", 32, {"a": "apple", "b": "bee"}, workers=1)


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def nan_acts() -> torch.Tensor:
    acts = torch.randn(64, 16)
    acts[5, 3] = float("nan")
    return acts


@dataclass
class Case:
    """``setup`` prepares the bad input; ``act`` must then raise ``error`` matching ``what`` and ``fix``."""

    setup: Callable[[Path], None] | None
    act: Callable[[Path], Any]
    error: type[BaseException]
    what: str
    fix: str


def from_elsewhere(act: Callable[[Path], None]) -> Callable[[Path], None]:
    """``act`` with ``SALVE_PROJECT_ROOT`` naming the copy, from the working directory of this clone."""
    def wrapped(project: Path) -> None:
        with pipeline.kernels._environment(SALVE_PROJECT_ROOT=str(project)):
            act(project)
    return wrapped


CASES: dict[str, Case] = {
    # values out of range, checked by `check` and by `run` before any node executes
    "d_latent=0": Case(None, check("autoencoder.d_latent=0"), Refused,
                       r"autoencoder.ipynb \(node resnet18-planted.autoencoder\) parameter d_latent=0 \(set on the "
                       r"command line\) is out of range", r"Fix: give autoencoder.d_latent a value in \[1, 65536\]"),
    "d_latent=0 on run": Case(None, cli("run", "--profile", "smoke", "-p", "autoencoder.d_latent=0"), Refused,
                              "d_latent=0", r"in \[1, 65536\]"),
    "negative epochs": Case(None, check("backbone.epochs=-3"), Refused, "epochs=-3", r"backbone.epochs a value in \["),
    "zero SAE epochs": Case(None, check("autoencoder.epochs=0"), Refused, "epochs=0", r"in \[1, 10000\]"),
    "NaN strength": Case(None, check("control.strength_max=.nan"), Refused, "strength_max=nan .* NaN or infinity",
                         r"control.strength_max a value in \(0, 1000\]"),
    "inf strength": Case(None, check("tower.strength_max=.inf"), Refused, "strength_max=inf", r"in \(0, 1000\]"),
    "-inf in a list": Case(None, check("autoencoder.sweep_l1=[0.01, -.inf]"), Refused, "sweep_l1=.*NaN or infinity",
                           r"in \[0, 1000\]"),
    "NaN in the profile": Case(edit("notebooks/profiles/smoke.yml", "strength_max: 16.0", "strength_max: .nan"),
                               check(), Refused, r"set in notebooks/profiles/smoke.yml\) holds NaN", "Fix: give"),
    "n_alphas=10000000000": Case(None, check("control.n_alphas=10000000000"), Refused,
                                 "n_alphas=10000000000 .* out of range", r"in \[2, 10001\]"),
    "n_alphas=1e10 (a string in YAML)": Case(None, check("control.n_alphas=1e10"), Refused, "must be int, got '1e10'",
                                             "Fix: give control.n_alphas a value of type int"),
    "probability 1.5": Case(None, check("control.target_accuracy=1.5"), Refused, "target_accuracy=1.5",
                            r"in \[0, 1\)"),
    "zero seeds": Case(None, check("seeds.n_seeds=0"), Refused, "n_seeds=0", r"in \[1, 1000\]"),
    "negative seed (every notebook)": Case(None, check("seed=-1"), Refused, "seed=-1", r"in \[0, 4294967295\]"),
    "unknown activation": Case(None, check("autoencoder.activation=tanh"), Refused, "activation='tanh'",
                               "one of 'linear', 'relu', 'topk'"),
    "unknown dataset": Case(None, check("backbone.dataset=mnist"), Refused, "dataset='mnist'",
                            "one of 'imagenette', 'cifar100', 'planted'"),
    "unknown architecture": Case(None, check("backbone.arch=resnet50"), Refused, "arch='resnet50'",
                                 "one of 'resnet18'"),
    "class not in the dataset": Case(None, check("control.target_class=unicorn"), Refused,
                                     "target_class='unicorn' is not a class of planted",
                                     "Fix: name one of its classes: spire, pump"),
    "class list with a stranger": Case(None, check("discover.tower_classes=[spire, church]"), Refused,
                                       "'church' is not a class of planted", "name one of its classes"),
    "misspelled parameter": Case(None, check("control.n_alpha=5"), Refused, "has no parameter 'n_alpha'",
                                 "did you mean 'n_alphas'"),
    "misspelled node": Case(None, check("contrl.n_alphas=5"), Refused, "unknown node 'contrl'",
                            "did you mean 'control'"),
    "--only a stranger": Case(None, cli("run", "--profile", "smoke", "--only", "contorl"), Refused,
                              "--only 'contorl' is not a node", "did you mean 'control'"),
    "negative cell timeout": Case(None, cli("run", "--profile", "smoke", "--cell-timeout", "-5"), Refused,
                                  "--cell-timeout must be a positive number", "leave it out for no limit"),
    # profiles and the graph
    "malformed YAML": Case(write("notebooks/profiles/smoke.yml", "params:\n  device: [cpu\nnodes: {}\n"), check(),
                           Refused, r"notebooks/profiles/smoke.yml line \d+", "Fix: correct the YAML there"),
    "duplicate key": Case(edit("notebooks/profiles/smoke.yml", "    epochs: 10\n", "    epochs: 10\n    epochs: 1\n"),
                          check(), Refused, r"smoke.yml line \d+: duplicate key 'epochs'", "Fix: keep one of them"),
    "empty profile": Case(write("notebooks/profiles/smoke.yml", ""), check(), Refused, "profile smoke: no editions",
                          "declare at least one under `editions:`"),
    "unknown profile key": Case(edit("notebooks/profiles/smoke.yml", "editions:", "edition:"), check(), Refused,
                                r"unknown top-level key\(s\) \['edition'\]", "use description, params, nodes, editions"),
    "duplicate node": Case(edit("notebooks/pipeline.yml", "chain:\n", "chain:\n  tower:\n    notebook: 07_tower.ipynb\n"),
                           check(), Refused, r"pipeline.yml line \d+: duplicate key 'tower'", "keep one of them"),
    "node both chain and report": Case(edit("notebooks/pipeline.yml", "nodes:\n", "nodes:\n  tower:\n"
                                            "    notebook: 07_tower.ipynb\n"), check(), Refused,
                                       "'tower' is both a chain node and a report node", "rename one of them"),
    "profile name with '/'": Case(None, cli("check", "--profile", "../../../x"), Refused,
                                  "must be a plain name .* not a path", "available: cpu, paper, smoke"),
    "profile name '..'": Case(None, cli("status", "--profile", ".."), Refused, "must be a plain name",
                              "available: cpu, paper, smoke"),
    "unknown profile": Case(None, cli("check", "--profile", "smoek"), Refused, "unknown profile 'smoek'",
                            "available: cpu, paper, smoke"),
    "SALVE_PROJECT_ROOT elsewhere": Case(None, from_elsewhere(cli("check", "--profile", "smoke", root=False)), Refused,
                                         "SALVE_PROJECT_ROOT=.* names another project than",
                                         "Fix: `unset SALVE_PROJECT_ROOT`"),
    # data
    "empty class folder": Case(image_folder({"a/x.png": _png(), "b/-": b""}), decode, FileNotFoundError,
                               "images/train/b holds no images", "restore that folder from the source"),
    "broken JPEG": Case(image_folder({"a/ok.png": _png(), "b/broken.JPEG": b"\xff\xd8\xff\xe0 not a jpeg"}), decode,
                        OSError, "cannot decode .*b/broken.JPEG", "restore that file from the source"),
    # library functions
    "NaN activations (SAE training)": Case(None, lambda _: train_sae(nan_acts(), 4, 1e-3, epochs=1, progress=False),
                                           ValueError, r"NaN or infinite values in 1 of 64 rows \(first: row 5\)",
                                           "Fix the activations first"),
    "inf activations (SAE metrics)": Case(None, lambda _: sae_metrics(SparseAutoencoder(16, 4),
                                                                      nan_acts().nan_to_num(nan=float("inf"))),
                                          ValueError, "NaN or infinite", "Fix the activations first"),
    "NaN l1": Case(None, lambda _: train_sae(torch.randn(8, 4), 2, float("nan"), progress=False), ValueError,
                   "l1 must be a finite number", ">= 0"),
    "byte-flipped artifact": Case(flip_bytes, lambda p: load_sae(p / SAE), runtime.CorruptArtifact,
                                  "autoencoder/sae.pt is damaged: its SHA-256 is",
                                  r"Fix: run `python -m salve_utils.pipeline run --profile smoke`"),
    "truncated artifact, no checksum": Case(truncate_legacy, lambda p: load_sae(p / SAE), runtime.CorruptArtifact,
                                            "sae.pt is damaged: torch cannot read it", "--profile smoke"),
    "NaN weights, no checksum": Case(nan_legacy, lambda p: load_sae(p / SAE), runtime.CorruptArtifact,
                                     r"state_dict.encoder.weight holds NaN", "--profile smoke"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_refused_fast_naming_the_fix_and_publishes_nothing(name: str, project: Path,
                                                                         monkeypatch) -> None:
    case = CASES[name]
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("SALVE_PROJECT_ROOT", raising=False)
    if case.setup:
        case.setup(project)
    before = _published(project)
    start = time.perf_counter()
    with pytest.raises(case.error) as err:
        case.act(project)
    seconds = time.perf_counter() - start
    message = str(err.value)
    assert re.search(case.what, message), message
    assert re.search(case.fix, message), message
    assert seconds < LIMIT, f"{name}: refused after {seconds:.2f} s"
    assert _published(project) == before
    assert not (project / "data/runs/smoke").exists()  # nothing staged, nothing run


# --------------------------------------------------------------------------- verified caches


def _tiny_set():
    from salve_utils.method.data import ImageSet

    return ImageSet(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"], "tiny", "train")


KEY = {"dataset": "tiny", "split": "train", "size": 8, "listing": "x", "v": 1}


def test_a_damaged_cache_is_named_discarded_and_rebuilt() -> None:
    from salve_utils.method.data import _cached, dataset_cache_path

    built = []
    _cached(KEY, lambda: built.append(1) or _tiny_set())
    path = dataset_cache_path(KEY)
    assert runtime.checksum_path(path).is_file() and built == [1]
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))} is damaged: its SHA-256 .* discarded, rebuilding"):
        again = _cached(KEY, lambda: built.append(2) or _tiny_set())
    assert built == [1, 2] and torch.equal(again.images, _tiny_set().images)
    assert runtime.torch_load(path)["name"] == "tiny"  # the rebuilt file matches its new checksum


def test_a_cache_written_before_checksums_still_loads_and_gets_its_checksum() -> None:
    from salve_utils.method.data import _cached, dataset_cache_path

    path = dataset_cache_path(KEY)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _tiny_set()
    torch.save({"images": data.images, "labels": data.labels, "classes": data.classes, "name": data.name,
                "split": data.split, "key": KEY}, path)  # as the code before checksums wrote it
    loaded = _cached(KEY, lambda: pytest.fail("a valid legacy cache must not be rebuilt"))
    assert loaded.classes == ["a", "b"]
    assert runtime.checksum_path(path).read_text().split()[0] == runtime.hash_file(path)


def test_status_sees_a_recorded_artifact_whose_bytes_changed(project: Path) -> None:
    """A flip that keeps the size (issue 13, item 3) makes the recording node stale, so `run` rebuilds it."""
    ctx = pipeline.NodeContext("smoke", "resnet18-planted.autoencoder", root=project)
    ctx.record("sae", project / SAE)
    outputs = pipeline.store._read_outputs(project, "smoke", "resnet18-planted.autoencoder")
    assert pipeline.outputs_intact(project, outputs)
    flip_bytes(project)
    assert not pipeline.outputs_intact(project, outputs)


# --------------------------------------------------------------------------- the rules themselves


def test_every_numeric_or_choice_parameter_has_a_rule_that_its_default_obeys() -> None:
    import ast

    from salve_utils.method.models import ARCHITECTURES

    graph = pipeline.load_graph(ROOT)
    declared: set[str] = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for name, p in pipeline.notebook_parameters(path).items():
            declared.add(name)
            if name in pipeline.RESERVED or name in graph.class_params:
                continue
            default = ast.literal_eval(p["default"])
            if p["type"] in ("int", "float", "list") or name in pipeline.PARAM_RULES:
                assert name in pipeline.PARAM_RULES, f"{path.name}: add a rule for {name!r} to pipeline.PARAM_RULES"
                assert pipeline.check_value(name, default) is None, f"{path.name}: default {name}={default!r}"
    assert set(pipeline.PARAM_RULES) <= declared, "a rule for a parameter no notebook declares"
    assert set(pipeline.PARAM_RULES["arch"]) == set(ARCHITECTURES)
    from salve_utils.method.data import dataset_classes

    assert all(dataset_classes(name) for name in pipeline.PARAM_RULES["dataset"])
