"""Colab, simulated: chapter 1's own install cell installs the package into a fresh environment, then the chapter runs.

What Colab does when a reader presses a chapter's launch button, and how this test stands in for it:

- **A fresh Python with the usual libraries preinstalled.** Colab's image already has torch, transformers, numpy,
  matplotlib and Jupyter. We create a fresh virtual environment (not `--system-site-packages`) and expose to it,
  through a `.pth` file, a *filtered* view of this project's installed libraries: a folder of links to every
  package of `.venv`'s site-packages except this project itself (its dist-info and its editable-install hook), pip,
  setuptools and `.pth` files. Installing torch and transformers into the fresh environment instead would take
  minutes and gigabytes; the view takes a second, and `encoder_book` stays unimportable until the install cell
  installs it (checked before the run).
- **`google.colab` is imported when the kernel starts**, so the install cell's `if 'google.colab' in sys.modules:`
  branch runs: a stand-in module on the kernel's path, imported by `IPKernelApp.exec_lines`.
- **The install cell runs unchanged.** `%pip install -q "encoder-book @ git+https://github.com/..."` reaches pip and
  git exactly as written; a private git configuration (`GIT_CONFIG_GLOBAL`) maps that URL to this repository with
  `url.<local>.insteadOf`, so pip clones the local repository's committed HEAD instead of GitHub's.
- **The chapter runs top to bottom** with nbclient in quick mode (ENCODER_BOOK_QUICK=1), in an empty working
  folder like Colab's /content, and a last cell appended by the test reports where `encoder_book` was imported from
  and how pip recorded it (direct_url.json: the GitHub URL, and the commit it installed).

Slow (about a minute): `make test-colab` runs it (ENCODER_BOOK_COLAB_TEST=1); plain `pytest tests` skips it.
"""
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "01_input_layer.ipynb"
INSTALL = re.compile(r"""%pip install(?: -q)? "encoder-book @ git\+(?P<url>[^"@]+?)(?:@[^"]*)?"$""", re.M)
# what the filtered view of .venv leaves out: this project, and what a fresh venv brings itself
HIDDEN = re.compile(r"^(encoder[_-]book|__editable__|_distutils_hack|pip|setuptools|pkg_resources|wheel)"
                    r"([-_.].*)?$|\.pth$", re.I)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.environ.get("ENCODER_BOOK_COLAB_TEST") != "1",
                                reason="slow: the Colab simulation runs from `make test-colab` "
                                       "(ENCODER_BOOK_COLAB_TEST=1)")]


def run(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)


def colab_base(dest: Path) -> Path:
    "A folder of links to the project's installed libraries, minus the project itself: Colab's preinstalled set."
    site = Path(sysconfig.get_paths()["purelib"])
    dest.mkdir()
    for entry in site.iterdir():
        if not HIDDEN.match(entry.name) and entry.name != "__pycache__":
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    "A fresh venv that looks like a Colab runtime, a kernel spec for it, and the environment its kernel gets."
    tmp = tmp_path_factory.mktemp("colab")
    venv = tmp / "venv"
    r = run(sys.executable, "-m", "venv", venv)
    assert r.returncode == 0, r.stderr
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    Path(purelib, "colab_base.pth").write_text(str(colab_base(tmp / "colab-base")) + "\n")

    stub = tmp / "colab-stub" / "google" / "colab"           # google.colab, a namespace-package portion
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"Stand-in for Colab\'s google.colab module (encoder-book tests)."\n')

    spec = tmp / "jupyter" / "kernels" / "colab"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--IPKernelApp.exec_lines=import google.colab"],
        "display_name": "Colab (simulated)", "language": "python"}))

    source = CHAPTER.read_text(encoding="utf-8")
    m = INSTALL.search("".join(json.loads(source)["cells"][0]["source"]))
    assert m, "chapter 1's first cell must be the Colab install cell"
    gitconfig = tmp / "gitconfig"
    gitconfig.write_text(f'[url "file://{ROOT}"]\n\tinsteadOf = {m["url"]}\n[safe]\n\tdirectory = *\n')

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "JUPYTER_PATH")}
    env.update(PYTHONPATH=str(tmp / "colab-stub"), JUPYTER_PATH=str(tmp / "jupyter"), ENCODER_BOOK_QUICK="1",
               GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1", MPLBACKEND="agg",
               ENCODER_BOOK_CACHE=str(tmp / "cache"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    content = tmp / "content"                                 # Colab's working folder: nothing of the repo there
    content.mkdir()
    return {"venv": venv, "python": python, "env": env, "content": content, "url": m["url"], "purelib": purelib}


def test_the_fresh_environment_does_not_have_the_package(colab):
    r = run(colab["python"], "-c", "import encoder_book", env=colab["env"], cwd=colab["content"])
    assert r.returncode != 0 and "No module named 'encoder_book'" in r.stderr, r.stdout + r.stderr
    r = run(colab["python"], "-c", "import torch, transformers, google.colab; print(torch.__version__)",
            env=colab["env"], cwd=colab["content"])
    assert r.returncode == 0, r.stderr                         # but has what Colab preinstalls


def test_chapter_1_runs_in_colab(colab, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    head = run("git", "-C", ROOT, "rev-parse", "HEAD").stdout.strip()
    if run("git", "-C", ROOT, "status", "--porcelain").stdout.strip():
        print("note: the working tree has uncommitted changes; Colab (and this test) install the committed HEAD")
    nb = nbformat.read(CHAPTER, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, json, encoder_book, importlib.metadata as md\n"
        "print(json.dumps({'file': encoder_book.__file__, 'prefix': sys.prefix,\n"
        "                  'colab': 'google.colab' in sys.modules,\n"
        "                  'direct_url': json.loads(md.distribution('encoder-book').read_text('direct_url.json'))}))"))
    for k in list(os.environ):
        if k not in colab["env"]:
            monkeypatch.delenv(k)
    for k, v in colab["env"].items():
        monkeypatch.setenv(k, v)
    t0 = time.time()
    NotebookClient(nb, kernel_name="colab", timeout=600, startup_timeout=120,
                   resources={"metadata": {"path": str(colab["content"])}}).execute()
    seconds = time.time() - t0

    install = nb.cells[0]
    assert not [o for o in install.get("outputs", []) if o.get("output_type") == "error"]
    report = json.loads("".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout"))
    assert report["colab"], "google.colab was not imported: the install cell's branch did not run"
    assert Path(report["prefix"]).resolve() == colab["venv"].resolve()
    assert Path(report["file"]).resolve().is_relative_to(Path(colab["purelib"]).resolve()), report["file"]
    direct = report["direct_url"]
    assert direct["url"] == colab["url"] and direct["vcs_info"]["vcs"] == "git"   # pip saw the GitHub URL ...
    assert direct["vcs_info"]["commit_id"] == head                                 # ... and installed our HEAD
    errors = [c for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    print(f"chapter 1 ran in the simulated Colab in {seconds:.0f} s (install cell included)")
