"""Docstrings that the API page renders as written: numpy sections hold entries only.

Sphinx's napoleon reads every unindented line of a ``Parameters`` or ``Attributes``
section as the name of an entry: a paragraph of prose left there, or two parameters
on one line (``acts : ...; labels : ...``), renders as nonsense entries on the API page.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY_SECTIONS = {"Parameters", "Attributes", "Other Parameters"}
ENTRY = re.compile(r"^\*{0,2}\w+(, \*{0,2}\w+)*( : .*)?$")  # ``name`` or ``a, b : description``
SECOND_ENTRY = re.compile(r"; \w+(, \w+)* : ")


def section_problems(doc: str) -> list[str]:
    """Lines of ``doc``'s entry sections that napoleon would misread, with the reason.

    >>> section_problems("Parameters\\n----------\\nx : one\\n\\nProse after the entries.")
    ['prose inside Parameters: Prose after the entries.']
    >>> section_problems("Parameters\\n----------\\nacts : (N, M); labels : (N,)")
    ['two entries on one line in Parameters: acts : (N, M); labels : (N,)']
    >>> section_problems("Parameters\\n----------\\ntrain, val : tensors\\n    described here")
    []
    """
    lines, section, problems = doc.splitlines(), None, []
    for i, line in enumerate(lines):
        if re.fullmatch(r"-{3,}", line.strip()):
            continue
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            section = line.strip()
            continue
        if section not in ENTRY_SECTIONS or not line.strip() or line.startswith(" "):
            continue
        if not ENTRY.match(line):
            problems.append(f"prose inside {section}: {line.strip()}")
        elif SECOND_ENTRY.search(line):
            problems.append(f"two entries on one line in {section}: {line.strip()}")
    return problems


def test_entry_sections_hold_one_entry_per_line_and_no_prose() -> None:
    found = []
    for path in sorted((ROOT / "salve_utils").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                name = getattr(node, "name", "module")
                found += [f"{path.relative_to(ROOT)}:{name}: {p}" for p in section_problems(doc or "")]
    assert not found, "move the prose above the section, one entry per line:\n" + "\n".join(found)
