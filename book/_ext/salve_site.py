"""A small Sphinx extension for the SALVE book's website: what a reader sees of an executed chapter.

* Reader first: the parameter cells (the notebook's defaults and the values papermill
  injected) are left out of the page -- the provenance box lists the parameters --
  and every other code cell's input is folded behind a toggle, outputs and prose
  visible. The notebooks themselves are not changed.
* sphinx-thebe's configuration script is added twice to every page (the browser then
  reports ``Identifier 'THEBE_JS_URL' has already been declared``): keep one.
"""

from __future__ import annotations

import json

#: Cells a reader does not need to see: the parameters, which the provenance box lists.
REMOVED = {"parameters", "injected-parameters"}


def _reader_first(app, docname, source) -> None:
    """Tag an executed chapter's cells as it is read: parameter cells removed, code inputs folded."""
    if not docname.startswith("book/chapters/") or not source[0].lstrip().startswith("{"):
        return
    nb = json.loads(source[0])
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        extra = "remove-cell" if REMOVED & set(tags) else "hide-input"
        if extra not in tags:
            tags.append(extra)
    source[0] = json.dumps(nb)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    seen = set()
    kept = []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", None) or "", repr(sorted(getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("source-read", _reader_first)
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
