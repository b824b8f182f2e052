"""Count what a reader should not meet on the book's pages, chapter by chapter.

    python tools/page_check.py [--site _build/html] [--json] [--strict NAME ...]

Reads the stored notebooks (chapters/*.ipynb), the markdown pages, and, when it has been
built, the site. For every page it counts:

  code>88      code lines a reader sees that are wider than 88 columns (nbdev directive
               lines and cells tagged remove-cell / remove-input are not seen)
  out>88       printed output lines wider than 88 columns (the last frame of a line
               redrawn with \\r is the one that counts)
  directives   nbdev directive lines (`#| export`, ...) shown in the built HTML
  fig>8in      PNG outputs wider than 8 inches at their dpi (pHYs chunk; 100 dpi,
               matplotlib's inline default, when a PNG has none)
  stderr       stored stderr outputs
  progress     progress-bar frames: stream outputs with \\r redraws or tqdm bars, and
               widget outputs
  paths        machine paths (/tmp, /work, /home, .venv, site-packages) in outputs
  phrases      prose that speaks of unnamed sources or of how the book was made
               ("the article", "source articles", "before the fix", ...)
  summary      numbered chapters (1-7, with their sections): 1 if a Summary heading exists
  exercises    numbered chapters: exercises counted in an Exercises section
  solutions    numbered chapters: solutions hidden in a dropdown or toggle

`--strict NAME` exits 1 when the total of that count is not zero (for summary, exercises
and solutions: when a numbered chapter has no summary, fewer than 4 exercises or fewer
solutions than exercises). tests/test_book.py and tests/test_site.py use `check()`.
"""

from __future__ import annotations

import argparse
import base64
import html as htmllib
import json
import re
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
WIDTH = 88
MAX_INCHES = 8.0
DIRECTIVE = re.compile(r"^\s*#\s*\|\s*[\w-]+")
PATHS = re.compile(r"(?<![\w.])(?:/tmp/|/work/|/home/|/root/|/Users/|\.venv/|"
                   r"site-packages/|[A-Z]:\\\\)")
PROGRESS = re.compile(r"\d+%\|[^\n]*\||it/s\]|s/it\]|█")
PHRASES = re.compile(
    r"\b(?:the (?:source |original |Chinese )?articles?\b|source articles?|"
    r"before the fix|after the fix|we fixed|was fixed|the first version|"
    r"the check we set ourselves|earlier version|previous version|this issue|"
    r"the issue (?:asks|says|wants)|the tutorial(?:s)? we (?:read|follow))",
    re.I)
COUNTS = ("code>88", "out>88", "directives", "fig>8in", "stderr", "progress", "paths",
          "phrases")
CHAPTER_COUNTS = ("summary", "exercises", "solutions")


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _text(output: dict) -> str:
    if output.get("output_type") == "stream":
        t = output.get("text", "")
    else:
        t = output.get("data", {}).get("text/plain", "")
    return "".join(t) if isinstance(t, list) else t


def png_inches(data: str) -> tuple[float, float | None]:
    "Width in inches of a base64 PNG, and its dpi (None when the PNG does not say)."
    raw = base64.b64decode(data)
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return 0.0, None
    width = struct.unpack(">I", raw[16:20])[0]
    dpi, i = None, 8
    while i + 8 <= len(raw):
        n, kind = struct.unpack(">I4s", raw[i:i + 8])
        if kind == b"pHYs":
            ppu, _, unit = struct.unpack(">IIB", raw[i + 8:i + 17])
            if unit == 1 and ppu:
                dpi = ppu * 0.0254
            break
        if kind == b"IDAT":
            break
        i += 12 + n
    return width / (dpi or 100.0), dpi


def notebook_counts(path: Path) -> dict[str, int]:
    "The stored-notebook counts of one notebook."
    nb = json.loads(path.read_text(encoding="utf-8"))
    c = dict.fromkeys(COUNTS, 0)
    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            c["phrases"] += len(PHRASES.findall(src))
            continue
        if cell["cell_type"] != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        if not tags & {"remove-cell", "remove_cell", "remove-input", "remove_input"}:
            c["code>88"] += sum(len(line) > WIDTH for line in src.splitlines()
                                if not DIRECTIVE.match(line))
        c["phrases"] += sum(len(PHRASES.findall(line)) for line in src.splitlines()
                            if line.lstrip().startswith("#"))
        if tags & {"remove-cell", "remove_cell", "remove-output", "remove_output"}:
            shown = False
        else:
            shown = True
        for o in cell.get("outputs", []):
            kind = o.get("output_type")
            text = _text(o)
            if kind == "stream" and o.get("name") == "stderr":
                c["stderr"] += 1
            if kind == "stream" and ("\r" in text or PROGRESS.search(text)):
                c["progress"] += 1
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {}):
                c["progress"] += 1
            c["paths"] += len(PATHS.findall(text))
            if shown and not (kind == "stream" and o.get("name") == "stderr"):
                c["out>88"] += sum(len(line.rsplit("\r", 1)[-1].rstrip()) > WIDTH
                                   for line in text.splitlines())
            png = o.get("data", {}).get("image/png")
            if png:
                inches, _ = png_inches(png if isinstance(png, str) else "".join(png))
                c["fig>8in"] += inches > MAX_INCHES + 1e-6
    return c


def markdown_counts(path: Path) -> dict[str, int]:
    "Counts for a markdown page: only the prose phrases apply."
    c = dict.fromkeys(COUNTS, 0)
    text = path.read_text(encoding="utf-8")
    c["phrases"] = len(PHRASES.findall(text))
    fence = None                        # inside a code fence (not a directive's)
    for line in text.splitlines():
        m = re.match(r"^(`{3,}|~{3,})\s*(\{[\w-]+\}|\w*)", line)
        if m and fence is None:
            fence = "code" if not m.group(2).startswith("{") or "code" in m.group(2) \
                else m.group(1)
            fence = (fence, m.group(1))
        elif m and fence is not None and line.strip() == fence[1]:
            fence = None
        elif fence is not None and fence[0] == "code" and len(line) > WIDTH:
            c["code>88"] += 1
    return c


def directives_in_html(page: Path) -> int:
    "nbdev directive lines inside the code blocks of a built page."
    n = 0
    for block in re.findall(r"<pre[^>]*>(.*?)</pre>", page.read_text(encoding="utf-8"),
                            re.S):
        text = htmllib.unescape(re.sub(r"<[^>]+>", "", block))
        n += sum(bool(DIRECTIVE.match(line)) for line in text.splitlines())
    return n


def chapter_of(name: str) -> int | None:
    "The numbered chapter (1-7) a notebook belongs to, or None."
    m = re.match(r"0([1-7])[a-z]?_", name)
    return int(m.group(1)) if m else None


def chapter_parts(paths: list[Path]) -> dict[str, int]:
    "Summary, exercises and solutions found in a chapter's notebooks."
    summary = exercises = solutions = 0
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        section = None
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for line in _source(cell).splitlines():
                h = re.match(r"^#{1,4}\s+(?:[\d.]+\s+)?(.*)", line)
                if h:
                    title = h.group(1).lower()
                    section = ("summary" if "summary" in title else
                               "exercises" if "exercise" in title else None)
                    summary += section == "summary"
                    if section == "exercises" and re.search(r"exercise\s+\d", title):
                        exercises += 1          # "### Exercise 3: ..." headings
                    continue
                if re.match(r"^\*\*exercises?\b", line, re.I):
                    section = "exercises"       # "**Exercises.** (1) ... (2) ..."
                if section != "exercises":
                    continue
                if re.match(r"^\s*(?:\*\*)?\d+\.\s+\S", line) or re.match(
                        r"^[:`]{3,}\s*\{exercise\}", line):
                    exercises += 1
                exercises += len(re.findall(r"(?:^|\s)\((\d+)\)\s", line))
                # one per hidden solution: a dropdown/solution/toggle directive, an
                # admonition whose `:class:` line says dropdown, or an HTML <details>
                if re.match(r"^[:`]{3,}\s*\{(?:dropdown|solution|toggle)", line) \
                        or re.search(r"^:class:.*\bdropdown\b|<details", line):
                    solutions += 1
    return {"summary": int(summary > 0), "exercises": exercises, "solutions": solutions}


def check(site: Path | None = None) -> dict[str, dict[str, int]]:
    "Every count for every page: {page: {count name: value}}."
    site = site if site is not None else ROOT / "_build" / "html"
    pages: dict[str, dict[str, int]] = {}
    for path in sorted(CHAPTERS.glob("*.ipynb")):
        pages[path.stem] = notebook_counts(path)
    for path in sorted(CHAPTERS.glob("*.md")):
        pages[path.stem] = markdown_counts(path)
    for name, counts in pages.items():
        built = site / "chapters" / f"{name}.html"
        counts["directives"] = directives_in_html(built) if built.exists() else -1
    groups: dict[int, list[Path]] = {}
    for path in sorted(CHAPTERS.glob("0*.ipynb")):
        n = chapter_of(path.name)
        if n is not None:
            groups.setdefault(n, []).append(path)
    for n, paths in groups.items():
        pages[paths[0].stem].update(chapter_parts(paths))
    return pages


def totals(pages: dict[str, dict[str, int]]) -> dict[str, int]:
    "Each count summed over the pages (-1, not built, counts as 0)."
    return {k: sum(max(0, p.get(k, 0)) for p in pages.values()) for k in COUNTS}


def chapter_gaps(pages: dict[str, dict[str, int]]) -> list[str]:
    "Numbered chapters without a summary, with < 4 exercises or unsolved exercises."
    gaps = []
    for name, p in pages.items():
        if "summary" not in p:
            continue
        if not p["summary"]:
            gaps.append(f"{name}: no summary")
        if p["exercises"] < 4:
            gaps.append(f"{name}: {p['exercises']} exercises (at least 4)")
        if p["solutions"] < max(p["exercises"], 1):
            gaps.append(f"{name}: {p['solutions']} solutions for {p['exercises']} "
                        "exercises")
    return gaps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--site", default=str(ROOT / "_build" / "html"),
                   help="the built site (directives are counted there when it exists)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.add_argument("--strict", nargs="*", default=[], choices=[*COUNTS, "chapters"],
                   metavar="NAME", help="exit 1 if these totals are not zero "
                   "('chapters': summary and exercises)")
    args = p.parse_args(argv)
    pages = check(Path(args.site))
    total, gaps = totals(pages), chapter_gaps(pages)
    if args.json:
        print(json.dumps({"pages": pages, "totals": total, "chapter_gaps": gaps},
                         indent=1))
    else:
        cols = [*COUNTS, *CHAPTER_COUNTS]
        print(f"{'page':24}" + "".join(f"{c:>11}" for c in cols))
        for name, c in pages.items():
            cells = [("-" if c.get(k, "") == -1 else str(c.get(k, ""))) for k in cols]
            print(f"{name[:24]:24}" + "".join(f"{v:>11}" for v in cells))
        print(f"{'total':24}" + "".join(f"{total[k]:>11}" for k in COUNTS))
        if any(c["directives"] == -1 for c in pages.values()):
            print("directives: '-' where the site is not built (make book)")
        for g in gaps:
            print("chapter:", g)
    bad = [k for k in args.strict if k in total and total[k]]
    if "chapters" in args.strict and gaps:
        bad.append("chapters")
    if bad:
        print("page check FAILED:", ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
