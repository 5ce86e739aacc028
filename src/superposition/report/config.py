"""What a ``superposition reproduce`` run is set to, and the conventions every section of the
report shares: :class:`ReproduceConfig`, and how numbers are written (:func:`rounded` for
``metrics.json``, :func:`percent` for the page)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

__all__ = ["ReproduceConfig", "percent", "rounded"]


@dataclass(frozen=True)
class ReproduceConfig:
    """What ``superposition reproduce`` runs.

    Args:
        out: folder for ``report.html``, ``metrics.json`` and the figures (created).
        model: a Hugging Face model name or local path; ``None`` is the shipped MiniLM.
        layer: the MLP layer to probe (the paper: 0, the first).
        quick: shorter training and smaller figures (about a minute on 2 CPU cores).
        seed: seed of every random draw (training, neuron sampling, the random baseline).
        progress: show progress bars.
        full_double_descent: the memorization section at the ARENA replication's scale
            (n = 1,000 features, T up to 2,000; about 10 minutes of CPU on 2 cores) instead of
            the small sweep (n = 200, T up to 1,000; about 15 s) that the tests check.
        units: run the section "what makes a neuron fire, and does an SAE separate it?"
            (neurons vs SAE latents vs two nulls, on the default corpus).
        full_units: that section at full scale (:data:`superposition.report.units.FULL`:
            a 4x SAE trained on one pass over the train split, units read on 1,200
            paragraphs) instead of :data:`~superposition.report.units.STANDARD`.
        sae: a folder written by ``superposition sae train`` (or ``SparseAutoencoder.save``)
            for this model and layer: the units section uses it instead of training one.
    """

    out: Path = Path("superposition-out")
    model: str | None = None
    layer: int = 0
    quick: bool = False
    seed: int = 0
    progress: bool = True
    full_double_descent: bool = False
    units: bool = True
    full_units: bool = False
    sae: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int):
            raise ValueError(f"layer must be an int, got {self.layer!r}")
        if self.sae is not None:
            object.__setattr__(self, "sae", Path(self.sae))

    @property
    def steps(self) -> int:
        """Training steps per toy model, 10,000 as in the TMS recipe (5,000 with ``quick``)."""
        return 5_000 if self.quick else 10_000

    @property
    def dpi(self) -> int:
        """Resolution of the report's PNGs: 60 with ``quick``, else 100."""
        return 60 if self.quick else 100


def rounded(x: float | Tensor, digits: int = 4) -> float:
    """A JSON-friendly rounded float (rounding makes same-seed runs compare equal on disk).

    Examples:
        >>> rounded(2 / 3), rounded(float("inf"))
        (0.6667, inf)
    """
    v = float(x)
    return v if math.isinf(v) or math.isnan(v) else round(v, digits)


def percent(x: float) -> str:
    """A share as the report writes it.

    Examples:
        >>> percent(0.0834)
        '8.3 %'
    """
    return f"{100 * x:.1f} %"
