"""Figures of units (neurons, SAE latents, null bases): how their polysemanticity scores are
distributed, basis against basis.

The numbers come from :mod:`superposition.metrics` (the scores, the bootstrap); this module only
draws, and reads tables through the duck type :class:`TableLike`, so it never imports
:mod:`superposition.units`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

from superposition import metrics
from superposition.plot._common import _new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

__all__ = ["TableLike", "score_distributions"]

_LABELS = {
    "token_diversity": "token diversity (effective tokens; lower = monosemantic)",
    "context_coherence": "context coherence (higher = monosemantic)",
    "category_spread": "category spread (lower = specific)",
    "density": "density (fraction of tokens active)",
    "kurtosis": "excess kurtosis",
}


class TableLike(Protocol):
    """What :func:`score_distributions` needs: named ``[units]`` columns."""

    columns: dict[str, Tensor]


def score_distributions(
    tables: Mapping[str, TableLike],
    scores: Sequence[str] = ("token_diversity", "context_coherence", "category_spread"),
    *,
    n_boot: int = 1000,
    seed: int = 0,
    log: Sequence[str] = ("token_diversity",),
) -> Figure:
    """One panel per score: each basis's distribution over its units (a box from the quartiles,
    whiskers at the 5th and 95th percentiles, every unit as a faint dot) and its median with a
    95 % bootstrap interval (:func:`~superposition.metrics.bootstrap_median`).

    Args:
        tables: basis name → table with the score columns (e.g. a :class:`UnitTable`).
        scores: the columns to draw; those missing from every table are skipped.
        n_boot: bootstrap resamples for the interval.
        seed: seeds the bootstrap and the dots' jitter.
        log: scores drawn on a log axis.

    Returns:
        The figure.

    Examples:
        >>> import torch
        >>> class T:
        ...     def __init__(self, c): self.columns = c
        >>> fig = score_distributions({"a": T({"token_diversity": torch.rand(50) + 1}),
        ...                            "b": T({"token_diversity": torch.rand(50) + 3})})
        >>> len(fig.axes)
        1
    """
    if not tables:
        raise ValueError("tables is empty; pass {basis name: table}")
    shown = [s for s in scores if any(s in t.columns for t in tables.values())]
    if not shown:
        raise ValueError(
            f"none of the scores {list(scores)} is a column of the tables; columns are "
            f"{sorted({c for t in tables.values() for c in t.columns})}"
        )
    names = list(tables)
    fig = _new_figure(4.2 * len(shown), 0.6 * len(names) + 2.2)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    rng = np.random.default_rng(seed)
    colours = [f"C{i}" for i in range(len(names))]
    for ax, score in zip(axes, shown, strict=True):
        for i, name in enumerate(names):
            y = len(names) - 1 - i
            col = tables[name].columns.get(score)
            if col is None:
                continue
            v = col.to(torch.float64)
            v = v[~v.isnan()]
            if v.numel() == 0:
                continue
            a = v.numpy()
            q05, q25, q75, q95 = np.quantile(a, [0.05, 0.25, 0.75, 0.95])
            ax.scatter(
                a,
                y + rng.uniform(-0.28, 0.28, a.shape[0]),
                s=2,
                alpha=min(0.5, 60 / a.shape[0] + 0.05),
                color=colours[i],
                linewidths=0,
                rasterized=True,
            )
            ax.add_patch(_box(q25, y - 0.32, q75 - q25, 0.64, colours[i]))
            ax.plot([q05, q25], [y, y], color="0.2", lw=1)
            ax.plot([q75, q95], [y, y], color="0.2", lw=1)
            med, low, high = metrics.bootstrap_median(v, n_boot=n_boot, seed=seed + i)
            ax.errorbar(
                med, y, xerr=[[med - low], [high - med]], fmt="D", color="k", ms=4, capsize=3
            )
        ax.set_yticks(range(len(names)), list(reversed(names)))
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_xlabel(_LABELS.get(score, score.replace("_", " ")), fontsize=8)
        if score in log:
            ax.set_xscale("log")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Per-unit scores: box = quartiles, whiskers = 5-95 %, ◆ = median with 95 % CI")
    return fig


def _box(x: float, y: float, w: float, h: float, colour: str) -> Rectangle:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, facecolor=colour, alpha=0.35, edgecolor="0.2", lw=1)
