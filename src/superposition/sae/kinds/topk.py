"""``"topk"``: the ``k`` largest pre-activations of each row, through ReLU; the rest 0
(Gao et al. 2024, "Scaling and evaluating sparse autoencoders"). No penalty; AuxK on dead
latents.

Only the ``k`` selected latents of each row carry gradient, so the step works on ``[B, k]``
coordinates with batched products (see :mod:`superposition.sae.gradients` for the formulas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition._checks import positive_int
from superposition.sae.kinds.base import SAEKind, auxk_gradients

if TYPE_CHECKING:
    from superposition.sae.gradients import Step
    from superposition.sae.model import SparseAutoencoder

__all__ = ["TopK", "check_k", "gather_rows"]


def gather_rows(k: int, d_in: int) -> int:
    """Rows per chunk of the sparse backward: ``[rows, k, d_in]`` float32 near 64 MiB.

    Examples:
        >>> gather_rows(32, 1536), gather_rows(1, 4)
        (341, 4194304)
    """
    return max(1, 2**24 // (k * d_in))


def check_k(name: str, d_sae: int, k: object) -> int:
    """``k`` checked for a kind that keeps ``k`` latents per sample (required, 1..d_sae)."""
    if k is None:
        raise ValueError(f"kind={name!r} needs k, the number of active latents, e.g. k=32")
    k = positive_int(k, "k")
    if k > d_sae:
        raise ValueError(f"k must be at most d_sae={d_sae} (the number of latents), got k={k}")
    return k


@dataclass(frozen=True)
class TopK(SAEKind):
    """``k`` active latents in every sample."""

    name = "topk"
    uses_dead_latents = True

    k: int

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> TopK:
        return cls(k=check_k(cls.name, d_sae, given.get("k")))

    def encode(self, sae: SparseAutoencoder, pre: Tensor) -> Tensor:
        vals, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, vals.relu())

    def gradients(
        self, step: Step, xn: Tensor, xc: Tensor, pre: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        B, k, d_in = xn.shape[0], self.k, step.d_in
        # k latents in every row: batched [rows, k] products instead of coordinates, a chunk
        # of rows at a time. The gathered decoder rows and the outer products are [rows, k,
        # d_in]: for a whole batch (4096 x 32 x 1536) 805 MB each, three at once; a chunk
        # keeps each near 64 MiB. Chunks go in row order, so every sum (index_add_ runs
        # through its indices in order) adds the same terms in the same order as one call.
        vals, idx = pre.topk(k, dim=1, sorted=False)
        vals.relu_()
        err = torch.empty_like(xn)
        parts = -(-B // gather_rows(k, d_in))
        chunk = -(-B // parts)  # balanced chunks (a chunk of one row takes another kernel)
        for start in range(0, B, chunk):
            rows = slice(start, start + chunk)
            v, n = vals[rows], vals[rows].shape[0]
            cols = idx[rows].reshape(-1)
            Wc = step.W_dec[cols].view(n, k, d_in)
            xhat = torch.bmm(v[:, None, :], Wc).squeeze(1).add_(step.b_dec)
            e = torch.sub(xhat, xn[rows], out=err[rows])
            delta = e * (2.0 / B)
            dpre = torch.bmm(Wc, delta[:, :, None]).squeeze(2).mul_(v > 0)
            del Wc
            step.G_dec.index_add_(0, cols, (v[:, :, None] * delta[:, None, :]).view(-1, d_in))
            step.G_encT.index_add_(0, cols, (dpre[:, :, None] * xc[rows, None, :]).view(-1, d_in))
            step.G_benc.index_add_(0, cols, dpre.view(-1))
        active = (vals > 0).view(-1)
        step.mark_fired(idx.view(-1), active)
        return err, err * (2.0 / B), active.sum()

    def aux_gradients(self, step: Step, pre: Tensor, dead: Tensor, err: Tensor, xc: Tensor) -> None:
        auxk_gradients(step, pre, dead, err, xc)
