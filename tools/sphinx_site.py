"""Small fixes to the rendered book: a Sphinx extension, loaded through
`sphinx.local_extensions` in _config.yml.

- nbdev directives (`#| export`, `#| default_exp tokenizer`, `#| hide`, ...) are
  for nbdev, not for readers: they are stripped from the code cells of every page.
  A cell that held only directives disappears; a `#| hide` cell is removed (as
  nbdev's own docs would); an exported cell keeps a small badge, "exported to
  encoder_book.X", so a reader can tell which cells form the package.
- Exported cells carry the ids that encoder_book/_modidx.py links to (`bertconfig`,
  `bertconfig.forward`, ...), and the site has one small redirect page per
  exporting notebook at the address nbdev gives it (`chapters/tokenizer.html` ->
  `chapters/01_input_layer.html`), so every link in _modidx.py lands on its code.
- tools/static/encoder_book.css: 88 columns of code fit the content column at
  1280 px, and the phone layout does not scroll sideways.
- Each script is included once per page. Under Jupyter Book 1.x, sphinx-thebe's
  and sphinx-togglebutton's inline configuration scripts end up in every page
  twice (once with filename None, once with ""), and the second
  `const THEBE_JS_URL = ...` is a SyntaxError in the browser console.
"""

from __future__ import annotations

import ast
import html
import json
import re
from pathlib import Path

from docutils import nodes

HERE = Path(__file__).resolve().parent
PACKAGE = "encoder_book"
# nbdev reads directives written as `#| name [args]` (also `# | name`, `#|name`)
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*([\w-]+)(?:[ \t]+(.*?))?\s*$")
EXPORTS = {"export", "exports", "exporti", "exporti-"}
REMOVED = {"hide"}


def split_directives(source: str) -> tuple[dict[str, str], str]:
    "The cell's nbdev directives (name -> argument) and its source without them."
    found: dict[str, str] = {}
    kept = []
    for line in source.splitlines():
        m = DIRECTIVE.match(line)
        if m:
            found[m.group(1).lower()] = (m.group(2) or "").strip()
        else:
            kept.append(line)
    while kept and not kept[0].strip():
        kept.pop(0)
    return found, "\n".join(kept).rstrip()


def default_module(source: str) -> str | None:
    "The module named by a notebook's `#| default_exp`, if the notebook has one."
    for line in source.splitlines():
        m = DIRECTIVE.match(line)
        if m and m.group(1).lower() == "default_exp" and m.group(2):
            return m.group(2).split()[0]
    return None


def notebook_module(path: Path) -> str | None:
    "The `#| default_exp` module of a notebook file (None when it exports nothing)."
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return next((m for c in cells if c.get("cell_type") == "code"
                 for m in [default_module("".join(c.get("source", "")))] if m), None)


def symbol_ids(code: str) -> list[str]:
    "The anchors nbdev's _modidx.py uses for the classes and functions a cell defines."
    try:
        tree = ast.parse(code)
    except SyntaxError:                 # IPython magics and the like: no anchors
        return []
    try:
        from nbdev.doclinks import patch_name  # `@patch_to(C) def f` is `C.f`
    except ImportError:
        def patch_name(o):
            return o.name
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    ids = []
    for node in tree.body:
        if isinstance(node, defs):
            ids.append(str(patch_name(node)).lower())
            if isinstance(node, ast.ClassDef):
                ids += [f"{node.name}.{n.name}".lower() for n in node.body
                        if isinstance(n, defs)]
    return ids


def _code_cells(doctree: nodes.document):
    for cell in doctree.findall(nodes.container):
        if cell.get("nb_element") == "cell_code":
            yield cell


def _source_block(cell: nodes.container) -> nodes.literal_block | None:
    for child in cell.children:
        if isinstance(child, nodes.container) and child.get("nb_element") == \
                "cell_code_source":
            for block in child.findall(nodes.literal_block):
                return block
    return None


def strip_nbdev_directives(app, doctree: nodes.document) -> None:
    "Remove nbdev directives from code cells; badge and anchor the exported ones."
    cells = [(c, _source_block(c)) for c in _code_cells(doctree)]
    cells = [(c, b) for c, b in cells if b is not None]
    # the notebook's `#| default_exp` cell is usually tagged remove-cell: read the file
    source_path = Path(doctree.get("source") or app.env.doc2path(app.env.docname))
    module = notebook_module(source_path) if source_path.suffix == ".ipynb" else None
    seen_ids = set(doctree.ids)
    for cell, block in cells:
        found, code = split_directives(block.astext())
        if not found:
            continue
        if REMOVED & found.keys():
            cell.parent.remove(cell)
            continue
        source = block.parent
        if not code:                     # only directives: drop the input
            cell.remove(source)
            if not cell.children:
                cell.parent.remove(cell)
            continue
        block.children = [nodes.Text(code)]
        block.rawsource = code
        export = EXPORTS & found.keys()
        if export:
            target = found[next(iter(export))].split()[0] if found[
                next(iter(export))] else module
            name = f"{PACKAGE}.{target}" if target else PACKAGE
            cell["classes"].append("nb-exported")
            badge = nodes.raw(
                "", f'<div class="nb-export-badge" title="This cell is part of the '
                f'package: nbdev writes it to {html.escape(name)}">exported to '
                f"<code>{html.escape(name)}</code></div>", format="html")
            source.insert(0, badge)
            new = [i for i in symbol_ids(code) if i not in seen_ids]
            seen_ids.update(new)
            cell["ids"].extend(new)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    "Drop repeated entries (same file or inline body, same attributes) from scripts."
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # an inline script's filename is None or "" depending on where it was added
        key = (getattr(js, "filename", js) or "",
               tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


REDIRECT = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Refresh" content="0; url={target}">
<script>location.replace("{target}" + location.hash);</script>
</head><body><p>This code is in <a href="{target}">{target}</a>.</p></body></html>
"""


def nbdev_page_name(notebook: str) -> str:
    "The page name nbdev gives a notebook in _modidx.py (its number prefix dropped)."
    return re.sub(r"^\d+[a-zA-Z0-9]*_", "", notebook.lower())


def _write_redirects(app, exception) -> None:
    "One page per exporting notebook at the address _modidx.py links to."
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for doc in app.env.found_docs:
        src = Path(app.env.doc2path(doc))
        if src.suffix != ".ipynb" or notebook_module(src) is None:
            continue
        page = Path(doc)
        alias = out / page.parent / f"{nbdev_page_name(page.name)}.html"
        real = out / f"{doc}.html"
        if alias == real or alias.exists() and "Refresh" not in alias.read_text(
                encoding="utf-8")[:400]:
            continue                     # never overwrite a real page
        alias.parent.mkdir(parents=True, exist_ok=True)
        alias.write_text(REDIRECT.format(title=page.name, target=f"{page.name}.html"),
                         encoding="utf-8")


def _static_path(app, config) -> None:
    config.html_static_path.append(str(HERE / "static"))


def setup(app):
    app.connect("config-inited", _static_path)
    app.add_css_file("encoder_book.css")
    app.connect("doctree-read", strip_nbdev_directives)
    # after every extension added its scripts
    app.connect("html-page-context", _dedupe_scripts, priority=1000)
    app.connect("build-finished", _write_redirects)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
