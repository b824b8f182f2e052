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
