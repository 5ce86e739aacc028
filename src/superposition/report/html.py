"""The report page of ``superposition reproduce``: one self-contained HTML file.

:class:`Report` is what a run collects (numbers, figures with their captions, the paper's
claims with a verdict and the measured values); :func:`render` turns it into HTML with every
figure embedded, so the page works offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from superposition.report.config import ReproduceConfig

__all__ = ["Claim", "Report", "Section", "render"]

Width = Literal["wide", "full", "half", "third"]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, what we measured, and the verdict it earns.

    Attributes:
        paper: the claim, close to the paper's words.
        verdict: the one-word-or-phrase outcome ("reproduced", "not reproduced", ...).
        because: one line: the number the verdict rests on.
        measured: the fuller numbers behind it.
        figures: names of the figures shown with the claim.
        table: an HTML table of the numbers, shown before the figures.
        source: whose claim it is ("Paper", or "Hypothesis" for the follow-up sections).
    """

    paper: str
    verdict: str
    because: str
    measured: str = ""
    figures: tuple[str, ...] = ()
    table: str = ""
    source: str = "Paper"


@dataclass
class Section:
    """A section of the report: an intro (HTML), the claims, and HTML shown after them."""

    title: str
    intro: str
    claims: list[Claim]
    after: str = ""


@dataclass
class Report:
    """What the run collects: numbers, captioned figures, and the paper's claims beside them."""

    metrics: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    widths: dict[str, Width] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)
    groups: list[tuple[str, list[str]]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    pages: dict[str, str] = field(default_factory=dict)
    """Other files of the report folder (name -> text), e.g. the unit explorer."""

    def add_figure(self, name: str, fig: Figure, caption: str, width: Width = "third") -> None:
        """Keep ``fig`` as ``name.png`` with a caption that says what it shows."""
        self.figures[name] = fig
        self.captions[name] = caption
        self.widths[name] = width

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 2)


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;
line-height:1.45}
.claim{border-left:4px solid #888;padding:.2rem 1rem;margin:1.2rem 0}
.paper{color:#555;font-style:italic}
.verdict{font-size:1.05rem}
.verdict b.yes{color:#16632a}.verdict b.no{color:#a11}.verdict b.qualified{color:#8a5a00}
img{max-width:100%;height:auto}
figure{display:inline-block;margin:.4rem .1rem;vertical-align:top}
figure.full,figure.wide{display:block;max-width:100%}figure.wide img{width:100%}
figure.half{max-width:49%}figure.third{max-width:31.5%}
figcaption{font-size:.85rem;color:#333;max-width:60rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}
caption{caption-side:bottom;font-size:.85rem;color:#333;text-align:left;padding-top:.3rem}
nav li{margin:.1rem 0}
"""


def _verdict_class(verdict: str) -> str:
    if verdict in ("reproduced", "supported"):
        return "yes"
    return "no" if verdict.startswith("not") else "qualified"


def _figure(name: str, rep: Report, images: dict[str, bytes]) -> str:
    esc = html.escape
    b64 = base64.b64encode(images[name]).decode()
    caption = rep.captions[name]
    return (
        f"<figure class='{rep.widths.get(name, 'third')}' id='fig-{esc(name)}'>"
        f"<img alt='{esc(name)}' src='data:image/png;base64,{b64}'>"
        f"<figcaption>{esc(caption)} <small>({esc(name)}.png)</small></figcaption></figure>"
    )


def render(rep: Report, images: dict[str, bytes], cfg: ReproduceConfig) -> str:
    """The report page; every figure embedded, captioned, and every claim with its verdict."""
    esc = html.escape
    missing = sorted(set(images) - set(rep.captions))
    if missing:
        raise ValueError(f"every figure needs a caption; these have none: {missing}")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>superposition reproduce</title><style>{_STYLE}</style></head><body>",
        "<h1>Investigating Polysemantic Neurons in the MLP of Transformers — reproduced</h1>",
        f"<p>seed {cfg.seed}, {'quick' if cfg.quick else 'full'} run, generated by "
        f"superposition {esc(str(rep.metrics['config']['versions']['superposition']))}. "
        "Every number is also in <code>metrics.json</code>; every figure is saved beside this "
        "page as a PNG (file name in brackets after each caption).</p>",
        "<nav><ul>",
    ]
    titles = [s.title for s in rep.sections] + ["Other figures"]
    parts += [f"<li><a href='#{_anchor(t)}'>{esc(t)}</a></li>" for t in titles]
    parts.append("</ul></nav>")
    for section in rep.sections:
        parts.append(f"<h2 id='{_anchor(section.title)}'>{esc(section.title)}</h2>")
        parts.append(f"<p>{section.intro}</p>")
        for i, claim in enumerate(section.claims):
            parts.append(f"<div class='claim' id='{_anchor(section.title)}-{i + 1}'>")
            parts.append(f"<p class='paper'>{esc(claim.source)}: {esc(claim.paper)}</p>")
            parts.append(
                f"<p class='verdict'>Verdict: <b class='{_verdict_class(claim.verdict)}'>"
                f"{esc(claim.verdict)}</b> — {esc(claim.because)}</p>"
            )
            if claim.measured:
                parts.append(f"<p>Measured: {esc(claim.measured)}</p>")
            parts.append(claim.table)
            parts += [_figure(name, rep, images) for name in claim.figures]
            parts.append("</div>")
        parts.append(section.after)
    shown = {name for s in rep.sections for c in s.claims for name in c.figures}
    parts.append(f"<h2 id='{_anchor('Other figures')}'>Other figures</h2>")
    grouped = {name for _title, names in rep.groups for name in names}
    leftover = [n for n in images if n not in shown and n not in grouped]
    for title, names in [*rep.groups, ("Further figures", leftover)]:
        names = [n for n in names if n not in shown]
        if not names:
            continue
        parts.append(f"<h3 id='{_anchor(title)}'>{esc(title)}</h3>")
        parts += [_figure(name, rep, images) for name in names]
    parts.append("</body></html>")
    return "\n".join(parts)
