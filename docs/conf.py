"""Sphinx configuration for the superposition documentation site.

Build it as CI does with ``docs/build.sh`` (offline, warnings as errors).
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(DOCS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The examples load models; "Loading weights: 100%|████|" bars would land in the pages.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# sphinx-autodoc-typehints calls an API Sphinx 10 removes; the notice is theirs to fix, and
# repeated once per docstring it buries the build log.
warnings.filterwarnings("ignore", message=r".*set_application.* is deprecated")

import benchmark_table
from gallery_scraper import FigureScraper

import superposition

project = "superposition"
author = "The superposition developers"
copyright = "2026, The superposition developers"
release = superposition.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax 3 served from _static/mathjax instead of a CDN, so formulas render offline
    # (docs/check_math.py fails the build if a page points at a CDN or the bundle is missing).
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = [
    "_build",
    "_generated",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "sg_execution_times.rst",
    "auto_examples/sg_execution_times.rst",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
typehints_fully_qualified = False
always_document_param_types = False
nitpicky = False

# --------------------------------------------------------------------------- intersphinx
# A failed inventory fetch is an untyped Sphinx warning, so with -W an unreachable host fails
# the build and no suppress_warnings entry can stop it. Hence: SPHINX_OFFLINE=1 (CI, and
# docs/build.sh by default) skips intersphinx; otherwise only hosts that answer a 2-second TCP
# connect are used, so a laptop without network still builds cleanly.
_INVENTORIES = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "transformers": ("https://huggingface.co/docs/transformers/main/en", None),
}


def _reachable(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=2.0).close()
    except OSError:
        return False
    return True


if os.environ.get("SPHINX_OFFLINE", "") not in ("", "0"):
    intersphinx_mapping: dict[str, tuple[str, None]] = {}
else:
    with ThreadPoolExecutor(len(_INVENTORIES)) as pool:
        _up = dict(
            zip(
                _INVENTORIES,
                pool.map(_reachable, [u for u, _ in _INVENTORIES.values()]),
                strict=True,
            )
        )
    intersphinx_mapping = {k: v for k, v in _INVENTORIES.items() if _up[k]}
    _down = sorted(set(_INVENTORIES) - set(intersphinx_mapping))
    if _down:
        print(f"intersphinx: no network for {', '.join(_down)}; building without their links")
intersphinx_timeout = 5

# --------------------------------------------------------------------------- benchmarks
# performance.md includes _generated/benchmarks.md, rendered here from the JSON that
# `python -m benchmarks.run` writes (or a note that it has not been run).
benchmark_table.write(
    ROOT / "benchmarks" / "results" / "latest.json", DOCS / "_generated" / "benchmarks.md", DOCS
)

# --------------------------------------------------------------------------- command line
# api.rst shows each subcommand's real --help, so the page cannot drift from the parser.


def _write_cli_help(out: Path) -> None:
    import contextlib
    import io

    from superposition.cli import main

    out.parent.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "96"
    parts = []
    try:
        for command in (
            [],
            ["reproduce"],
            ["toy"],
            ["probe"],
            ["stream"],
            ["units"],
            ["explore"],
            ["sae", "train"],
            ["sae", "eval"],
        ):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
                main([*command, "--help"])
            parts.append(f"$ superposition {' '.join([*command, '--help'])}\n{buffer.getvalue()}")
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    text = "\n".join(parts)
    if not out.is_file() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")


_write_cli_help(DOCS / "_generated" / "cli_help.txt")

# --------------------------------------------------------------------------- explorer
# explorer.md links to an explorer page of the shipped model (its layer-0 neurons and a small
# SAE trained here, as `superposition reproduce --quick` does) and shows a screenshot of that
# page taken by headless Chromium; without Chromium, the committed explorer-screenshot.png.


def _write_explorer_example(folder: Path) -> None:
    import shutil
    import subprocess

    from superposition.report.units import QUICK, book_texts, score_bases, train_sae

    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = superposition.load_model()
    texts, books = book_texts(400)
    probe = superposition.ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False)
    with warnings.catch_warnings():
        # a few paragraphs are longer than the model's 512 tokens; their ends are cut
        warnings.filterwarnings("ignore", message=r".* were truncated", category=UserWarning)
        sae = train_sae(model, tokenizer, 0, QUICK, seed=0, progress=False)
        records = superposition.collect_units(probe, texts, [None, sae], categories=books)
    named = dict(zip(["neurons", "SAE latents"], records, strict=True))
    tables = score_bases(named, superposition.context_embedder(model, tokenizer), 48, 0)
    page = superposition.explore(
        records,
        folder / "explorer-minilm.html",
        tables=list(tables.values()),
        bases=[superposition.UnitBasis.neurons(sae.d_in), superposition.UnitBasis.sae(sae)],
        title="Neurons and SAE latents of all-MiniLM-L6-v2, layer 0",
    )
    shot = folder / "explorer-screenshot.png"
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    if browser is not None:
        command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                   "--hide-scrollbars", "--window-size=1400,860", "--virtual-time-budget=10000",
                   f"--screenshot={shot}", page.as_uri() + "#latent-5"]  # fmt: skip
        subprocess.run(command, capture_output=True, timeout=120, check=False)
    if not shot.is_file():
        print("explorer: no Chromium to take the screenshot; using the committed one")
        shutil.copyfile(DOCS / "explorer-screenshot.png", shot)


_write_explorer_example(DOCS / "_generated" / "explorer")
html_extra_path = ["_generated/explorer/explorer-minilm.html"]

# --------------------------------------------------------------------------- gallery


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": (FigureScraper(),),
    # The figure is shown as an image; its repr ("<Figure size ...>") would only be noise.
    "ignore_repr_types": r"matplotlib[./]",
    "show_memory": False,
}

# --------------------------------------------------------------------------- autodoc fixes

# Data re-exported from a submodule: autodoc looks for ``superposition.PAPER_TEXTS``'s doc
# comment in ``superposition/__init__.py``, finds none and falls back to ``dict.__doc__``.
_REEXPORTED_DATA = {
    "superposition.PAPER_TEXTS": ("superposition.probe.texts", "PAPER_TEXTS"),
    "superposition.probe.DEFAULT_MODEL": ("superposition.probe.models", "DEFAULT_MODEL"),
    "superposition.metrics.PHASE_NAMES": ("superposition.metrics.geometry", "PHASE_NAMES"),
}


def _reexported_data_doc(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    if what != "data" or name not in _REEXPORTED_DATA:
        return
    from sphinx.pycode import ModuleAnalyzer

    module, attr = _REEXPORTED_DATA[name]
    analyzer = ModuleAnalyzer.for_module(module)
    analyzer.analyze()
    lines[:] = list(analyzer.attr_docs[("", attr)])


def setup(app: Any) -> None:
    # Before napoleon (priority 500), so it formats the replacement's Examples section.
    app.connect("autodoc-process-docstring", _reexported_data_doc, priority=400)


html_theme = "furo"
html_title = f"superposition {release}"
html_static_path: list[str] = []
