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


def test_dirty_flag_counts_code_and_notebooks_not_outputs(tmp_path) -> None:
    """Provenance says ``+dirty`` for a changed or new module, not for the runner's own outputs."""
    import subprocess

    from salve_utils.common.runtime import git_commit

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    (tmp_path / "salve_utils").mkdir()
    (tmp_path / "salve_utils" / "m.py").write_text("x = 1\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("a\n1\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    assert not git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "data" / "t.csv").write_text("a\n2\n")  # an output the runner rewrote
    assert not git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "salve_utils" / "new.py").write_text("y = 2\n")  # code not yet committed
    assert git_commit(tmp_path).endswith("+dirty")
