"The notebooks follow the book's conventions, and the table of contents lists them all."
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("[0-9][0-9]*.ipynb"))


def cells(nb):
    return json.loads(nb.read_text(encoding="utf-8"))["cells"]


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(nb):
    data = json.loads(nb.read_text(encoding="utf-8"))
    assert (data["nbformat"], data["nbformat_minor"]) >= (4, 5)
    cs = data["cells"]
    assert all(c.get("id") for c in cs), "every cell needs an id"
    first = cs[0]
    assert first["cell_type"] == "code" and "google.colab" in "".join(first["source"])
    assert "remove-cell" in first["metadata"].get("tags", [])
    assert any(re.match(r"#\|\s*default_exp\s+\w+", "".join(c["source"])) for c in cs if c["cell_type"] == "code")
    code = [c for c in cs if c["cell_type"] == "code"]
    assert sum("assert" in "".join(c["source"]) for c in code) >= 3, "a chapter proves its claims with checks"
    for c in code:
        src = "".join(c["source"])
        assert not re.search(r"['\"](/work|/home|/tmp|C:\\\\)", src), "no absolute paths"
        for o in c.get("outputs", []):
            assert o["output_type"] != "error", f"stored error output in {c['id']}"
            if o["output_type"] in ("execute_result",):
                assert c["execution_count"] is not None


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_from_a_real_run(nb):
    "Stored outputs come from a full run, not quick mode."
    text = "".join("".join(o.get("text", "")) for c in cells(nb) for o in c.get("outputs", []))
    assert "quick mode: True" not in text
    assert any(c.get("outputs") for c in cells(nb) if c["cell_type"] == "code"), "notebook has no stored outputs"


def test_toc_lists_every_chapter():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    for nb in NOTEBOOKS:
        assert f"chapters/{nb.stem}" in toc, nb.name


def test_settings_paths():
    ini = (ROOT / "settings.ini").read_text(encoding="utf-8")
    assert re.search(r"^nbs_path\s*=\s*chapters$", ini, re.M)
    assert re.search(r"^lib_path\s*=\s*encoder_book$", ini, re.M)


def _tool(name):
    import importlib
    import sys
    if str(ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(ROOT / "tools"))
    return importlib.import_module(name)


def test_nbdev_directives_are_split_from_the_code():
    site = _tool("sphinx_site")
    found, code = site.split_directives("#| export\n# | hide\n\nclass A:\n    def f(self): ...\n")
    assert found == {"export": "", "hide": ""} and code == "class A:\n    def f(self): ..."
    found, code = site.split_directives("#|default_exp tokenizer")
    assert found == {"default_exp": "tokenizer"} and code == ""
    assert site.split_directives("x = 1  # not #| export")[0] == {}
    assert site.default_module("#| default_exp bert\n") == "bert"
    assert site.symbol_ids("class A:\n    def f(self): ...\ndef g(): ...") == ["a", "a.f", "g"]
    assert site.symbol_ids("%timeit f()") == []
    assert site.nbdev_page_name("04b_bert") == "bert" and site.nbdev_page_name("intro") == "intro"


def test_diagrams_are_committed_as_drawn_and_legible_on_a_phone():
    "chapters/figures/*.svg equal what tools/diagrams.py draws; <= 420 wide, text >= 13 units."
    diagrams = _tool("diagrams")
    assert diagrams.main(["--check"]) == 0, "run python tools/diagrams.py and commit"
    svgs = sorted((ROOT / "chapters" / "figures").glob("*.svg"))
    assert len(svgs) >= 7
    for svg in svgs:
        text = svg.read_text(encoding="utf-8")
        width = float(re.search(r'viewBox="0 0 ([\d.]+) ', text).group(1))
        sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', text)]
        assert width <= 420 and sizes and min(sizes) * 390 / width >= 12, svg.name
        assert "http" not in text.replace("http://www.w3.org/2000/svg", ""), svg.name
    with pytest.raises(ValueError, match="font size"):
        diagrams.Svg(400, 100, "t").text(0, 0, "tiny", size=10)


def test_page_check_counts(tmp_path):
    "tools/page_check.py counts each kind of problem it reports (a made-up notebook)."
    import base64
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pc = _tool("page_check")
    buf = io.BytesIO()
    fig = plt.figure(figsize=(9, 2))
    fig.savefig(buf, format="png", dpi=40)
    plt.close(fig)
    inches, dpi = pc.png_inches(base64.b64encode(buf.getvalue()).decode())
    assert abs(inches - 9) < 0.1 and abs(dpi - 40) < 0.5
    import nbformat
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("#| export\n" + "x = 1  # " + "y" * 90 + "\n")
    code.outputs = [nbformat.v4.new_output("stream", name="stderr", text="warn\n"),
                    nbformat.v4.new_output("stream", name="stdout",
                                           text="10%|#   | 1/10\r100%|####| 10/10\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="/tmp/x " + "z" * 90),
                    nbformat.v4.new_output("display_data",
                                           data={"image/png": base64.b64encode(buf.getvalue())
                                                 .decode()})]
    nb.cells = [nbformat.v4.new_markdown_cell("As the source article says, before the fix."),
                code]
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    c = pc.notebook_counts(path)
    assert c == {"code>88": 1, "out>88": 1, "directives": 0, "fig>8in": 1, "stderr": 1,
                 "progress": 1, "paths": 1, "phrases": 2}, c


@pytest.mark.parametrize("page", ["intro", "glossary", "references", "appendix_performance"])
def test_markdown_pages_fit_and_speak_to_the_reader(page):
    "Counts that are zero on the markdown pages stay zero (tools/page_check.py)."
    c = _tool("page_check").markdown_counts(ROOT / "chapters" / f"{page}.md")
    assert c["code>88"] == 0 and c["phrases"] == 0, c


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_counts_that_are_zero_stay_zero(nb):
    "No chapter shows a code line over 88 columns, stderr, progress frames or dev phrases."
    c = _tool("page_check").notebook_counts(nb)
    kept = {k: c[k] for k in ("code>88", "stderr", "progress", "phrases")}
    assert kept == dict.fromkeys(kept, 0), kept
