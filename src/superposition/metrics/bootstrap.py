"""Percentile bootstrap of a median, for the intervals beside per-unit score summaries.

NaN marks a missing value (a unit a score does not apply to) and is dropped first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from superposition._checks import positive_int

__all__ = ["bootstrap_median", "resampled_medians"]


def _finite_values(x: object) -> Tensor:
    """A 1-D float tensor as float64 with its NaNs dropped (NaN marks a missing score)."""
    if not isinstance(x, Tensor) or x.ndim != 1 or not x.is_floating_point():
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x)
        raise ValueError(f"x must be a 1-D floating-point tensor, got {got}")
    v = x.to(torch.float64)
    v = v[~v.isnan()]
    if bool(v.isinf().any()):
        raise ValueError("x must not contain inf (NaN marks a missing value and is dropped)")
    return v


def _check_boot(n_boot: object) -> None:
    positive_int(n_boot, "n_boot")


def bootstrap_median(
    x: Tensor, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """The median of ``x`` and a percentile bootstrap confidence interval for it.

    Resamples ``x`` with replacement ``n_boot`` times (Efron & Tibshirani 1993, ch. 13) and
    returns ``(median, low, high)`` with ``low``/``high`` the ``(1 ± level) / 2`` quantiles of
    the resampled medians. NaNs are dropped first. Medians are the lower median of an even
    count (``torch.median``), for resamples and the estimate alike.

    Args:
        x: ``[n]`` values (e.g. one score over the units of a basis).
        n_boot: resamples.
        level: coverage of the interval.
        seed: seeds the resampling.

    Returns:
        ``(median, low, high)``; NaNs when no value is finite.

    Examples:
        >>> import torch
        >>> m, lo, hi = bootstrap_median(torch.arange(101.0))
        >>> m, lo < 50 < hi
        (50.0, True)
    """
    v = _finite_values(x)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    _check_boot(n_boot)
    if v.numel() == 0:
        return (math.nan, math.nan, math.nan)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(resampled_medians(v, n_boot=n_boot, seed=seed), q).tolist()
    return (float(v.median()), low, high)


def resampled_medians(x: Tensor, *, n_boot: int = 2000, seed: int = 0) -> Tensor:
    """``[n_boot]`` medians of ``x`` resampled with replacement (NaNs dropped first): the
    bootstrap distribution behind :func:`bootstrap_median`, for intervals of derived
    quantities such as a difference of two medians.

    Examples:
        >>> import torch
        >>> resampled_medians(torch.full((7,), 3.0), n_boot=4).tolist()
        [3.0, 3.0, 3.0, 3.0]
    """
    v = _finite_values(x)
    _check_boot(n_boot)
    meds = torch.full((n_boot,), math.nan, dtype=torch.float64)
    if v.numel() == 0:
        return meds
    g = torch.Generator().manual_seed(seed)
    # Resample in blocks so n_boot x n indices never exceed ~8M at once.
    block = max(1, 8_000_000 // v.numel())
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        idx = torch.randint(v.numel(), (m, v.numel()), generator=g)
        meds[start : start + m] = v[idx].median(1).values
    return meds
