"""pyproject.toml and environment.yml name the same packages with the same pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(req: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert dict(_normalise(r) for r in pip_section) == wanted
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_jupyter_book_is_pinned_to_version_1() -> None:
    deps = dict(_normalise(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert deps["jupyter-book"] == ">=1.0.4,<2"  # JB2 ignores _config.yml/_toc.yml
    assert deps["torch"] == "==2.14.1" and deps["torchvision"] == "==0.29.1"
