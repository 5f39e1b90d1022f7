"""The package's architecture, enforced: five layers, imports only downward, no cycles, a light method."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import salve_utils

PACKAGE = Path(salve_utils.__file__).parent
#: each layer and the layers it may import (itself included)
ALLOWED = {
    "common": {"common"},
    "method": {"common", "method"},
    "study": {"common", "method", "study"},
    "figures": {"common", "method", "study", "figures"},
    "pipeline": {"common", "method", "study", "figures", "pipeline"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every salve_utils module ``path`` imports, anywhere in the file (functions and TYPE_CHECKING included)."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            found |= {f"{target}.{a.name}" for a in node.names} | {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name.startswith("salve_utils.")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules outside the layers: {loose}"
    for layer in ALLOWED:
        init = PACKAGE / layer / "__init__.py"
        assert init.is_file() and "import" in ast.get_docstring(ast.parse(init.read_text())), \
            f"{layer}/__init__.py must say in its docstring what the layer may import"


def test_imports_go_only_downward():
    back = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer(_module(path))
        if own is None:
            continue
        for target in _imports(path):
            other = _layer(target)
            if other is not None and other not in ALLOWED[own]:
                back.append(f"{_module(path)} -> {target}")
    assert back == [], "imports against the layer order:\n" + "\n".join(back)


def test_no_import_cycles():
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    edges = {m: {t for t in _imports(p) if t in modules and t != m and not m.startswith(t + ".")}
             for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in edges[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])


def test_the_method_stands_alone():
    """Importing the method loads no study, figure or pipeline code, nor their libraries."""
    code = ("import sys, salve_utils.method as m; print(len(m.__all__)); "
            "print(sorted(n for n in sys.modules if n.split('.')[0] in {'salve_utils', 'matplotlib', 'seaborn', "
            "'papermill', 'yaml', 'nbformat'} and not n.startswith(('salve_utils.method', 'salve_utils.common')) "
            "and n != 'salve_utils'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert int(out[0]) == len(salve_utils.METHOD)
    assert out[1] == "[]", f"importing salve_utils.method loaded {out[1]}"


def test_the_public_surface_is_the_method():
    import salve_utils.method as method

    assert sorted(salve_utils.__all__) == sorted(method.__all__)
    for name in salve_utils.__all__:
        assert getattr(salve_utils, name) is getattr(method, name)
    try:
        salve_utils.no_such_function
    except AttributeError as err:
        assert "no_such_function" in str(err)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
