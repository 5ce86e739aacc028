"""How well an SAE reconstructs some data: :class:`SAEMetrics`, what
:meth:`~superposition.SparseAutoencoder.evaluate` returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from superposition import metrics
from superposition._checks import positive_int as _positive_int

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["SAEMetrics", "evaluate"]


@dataclass(frozen=True)
class SAEMetrics:
    """How well an SAE reconstructs some data (:meth:`~superposition.SparseAutoencoder.evaluate`).

    Attributes:
        l0: mean number of active (non-zero) latents per sample.
        fvu: fraction of variance unexplained, ``Σ‖x - x̂‖² / Σ‖x - mean(x)‖²`` (centred).
        mse: mean squared error per element, ``Σ‖x - x̂‖² / (samples · d_in)``, user units.
        dead_fraction: fraction of latents that fire on no sample.
        shrinkage: mean ``‖x̂‖ / ‖x‖`` over samples with ``x ≠ 0`` (1: no shrinkage).
        samples: number of samples evaluated.
    """

    l0: float
    fvu: float
    mse: float
    dead_fraction: float
    shrinkage: float
    samples: int


@torch.no_grad()
def evaluate(sae: SparseAutoencoder, x: Tensor, batch_size: int) -> SAEMetrics:
    """The body of :meth:`~superposition.SparseAutoencoder.evaluate`."""
    x = sae._check_input(x, move=False)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x must hold at least 2 samples to measure variance, got {n}")
    _positive_int(batch_size, "batch_size")
    err_sq = 0.0
    active = 0
    shrink = 0.0
    nonzero = 0
    fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=sae.params.device)
    xhats = []
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size].to(sae.params.device, non_blocking=True)
        z = sae.encode(xb)
        xhat = sae.decode(z)
        xhats.append(xhat.to(x.device))
        active += int((z != 0).sum())
        fired |= (z != 0).any(0)
        err_sq += float((xb - xhat).double().square().sum())
        norm = xb.double().norm(dim=1)
        keep = norm > 0
        shrink += float((xhat.double().norm(dim=1)[keep] / norm[keep]).sum())
        nonzero += int(keep.sum())
    fvu = metrics.fraction_of_variance_unexplained(x, torch.cat(xhats))
    return SAEMetrics(
        l0=active / n,
        fvu=fvu,
        mse=err_sq / (n * sae.d_in),
        dead_fraction=float((~fired).sum()) / sae.d_sae,
        shrinkage=shrink / nonzero if nonzero else math.nan,
        samples=n,
    )
