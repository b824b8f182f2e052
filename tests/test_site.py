"""Static checks of the built book (_build/html): run by `make test-site` after `make book`.

Every page in the table of contents is built; notebook pages launch their own notebook in Colab; MathJax and every
other script and stylesheet are served by the site itself (no CDN); the appendices are in place. What only a
browser can tell (pages load without errors, math renders, images load) is tools/browser_check.py's job.
"""
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("ENCODER_BOOK_SITE") or ROOT / "_build" / "html")   # the built site

pytestmark = pytest.mark.skipif(os.environ.get("ENCODER_BOOK_SITE_TESTS") != "1",
                                reason="checks the built site: run by `make test-site` after `make book` "
                                       "(ENCODER_BOOK_SITE_TESTS=1)")


def toc_files() -> list[str]:
    return re.findall(r"(?:root|file):\s*(\S+)", (ROOT / "_toc.yml").read_text(encoding="utf-8"))


def config(key: str) -> str:
    m = re.search(rf"^\s+{key}:\s*(\S+)", (ROOT / "_config.yml").read_text(encoding="utf-8"), re.M)
    assert m, f"_config.yml has no {key}"
    return m.group(1).strip("\"'").rstrip("/")


def page(name: str) -> str:
    return (SITE / f"{name}.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module", autouse=True)
def built():
    if not (SITE / "index.html").exists():
        pytest.fail("_build/html does not exist: run `make book` first")


def test_every_toc_entry_is_a_page():
    missing = [f for f in toc_files() if not (SITE / f"{f}.html").exists()]
    assert not missing, missing


def test_colab_buttons_point_at_each_notebook():
    repo = config("url")
    assert repo.startswith("https://github.com/"), repo
    org_repo, branch = repo.removeprefix("https://github.com/"), config("branch")
    notebooks = [f for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]
    assert len(notebooks) >= 5
    for nb in notebooks:
        want = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{nb}.ipynb"
        links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page(nb)))
        assert links == {want}, (nb, links)


def test_no_cdn_scripts_or_styles():
    "MathJax (and everything else a page loads) comes from the site itself, so the book works offline."
    for html in sorted(SITE.rglob("*.html")):
        text = html.read_text(encoding="utf-8")
        external = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="((?:https?:)?//[^"]+)"', text)
        external = [u for u in external if not re.search(r'rel="(?:canonical|alternate)"', u)]
        assert not external, (html.relative_to(SITE), external)
        for src in re.findall(r'<script\b[^>]*src="([^"]*mathjax[^"]*)"', text, re.I):
            assert "_static/mathjax/" in src and (html.parent / src.split("?")[0]).exists(), (html, src)


def test_mathjax_is_served_locally():
    js = SITE / "_static" / "mathjax" / "tex-chtml.js"
    assert js.exists() and js.stat().st_size > 500_000
    fonts = list((SITE / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) > 10, "MathJax's fonts are missing"
    math_pages = [p for p in SITE.rglob("*.html") if 'class="math' in p.read_text(encoding="utf-8")]
    assert math_pages, "no page with math?"
    for p in math_pages:
        assert "_static/mathjax/tex-chtml.js" in p.read_text(encoding="utf-8"), p


def test_search_and_copy_buttons():
    assert (SITE / "search.html").exists() and (SITE / "searchindex.js").stat().st_size > 10_000
    assert "copybutton.js" in page("chapters/01_input_layer")


def test_each_script_once():
    "tools/sphinx_site.py removes the inline scripts that Jupyter Book 1.x includes twice."
    text = page("chapters/intro")
    assert text.count("const THEBE_JS_URL") <= 1


def test_appendices():
    errata, perf = page("chapters/appendix_errata"), page("chapters/appendix_performance")
    refs, glossary = page("chapters/references"), page("chapters/glossary")
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    assert refs.count('role="doc-biblioentry"') == len(re.findall(r"^@\w+\{", bib, re.M)), "every entry listed"
    assert len(re.findall(r'href="references\.html#', errata)) >= 8, "the errata cite their sources"
    assert len(re.findall(r'<dt id="term-', glossary)) >= 15
    assert 'href="glossary.html#term-' in errata
    for chapter in ("02_positional_encoding", "03_attention"):
        assert f'href="{chapter}.html#' in errata, f"the errata link to {chapter}'s sections"
    assert perf.count('<div class="highlight-text') >= 6, "the performance appendix shows the chapters' tables"


def test_performance_appendix_shows_the_chapters_outputs():
    "Each gathered table is, character for character, the stored output of its chapter cell."
    import html as htmllib
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    import perf_tables
    text = htmllib.unescape(re.sub(r"<[^>]+>", "", page("chapters/appendix_performance")))
    files = perf_tables.gather(write=False)
    assert len(files) >= 6
    for f in files:
        if f.suffix == ".md":
            m = perf_tables.REF.search(f.as_posix())
            nb = json.loads((ROOT / "chapters" / f"{m['nb']}.ipynb").read_text(encoding="utf-8"))
            cell = next(c for c in nb["cells"] if c.get("id") == m["cell"])
            lines = perf_tables.text_of(cell).splitlines()
            if m["a"]:
                lines = lines[int(m["a"]) - 1:int(m["b"])]
            for line in lines:
                assert line.strip() in text, (f.name, line)


def _tools():
    import sys
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))


def test_no_nbdev_directives_on_the_pages():
    "`#| export` and the like are stripped by tools/sphinx_site.py: none is shown."
    _tools()
    import page_check
    shown = {p.relative_to(SITE).as_posix(): page_check.directives_in_html(p)
             for p in SITE.rglob("*.html")}
    assert not {p: n for p, n in shown.items() if n}, shown


def test_exported_cells_carry_their_badge():
    "Every notebook that exports has badged cells naming its module, and only those."
    _tools()
    import sphinx_site
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        module = sphinx_site.notebook_module(nb)
        text = page(f"chapters/{nb.stem}")
        badges = re.findall(r'class="nb-export-badge"[^>]*>exported to <code>([\w.]+)</code>',
                            text)
        if module is None:
            assert not badges, nb.name
            continue
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        exported = [c for c in cells if c["cell_type"] == "code"
                    and re.match(r"#\|\s*export", "".join(c["source"]))
                    and not {"remove-cell", "remove-input"} & set(c["metadata"].get("tags", []))]
        assert len(badges) == len(exported), (nb.name, len(badges), len(exported))
        assert f"encoder_book.{module}" in badges, (nb.name, module, set(badges))


def test_modidx_links_land_on_the_code():
    "Every link in encoder_book/_modidx.py reaches a page of the site and the symbol's cell."
    ns: dict = {}
    exec((ROOT / "encoder_book" / "_modidx.py").read_text(encoding="utf-8"), ns)
    d = ns["d"]
    assert d["settings"]["doc_baseurl"].rstrip("/").endswith("/chapters"), d["settings"]
    missing = []
    for syms in d["syms"].values():
        for url, _ in syms.values():
            name, anchor = url.split("#", 1)
            alias = SITE / "chapters" / name
            if not alias.exists():
                missing.append(url)
                continue
            m = re.search(r'location\.replace\("([^"]+)"', alias.read_text(encoding="utf-8"))
            target = SITE / "chapters" / (m.group(1) if m else name)
            if f'id="{anchor}"' not in target.read_text(encoding="utf-8"):
                missing.append(f"{url} -> {target.name}")
    assert not missing, missing[:20]


def test_site_css_is_loaded():
    "tools/static/encoder_book.css (code at 88 columns, phone layout) is on every page."
    assert (SITE / "_static" / "encoder_book.css").exists()
    assert "_static/encoder_book.css" in page("chapters/03_attention")
