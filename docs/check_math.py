"""Fail the docs build when its formulas would not render offline.

docs/build.sh runs this on the built site. Without a network (CI, a laptop on a train) a page
that loads MathJax from a CDN shows ``\\(m\\)`` and ``\\mathbb{R}`` as raw TeX. The checks:

1. The local MathJax bundle (``_static/mathjax/tex-chtml.js`` and its fonts) is in the site.
2. No page loads MathJax from another host; every page with a formula loads the local bundle,
   and the path it uses resolves to the bundle from that page's folder.
3. ``concepts.html`` holds the formulas this check is about (``\\(m\\)``, ``\\mathbb{R}``).
4. Rendered: headless Chromium (when installed, or always with ``DOCS_RENDER_CHECK=1``) loads
   ``concepts.html`` from disk, with no network, and every formula on it must come out as a
   MathJax ``<mjx-container>`` with no TeX error. ``DOCS_RENDER_CHECK=0`` skips this step.

Usage: ``python docs/check_math.py docs/_build/html``
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

BUNDLE = Path("_static/mathjax/tex-chtml.js")
FONTS = Path("_static/mathjax/output/chtml/fonts/woff-v2")
PAGE = "concepts.html"
PAGE_TEX = (r"\(m\)", r"\mathbb{R}")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


class _Page(HTMLParser):
    """The script sources of a page and the text of its formulas (Sphinx's math markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.formulas: list[str] = []
        self._depth = 0  # > 0 while inside a math element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.scripts.append(str(attributes["src"]))
        classes = (attributes.get("class") or "").split()
        if self._depth:
            self._depth += 1
        elif tag in ("span", "div") and "math" in classes:
            self._depth = 1
            self.formulas.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.formulas[-1] += data


def static_problems(site: Path) -> list[str]:
    """Checks 1-3: the bundle ships and every page points at it, never at a CDN."""
    problems = []
    if not (site / BUNDLE).is_file():
        problems.append(f"the local MathJax bundle {BUNDLE} is not in {site}")
    if not (site / FONTS).is_dir() or not any((site / FONTS).iterdir()):
        problems.append(f"MathJax's fonts ({FONTS}) are not in {site}")
    pages_with_math = 0
    for html in sorted(site.rglob("*.html")):
        if "_static" in html.relative_to(site).parts:
            continue
        page = _Page()
        page.feed(html.read_text(encoding="utf-8"))
        name = html.relative_to(site)
        mathjax = [s for s in page.scripts if "mathjax" in s.lower()]
        remote = [s for s in mathjax if urlsplit(s).scheme or s.startswith("//")]
        if remote:
            problems.append(f"{name} loads MathJax from another host: {remote}")
        if not page.formulas:
            continue
        pages_with_math += 1
        local = [s for s in mathjax if s not in remote]
        if not local:
            problems.append(f"{name} has {len(page.formulas)} formulas but loads no local MathJax")
        for src in local:
            target = (html.parent / urlsplit(src).path).resolve()
            if target != (site / BUNDLE).resolve():
                problems.append(f"{name} loads MathJax from {src}, which is not {BUNDLE}")
        if str(name) == PAGE:
            missing = [t for t in PAGE_TEX if not any(t in f for f in page.formulas)]
            if missing:
                problems.append(f"{PAGE} lacks the formulas this check looks for: {missing}")
    if not (site / PAGE).is_file():
        problems.append(f"{PAGE} is not in {site}")
    if pages_with_math == 0:
        problems.append("no page has a formula: the math markup this check parses has changed")
    return problems


def rendered_problems(site: Path, chromium: str) -> tuple[list[str], str]:
    """Check 4: load the page in headless Chromium and count what MathJax typeset."""
    page = _Page()
    page.feed((site / PAGE).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (site / PAGE).resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    dom = result.stdout
    if result.returncode != 0 or "</html>" not in dom:
        tail = result.stderr.strip()[-500:]
        return [f"{chromium} could not render {PAGE} (exit {result.returncode}): {tail}"], ""
    typeset = len(re.findall(r"<mjx-container\b", dom))
    errors = len(re.findall(r"<mjx-merror\b", dom))
    problems = []
    if typeset != len(page.formulas):
        problems.append(
            f"{PAGE} has {len(page.formulas)} formulas but MathJax typeset {typeset} of them "
            "in headless Chromium: the rest show as raw TeX"
        )
    if errors:
        problems.append(f"{PAGE}: MathJax reports {errors} TeX errors")
    return problems, f"{typeset} of {len(page.formulas)} formulas on {PAGE} typeset by {chromium}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(f"usage: python docs/check_math.py SITE_FOLDER (got {argv})", file=sys.stderr)
        return 2
    site = Path(argv[0])
    problems = static_problems(site)
    mode = os.environ.get("DOCS_RENDER_CHECK", "auto")
    chromium = next((c for c in CHROMIUM if shutil.which(c)), None)
    note = f"render check skipped (DOCS_RENDER_CHECK={mode})"
    if mode != "0" and not problems:
        if chromium is not None:
            found, note = rendered_problems(site, chromium)
            problems += found
        elif mode == "1":
            problems.append(f"DOCS_RENDER_CHECK=1 but none of {CHROMIUM} is on PATH")
        else:
            note = "render check skipped: no Chromium on PATH (DOCS_RENDER_CHECK=1 requires it)"
    if problems:
        print("docs/check_math.py: formulas would not render offline:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"math: local MathJax bundle on every page with formulas; {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
