"""A small Sphinx extension for the SALVE book's website: fixes Jupyter Book 1 leaves to the site.

* sphinx-thebe's configuration script is added twice to every page (the browser then
  reports ``Identifier 'THEBE_JS_URL' has already been declared``): keep one.
"""

from __future__ import annotations


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
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
