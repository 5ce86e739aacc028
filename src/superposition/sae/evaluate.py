"""How well an SAE reconstructs some data: :class:`SAEMetrics`, what
:meth:`~superposition.SparseAutoencoder.evaluate` returns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from superposition._checks import float_rows
from superposition._checks import positive_int as _positive_int

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["Quality", "SAEMetrics", "check_outputs", "default_batch_rows", "evaluate"]


@dataclass(frozen=True)
class SAEMetrics:
    """How well an SAE reconstructs some data (:meth:`~superposition.SparseAutoencoder.evaluate`).

    A transcoder's are the same of its output ``y`` in place of ``x``.

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


def default_batch_rows(d_sae: int) -> int:
    """Rows evaluated at a time: the dense latents ``[rows, d_sae]`` stay near 64 MiB of
    float32 (``2**24 / d_sae`` rows, at least 256), whatever the data's size.

    Examples:
        >>> default_batch_rows(6144), default_batch_rows(64)
        (2730, 65536)
    """
    return max(256, min(65_536, 2**24 // d_sae))


class Quality:
    """:class:`SAEMetrics` accumulated batch by batch, so that data far larger than memory (a
    corpus's activations, captured a batch at a time) is measured in bounded memory.

    The centred variance of FVU's denominator is merged across batches (Chan et al.'s pairwise
    update, per feature, in float64), so no pass needs the data's mean in advance.
    """

    def __init__(self, sae: SparseAutoencoder) -> None:
        self.sae = sae
        self.n = 0
        self.err_sq = 0.0
        self.active = 0
        self.shrink = 0.0
        self.nonzero = 0
        self.fired = torch.zeros(sae.d_sae, dtype=torch.bool, device=sae.params.device)
        self.mean = torch.zeros(sae.d_out, dtype=torch.float64)
        self.m2 = torch.zeros(sae.d_out, dtype=torch.float64)

    @torch.no_grad()
    def add(self, x: Tensor, y: Tensor | None = None, *, batch_rows: int | None = None) -> None:
        """Measure the SAE on the rows of ``x: [n, d_in]`` (any device), ``batch_rows`` (default
        :func:`default_batch_rows`) at a time; a transcoder's on the pairs ``(x, y)``, with
        ``y: [n, d_out]`` what it should output."""
        sae = self.sae
        x = sae._check_input(x, move=False)
        if sae.transcoder:
            y = check_outputs(sae, x, y)
        elif y is not None:
            raise ValueError("an SAE reconstructs x itself: pass y=None (y is a transcoder's)")
        step = batch_rows or default_batch_rows(sae.d_sae)
        for start in range(0, x.shape[0], step):
            xb = x[start : start + step].to(sae.params.device, non_blocking=True)
            z, xhat = sae._predict(xb)
            # What should have come out: x itself, or a transcoder's y.
            want = xb if y is None else y[start : start + step].to(xb.device, non_blocking=True)
            self.active += int((z != 0).sum())
            self.fired |= (z != 0).any(0)
            del z
            xd, xhd = want.double(), xhat.double()
            del xhat
            self.err_sq += float((xd - xhd).square().sum())
            norm = xd.norm(dim=1)
            keep = norm > 0
            self.shrink += float((xhd.norm(dim=1)[keep] / norm[keep]).sum())
            self.nonzero += int(keep.sum())
            # Chan et al.: merge this batch's mean and sum of squared deviations.
            nb = xd.shape[0]
            mean_b = xd.mean(0)
            m2_b = (xd - mean_b).square().sum(0)
            total = self.n + nb
            delta = (mean_b - self.mean.to(xd.device)).cpu()
            self.mean += delta * (nb / total)
            self.m2 += m2_b.cpu() + delta.square() * (self.n * nb / total)
            self.n = total

    def result(self) -> SAEMetrics:
        """The metrics of every row added so far."""
        n, sae = self.n, self.sae
        if n < 2:
            raise ValueError(f"x must hold at least 2 samples to measure variance, got {n}")
        variance = float(self.m2.sum())
        return SAEMetrics(
            l0=self.active / n,
            fvu=self.err_sq / variance if variance > 0 else math.nan,
            mse=self.err_sq / (n * sae.d_out),
            dead_fraction=float((~self.fired).sum()) / sae.d_sae,
            shrinkage=self.shrink / self.nonzero if self.nonzero else math.nan,
            samples=n,
        )


def check_outputs(sae: SparseAutoencoder, x: Tensor, y: object) -> Tensor:
    """A transcoder's outputs ``y: [n, d_out]`` (finite floats, as many rows as its inputs
    ``x``), in the parameters' dtype; a ValueError saying what is wrong otherwise."""
    if y is None:
        raise ValueError(
            "a transcoder is measured on pairs: pass y, the [n, d_out] outputs it should give"
        )
    label = f"d_out={sae.d_out}"
    y = float_rows(y, sae.d_out, "y", label, f"the transcoder was built with {label}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have the same rows, got {x.shape[0]} and {y.shape[0]}")
    return y.to(sae.params.dtype)


def evaluate(
    sae: SparseAutoencoder, x: Tensor, batch_size: int | None = None, y: Tensor | None = None
) -> SAEMetrics:
    """The body of :meth:`~superposition.SparseAutoencoder.evaluate` (and of a transcoder's,
    with ``y``)."""
    # Quality.add validates x (one pass over it); the sample count is checked before any work.
    if isinstance(x, Tensor) and x.ndim == 2 and x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 samples to measure variance, got {x.shape[0]}")
    if batch_size is not None:
        _positive_int(batch_size, "batch_size")
    quality = Quality(sae)
    quality.add(x, y, batch_rows=batch_size)
    return quality.result()
