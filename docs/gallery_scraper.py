"""A sphinx-gallery image scraper for figures built without pyplot.

It lives in its own module (not ``conf.py``) so that Sphinx can pickle the configuration that
holds it.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any


class FigureScraper:
    """Collect the matplotlib figures an example block made, pyplot or not.

    The library builds figures with ``matplotlib.figure.Figure`` and never registers them with
    pyplot, so sphinx-gallery's own scraper (which asks ``pyplot.get_fignums()``) sees none.
    This one takes every ``Figure`` the block left in the example's globals, including the
    value of its last expression, that has not been shown yet, plus any open pyplot figures.
    """

    def __init__(self) -> None:
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()

    def __repr__(self) -> str:  # stable, so sphinx-gallery does not rerun examples for nothing
        return "FigureScraper()"

    def __call__(self, block: Any, block_vars: dict[str, Any], gallery_conf: Any) -> str:
        from matplotlib.figure import Figure
        from sphinx_gallery.scrapers import figure_rst

        figures = [v for v in block_vars["example_globals"].values() if isinstance(v, Figure)]
        if "matplotlib.pyplot" in sys.modules:
            plt = sys.modules["matplotlib.pyplot"]
            figures += [plt.figure(n) for n in plt.get_fignums()]
        paths = []
        for fig, path in zip(
            [f for f in dict.fromkeys(figures) if f not in self._seen],
            block_vars["image_path_iterator"],  # endless: yields a fresh path per figure
            strict=False,
        ):
            fig.savefig(path)
            self._seen.add(fig)
            paths.append(path)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
        return figure_rst(paths, gallery_conf["src_dir"]) if paths else ""

    # The set of shown figures is per build; pickling the config keeps only the class.
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._seen = weakref.WeakSet()
