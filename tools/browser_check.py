"""Open every page of the built book in headless Chromium and check that it works, offline.

    python tools/browser_check.py [_build/html] [--screenshots _build/screenshots] [--full-page] [--require]

The site is served from a local HTTP server on 127.0.0.1; Chromium is driven over the Chrome DevTools protocol
(a websocket; tornado's client, which Jupyter already installs) and cannot resolve any other host, so a page that
needs the network fails here as it would for a reader offline. For every page it checks:

- it loads, with no console errors, no uncaught exceptions and no failed requests;
- it requests nothing outside the site (no CDN: MathJax and everything else are served by the site itself);
- every image loads (naturalWidth > 0);
- math is rendered: no raw `$$`, `\\(`, `\\[` or `$...$` left in the text outside code, MathJax output for every
  math element of the page, and no MathJax errors;
- code cells have copy buttons;
- notebook pages have a Colab launch button pointing at the page's own notebook on GitHub;

- no code block whose lines fit in 88 columns scrolls sideways at 1280 px (blocks with longer lines are counted
  and reported, not failed: tools/page_check.py counts those lines in the notebooks);
- opened again at 390 px as a phone, the page does not scroll sideways;

then saves a screenshot of each page to --screenshots (phone screenshots in its phone/ folder), and checks that
the search page finds a word.
Everything is bounded: a time limit per page and for the whole run, after which Chromium and the server stop.
Without Chromium the check is skipped with a message (exit 0), unless --require (or ENCODER_BOOK_REQUIRE_BROWSER=1)
makes that an error. Exit status 1 when any check fails.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# required on our machines; --remote-debugging-port and --user-data-dir are added per run
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
         "--hide-scrollbars", "--window-size=1280,900", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]

# Runs in the page after it loaded: waits for MathJax and the images, then reports what the checks need.
PAGE_REPORT_JS = r"""
(async () => {
  const deadline = Date.now() + %(timeout_ms)d;
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  if (document.querySelector('script[src*="mathjax"]')) {
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() < deadline) await sleep(50);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await Promise.race([MathJax.startup.promise, sleep(Math.max(0, deadline - Date.now()))]);
    }
  }
  const images = Array.from(document.images);
  for (const img of images) { img.loading = "eager"; }
  await Promise.race([
    Promise.all(images.map(img => img.complete ? null : new Promise(r => { img.addEventListener("load", r); img.addEventListener("error", r); }))),
    sleep(Math.max(0, deadline - Date.now()))]);
  const article = document.querySelector("article") || document.querySelector("main") || document.body;
  const prose = article.cloneNode(true);
  prose.querySelectorAll("pre, code, .highlight, .cell_output, .output, mjx-container, script, style, .math")
       .forEach(e => e.remove());
  const text = prose.textContent;
  const raw = [];
  for (const pat of ["$$", "\\(", "\\["]) {
    let i = text.indexOf(pat);
    if (i >= 0) raw.push(text.slice(Math.max(0, i - 40), i + 40).replace(/\s+/g, " "));
  }
  const inline = text.match(/\$[^$\s][^$\n]{0,80}?[^$\s\\]\$/);   // $x^2$ left as text
  if (inline) raw.push(inline[0]);
  const pres = Array.from(article.querySelectorAll("div.highlight pre"));
  const widest = p => Math.max(0, ...p.textContent.split("\n").map(l => l.length));
  const scrolling = pres.filter(p => p.scrollWidth > p.clientWidth + 1);
  const colab = Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href);
  return JSON.stringify({
    title: document.title,
    math: article.querySelectorAll("span.math, div.math").length,
    mathjax: article.querySelectorAll("mjx-container").length,
    merror: article.querySelectorAll("mjx-merror").length,
    raw_tex: raw,
    images: images.map(img => ({src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0,
                                alt: img.getAttribute("alt")})),
    code_blocks: article.querySelectorAll("div.highlight pre").length,
    copy_buttons: article.querySelectorAll("button.copybtn").length,
    colab: colab,
    height: document.documentElement.scrollHeight,
    // code blocks that scroll sideways: with every line <= 88 columns (the page's fault) or with longer lines
    code_scroll: scrolling.filter(p => widest(p) <= 88).length,
    code_scroll_long: scrolling.filter(p => widest(p) > 88).length,
    code_widest_fit: Math.max(0, ...pres.filter(p => p.scrollWidth <= p.clientWidth + 1).map(widest)),
    page_scroll_x: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    wide_elements: Array.from(article.querySelectorAll("*")).filter(e => {
        const r = e.getBoundingClientRect();
        return r.right > document.documentElement.clientWidth + 1 && !e.closest("pre, .highlight, mjx-container");
      }).slice(0, 3).map(e => e.tagName.toLowerCase() + (e.className ? "." + String(e.className).split(" ")[0] : "")),
  });
})()
"""

SEARCH_JS = r"""
(async () => {
  const deadline = Date.now() + %(timeout_ms)d;
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  let n = 0;
  while (Date.now() < deadline) {
    n = document.querySelectorAll("#search-results li, ul.search li").length;
    if (n > 0) break;
    await sleep(100);
  }
  return n;
})()
"""


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):          # the check reports failures itself
        pass


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    "A local HTTP server for the built site, in a daemon thread."
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def find_browser() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if shutil.which(explicit) else None
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


class Browser:
    "Chromium in its own process group and profile, driven over the DevTools protocol."

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="encoder-book-chromium-")
        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.ws, self.next_id, self.pending, self.events = None, 0, {}, {}
        self.reader = None

    async def connect(self, timeout: float = 30) -> None:
        port_file, deadline = Path(self.profile) / "DevToolsActivePort", time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.proc.returncode} before it started")
            if time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start within {timeout:.0f} s")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=10) as r:
            url = json.load(r)["webSocketDebuggerUrl"]
        from tornado.websocket import websocket_connect
        self.ws = await websocket_connect(url, max_message_size=1 << 30)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.ws.read_message()
            if msg is None:
                break
            data = json.loads(msg)
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    if "error" in data:
                        fut.set_exception(RuntimeError(f"{data['error'].get('message')}"))
                    else:
                        fut.set_result(data.get("result", {}))
            else:
                self.events.setdefault(data.get("sessionId"), []).append(data)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the DevTools connection closed"))

    async def send(self, method: str, params: dict | None = None, session: str | None = None,
                   timeout: float = 30) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.write_message(json.dumps(msg))
        return await asyncio.wait_for(fut, timeout)

    async def wait_event(self, session: str, method: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events.get(session, []):
                if e["method"] == method:
                    return e
            await asyncio.sleep(0.05)
        return None

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)        # the group we started: chromium and its helpers
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.profile, ignore_errors=True)


def repository_url(root: Path = ROOT) -> str | None:
    "The repository URL from _config.yml (where the Colab buttons point)."
    m = re.search(r"^repository:\s*\n(?:\s+.*\n)*?\s+url:\s*(\S+)", (root / "_config.yml").read_text(), re.M)
    return m.group(1).rstrip("/") if m else None


def pages_of(site: Path) -> list[str]:
    "The pages of the book: every HTML file except Sphinx's generated index and search pages and redirects."
    pages = []
    for p in sorted(site.rglob("*.html")):
        rel = p.relative_to(site).as_posix()
        if rel.startswith("_") or rel in ("genindex.html", "search.html"):
            continue
        if 'http-equiv="Refresh"' in p.read_text(encoding="utf-8", errors="replace")[:2000]:
            continue                                            # index.html: a redirect to the first page
        pages.append(rel)
    return pages


def problems_of(page: str, report: dict, events: list[dict], origin: str, site: Path, repo: str | None) -> list[str]:
    "What is wrong with one page, from its report and the DevTools events it produced."
    out = []
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"uncaught exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            if entry.get("url", "").endswith("/favicon.ico"):
                continue                                # the browser asks for it on its own; no page links it
            out.append(f"console error: {entry.get('text')} {entry.get('url', '')}".strip())
        elif m == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith((origin, "data:", "blob:", "about:")):
                out.append(f"requests something outside the site: {url}")
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            out.append(f"a request failed: {p.get('errorText')} ({p.get('type')})")
    for img in report["images"]:
        if not img["ok"]:
            out.append(f"image does not load: {img['src']}")
    if report["raw_tex"]:
        out.append(f"raw TeX left in the text: {report['raw_tex']}")
    if report["merror"]:
        out.append(f"{report['merror']} MathJax error(s)")
    if report["math"] and report["mathjax"] < report["math"]:
        out.append(f"math not rendered: {report['mathjax']} MathJax outputs for {report['math']} math elements")
    if report["code_blocks"] and report["copy_buttons"] < report["code_blocks"]:
        out.append(f"copy buttons: {report['copy_buttons']} for {report['code_blocks']} code blocks")
    stem = page[:-len(".html")]
    if (site / "_sources" / f"{stem}.ipynb").exists():
        want = f"https://colab.research.google.com/github/{repo.split('github.com/', 1)[1]}/blob/main/{stem}.ipynb" \
            if repo and "github.com/" in repo else None
        if not report["colab"]:
            out.append("no Colab launch button on a notebook page")
        elif want and want not in report["colab"]:
            out.append(f"the Colab button points at {report['colab']}, not {want}")
    return out


PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}   # an iPhone 12-14 viewport


async def check_page(browser: Browser, session: str, origin: str, page: str, timeout: float,
                     shots: Path | None, full_page: bool, phone: bool = False) -> tuple[dict, list[dict]]:
    "Load one page (at 1280 px, or at 390 px as a phone) and report on it; screenshot it to `shots`."
    browser.events[session] = []
    width = PHONE["width"] if phone else 1280
    if phone:
        await browser.send("Emulation.setDeviceMetricsOverride", PHONE, session)
    try:
        await browser.send("Page.navigate", {"url": f"{origin}/{page}"}, session)
        if await browser.wait_event(session, "Page.loadEventFired", timeout) is None:
            raise TimeoutError(f"no load event within {timeout:.0f} s")
        js = PAGE_REPORT_JS % {"timeout_ms": int(timeout * 1000)}
        res = await browser.send("Runtime.evaluate", {"expression": js, "awaitPromise": True, "returnByValue": True},
                                 session, timeout=timeout + 5)
        if "exceptionDetails" in res:
            raise RuntimeError(f"the page report failed: {res['exceptionDetails'].get('text')}")
        report = json.loads(res["result"]["value"])
        if shots is not None:
            if full_page:                                        # a viewport as tall as the page (capped)
                await browser.send("Emulation.setDeviceMetricsOverride",
                                   {**(PHONE if phone else {"deviceScaleFactor": 1, "mobile": False}),
                                    "width": width, "height": min(report["height"], 16000)}, session)
                await asyncio.sleep(0.3)
            shot = await browser.send("Page.captureScreenshot", {"format": "png"}, session, timeout=60)
            folder = shots / "phone" if phone else shots
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (page.replace("/", "__")[:-len(".html")] + ".png")
            path.write_bytes(base64.b64decode(shot["data"]))
            report["screenshot"] = str(path)
    finally:
        if phone or full_page:
            await browser.send("Emulation.clearDeviceMetricsOverride", {}, session)
    await asyncio.sleep(0.2)                                     # late console messages
    return report, list(browser.events.get(session, []))


def layout_problems(report: dict, phone: dict | None) -> list[str]:
    "What does not fit: code blocks that scroll at 1280 px though their lines fit 88 columns; a phone page that scrolls."
    out = []
    if report.get("code_scroll"):
        out.append(f"{report['code_scroll']} code block(s) with lines of at most 88 columns scroll sideways at 1280 px")
    if phone is not None and phone.get("page_scroll_x", 0) > 0:
        out.append(f"the page scrolls sideways at {PHONE['width']} px by {phone['page_scroll_x']} px "
                   f"(wide: {', '.join(phone.get('wide_elements', [])) or '?'})")
    return out


async def run(site: Path, shots: Path | None, full_page: bool, page_timeout: float, executable: str,
              only: list[str] | None) -> int:
    server, origin = serve(site)
    browser = Browser(executable)
    failures, t_start = 0, time.monotonic()
    try:
        await browser.connect()
        target = await browser.send("Target.createTarget", {"url": "about:blank"})
        session = (await browser.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}))["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await browser.send(f"{domain}.enable", {}, session)
        await browser.send("Network.setCacheDisabled", {"cacheDisabled": True}, session)
        pages = only or pages_of(site)
        repo = repository_url()
        results = {}
        for page in pages:
            t0 = time.monotonic()
            try:
                report, events = await check_page(browser, session, origin, page, page_timeout, shots, full_page)
                problems = problems_of(page, report, events, origin, site, repo)
                phone, _ = await check_page(browser, session, origin, page, page_timeout, shots, full_page, phone=True)
                problems += layout_problems(report, phone)
                report["phone_scroll_x"] = phone.get("page_scroll_x", 0)
            except Exception as e:                               # a page that cannot even be checked fails
                report, problems = {}, [f"{type(e).__name__}: {e}"]
            results[page] = {"problems": problems, **report}
            failures += bool(problems)
            summary = (f"math {report.get('mathjax', 0)}/{report.get('math', 0)}, "
                       f"images {sum(i['ok'] for i in report.get('images', []))}/{len(report.get('images', []))}, "
                       f"copy buttons {report.get('copy_buttons', 0)}, colab {'yes' if report.get('colab') else 'no'}, "
                       f"code blocks scrolling (lines > 88 columns) {report.get('code_scroll_long', 0)}")
            print(f"{'ok  ' if not problems else 'FAIL'} {page:45} {summary} ({time.monotonic() - t0:.1f} s)")
            for p in problems:
                print(f"       {p}")
        # search works offline: the search page finds a word that is in the book
        browser.events[session] = []
        await browser.send("Page.navigate", {"url": f"{origin}/search.html?q=attention"}, session)
        await browser.wait_event(session, "Page.loadEventFired", page_timeout)
        res = await browser.send("Runtime.evaluate", {"expression": SEARCH_JS % {"timeout_ms": int(page_timeout * 1000)},
                                                      "awaitPromise": True, "returnByValue": True}, session,
                                 timeout=page_timeout + 5)
        hits = res.get("result", {}).get("value", 0)
        search_problems = [p for p in problems_of("search.html", {"images": [], "raw_tex": [], "merror": 0, "math": 0,
                                                                    "mathjax": 0, "code_blocks": 0, "copy_buttons": 0,
                                                                    "colab": []},
                                                  browser.events.get(session, []), origin, site, None)]
        if not hits:
            search_problems.append("searching for 'attention' finds nothing")
        failures += bool(search_problems)
        print(f"{'ok  ' if not search_problems else 'FAIL'} {'search.html?q=attention':45} {hits} result(s)")
        for p in search_problems:
            print(f"       {p}")
        results["search.html"] = {"problems": search_problems, "hits": hits}
        if shots is not None:
            (shots / "report.json").write_text(json.dumps(results, indent=1))
    finally:
        browser.close()
        server.shutdown()
    n = len(pages) + 1
    print(f"browser check: {n - failures}/{n} pages passed in {time.monotonic() - t_start:.0f} s"
          + (f"; screenshots in {shots}" if shots is not None else ""))
    return 1 if failures else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("site", nargs="?", default=str(ROOT / "_build" / "html"), help="the built site (default _build/html)")
    p.add_argument("--screenshots", default=str(ROOT / "_build" / "screenshots"), help="folder for screenshots ('' for none)")
    p.add_argument("--full-page", action="store_true", help="screenshots of whole pages, not the first screen")
    p.add_argument("--page-timeout", type=float, default=30, help="seconds per page")
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole check")
    p.add_argument("--page", action="append", help="check only this page (relative path), may repeat")
    p.add_argument("--require", action="store_true", default=os.environ.get("ENCODER_BOOK_REQUIRE_BROWSER") == "1",
                   help="fail (instead of skipping) when no Chromium is installed")
    args = p.parse_args(argv)
    site = Path(args.site)
    if not (site / "index.html").exists():
        print(f"browser check: {site}/index.html does not exist; build the book first (make book)")
        return 1
    executable = find_browser()
    if executable is None:
        print(f"browser check {'FAILED' if args.require else 'SKIPPED'}: no Chromium found (looked for "
              + ", ".join(BROWSERS) + "; or set CHROMIUM). Install it with: sudo apt-get install -y chromium")
        return 1 if args.require else 0
    shots = Path(args.screenshots) if args.screenshots else None
    if shots is not None:
        shutil.rmtree(shots, ignore_errors=True)
        shots.mkdir(parents=True)
    try:
        return asyncio.run(asyncio.wait_for(run(site, shots, args.full_page, args.page_timeout, executable, args.page),
                                            args.timeout))
    except asyncio.TimeoutError:
        print(f"browser check FAILED: not finished within {args.timeout:.0f} s")
        return 1


if __name__ == "__main__":
    sys.exit(main())
