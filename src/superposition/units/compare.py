"""Compare the score distributions of several unit bases: medians with bootstrap intervals,
differences of medians, and a verdict in words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from superposition import metrics
from superposition.units.scores import UnitTable

__all__ = ["MONOSEMANTIC_WHEN", "Difference", "Summary", "UnitComparison", "compare_units"]

MONOSEMANTIC_WHEN: dict[str, str] = {
    "token_diversity": "lower",
    "context_coherence": "higher",
    "category_spread": "lower",
}
"""Which way each score points to a more monosemantic unit."""


@dataclass(frozen=True)
class Summary:
    """One score over the units of one basis: median and its bootstrap interval."""

    basis: str
    score: str
    n: int
    median: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """``median(a) - median(b)`` of one score, with a bootstrap interval (independent
    resamples of both bases), and which of the two is the more monosemantic."""

    score: str
    a: str
    b: str
    difference: float
    low: float
    high: float

    @property
    def clear(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0

    @property
    def more_monosemantic(self) -> str | None:
        """``a`` or ``b`` when the interval excludes 0, else ``None``."""
        if not self.clear:
            return None
        a_higher = self.difference > 0
        wants_higher = MONOSEMANTIC_WHEN.get(self.score, "higher") == "higher"
        return self.a if a_higher == wants_higher else self.b


@dataclass(frozen=True)
class UnitComparison:
    """What :func:`compare_units` found.

    Attributes:
        summaries: one per (basis, score).
        differences: the first basis against each other one, per score.
        level: the intervals' coverage.
    """

    summaries: list[Summary]
    differences: list[Difference]
    level: float

    def summary(self, basis: str, score: str) -> Summary:
        """The :class:`Summary` of ``score`` over ``basis``."""
        for s in self.summaries:
            if s.basis == basis and s.score == score:
                return s
        raise KeyError(f"no summary for basis {basis!r} and score {score!r}")

    def difference(self, a: str, b: str, score: str) -> Difference:
        """The :class:`Difference` of ``score`` between bases ``a`` and ``b``."""
        for d in self.differences:
            if (d.a, d.b, d.score) == (a, b, score):
                return d
        raise KeyError(f"no difference {a!r} - {b!r} for score {score!r}")

    def verdict(self, a: str, b: str) -> str:
        """One sentence per score: is ``a`` more polysemantic than ``b``, and by how much."""
        parts = []
        for d in self.differences:
            if (d.a, d.b) != (a, b):
                continue
            sa, sb = self.summary(a, d.score), self.summary(b, d.score)
            pct = f"{round(100 * self.level)}%"
            nums = (
                f"median {sa.median:.3g} vs {sb.median:.3g}, difference {d.difference:+.3g} "
                f"({pct} interval {d.low:+.3g} to {d.high:+.3g})"
            )
            winner = d.more_monosemantic
            name = d.score.replace("_", " ")
            if winner is None:
                parts.append(f"{name}: no clear difference between {a} and {b} ({nums})")
            else:
                loser = b if winner == a else a
                parts.append(f"{name}: {loser} are more polysemantic than {winner} ({nums})")
        return "; ".join(parts) + "." if parts else ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "level": self.level,
            "summaries": [asdict(s) for s in self.summaries],
            "differences": [
                {**asdict(d), "more_monosemantic": d.more_monosemantic} for d in self.differences
            ],
        }


def compare_units(
    tables: Mapping[str, UnitTable],
    scores: Sequence[str] | None = None,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> UnitComparison:
    """Medians of each score per basis with bootstrap intervals, and the first basis's median
    minus each other's, with intervals.

    Args:
        tables: basis name → its :class:`UnitTable`, the reference basis (e.g. neurons) first.
        scores: the columns to compare; default: those of :data:`MONOSEMANTIC_WHEN` present in
            every table.
        n_boot, level, seed: as in :func:`~superposition.metrics.bootstrap_median`.

    Examples:
        >>> import torch
        >>> a = UnitTable({"unit": torch.arange(50), "token_diversity": torch.full((50,), 5.0)})
        >>> b = UnitTable({"unit": torch.arange(50), "token_diversity": torch.full((50,), 2.0)})
        >>> c = compare_units({"neurons": a, "latents": b}, n_boot=200)
        >>> c.difference("neurons", "latents", "token_diversity").more_monosemantic
        'latents'
    """
    if len(tables) < 2:
        raise ValueError(f"compare_units needs at least two tables, got {len(tables)}")
    names = list(tables)
    if scores is None:
        scores = [s for s in MONOSEMANTIC_WHEN if all(s in t.columns for t in tables.values())]
    missing = [(n, s) for n in names for s in scores if s not in tables[n].columns]
    if missing:
        raise KeyError(f"tables lack these (basis, score) columns: {missing}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    summaries: list[Summary] = []
    boots: dict[tuple[str, str], torch.Tensor] = {}
    medians: dict[tuple[str, str], float] = {}
    for i, name in enumerate(names):
        for j, score in enumerate(scores):
            col = tables[name].columns[score].to(torch.float64)
            col = col[~col.isnan()]
            # The resampled medians behind the interval (as metrics.bootstrap_median draws
            # them) are kept for the differences below: drawn once.
            meds = metrics.resampled_medians(col, n_boot=n_boot, seed=seed + 1009 * i + 9176 * j)
            med = float(col.median()) if col.numel() else float("nan")
            low, high = torch.quantile(meds, q).tolist()
            summaries.append(Summary(name, score, int(col.numel()), med, low, high))
            medians[name, score] = med
            boots[name, score] = meds
    differences = []
    ref = names[0]
    for other in names[1:]:
        for score in scores:
            low, high = torch.quantile(boots[ref, score] - boots[other, score], q).tolist()
            d0 = medians[ref, score] - medians[other, score]
            differences.append(Difference(score, ref, other, d0, low, high))
    return UnitComparison(summaries, differences, level)
