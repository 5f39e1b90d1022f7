"""The pipeline runner on a throw-away three-node project (real papermill kernels)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from salve_utils import pipeline
from salve_utils.pipeline import execute, kernels, store

CODE = """
from salve_utils.pipeline import NodeContext
ctx = NodeContext(profile, node, upstream)
value = x * 10
for role in upstream:
    value += json.loads(ctx.artifact(role, "out").read_text())["value"]
if fail:
    raise RuntimeError("asked to fail")
path = ctx.path("out.json")
path.write_text(json.dumps({"value": value}))
ctx.record("out", path)
import pandas as pd
ctx.save_table(pd.DataFrame({"value": [value]}), "values")
if wait:  # a test stops the run here, after the node wrote its outputs (to its staging folder)
    import pathlib, time
    pathlib.Path(wait + ".ready").touch()
    for _ in range(600):
        time.sleep(0.1)
"""


def _notebook(path: Path, title: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'profile: str = "p"\nnode: str = "a"\nupstream: dict = {}\nx: int = 1\nfail: bool = False\n'
        'label: str = "hi"\nweights: list[float] = [1.0]\nwait: str = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"), params, nbformat.v4.new_code_cell("import json"),
                nbformat.v4.new_code_cell(CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "notebooks" / "profiles").mkdir(parents=True)
    (tmp_path / "salve_utils").mkdir()
    (tmp_path / "salve_utils" / "code.py").write_text("CODE = 0  # stand-in for the package code\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    _notebook(tmp_path / "notebooks" / "step.ipynb", "Step")
    graph = {"nodes": {"a": {"notebook": "step.ipynb"},
                       "b": {"notebook": "step.ipynb", "upstream": {"first": "a"}},
                       "c": {"notebook": "step.ipynb", "upstream": {"first": "b"}},
                       "d": {"notebook": "step.ipynb"}}}
    (tmp_path / "notebooks" / "pipeline.yml").write_text(yaml.safe_dump(graph))
    profile = {"description": "test", "params": {"label": "x"}, "nodes": {"a": {"x": 2}, "b": {"x": 3}}}
    (tmp_path / "notebooks" / "profiles" / "p.yml").write_text(yaml.safe_dump(profile))
    return tmp_path


def _value(root: Path, node: str) -> int:
    return json.loads((root / "data/artifacts/p" / node / "out.json").read_text())["value"]


def test_misspelled_parameter_fails_fast_naming_notebook_parameter_and_profile(project: Path) -> None:
    spec = yaml.safe_load((project / "notebooks/profiles/p.yml").read_text())
    spec["nodes"]["b"] = {"xx": 3}
    (project / "notebooks/profiles/p.yml").write_text(yaml.safe_dump(spec))
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.plan("p", project)
    message = str(err.value)
    assert "notebooks/step.ipynb" in message and "'xx'" in message and "profile p" in message
    assert "did you mean 'x'" in message


@pytest.mark.parametrize("override, fragment", [
    ("b.x=oops", "must be int"),
    ("b.weights=[1, two]", r"must be list\[float\]"),
    ("nonode.x=1", "unknown node 'nonode'"),
    ("a.b.c.x=1", "use name, node.name or edition.node.name"),
    ("b.x=[unclosed", "not valid YAML"),
    ("labl=1", "declared by no notebook"),
    ("a.profile=q", "set by the runner"),
])
def test_bad_overrides_are_rejected_before_running(project: Path, override: str, fragment: str) -> None:
    with pytest.raises(pipeline.PipelineError, match=fragment):
        pipeline.plan("p", project, overrides=[override])
    assert not (project / "book").exists()


def test_unknown_profile_lists_the_available_ones(project: Path) -> None:
    with pytest.raises(pipeline.PipelineError, match="available: p"):
        pipeline.plan("nope", project)


def test_type_annotations() -> None:
    assert pipeline.check_type(3, "int") and not pipeline.check_type(True, "int")
    assert pipeline.check_type(3, "float") and not pipeline.check_type("3", "float")
    assert pipeline.check_type(None, "str | None") and pipeline.check_type(None, "Optional[int]")
    assert pipeline.check_type({"a": [1.0]}, "dict[str, list[float]]")
    assert not pipeline.check_type({"a": ["x"]}, "dict[str, list[float]]")


def test_run_skip_rerun_and_provenance(project: Path) -> None:
    ran = pipeline.run("p", project, progress=False, log=lambda *_: None)
    assert ran == ["a", "b", "c", "d"]
    assert _value(project, "c") == 10 + 30 + 20  # c: x=1 -> 10, plus b (30 + a's 20)
    chapter = nbformat.read(project / "book/chapters/p/b.ipynb", as_version=4)
    meta = chapter.metadata["salve"]
    assert meta["profile"] == "p" and meta["parameters"]["x"] == 3 and meta["parameters"]["label"] == "x"
    assert {"commit", "versions", "hardware", "wall_seconds", "fingerprint"} <= set(meta)
    assert "salve-provenance" in chapter.cells[1].metadata["tags"]
    manifest = json.loads((project / "data/results/p/run_manifest.json").read_text())
    assert set(manifest) == {"a", "b", "c", "d"}

    assert pipeline.run("p", project, progress=False, log=lambda *_: None) == []

    # one parameter changed: that node and its descendants rerun, nothing else
    assert pipeline.run("p", project, overrides=["b.x=4"], progress=False, log=lambda *_: None) == ["b", "c"]
    assert _value(project, "c") == 10 + 40 + 20

    # the notebook changed: every node using it reruns
    nb = nbformat.read(project / "notebooks/step.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("more prose"))
    nbformat.write(nb, project / "notebooks/step.ipynb")
    assert pipeline.run("p", project, overrides=["b.x=4"], progress=False, log=lambda *_: None) == list("abcd")

    # the package code changed: everything reruns
    (project / "salve_utils" / "code.py").write_text("CODE = 1  # changed\n")
    assert len(pipeline.run("p", project, overrides=["b.x=4"], progress=False, log=lambda *_: None)) == 4

    # a missing upstream artifact makes its node stale again
    (project / "data/artifacts/p/a/out.json").unlink()
    assert pipeline.run("p", project, overrides=["b.x=4"], progress=False, log=lambda *_: None) == ["a"]


def test_only_runs_the_node_and_its_descendants(project: Path) -> None:
    pipeline.run("p", project, progress=False, log=lambda *_: None)
    assert pipeline.run("p", project, only="b", progress=False, log=lambda *_: None) == ["b"]
    assert pipeline.run("p", project, only="b", overrides=["b.x=5"], progress=False,
                        log=lambda *_: None) == ["b", "c"]
    with pytest.raises(pipeline.PipelineError, match="not a node"):
        pipeline.plan("p", project, only="zz")


def test_failing_node_names_cell_and_publishes_nothing(project: Path) -> None:
    pipeline.run("p", project, progress=False, log=lambda *_: None)
    before = (project / "book/chapters/p/b.ipynb").read_bytes()
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.run("p", project, overrides=["b.fail=true"], progress=False, log=lambda *_: None)
    message = str(err.value)
    assert "node b failed in notebooks/step.ipynb, cell" in message and "asked to fail" in message
    assert (project / "book/chapters/p/b.ipynb").read_bytes() == before  # the old copy stays
    assert (project / "data/runs/p/failed/b.ipynb").is_file()
    assert not list((project / "book/chapters").rglob("*.running*"))
    assert pipeline.error_outputs(project) == []


def test_cli_check_reports_errors_with_exit_code_2(project: Path, capsys) -> None:
    assert pipeline.main(["check", "--profile", "p", "--root", str(project)]) == 0
    assert pipeline.main(["check", "--profile", "p", "--root", str(project), "-p", "b.y=1"]) == 2
    assert "has no parameter 'y'" in capsys.readouterr().err


# --------------------------------------------------------------------------- editions


CHAIN_CODE = """
from salve_utils.pipeline import NodeContext
ctx = NodeContext(profile, node, upstream)
value = x * 10 + sum(json.loads(ctx.artifact(role, "out").read_text())["value"] for role in upstream)
path = ctx.path("out.json")
path.write_text(json.dumps({"value": value, "dataset": dataset, "target": target_class}))
ctx.record("out", path)
"""


@pytest.fixture
def editions_project(tmp_path: Path) -> Path:
    """A chain (a -> b, and c only on planted data) with two editions, and a report node reading both."""
    (tmp_path / "notebooks" / "profiles").mkdir(parents=True)
    (tmp_path / "salve_utils").mkdir()
    (tmp_path / "salve_utils" / "code.py").write_text("CODE = 0  # stand-in\n")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile: str = "p"\nnode: str = "e.a"\nupstream: dict = {}\nx: int = 1\n'
                                       'dataset: str = "planted"\ntarget_class: str = "spire"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Step"), params, nbformat.v4.new_code_cell("import json"),
                nbformat.v4.new_code_cell(CHAIN_CODE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "step.ipynb")
    graph = {"edition_dataset": "a.dataset", "class_params": ["target_class"],
             "chain": {"a": {"notebook": "step.ipynb"},
                       "b": {"notebook": "step.ipynb", "upstream": {"first": "a"}},
                       "c": {"notebook": "step.ipynb", "upstream": {"first": "a"}, "datasets": ["planted"]}},
             "nodes": {"report": {"notebook": "step.ipynb", "per_edition": {"last": "b"}}}}
    (tmp_path / "notebooks" / "pipeline.yml").write_text(yaml.safe_dump(graph, sort_keys=False))
    profile = {"params": {"x": 2}, "nodes": {"b": {"x": 3}},
               "editions": {"one": {"title": "One", "a": {"dataset": "planted"}},
                            "two": {"title": "Two", "a": {"dataset": "imagenette"},
                                    "b": {"x": 5, "target_class": "church"}}}}
    (tmp_path / "notebooks" / "profiles" / "p.yml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return tmp_path


def _out(root: Path, node: str) -> dict:
    return json.loads((root / "data/artifacts/p" / node.replace(".", "/") / "out.json").read_text())


def test_the_chain_is_instantiated_per_edition_with_layered_parameters(editions_project: Path) -> None:
    p = pipeline.plan("p", editions_project)
    assert p.order == ["one.a", "one.b", "one.c", "two.a", "two.b", "report"]  # c only on planted data
    assert p.params["one.b"]["x"] == 3 and p.params["two.b"]["x"] == 5 and p.params["one.a"]["x"] == 2
    assert p.params["report"]["upstream"] == {"one.last": "one.b", "two.last": "two.b"}
    assert p.params["two.b"]["upstream"] == {"first": "two.a"}
    # command line beats the profile, in the same three layers
    p = pipeline.plan("p", editions_project, overrides=["b.x=7", "two.b.x=9", "x=4"])
    assert (p.params["one.b"]["x"], p.params["two.b"]["x"], p.params["one.a"]["x"]) == (7, 9, 4)


@pytest.mark.parametrize("override, fragment", [
    ("two.b.target_class=spire", "'spire' is not a class of imagenette"),
    ("one.b.target_class=chruch", "not a class of planted"),
    ("three.b.x=1", "unknown edition 'three'"),
    ("two.c.x=1", "only runs on"),
    ("one.x=1", "is an edition; name its node too"),
])
def test_edition_overrides_and_class_names_are_checked_before_running(editions_project: Path, override: str,
                                                                      fragment: str) -> None:
    with pytest.raises(pipeline.PipelineError, match=fragment):
        pipeline.plan("p", editions_project, overrides=[override])
    assert not (editions_project / "data").exists()


def test_editions_run_into_their_own_folders_and_only_selects(editions_project: Path) -> None:
    ran = pipeline.run("p", editions_project, progress=False, log=lambda *_: None)
    assert ran == ["one.a", "one.b", "one.c", "two.a", "two.b", "report"]
    assert _out(editions_project, "two.b")["value"] == 50 + 20 and _out(editions_project, "report")["value"] == 20 + 50 + 70
    chapter = nbformat.read(editions_project / "book/chapters/p/two/b.ipynb", as_version=4)
    assert chapter.cells[0].source.startswith("# Step — Two")  # unique page titles
    # --only an edition reruns its nodes; the report sees identical outputs and is skipped
    assert pipeline.run("p", editions_project, only="two", progress=False, log=lambda *_: None) == ["two.a", "two.b"]
    # --only a chain node: that node in every edition; a changed value reaches the report
    assert pipeline.run("p", editions_project, only="b", overrides=["b.x=6"], progress=False,
                        log=lambda *_: None) == ["one.b", "two.b", "report"]
    toc = pipeline.book_toc("p", editions_project)
    captions = [part["caption"] for part in toc["parts"]]
    assert captions == ["The method", "One", "Two", "Conclusions"]
    assert toc["parts"][2]["chapters"] == [{"file": "book/chapters/p/two/a"}, {"file": "book/chapters/p/two/b"}]


@pytest.mark.parametrize("name", ["../../x", "a/b", "", ".hidden"])
def test_profile_names_are_names_not_paths(editions_project: Path, name: str) -> None:
    with pytest.raises(pipeline.PipelineError, match="plain name"):
        pipeline.plan(name, editions_project)


def test_yaml_errors_name_the_file_and_line_and_duplicate_keys_are_rejected(editions_project: Path) -> None:
    path = editions_project / "notebooks/profiles/p.yml"
    path.write_text("params:\n  x: 1\n  x: 2\n")
    with pytest.raises(pipeline.PipelineError, match=r"notebooks/profiles/p.yml line 3: duplicate key 'x'"):
        pipeline.plan("p", editions_project)
    path.write_text("params: [unclosed\n")
    with pytest.raises(pipeline.PipelineError, match=r"notebooks/profiles/p.yml line \d"):
        pipeline.plan("p", editions_project)
    path.write_text("")
    with pytest.raises(pipeline.PipelineError, match="no editions"):
        pipeline.plan("p", editions_project)


def test_only_uses_stale_upstream_outputs_with_a_warning_and_refuses_missing_ones(project: Path) -> None:
    with pytest.raises(pipeline.PipelineError, match="upstream node 'a' has no outputs"):
        pipeline.plan("p", project, only="b")
    pipeline.run("p", project, progress=False, log=lambda *_: None)
    (project / "salve_utils" / "code.py").write_text("CODE = 1  # changed\n")  # every node is stale now
    lines: list[str] = []
    assert pipeline.run("p", project, only="b", downstream=False, progress=False, log=lines.append) == ["b"]
    assert any("reads the outputs of a, which are not up to date" in line for line in lines)
    assert pipeline.plan("p", project).stale == ["a", "c", "d"]  # status still says a is not up to date


@pytest.mark.parametrize("change, fragment", [
    (lambda g, p: p["editions"].update(b={"a": {"dataset": "planted"}}), "edition name 'b' is also a node name"),
    (lambda g, p: p["editions"]["two"].update(title="One"), "two editions share the title 'One'"),
    (lambda g, p: g.update(class_params=["target_clas"]), "class_params names 'target_clas'"),
    # c runs on planted data only: with no planted edition its parameters are still checked
    (lambda g, p: (p["nodes"].update(c={"xx": 1}), p["editions"]["one"]["a"].update(dataset="imagenette")),
     r"\(node c\) has no parameter 'xx'"),
])
def test_editions_graph_and_profile_mistakes_are_named(editions_project: Path, change, fragment: str) -> None:
    graph_path = editions_project / "notebooks/pipeline.yml"
    profile_path = editions_project / "notebooks/profiles/p.yml"
    graph, profile = yaml.safe_load(graph_path.read_text()), yaml.safe_load(profile_path.read_text())
    change(graph, profile)
    graph_path.write_text(yaml.safe_dump(graph, sort_keys=False))
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False))
    with pytest.raises(pipeline.PipelineError, match=fragment):
        pipeline.plan("p", editions_project)


def test_shared_tables_keep_each_nodes_rows_in_node_order_so_a_rerun_rewrites_the_same_bytes(tmp_path: Path) -> None:
    import pandas as pd

    (tmp_path / "notebooks").mkdir()
    ctx_b = pipeline.NodeContext("p", "e.b", root=tmp_path)
    ctx_a = pipeline.NodeContext("p", "e.a", root=tmp_path)
    ctx_b.save_table(pd.DataFrame({"x": [2, 1]}), "t")
    path = ctx_a.save_table(pd.DataFrame({"x": [3]}), "t")
    first = path.read_bytes()
    ctx_b.save_table(pd.DataFrame({"x": [2, 1]}), "t")  # rerun of the node that wrote first
    assert path.read_bytes() == first
    assert pd.read_csv(path)["node"].tolist() == ["e.a", "e.b", "e.b"]


def test_sweep_tables_are_parquet_with_the_same_guarantees_and_the_same_numbers_as_csv(tmp_path: Path) -> None:
    """Blocks per node, node order, byte-identical rewrites, own-row hash; read back as the CSV would be."""
    import pandas as pd

    from salve_utils.common import tables

    (tmp_path / "notebooks").mkdir()
    rows = pd.DataFrame({"feature_role": ["dominant:a", "dominant:b"], "strength": [0.1, 2 / 3],
                         "accuracy": [0.8125, 0.0], "n": [400, 390], "draw": [0, "b"]})
    ctx_b, ctx_a = (pipeline.NodeContext("p", f"e.{n}", root=tmp_path) for n in "ba")
    ctx_b.save_table(rows, "null_edits")
    path = ctx_a.save_table(rows.head(1), "null_edits")
    assert path.suffix == ".parquet" and not path.with_suffix(".csv").exists()
    first = path.read_bytes()
    ctx_b.save_table(rows, "null_edits")
    assert path.read_bytes() == first  # a rerun of one node rewrites the same bytes
    back = ctx_a.read_table("null_edits")
    assert back["node"].tolist() == ["e.a", "e.b", "e.b"]
    assert back["strength"].tolist() == [0.1, 0.1, 0.666667] and back["n"].dtype == "int64"
    assert back["draw"].tolist() == ["0", "0", "b"]  # what a CSV reader gives for a mixed column
    assert ctx_b.outputs["tables"]["null_edits"] == tables.table_hash(rows.assign(node="e.b"))
    csv = tmp_path / "same.csv"
    tables.write_table(back, csv)
    pd.testing.assert_frame_equal(tables.read_table_file(csv), back)


def _published(root: Path) -> dict[str, bytes]:
    """Every published table and artifact (not the chapters: they carry run times), by path."""
    files = [f for f in (root / "data/results").rglob("*") if f.suffix in (".csv", ".parquet")]
    files += list((root / "data/artifacts").rglob("*.json"))
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(files)}


def _run_stopped_inside_b(project: Path, *extra: str):
    """Start ``run -p b.x=7`` in a process group of its own; return once node b has written its outputs and waits."""
    import subprocess
    import sys

    import signal

    flag = project / "stop-here"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # Ctrl-C as a terminal delivers it: whatever the test process inherited or set (an ignored SIGINT is
    # inherited across exec, and Python then leaves it ignored), the runner starts with the default handler
    proc = subprocess.Popen([sys.executable, "-m", "salve_utils.pipeline", "run", "--profile", "p", "--root",
                             str(project), "-p", "b.x=7", "-p", f"b.wait={flag}", *extra], env=env,
                            start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):
        if Path(f"{flag}.ready").exists():
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the node never reached its stopping point")


def test_a_failed_node_keeps_its_published_record_and_status_stays_truthful(project: Path) -> None:
    pipeline.run("p", project, progress=False, log=lambda *_: None)
    before = _published(project)
    with pytest.raises(pipeline.PipelineError):
        pipeline.run("p", project, overrides=["b.fail=true"], progress=False, log=lambda *_: None)
    assert _published(project) == before  # record, tables and artifacts untouched
    assert pipeline.plan("p", project).stale == []  # the published edition is still current ...
    assert pipeline.run("p", project, progress=False, log=lambda *_: None) == []  # ... so nothing reruns
    assert not (project / "data/runs/p/staging").exists()


def test_a_run_killed_inside_a_node_publishes_nothing_and_the_next_run_resumes_byte_identical(
        project: Path, tmp_path_factory) -> None:
    import shutil
    import signal

    reference = tmp_path_factory.mktemp("reference") / "project"
    shutil.copytree(project, reference)  # the same two runs, uninterrupted
    pipeline.run("p", reference, progress=False, log=lambda *_: None)
    pipeline.run("p", reference, overrides=["b.x=7"], progress=False, log=lambda *_: None)

    pipeline.run("p", project, progress=False, log=lambda *_: None)
    before = _published(project)
    proc = _run_stopped_inside_b(project)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-node
    proc.wait()
    assert _published(project) == before  # b's new value and table exist only in its staging folder
    assert pipeline.plan("p", project, overrides=["b.x=7"]).stale == ["b"]  # status is truthful: b must run
    assert pipeline.run("p", project, overrides=["b.x=7"], progress=False, log=lambda *_: None) == ["b", "c"]
    assert _published(project) == _published(reference)
    assert not (project / "data/runs/p/staging").exists()


def test_a_publication_cut_short_is_completed_by_the_next_run(project: Path, monkeypatch) -> None:
    pipeline.run("p", project, progress=False, log=lambda *_: None)
    real = store._move  # looked up in store, where the publication journal is carried out
    calls = []

    def dies_after_the_first_move(src: Path, dst: Path) -> None:
        if calls:
            raise KeyboardInterrupt  # as if killed between two moves of one publication
        calls.append(dst)
        real(src, dst)

    monkeypatch.setattr(store, "_move", dies_after_the_first_move)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run("p", project, overrides=["b.x=9"], progress=False, log=lambda *_: None)
    assert (project / "data/runs/p/staging/b/publish.json").is_file()
    monkeypatch.setattr(store, "_move", real)
    messages: list[str] = []
    ran = pipeline.run("p", project, overrides=["b.x=9"], progress=False, log=messages.append)
    assert "completed the publication of b" in " ".join(messages)
    assert ran == ["c"]  # b was published by the recovery; only its descendant still runs
    assert _value(project, "b") == 90 + 20


def test_one_run_at_a_time_and_the_refusal_names_the_holder(project: Path) -> None:
    with pipeline.project_lock(project, "p"):
        with pytest.raises(pipeline.PipelineError, match=r"another pipeline run holds this project \(pid \d+"):
            pipeline.run("p", project, progress=False, log=lambda *_: None)
    assert pipeline.run("p", project, progress=False, log=lambda *_: None) == list("abcd")  # released


def test_ctrl_c_stops_with_one_line_and_no_traceback(project: Path, monkeypatch, capsys) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "_execute", interrupted)
    assert pipeline.main(["run", "--profile", "p", "--root", str(project)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err and "resume" in err


@pytest.mark.parametrize("group, jobs", [(True, 1), (False, 1), (True, 2), (False, 2)],
                         ids=["terminal (runner and kernel)", "runner only", "terminal, two jobs", "runner, two jobs"])
def test_ctrl_c_stops_the_run_cleanly_and_publishes_nothing(project: Path, group: bool, jobs: int) -> None:
    """SIGINT to the whole process group (what Ctrl-C in a terminal does), or to the runner alone.

    With ``--jobs 2`` the node runs on a worker thread while the main thread keeps the signal.
    """
    import signal

    pipeline.run("p", project, progress=False, log=lambda *_: None)
    before = _published(project)
    proc = _run_stopped_inside_b(project, "--jobs", str(jobs))
    (os.killpg if group else os.kill)(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _published(project) == before
    assert pipeline.plan("p", project, overrides=["b.x=7"]).stale == ["b"]


def test_a_dead_kernel_is_a_clear_error_and_after_ctrl_c_an_interruption(project: Path, monkeypatch,
                                                                          caplog) -> None:
    """Ctrl-C can kill the kernel before the runner's own KeyboardInterrupt surfaces (seen in CI)."""
    import logging
    import signal

    import papermill as pm
    from nbclient.exceptions import DeadKernelError

    pipeline.run("p", project, progress=False, log=lambda *_: None)
    before = _published(project)

    def dies(*args, **kwargs):
        raise DeadKernelError("Kernel died")

    monkeypatch.setattr(pm, "execute_notebook", dies)
    with pytest.raises(pipeline.PipelineError, match="kernel died without a Python error.*memory"):
        pipeline.run("p", project, overrides=["b.x=7"], progress=False, log=lambda *_: None)

    def interrupted_then_dies(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass  # swallowed below the runner, as an event loop may
        logging.getLogger("papermill").error("Kernel died while waiting for execute reply.")
        raise DeadKernelError("Kernel died")

    monkeypatch.setattr(pm, "execute_notebook", interrupted_then_dies)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run("p", project, overrides=["b.x=7"], progress=False, log=lambda *_: None)
    assert _published(project) == before
    assert not (project / "data/runs/p/staging/b").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the runner's recorder is gone
    assert "Kernel died" not in caplog.text  # the teardown after an interrupt is not reported as news


def test_an_ignored_sigint_stays_ignored_while_a_node_runs() -> None:
    import signal

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a job a script starts with `&`
    try:
        with kernels._recording_sigint() as seen:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert seen == []
    finally:
        signal.signal(signal.SIGINT, old)


def test_check_warns_about_a_profile_that_sets_nothing(project: Path, capsys) -> None:
    (project / "notebooks/profiles/p.yml").write_text("description: nothing set\n")
    assert pipeline.main(["check", "--profile", "p", "--root", str(project)]) == 0
    assert "warning: profile p sets nothing" in capsys.readouterr().err


def test_long_loops_report_progress_that_the_runner_shows_with_a_measured_eta(tmp_path: Path, monkeypatch) -> None:
    from salve_utils.common import runtime

    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(runtime.PROGRESS_FILE, str(path))
    assert list(runtime.track(range(2), "seeds")) == [0, 1]
    assert [json.loads(line)["done"] for line in path.read_text().splitlines()] == [0, 1, 2]
    assert pipeline.progress_line(path, 0) == ""  # finished loops are not shown

    lines = [{"what": "sweep points", "done": 0, "total": 4, "t": 100.0},
             {"what": "SAE epochs", "done": 0, "total": 10, "t": 100.0},
             {"what": "SAE epochs", "done": 10, "total": 10, "t": 120.0},  # 2 s an epoch
             {"what": "sweep points", "done": 1, "total": 4, "t": 120.0},
             {"what": "SAE epochs", "done": 0, "total": 10, "t": 120.0},  # the next SAE: a new loop
             {"what": "SAE epochs", "done": 4, "total": 10, "t": 128.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"what": "SAE ep')  # a line being written
    # sweep: 20 s a point, 3 left, 10 s since its last report -> 50 s; epochs: 2 s each, 6 left, 2 s since -> 10 s
    assert pipeline.progress_line(path, 130.0) == "1/4 sweep points, ETA 0:50 · 4/10 SAE epochs, ETA 0:10"
    path.write_text(json.dumps({"what": "epochs", "done": 12, "total": 40, "t": 0.0}) + "\n")  # resumed at 12
    assert pipeline.progress_line(path, 5.0) == "12/40 epochs"  # no rate measured yet: no ETA
    shown: list[str] = []
    with pipeline.progress._watching(path, shown.append, every=0.01):  # what the runner's bar gets while a node runs
        for _ in range(100):
            if shown:
                break
            time.sleep(0.01)
    assert shown[0] == "12/40 epochs"


def _counting_executions(monkeypatch) -> tuple[list[int], list[tuple[str, float, float, bool]]]:
    """Patch the runner's node execution to count how many run at once.

    Returns ``[current, peak]`` and a log of ``(node, start, end, succeeded)``.
    """
    import threading

    count, log, lock, real = [0, 0], [], threading.Lock(), execute._execute

    def counting(p, name, *args, **kwargs):
        with lock:
            count[0] += 1
            count[1] = max(count)
        start, ok = time.monotonic(), False
        try:
            meta = real(p, name, *args, **kwargs)
            ok = True
            return meta
        finally:
            with lock:
                count[0] -= 1
                log.append((name, start, time.monotonic(), ok))

    monkeypatch.setattr(execute, "_execute", counting)
    return count, log


def test_jobs_run_ready_nodes_side_by_side_to_the_same_bytes(editions_project: Path, tmp_path_factory,
                                                            monkeypatch) -> None:
    import shutil

    # every node adds its row to one shared table; one.b and one.c write theirs, then wait, so both have
    # merged into the same published version before either publishes: neither may drop the other's row
    step = editions_project / "notebooks" / "step.ipynb"
    nb = nbformat.read(step, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'import time\nimport pandas as pd\nctx.save_table(pd.DataFrame({"value": [value]}), "shared")\n'
        'time.sleep(2 if node.endswith((".b", ".c")) else 0)'))
    nbformat.write(nb, step)
    twin = tmp_path_factory.mktemp("twin") / "project"
    shutil.copytree(editions_project, twin)
    one_at_a_time = pipeline.run("p", twin, progress=False, log=lambda *_: None)
    count, _ = _counting_executions(monkeypatch)
    side_by_side = pipeline.run("p", editions_project, progress=False, log=lambda *_: None, jobs=2)
    assert count[1] == 2, "the two editions' first nodes are ready together and must run together"
    assert sorted(side_by_side) == sorted(one_at_a_time)
    order = side_by_side.index  # completion order: a node after its upstream, else free (one.c may end last)
    assert order("one.a") < order("one.b") < order("report") and order("two.a") < order("two.b") < order("report")
    assert order("one.a") < order("one.c")
    assert _published(editions_project) == _published(twin)  # same tables and artifacts, byte for byte
    import pandas as pd

    shared = pd.read_csv(editions_project / "data/results/p/one/shared.csv")
    assert shared["node"].tolist() == ["one.a", "one.b", "one.c"]
    assert pipeline.run("p", editions_project, progress=False, log=lambda *_: None, jobs=2) == []
    for bad in (0, 65, 1.5, True):
        with pytest.raises(pipeline.PipelineError, match="--jobs must be a whole number"):
            pipeline.run("p", editions_project, jobs=bad)


def test_with_jobs_a_failed_node_stops_new_ones_and_the_running_ones_finish(project: Path, monkeypatch) -> None:
    count, log = _counting_executions(monkeypatch)
    with pytest.raises(pipeline.PipelineError, match="node d failed"):
        pipeline.run("p", project, overrides=["d.fail=true"], progress=False, log=lambda *_: None, jobs=2)
    assert count == [0, 2]  # a and d started together; nothing is left running
    failed_at = next(end for name, _, end, ok in log if name == "d" and not ok)
    assert all(start < failed_at for _, start, _, _ in log), "no node starts after a failure"
    assert all(ok for name, *_, ok in log if name != "d")  # what was running finished and was published
    assert _value(project, "a") == 20 and not (project / "data/artifacts/p/d").exists()
    assert pipeline.error_outputs(project) == [] and (project / "data/runs/p/failed/d.ipynb").is_file()
