"""Small fixes to the rendered book: a Sphinx extension, loaded through `sphinx.local_extensions` in _config.yml.

- Each script is included once per page. Under Jupyter Book 1.x, sphinx-thebe's and sphinx-togglebutton's inline
  configuration scripts end up in every page twice (once with filename None, once with ""), and the second
  `const THEBE_JS_URL = ...` is a SyntaxError in the browser console of every page.
"""


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    "Drop repeated entries (same file or same inline body, same attributes) from the page's script list."
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # an inline script's filename is None or "" depending on where it was added: the same script either way
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=1000)   # after every extension added its scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
