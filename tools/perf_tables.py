"""Gather the measurements stored in the chapters' notebooks for the performance appendix.

chapters/appendix_performance.md includes files such as

    ../_build/generated/performance/03_attention/03atte-053.md          text output of cell 03atte-053
    ../_build/generated/performance/00b_data/00bdat-035.L1-1.md         only line 1 of that text
    ../_build/generated/performance/03_attention/03atte-054-0.png       the cell's first image (index 0)

This script reads the page, finds every such path, and writes each file from the outputs stored in
chapters/<notebook>.ipynb (cells are found by their stable cell id). `make book` runs it before Jupyter Book, so the
appendix always shows what the chapters show. A missing notebook, cell or output is an error, not an empty table.

    python tools/perf_tables.py [--check]      # --check: report what would be written, write nothing
"""
import argparse
import base64
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "chapters" / "appendix_performance.md"
OUT = ROOT / "_build" / "generated" / "performance"
REF = re.compile(r"_build/generated/performance/(?P<nb>[\w.-]+)/(?P<cell>[\w-]+?)"
                 r"(?:(?:\.L(?P<a>\d+)-(?P<b>\d+))?\.md|-(?P<img>\d+)\.png)")


def text_of(cell: dict) -> str:
    "The stdout and plain-text results of a cell, as a terminal would show them (progress-bar redraws dropped)."
    parts = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream" and o.get("name") == "stdout":
            parts.append("".join(o["text"]))
        elif o["output_type"] == "execute_result" and "text/plain" in o.get("data", {}):
            parts.append("".join(o["data"]["text/plain"]) + "\n")
    lines = "".join(parts).splitlines()
    return "\n".join(line.rsplit("\r", 1)[-1].rstrip() for line in lines).strip("\n")


def images_of(cell: dict) -> list[bytes]:
    return [base64.b64decode("".join(o["data"]["image/png"])) for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]


def gather(page: Path = PAGE, out: Path = OUT, write: bool = True) -> list[Path]:
    refs = list(REF.finditer(page.read_text(encoding="utf-8")))
    if not refs:
        raise SystemExit(f"{page}: no _build/generated/performance/... references found")
    notebooks, written = {}, []
    for m in refs:
        nb_path = ROOT / "chapters" / f"{m['nb']}.ipynb"
        if m["nb"] not in notebooks:
            if not nb_path.exists():
                raise SystemExit(f"{page.name}: {nb_path.relative_to(ROOT)} does not exist")
            cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
            notebooks[m["nb"]] = {c.get("id"): c for c in cells}
        cell = notebooks[m["nb"]].get(m["cell"])
        if cell is None:
            raise SystemExit(f"{page.name}: no cell with id {m['cell']!r} in {nb_path.relative_to(ROOT)} "
                             "(did the chapter's cells change? update the page)")
        dest = out / m.group(0).split("_build/generated/performance/", 1)[1]
        if m["img"] is not None:
            images = images_of(cell)
            if int(m["img"]) >= len(images):
                raise SystemExit(f"{page.name}: cell {m['cell']} of {m['nb']} has {len(images)} stored image(s), "
                                 f"not an image number {m['img']}")
            data = images[int(m["img"])]
        else:
            text = text_of(cell)
            if m["a"] is not None:
                text = "\n".join(text.splitlines()[int(m["a"]) - 1:int(m["b"])])
            if not text.strip():
                raise SystemExit(f"{page.name}: cell {m['cell']} of {m['nb']} has no stored text output "
                                 "(run the chapter for real first)")
            data = f"```text\n{text}\n```\n".encode()
        if write:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() or dest.read_bytes() != data:     # unchanged files keep their time stamp
                dest.write_bytes(data)
        written.append(dest)
    return written


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="check that every reference resolves; write nothing")
    args = p.parse_args(argv)
    files = gather(write=not args.check)
    print(f"performance appendix: {len(files)} output(s) gathered from the chapters"
          + (" (checked, nothing written)" if args.check else f" into {OUT.relative_to(ROOT)}/"))


if __name__ == "__main__":
    sys.exit(main())
